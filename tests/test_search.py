"""A real search on embedded Ray (tiny subset): trial counts, ASHA stops, Optuna states, re-running the best config."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import optuna
import pytest

from search.searcher import StatusAwareOptunaSearch
from search.spec import STORAGE_SCHEMES, ExperimentSpec, SpecError
from tests.searchrun import one_line_error

ARCHS = ["origin_net", "modified_net"]
NUM_SAMPLES = 6
MAX_EPOCHS = 3


def cli(*args, timeout=600, env=None):
    return subprocess.run([sys.executable, "-m", "search.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


@pytest.fixture(scope="module")
def experiment(cifar_path, tmp_path_factory):
    storage = tmp_path_factory.mktemp("results")
    out = cli("search", "--arch", ",".join(ARCHS), "--num-samples", str(NUM_SAMPLES), "--max-epochs", str(MAX_EPOCHS),
              "--reduction-factor", "2", "--data-dir", str(cifar_path), "--set", "subset=600", "--set", "val_size=300",
              "--set", "optimizer=adam", "--storage", str(storage), "--name", "small", "--seed", "3")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return storage / "small", out.stdout


@pytest.fixture(scope="module")
def trials(experiment):
    """``cifar-tune report EXP --json``, in this process (a report starts no Ray)."""
    import contextlib
    import io

    from search.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["report", str(experiment[0]), "--json"]) == 0
    return json.loads(out.getvalue())["trials"]


def test_every_net_gets_the_same_number_of_trials(trials):
    assert len(trials) == NUM_SAMPLES * len(ARCHS)
    assert sorted(t["arch"] for t in trials) == sorted(ARCHS * NUM_SAMPLES)
    assert all(t["status"] in ("completed", "stopped", "diverged") for t in trials)
    # --set pins a value in every trial (it is taken out of the search, not overridden after sampling)
    assert {t["config"]["optimizer"] for t in trials} == {"adam"}


def test_asha_stops_trials_and_optuna_records_them_as_pruned(experiment, trials):
    exp_dir, _ = experiment
    stopped = {t["trial_id"] for t in trials if t["status"] == "stopped"}
    completed = {t["trial_id"] for t in trials if t["status"] == "completed"}
    assert stopped and completed
    assert all(t["epochs"] < MAX_EPOCHS for t in trials if t["trial_id"] in stopped)
    storage = f"sqlite:///{exp_dir}/optuna.db"
    states = {}
    for arch in ARCHS:
        study = optuna.load_study(study_name=f"small-{arch}", storage=storage)
        assert len(study.trials) == NUM_SAMPLES  # Optuna trial count = Tune trial count, per net
        for t in study.trials:
            states[t.user_attrs["tune_trial_id"]] = t
    assert all(states[i].state == optuna.trial.TrialState.PRUNED for i in stopped)
    assert all(states[i].state == optuna.trial.TrialState.COMPLETE for i in completed)
    by_id = {t["trial_id"]: t for t in trials}
    for i in stopped:  # pruned with its last value as the last intermediate value
        last_step = max(states[i].intermediate_values)
        assert last_step == by_id[i]["epochs"]
        assert states[i].intermediate_values[last_step] == pytest.approx(by_id[i]["val_accuracy"])
    for i in completed:
        assert states[i].value == pytest.approx(by_id[i]["val_accuracy"])


def test_rung_records_are_persisted(experiment, trials):
    state = json.loads((experiment[0] / "asha_state.json").read_text())
    assert set(state["rungs"]) == set(ARCHS)
    recorded = {tid for rungs in state["rungs"].values() for _, rec in rungs for tid in rec}
    assert recorded == {t["trial_id"] for t in trials}
    assert {s["trial_id"] for s in state["stops"]} == {t["trial_id"] for t in trials if t["status"] == "stopped"}


def test_spec_json_records_the_run(experiment):
    spec = json.loads((experiment[0] / "spec.json").read_text())
    assert spec["spec"]["archs"] == ARCHS and spec["spec"]["seed"] == 3
    assert spec["environment"]["torch"] and spec["ray"] and spec["data"]["checksum"]
    # The code that made it: the package version, and in a git checkout (CI's clone, ours) the commit of this tree.
    from importlib.metadata import version

    from tests.conftest import REPO

    code = spec["environment"]["cifar_tune"]
    assert code.startswith(version("cifar-tune"))
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        assert f"(git {head.stdout.strip()}" in code, code
    assert set(spec["spaces"]) == set(ARCHS) and "optimizer" not in spec["spaces"]["origin_net"]["params"]


def test_progress_and_best_config_are_printed(experiment):
    _, stdout = experiment
    assert "trials" in stdout and "stopped early" in stdout and "best val_accuracy" in stdout
    assert "best configuration per net" in stdout and "cifar-tune report" in stdout


def test_best_config_reruns_with_train(experiment, trials, tmp_path):
    best = max((t for t in trials if t["status"] == "completed"), key=lambda t: t["val_accuracy"])
    row = tmp_path / "row.json"
    row.write_text(json.dumps(best))
    # Ray runs a 1-CPU trial with OMP_NUM_THREADS=1; the CLI with as many threads sums floats in another order, and
    # near chance (these nets after 3 epochs on 600 images) that alone flips up to ~10 of the 300 validation images.
    # With the trial's thread count, the same config, seed and data must give the same number, to the bit.
    out = cli("train", "--config", str(row), "--json", env={"OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    final = json.loads(out.stdout.strip().splitlines()[-1])
    assert final["config"]["arch"] == best["arch"] and final["epoch"] == MAX_EPOCHS
    assert final["val_accuracy"] == best["val_accuracy"]


def test_existing_experiment_is_not_overwritten(experiment, cifar_path, capsys):
    import ray

    from search.cli import main

    exp_dir, _ = experiment
    before = sorted(p.name for p in exp_dir.iterdir())
    assert main(["search", "--arch", "origin_net", "--storage", str(exp_dir.parent), "--name", "small",
                 "--data-dir", str(cifar_path)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert sorted(p.name for p in exp_dir.iterdir()) == before and not ray.is_initialized()


@pytest.mark.parametrize("args, named", [
    (["--arch", "nonet"], "nonet"),
    (["--arch", "origin_net", "--num-samples", "0"], "--num-samples"),
    (["--arch", "origin_net", "--max-epochs", "2", "--grace-period", "5"], "--grace-period 5"),
    (["--arch", "origin_net", "--set", "lr=-3"], "-3"),
    (["--arch", "origin_net", "--set", "epochs=3"], "--max-epochs"),
    (["--arch", "origin_net", "--preset", "report000"], "not both"),
    (["--preset", "report999"], "report999"),
    (["--preset", "report000:fast"], "fast"),
    (["--arch", "origin_net", "--space", "/no/such.yaml"], "/no/such.yaml"),
    (["--arch", "origin_net", "--reduction-factor", "1"], "--reduction-factor"),
])
def test_bad_search_input_fails_before_anything_is_written(args, named, tmp_path, capsys):
    from search.cli import main

    assert main(["search", *args, "--storage", str(tmp_path / "r"), "--name", "x"]) == 2
    err = capsys.readouterr().err
    assert named in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "x").exists()


def test_bad_space_file_is_refused_with_file_and_key(tmp_path, capsys):
    from search.cli import main

    space = tmp_path / "mine.yaml"
    space.write_text("extends: base\nparams:\n  lr: {type: float, low: 0.1, high: 0.01, log: true}\n")
    assert main(["search", "--arch", "origin_net", "--space", str(space), "--storage", str(tmp_path / "r"),
                 "--name", "x", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "mine.yaml" in err and "lr" in err
    assert not (tmp_path / "r" / "x").exists()


def test_cluster_mode_refuses_node_local_storage(tmp_path):
    with pytest.raises(SpecError, match="node-local"):
        ExperimentSpec(archs=["origin_net"], address="127.0.0.1:6379", storage=str(tmp_path))
    ExperimentSpec(archs=["origin_net"], address="127.0.0.1:6379", storage="s3://bucket/results",
                   optuna_storage="postgresql+psycopg2://tune@db/studies")
    ExperimentSpec(archs=["origin_net"], address="127.0.0.1:6379", storage=str(tmp_path), storage_is_shared=True)


def test_a_seed_outside_numpys_range_is_refused_for_every_nets_sampler():
    """Net i's sampler is seeded seed + i: with two nets 2**32 - 1 overflows numpy's range (it failed after Ray)."""
    assert ExperimentSpec(archs=["origin_net"], seed=2**32 - 1).seed == 2**32 - 1
    for archs, seed in ((["origin_net"], -1), (["origin_net", "simple_cnn"], 2**32 - 1), (["origin_net"], 2**32)):
        with pytest.raises(SpecError, match=f"--seed must be an integer in .*got {seed}"):
            ExperimentSpec(archs=archs, seed=seed)


def test_a_storage_url_is_checked_before_ray_starts(tmp_path, monkeypatch):
    """A scheme Ray's filesystem layer (pyarrow) cannot resolve, or an object store without a study database, is
    refused when the spec is built: Ray used to start first, then fail (and leave a local folder 'foo:')."""
    import pyarrow.fs

    monkeypatch.chdir(tmp_path)
    for storage, words in (("foo://bar", "cannot write to a foo:// URL"), ("s3://bucket/r", "--optuna-storage")):
        with pytest.raises(SpecError, match=words):
            ExperimentSpec(archs=["origin_net"], storage=storage)
    assert not any(tmp_path.iterdir())
    for scheme in STORAGE_SCHEMES:  # each one we accept, pyarrow knows (an unknown one fails otherwise)
        try:
            pyarrow.fs.FileSystem.from_uri(f"{scheme}://")
        except Exception as e:  # noqa: BLE001  (a known scheme may still want a bucket, an account or a JVM)
            assert "Unrecognized filesystem type" not in str(e), scheme
    with pytest.raises(Exception, match="Unrecognized filesystem type"):
        pyarrow.fs.FileSystem.from_uri("foo://")


def test_an_object_store_that_does_not_answer_is_one_line_before_ray(tmp_path, capsys):
    """An s3:// storage this machine cannot reach (here: an endpoint where nothing listens; on a machine without
    network, any bucket) failed inside Ray's setup with pyarrow's traceback. Now one line naming it, Ray not
    started, the study database not created."""
    import ray

    from search.cli import main
    from search.tuner import check_storage

    storage = "s3://bucket/results?endpoint_override=127.0.0.1:1&scheme=http"
    with pytest.raises(SpecError, match=r"--storage 's3://bucket/results\?endpoint.*cannot reach it \(OSError"):
        check_storage(storage)
    check_storage(str(tmp_path))  # a directory: nothing to look at
    assert main(["search", "--arch", "origin_net", "--storage", storage, "--optuna-storage",
                 f"sqlite:///{tmp_path}/studies.db", "--name", "x"]) == 2
    one_line_error(capsys, "--storage", "cannot reach it")
    assert not ray.is_initialized() and not (tmp_path / "studies.db").exists()


def test_stopped_and_diverged_trials_reach_optuna_as_pruned():
    s = StatusAwareOptunaSearch(space=lambda t: t.suggest_float("lr", 1e-4, 1e-1, log=True) and None,
                                metric="val_accuracy", mode="max", seed=0)
    for tid, status, epoch in [("a", "completed", 5), ("b", "running", 1), ("c", "diverged", 2)]:
        s.suggest(tid)
        s.on_trial_complete(tid, {"val_accuracy": 0.5, "epoch": epoch, "status": status})
    s.suggest("d")
    s.on_trial_complete("d", None, error=True)
    from trainables.compat import searcher_study

    states = [t.state.name for t in searcher_study(s).trials]
    assert states == ["COMPLETE", "PRUNED", "PRUNED", "FAIL"]
    assert searcher_study(s).trials[1].intermediate_values == {1: 0.5}
    assert searcher_study(s).trials[2].user_attrs["status"] == "diverged"


def lr_space(trial):
    trial.suggest_float("lr", 1e-4, 1e-1, log=True)


def test_restored_searcher_accounts_for_trials_asked_or_ended_after_tunes_last_save(tmp_path):
    """The window a driver kill can hit: Tune saved the searcher after trial a; then b was asked (RUNNING in the
    study) and c was asked and stopped (PRUNED). Restored from that save, the searcher hands b's Optuna trial to the
    next Tune trial (same params, no new Optuna trial) and lists c as lost, leaving c's verdict as it was."""
    from search.searcher import LOST_ATTR, MultiArchSearcher
    from trainables.compat import searcher_study

    space = lr_space  # module level: the searcher's state is pickled
    url = f"sqlite:///{tmp_path}/optuna.db"
    first = MultiArchSearcher({"origin_net": space}, 4, {}, storage=url, study_prefix="win", seed=0)
    first.suggest("a")
    first.on_trial_complete("a", {"val_accuracy": 0.4, "epoch": 2, "status": "completed"})
    first.save(str(tmp_path / "searcher.pkl"))  # Tune's last save
    asked_b = first.suggest("b")
    first.suggest("c")
    first.on_trial_complete("c", {"val_accuracy": 0.2, "epoch": 1, "status": "running"})  # ASHA stopped c

    resumed = MultiArchSearcher({"origin_net": space}, 4, {}, storage=url, study_prefix="win", seed=0)
    resumed.restore(str(tmp_path / "searcher.pkl"))
    study = searcher_study(resumed.searchers["origin_net"])
    assert study.user_attrs[LOST_ATTR] == ["c"]
    assert resumed.suggest("b2")["lr"] == asked_b["lr"]  # takes b's RUNNING Optuna trial over
    assert len(study.trials) == 3
    resumed.suggest("d")
    assert len(study.trials) == 4
    states = {t.user_attrs["tune_trial_id"]: t.state.name for t in study.trials}
    assert states == {"a": "COMPLETE", "b2": "RUNNING", "c": "PRUNED", "d": "RUNNING"}
    resumed.restore(str(tmp_path / "searcher.pkl"))  # a second resume lists c once
    assert study.user_attrs[LOST_ATTR] == ["c"]


def test_result_files_reach_a_trial_folder_the_storage_does_not_have_yet(tmp_path):
    """A trial that fails before Tune first synced it (an OOM in its first epoch) has no storage folder yet: the
    retry callback creates it instead of crashing the search; a storage that cannot be written is only logged."""
    from types import SimpleNamespace

    import pyarrow.fs

    from search.tuner import keep_results_on_retry

    local = tmp_path / "driver" / "trial_a"
    local.mkdir(parents=True)
    (local / "result.json").write_text('{"epoch": 1}\n')
    remote = tmp_path / "storage" / "exp" / "trial_a"
    trial = SimpleNamespace(trial_id="a", local_path=str(local),
                            storage=SimpleNamespace(trial_fs_path=str(remote),
                                                    storage_filesystem=pyarrow.fs.LocalFileSystem()))
    callback = keep_results_on_retry()
    callback.on_trial_recover(iteration=0, trials=[], trial=trial)
    assert (remote / "result.json").read_text() == '{"epoch": 1}\n'

    (tmp_path / "blocked").write_text("a file where the storage folder should be")
    trial.storage.trial_fs_path = str(tmp_path / "blocked" / "trial_a")
    callback.on_trial_recover(iteration=0, trials=[], trial=trial)  # logged, not raised


def test_default_space_benchmark_retrains_both_picks_alike_and_resumes(experiment, trials, cifar_path, tmp_path):
    """benchmarks/default_space.py (issue 22, build 3) on this module's search, shrunk: the default pick is the
    report's rank-1 modified_net trial, the reproduce pick is report 003's fair record's config, both are retrained
    with the settings given here only, and a rerun retrains nothing."""
    from benchmarks import default_space as ds

    exp, _ = experiment
    doc = ds.REPO / "docs" / "results" / ds.RECORD
    before = doc.read_text() if doc.exists() else None
    args = ["--experiment", str(exp), "--archs", "modified_net", "--epochs", "1", "--seeds", "2", "--subset", "300",
            "--val-size", "100", "--storage", str(tmp_path), "--data-dir", str(cifar_path)]
    assert ds.main(args) == 0
    record = json.loads((tmp_path / ds.RECORD).read_text())
    net = record["nets"]["modified_net"]
    scored = [t for t in trials if t["arch"] == "modified_net" and t["best_val_accuracy"] is not None]
    assert net["default"]["pick"]["val_accuracy_search"] == max(t["best_val_accuracy"] for t in scored)
    assert net["reproduce"]["pick"]["config"] == ds.reproduce_pick("modified_net")["config"]
    assert net["reproduce"]["pick"]["config"]["lr"] != net["default"]["pick"]["config"]["lr"]
    for which in ("default", "reproduce"):
        pick = net[which]["pick"]["config"]
        for run, seed in zip(net[which]["runs"], (0, 1)):
            c = run["config"]
            assert (c["epochs"], c["seed"], c["subset"], c["val_size"]) == (1, seed, 300, 100)
            assert all(c[k] == v for k, v in pick.items() if k not in ds.SET_HERE)  # its own knobs, untouched
            assert run["train_images"] == 300 and len(run["val_curve"]) == 1 and 0 <= run["val_accuracy"] <= 1
    assert net["comparison"]["n"] == 2 and net["comparison"]["verdict"] in ("within 1 point", "undecided",
                                                                            "more than 1 point below")
    units = sorted((tmp_path / "units" / "modified_net").glob("*.json"))
    assert len(units) == 4
    stamps = [u.stat().st_mtime_ns for u in units]
    assert ds.main(args) == 0  # a rerun keeps every finished retrain
    assert [u.stat().st_mtime_ns for u in units] == stamps
    assert (doc.read_text() if doc.exists() else None) == before  # shrunk settings never publish
    # carried to a new machine (benchmarks.carry): the units and the finished search, without its checkpoints; the
    # benchmark then keeps that search instead of resuming it
    import shutil

    from benchmarks.carry import main as carry

    shutil.copytree(exp, tmp_path / ds.NAME)
    assert carry(["save", str(tmp_path), "--to", str(tmp_path / "carried")]) == 0
    assert carry(["restore", str(tmp_path / "carried" / f"{tmp_path.name}.tar.gz"), "--storage",
                  str(tmp_path / "new")]) == 0
    new = tmp_path / "new" / tmp_path.name
    assert sorted(p.name for p in (new / "units" / "modified_net").glob("*.json")) == [u.name for u in units]
    assert (new / ds.NAME / "spec.json").exists() and not list((new / ds.NAME).rglob("checkpoint_*"))
    assert ds.run_default_search(None, new) == new / ds.NAME  # finished: kept, nothing run (no args needed)


@pytest.mark.parametrize("default, reproduce, word", [
    ({0: 0.70, 1: 0.71, 2: 0.72}, {0: 0.70, 1: 0.71, 2: 0.715}, "within 1 point"),
    ({0: 0.60, 1: 0.61, 2: 0.62}, {0: 0.70, 1: 0.71, 2: 0.715}, "more than 1 point below"),
    ({0: 0.68, 1: 0.72, 2: 0.70}, {0: 0.70, 1: 0.70, 2: 0.71}, "undecided"),
    ({0: 0.70}, {0: 0.70}, "single run"),
])
def test_default_space_verdict_reads_the_interval_against_one_point(default, reproduce, word):
    from benchmarks.default_space import judge

    assert judge(default, reproduce)["verdict"] == word


@pytest.mark.parametrize("argv, named", [
    (["--cpus-per-trial", "nan"], "--cpus-per-trial must be a number >= 0, got nan"),  # no trial was ever placed
    (["--gpus-per-trial", "nan"], "--gpus-per-trial must be >= 0, got nan"),
    (["--max-epochs", "2000000"], "--max-epochs must be at most 1,000,000"),  # every trial refused, after Ray
])
def test_resources_and_horizon_no_trial_could_run_with_are_refused_before_ray(argv, named, tmp_path, capsys):
    """`--cpus-per-trial nan` left the search pending forever (nan < 0 is false, so it passed)."""
    import ray

    from search.cli import main

    assert main(["search", "--arch", "origin_net", "--storage", str(tmp_path / "r"), *argv]) == 2
    one_line_error(capsys, named)
    assert not ray.is_initialized() and not (tmp_path / "r").exists()


TINY_IMAGES = '''
import numpy as np


class Tiny:
    """Three classes of 4x4 grey images: too small for the registry's nets."""
    name = "tiny"

    def __init__(self, root):
        def split(n):
            y = np.arange(n) % 3
            return (40 * y[:, None, None] + np.zeros((n, 4, 4))).astype(np.uint8), y
        self.train_x, self.train_y = split(60)
        self.test_x, self.test_y = split(15)
        self.classes = ["a", "b", "c"]
'''

FIXED_32 = '''
import torch.nn as nn


class Fixed32(nn.Module):
    """A head sized for 3x32x32 inputs only."""
    def __init__(self, num_classes, in_channels):
        super().__init__()
        self.fc = nn.Linear(in_channels * 32 * 32, num_classes)

    def forward(self, x):
        return self.fc(x.flatten(1))
'''


@pytest.mark.parametrize("case", ["registry net, images too small", "user net, image_size", "val_size 0",
                                  "space fixes val_size 0"])
def test_a_config_the_data_cannot_take_is_refused_before_ray(case, tmp_path, capsys, monkeypatch):
    """Each trial built its net (or split its data) inside Ray and failed there, every one alike: a registry net
    never built for a user dataset's 4x4 images, a user's net never run at the fixed image_size, a search with no
    validation split to rank on (it ran to the end and picked among zeros)."""
    import ray

    from search.cli import main
    from tests.conftest import make_cifar_pickles

    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.py").write_text(TINY_IMAGES)
    (tmp_path / "fixed32.py").write_text(FIXED_32)
    (tmp_path / "zero.yaml").write_text("extends: simple_cnn\nfixed:\n  val_size: 0\n")
    cifar = make_cifar_pickles(tmp_path / "data")
    base = ["search", "--num-samples", "1", "--max-epochs", "1", "--storage", str(tmp_path / "r"), "--name", "x",
            "--set", "latency_batch=0"]
    argv, named = {
        "registry net, images too small": (["--arch", "simple_cnn", "--set", "dataset=tiny.py:Tiny", "--set",
                                            "val_size=6"], "arch 'simple_cnn' cannot take 1x4x4 input"),
        "user net, image_size": (["--arch", "fixed32.py:Fixed32", "--data-dir", str(cifar), "--set", "val_size=20",
                                  "--set", "image_size=64"], "x3x64x64 batch raised"),
        "val_size 0": (["--arch", "simple_cnn", "--data-dir", str(cifar), "--set", "val_size=0"],
                       "val_size 0 (arch simple_cnn): a search ranks its trials on the validation split"),
        "space fixes val_size 0": (["--arch", "simple_cnn", "--data-dir", str(cifar), "--space", "zero.yaml"],
                                   "val_size 0 (arch simple_cnn)"),
    }[case]
    assert main([*base, *argv]) == 2
    one_line_error(capsys, named)
    assert not ray.is_initialized() and not (tmp_path / "r" / "x").exists()


@pytest.mark.parametrize("stem, named", [("json", "the standard library's module 'json'"),
                                         ("numpy", "the module 'numpy' at")])
def test_a_net_file_named_like_a_module_is_refused_before_ray(stem, named, tmp_path, capsys, monkeypatch):
    """Ray ships a file ref to its workers as a module of the file's name: json.py hid the standard library's json
    there, the worker died at start-up and the search waited for it forever."""
    import ray

    from search.cli import main

    (tmp_path / f"{stem}.py").write_text(FIXED_32)
    monkeypatch.chdir(tmp_path)
    assert main(["search", "--arch", f"{stem}.py:Fixed32", "--storage", str(tmp_path / "r")]) == 2
    one_line_error(capsys, f"{stem}.py:Fixed32", named, "rename the file")
    assert not ray.is_initialized() and not (tmp_path / "r").exists()
