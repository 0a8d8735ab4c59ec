"""Trackers end to end: a real MLflow tracking server on a loopback port receives every trial of a real 4-trial search
(the resolved config as params, per-epoch metrics, the outcome) and the spec; the same search leaves TensorBoard
event files with HParams inside the experiment folder. A tracking URI that does not answer is one line, before Ray.

The search is of two nets of the user's own (tests/test_user_net.py: one from a .py file, one from an installed
package's entry point), so the same Ray start also checks them searched end to end on embedded Ray."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import urllib.request

import pytest

from tests.conftest import make_cifar_pickles
from tests.searchrun import free_port, kill_session, one_line_error, report, results, run_cli, trial_dirs, wait_for
from tests.test_user_net import check_shipped, check_user_net_experiment, search_args, write_user_nets

NAME = "tracked"
EPOCHS = 2


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """``mlflow server`` on a free loopback port, SQLite-backed, serving artifacts from a temporary folder."""
    root = tmp_path_factory.mktemp("mlflow")
    url = f"http://127.0.0.1:{free_port()}"
    log = root / "server.log"
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
           "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", url.rsplit(":", 1)[1],
           "--workers", "1"]
    # The job runner (prompt optimisation and the like) is not tracking: off, so the server starts faster.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: _answers(url), timeout=180, proc=proc, log=log, what="the MLflow server to answer")
        yield url
    finally:
        kill_session(proc)


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    return write_user_nets(tmp_path_factory.mktemp("nets"))


@pytest.fixture(scope="module")
def search(mlflow_server, nets, cifar_path, tmp_path_factory):
    """Both user nets (the file net by a path relative to the CLI's cwd), 2 trials each of EPOCHS epochs, ASHA."""
    storage = tmp_path_factory.mktemp("results")
    args = search_args(nets, cifar_path, storage, NAME)
    args[args.index("--max-epochs") + 1] = EPOCHS
    out = run_cli([*args, "--reduction-factor", "2", "--seed", "1", "--mlflow", mlflow_server],
                  PYTHONPATH=f"{nets['site']}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    assert out.returncode == 0, out.stdout[-4000:]
    exp = storage / NAME
    return exp, out.stdout, {t["trial_id"]: t for t in report(exp)}


def test_user_nets_searched_end_to_end(search, nets):
    """A file net and an entry-point net on embedded Ray: recorded in the spec and the trial configs, every trial
    ended, and the workers loaded the file net from the copy Ray shipped them (tests/test_user_net.py)."""
    exp, _, _ = search
    check_user_net_experiment(exp, nets, ended=("completed", "stopped"))
    check_shipped(nets)


def test_every_trial_reaches_mlflow_with_config_epochs_and_outcome(search, mlflow_server):
    from mlflow import MlflowClient

    exp, _, trials = search
    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name(NAME)
    runs = client.search_runs([experiment.experiment_id])
    parent = [r for r in runs if r.data.tags.get("cifar_tune.role") == "search"]
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    parent = parent[0]
    by_trial = {r.data.tags["cifar_tune.trial_id"]: r for r in runs if "cifar_tune.trial_id" in r.data.tags}
    assert sorted(by_trial) == sorted(trials) and len(trials) == 4
    for trial_id, trial in trials.items():
        run = by_trial[trial_id]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.run_name == f"{trial['arch']}_{trial_id}"
        assert run.data.tags["outcome"] == trial["status"]  # completed / stopped (by ASHA) / diverged / errored
        assert run.info.status == ("FAILED" if trial["status"] == "errored" else "FINISHED")
        # params: the resolved config, searched values and defaults alike
        params = run.data.params
        for key, value in trial["config"].items():
            assert (params[key] if isinstance(value, str) else json.loads(params[key])) == value, key
        assert params["momentum"] and params["checkpoint_every"] == "1"
        # metrics: every epoch of result.json, once, at step = epoch
        epochs = [row for row in results(trial_dirs(exp)[trial_id]) if "epoch" in row]
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert [(m.step, m.value) for m in history] == [(r["epoch"], r["val_accuracy"]) for r in epochs]
        train_loss = client.get_metric_history(run.info.run_id, "train_loss")
        assert [m.step for m in train_loss] == [r["epoch"] for r in epochs]
    # the search's run: the spec, as params and as spec.json itself
    assert json.loads(parent.data.params["archs"]) == ["FileNet", "ep_tiny"]
    assert parent.data.params["mlflow"] == mlflow_server
    assert [a.path for a in client.list_artifacts(parent.info.run_id)] == ["spec.json"]
    local = client.download_artifacts(parent.info.run_id, "spec.json", str(exp.parent))
    assert json.loads(open(local).read()) == json.loads((exp / "spec.json").read_text())
    assert json.loads((exp / "spec.json").read_text())["spec"]["mlflow"] == mlflow_server  # recorded for --resume


def _events(path):
    """The records of a TensorBoard event file (TFRecord framing), as tensorboardX's Event protos."""
    from tensorboardX.proto.event_pb2 import Event

    data = path.read_bytes()
    at = 0
    while at < len(data):
        (length,) = struct.unpack("<Q", data[at:at + 8])
        yield Event.FromString(data[at + 12:at + 12 + length])
        at += 12 + length + 4


def test_tensorboard_scalars_and_hparams_are_in_the_experiment_folder(search):
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData

    exp, stdout, trials = search
    assert f"tensorboard --logdir {exp}" in stdout  # ours, where the files are ...
    assert not [line for line in stdout.splitlines() if "tensorboard" in line.lower() and "/ray/session" in line]
    for trial_id, folder in trial_dirs(exp).items():
        files = sorted(folder.glob("events.out.tfevents.*"))
        assert files, f"no TensorBoard event file in {folder}"
        scalars, hparams, ended = {}, {}, []
        for event in (e for f in files for e in _events(f)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "hparams":
                    content = HParamsPluginData.FromString(value.metadata.plugin_data.content)
                    if content.HasField("session_start_info"):
                        hparams = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
                                   for k, v in content.session_start_info.hparams.items()}
                    if content.HasField("session_end_info"):
                        ended.append(content.session_end_info.status)
                elif value.HasField("simple_value"):
                    scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
        epochs = [row for row in results(folder) if "epoch" in row]
        assert [step for step, _ in scalars["val_accuracy"]] == [r["epoch"] for r in epochs]
        assert [v for _, v in scalars["val_accuracy"]] == pytest.approx([r["val_accuracy"] for r in epochs])
        assert not [tag for tag in scalars if tag in ("done", "training_iteration", "time_total_s")]
        assert hparams["lr"] == pytest.approx(trials[trial_id]["config"]["lr"])
        assert hparams["optimizer"] == trials[trial_id]["config"]["optimizer"]
        assert hparams["outcome"] == trials[trial_id]["status"] and len(ended) == 1


def test_an_mlflow_uri_that_does_not_answer_is_one_line_before_ray(tmp_path, capsys):
    import ray

    from search.cli import main

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    data = make_cifar_pickles(tmp_path / "data")
    rc = main(["search", "--arch", "modified_net", "--num-samples", "1", "--max-epochs", "1", "--data-dir", str(data),
               "--storage", str(tmp_path / "results"), "--name", "unreached", "--mlflow", url])
    assert rc == 2
    one_line_error(capsys, f"--mlflow {url}", "Connection refused")
    assert not ray.is_initialized()
    assert not (tmp_path / "results" / "unreached").exists()
