"""Every input checked before Ray starts, each refused with one line naming the value (exit status 2).

All in-process and Ray-free (a refusal must come before Ray): fast.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from search.cli import build_parser, main
from tests.conftest import REPO, make_image_folder, stub_experiment
from tests.searchrun import one_line_error

SUBCOMMANDS = sorted(build_parser()._subparsers._group_actions[0].choices)


def test_help_of_the_command():
    """`cifar-tune --help` crashed on the '%' of "95% CIs" in a subcommand's help (argparse formats with %). A fresh
    process: nothing on stderr either (no warning from an import)."""
    out = subprocess.run([sys.executable, "-m", "search.cli", "--help"], capture_output=True, text=True, cwd=REPO,
                         timeout=300)
    assert out.returncode == 0 and "usage: cifar-tune" in out.stdout and not out.stderr, out.stderr[-2000:]
    assert "95% CI" in out.stdout  # the subcommands' one-line help, evaluate's with its "95% CIs"


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_help_of_every_subcommand(command, capsys):
    """Each subcommand's own --help formats (in this process: the parser is the one the fresh process above built)."""
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    out = capsys.readouterr()
    assert done.value.code == 0 and "usage: cifar-tune" in out.out and not out.err, out.err[-2000:]


def test_sampler_help_names_every_sampler(capsys):
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    from search.spec import SAMPLERS

    assert f"{', '.join(SAMPLERS[:-1])}, or {SAMPLERS[-1]}" in text  # every value ExperimentSpec accepts


@pytest.mark.parametrize("argv, named", [
    (["search", "--n-trials", "3"], ["--n-trials 3", "did you mean --num-samples?", "cifar-tune search --help"]),
    (["search", "--epochs", "3"], ["--epochs 3", "did you mean --max-epochs?"]),
    (["train", "--lr", "0.1"], ["--lr 0.1", "did you mean --set lr=0.1?"]),
    (["train", "--epochs=4"], ["--epochs=4", "did you mean --set epochs=4?"]),
    (["report", "x", "--jsn"], ["--jsn", "did you mean --json?"]),
    (["train", "--frobnicate"], ["--frobnicate"]),
    (["search", "--num-samples", "many"], ["--num-samples", "'many'"]),
    (["search", "--arch"], ["--arch", "expected one argument"]),
])
def test_a_flag_the_subcommand_lacks_or_a_bad_value_is_one_line_with_the_likely_flag(argv, named, capsys):
    """argparse's own refusals read like every other: one line from the subcommand (not the top level's list of
    every subcommand), exit 2, the flag it most likely meant where there is one."""
    with pytest.raises(SystemExit) as refused:
        main(argv)
    assert refused.value.code == 2
    err = one_line_error(capsys, f"cifar-tune {argv[0]}: error", *named)
    assert ("did you mean" in err) == any("did you mean" in n for n in named), err


@pytest.mark.parametrize("argv, named", [
    (["search", "--arch", "origin_net", "--storage", ""], "--storage ''"),  # it wrote to ~/cifar-tune-results
    (["search", "--arch", "origin_net", "--name", " "], "--name ' '"),
    (["report", "x", "--out", ""], "--out ''"),
    (["search", "--preset", "report000:"], "'report000:'"),  # a mode lost on the way, not 'tuned'
    (["search", "--arch", "origin_net", "--objectives", "val_accuracy:max,,params:min"], "an empty name"),
])
def test_an_empty_value_is_refused_not_taken_for_the_default(argv, named, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    one_line_error(capsys, named)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("arch", ["origin_net,,", ",origin_net", "origin_net, ,modified_net"])
def test_an_empty_name_in_arch_is_refused(arch, tmp_path, capsys):
    assert main(["search", "--arch", arch, "--storage", str(tmp_path / "r"), "--name", "x"]) == 2
    one_line_error(capsys, repr(arch))
    assert not (tmp_path / "r").exists()


def test_sampler_grid_without_a_preset_is_refused(tmp_path, capsys):
    assert main(["search", "--arch", "origin_net", "--sampler", "grid", "--storage", str(tmp_path), "--name", "x"]) == 2
    one_line_error(capsys, "--preset")


@pytest.mark.parametrize("command", ["data", "search", "train"])
def test_a_data_dir_that_does_not_exist_is_refused_and_not_created(command, tmp_path, capsys):
    missing = tmp_path / "no-such-dir"
    extra = {"data": [], "train": ["--arch", "origin_net"],
             "search": ["--arch", "origin_net", "--storage", str(tmp_path / "r"), "--name", "x"]}[command]
    assert main([command, "--data-dir", str(missing), *extra]) == 2
    one_line_error(capsys, str(missing), "does not exist")
    assert not missing.exists() and not (tmp_path / "r").exists()


@pytest.mark.parametrize("only", ["train", "test"])
def test_an_image_folder_with_one_split_says_which_is_missing(only, tmp_path, capsys):
    root = make_image_folder(tmp_path / "imgs")
    import shutil

    shutil.rmtree(root / ("test" if only == "train" else "train"))
    assert main(["data", "--data-dir", str(root), "--no-download"]) == 2
    one_line_error(capsys, f"no {'test' if only == 'train' else 'train'}/ folder")


def test_data_smaller_than_the_validation_split_is_one_line_in_data(tmp_path, capsys):
    root = make_image_folder(tmp_path / "imgs", per_class=4)  # 12 training images, default val_size 5,000
    assert main(["data", "--data-dir", str(root), "--no-download"]) == 2
    one_line_error(capsys, "val_size 5000", "12 training images", "e.g. --val-size 2")  # this command's flag


def test_data_smaller_than_the_validation_split_is_refused_by_search_before_ray(tmp_path, capsys):
    import ray

    root = make_image_folder(tmp_path / "imgs", per_class=4)
    code = main(["search", "--arch", "origin_net", "--data-dir", str(root), "--storage", str(tmp_path / "r"),
                 "--name", "x"])
    assert code == 2
    one_line_error(capsys, "val_size 5000")
    assert not (tmp_path / "r").exists() and not ray.is_initialized()


def test_warm_start_from_a_folder_that_is_not_an_experiment_is_refused_before_ray(tmp_path, capsys, cifar_path):
    import ray

    (tmp_path / "not-an-experiment").mkdir()
    code = main(["search", "--arch", "origin_net", "--data-dir", str(cifar_path), "--set", "val_size=100",
                 "--warm-start", str(tmp_path / "not-an-experiment"), "--storage", str(tmp_path / "r"), "--name", "x",
                 "--sampler", "tpe"])
    assert code == 2
    one_line_error(capsys, "--warm-start", "not-an-experiment", "spec.json")
    assert not (tmp_path / "r").exists() and not ray.is_initialized()


def test_the_default_sampler_is_random_and_the_report_plans_keep_tpe(tmp_path, capsys):
    """Issue 22: TPE's picks were no better than random sampling's (the anytime benchmark), so a plain search samples
    at random; a tuned preset and reproduce keep TPE (their budget rules count its start-up trials, their records ran
    it); --warm-start, which seeds TPE's model, is refused with the random default in one line, before Ray."""
    import ray

    from search.cli import build_parser
    from search.cli.search import spec_from_args
    from search.reproduce import get_plan, net_spec
    from search.spec import PLAN_SAMPLER

    def spec(*argv):
        return spec_from_args(build_parser().parse_args(["search", *argv, "--storage", str(tmp_path / "r")]))

    assert spec("--arch", "origin_net").sampler == "random" and PLAN_SAMPLER == "tpe"
    assert spec("--arch", "origin_net", "--sampler", "tpe").sampler == "tpe"
    assert spec("--preset", "report003").sampler == spec("--preset", "report003:tuned").sampler == PLAN_SAMPLER
    assert spec("--preset", "report003:grid").sampler == "grid"
    assert all(net_spec(p, n, tmp_path, {}).sampler == PLAN_SAMPLER
               for p in map(get_plan, ("report000", "report003")) for n in p.nets)
    (tmp_path / "earlier").mkdir()
    assert main(["search", "--arch", "origin_net", "--warm-start", str(tmp_path / "earlier"),
                 "--storage", str(tmp_path / "r"), "--name", "x"]) == 2
    one_line_error(capsys, "--warm-start", "--sampler is random", "add --sampler tpe")
    assert not (tmp_path / "r").exists() and not ray.is_initialized()


@pytest.mark.parametrize("value", ['"64"', '"abc"'])
def test_a_quoted_number_in_a_config_file_is_refused(value, tmp_path, capsys):
    (tmp_path / "row.json").write_text('{"config": {"arch": "origin_net", "batch_size": %s}}' % value)
    assert main(["train", "--config", str(tmp_path / "row.json"), "--data-dir", str(tmp_path)]) == 2
    one_line_error(capsys, "batch_size", value.strip('"'))


def test_a_key_written_twice_in_a_config_file_is_refused(tmp_path, capsys):
    """json keeps the last of two values without a word: which lr did the run use?"""
    (tmp_path / "row.json").write_text('{"arch": "origin_net", "lr": 0.1, "lr": 0.2}')
    assert main(["train", "--config", str(tmp_path / "row.json"), "--data-dir", str(tmp_path)]) == 2
    one_line_error(capsys, "--config", "row.json", "the key 'lr' is written twice")


def test_a_config_file_nested_too_deeply_is_one_line(tmp_path, capsys):
    (tmp_path / "deep.json").write_text('{"a": ' + "[" * 5000 + "]" * 5000 + "}")  # a RecursionError in json
    assert main(["train", "--config", str(tmp_path / "deep.json"), "--data-dir", str(tmp_path)]) == 2
    one_line_error(capsys, "--config", "deep.json", "nested too deeply")


@pytest.mark.parametrize("argv, named", [
    (["--set", "seed=4294967296"], ["seed", "4294967296", "2**32 - 1"]),  # numpy's ValueError after the data loaded
    (["--set", "seed=1e30"], ["seed", "31 digits"]),
    (["--config", "{seed_1e300}"], ["seed", "301 digits"]),
    (["--set", "batch_size=1e25"], ["batch_size", "10000000000000000905969664"]),  # tensorboardX's TypeError later
    (["--set", "device=cuda:abc"], ["device", "'cuda:abc'"]),
])
def test_a_value_past_what_numpy_torch_or_the_trackers_hold_is_one_line(argv, named, tmp_path, capsys):
    (tmp_path / "seed.json").write_text('{"arch": "simple_cnn", "seed": 1e300}')
    argv = [a.replace("{seed_1e300}", str(tmp_path / "seed.json")) for a in argv]
    assert main(["train", "--arch", "simple_cnn", "--data-dir", str(tmp_path / "no-data"), *argv]) == 2
    one_line_error(capsys, *named)


@pytest.mark.parametrize("argv", [["train", "--set", "dataset=none"], ["train", "--set", "dataset=null"],
                                  ["train", "--config", "{null_dataset}"], ["search", "--set", "dataset=none"]])
def test_no_dataset_is_refused_not_a_traceback(argv, tmp_path, capsys):
    """`dataset=none` (None: no default reading for the data) reached `":" in value` as a TypeError traceback."""
    from trainables.config import ConfigError, resolve_config

    (tmp_path / "row.json").write_text('{"arch": "simple_cnn", "dataset": null}')
    argv = [a.replace("{null_dataset}", str(tmp_path / "row.json")) for a in argv]
    assert main([*argv, "--arch", "simple_cnn", "--storage" if argv[0] == "search" else "--data-dir",
                 str(tmp_path / "r")]) == 2
    one_line_error(capsys, "dataset", "got None")
    with pytest.raises(ConfigError, match="dataset: must be one of cifar10"):
        resolve_config({"dataset": None})


@pytest.mark.parametrize("device, named", [("cuda", "no CUDA device on this machine"), ("cuda:99", "no CUDA device"),
                                           ("mps", "no MPS device on this machine")])
def test_train_on_a_device_this_machine_lacks_is_one_line(device, named, tmp_path, capsys, monkeypatch):
    """Well-formed, so the config takes it (a search's workers may have the GPU its driver lacks); the run refuses
    it in one line. This machine's devices are set here: the test means the same on a GPU machine."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    root = make_image_folder(tmp_path / "imgs")
    assert main(["train", "--arch", "simple_cnn", "--data-dir", str(root), "--set", "val_size=3", "--set",
                 f"device={device}", "--checkpoint-dir", str(tmp_path / "ckpt")]) == 2
    one_line_error(capsys, f"device {device!r}", named)
    assert not (tmp_path / "ckpt").exists()


def test_a_space_file_that_is_not_utf8_is_one_line_before_ray(tmp_path, capsys):
    import ray

    space = tmp_path / "bin.yaml"
    space.write_bytes(b"\xff\xfe" + "extends: base\n".encode("utf-16-le"))  # UTF-16, as some editors save
    assert main(["search", "--arch", "simple_cnn", "--space", str(space), "--storage", str(tmp_path / "r"),
                 "--name", "x"]) == 2
    one_line_error(capsys, "--space", str(space), "not UTF-8")
    assert not (tmp_path / "r").exists() and not ray.is_initialized()


def test_a_config_value_too_big_for_a_number_reaches_tensorboard_as_text(tmp_path):
    """A trial's config as Tune holds it when the trial itself refused it (resolved_config keeps it raw): HParams
    take a number too big for float64/int64 as its text (tensorboardX raised a TypeError on it, ending the search),
    and a metric too big is not logged as a scalar."""
    from tensorboardX import SummaryWriter

    from search.trackers import TensorBoardLogger, hparam_values, metrics_of

    big = 10**25
    assert hparam_values({"batch_size": big, "seed": 2**63 - 1, "lr": 0.1, "augment": ["crop"], "amp": True}) == {
        "batch_size": str(big), "seed": 2**63 - 1, "lr": 0.1, "augment": '["crop"]', "amp": True}
    assert metrics_of({"val_accuracy": 0.5, "params": big, "epochs": 2, "done": True}) == {"val_accuracy": 0.5,
                                                                                           "epochs": 2}
    writer = SummaryWriter(str(tmp_path / "tb"))
    TensorBoardLogger._write_hparams(writer, {"batch_size": big, "lr": 0.1}, {"val_accuracy": 0.5, "x": -big},
                                     failed=True)
    writer.close()
    events = b"".join(f.read_bytes() for f in (tmp_path / "tb").iterdir())
    assert str(big).encode() in events and b"batch_size" in events


@pytest.mark.parametrize("name, body", [("asha_state.json", '{"rungs": {"origin_net": [[1, {"a'),
                                        ("evaluation.json", '{"experiment": "x", "resu'),
                                        ("evaluation.json", "[]")])
def test_report_on_a_half_written_file_is_one_line(name, body, tmp_path, capsys, monkeypatch):
    """Only the file under test is broken: spec.json is whole and the trials (Tune's part) are stubbed."""
    exp = stub_experiment(tmp_path, monkeypatch)
    (exp / name).write_text(body)
    assert main(["report", str(exp), "--out", str(tmp_path / "out")]) == 2
    one_line_error(capsys, name, "half-written")


@pytest.mark.parametrize("name, body, named", [
    ("asha_state.json", '{"rungs": [], "stops": []}', "'rungs' is a list, not an object"),
    ("asha_state.json", '{"rungs": {"origin_net": [[1, 5]]}, "stops": []}', "not the record the scheduler writes"),
    ("asha_state.json", '{"rungs": {}, "stops": null}', "'stops' is null, not a list"),
    ("evaluation.json", '{"results": [], "test_images": "10000", "mode": "retrain", "train_on": "train", '
                        '"created": "x"}', "'test_images' is a string, not an integer")])
def test_report_on_a_whole_file_of_another_shape_is_one_line(name, body, named, tmp_path, capsys, monkeypatch):
    """Whole JSON of another shape than the one written (hand-edited, another tool's): named, not a traceback."""
    exp = stub_experiment(tmp_path, monkeypatch)
    (exp / name).write_text(body)
    assert main(["report", str(exp), "--out", str(tmp_path / "out")]) == 2
    one_line_error(capsys, name, "corrupt", named)


@pytest.mark.parametrize("command", [["report"], ["report", "--json"], ["evaluate"]])
def test_a_pbt_record_whose_member_is_no_object_is_one_line(command, tmp_path, capsys, monkeypatch):
    """pbt_state.json's population with a string for a member: AttributeError ('str' object has no attribute
    'get') reading each trial's initial config; now the record is refused as corrupt, naming the member."""
    exp = stub_experiment(tmp_path, monkeypatch)
    (exp / "spec.json").write_text(json.dumps({"spec": {"archs": ["origin_net"], "name": "exp", "scheduler": "pbt"}}))
    (exp / "pbt_state.json").write_text(json.dumps({"kind": "pbt", "population": ["junk"], "exploits": []}))
    assert main([*command, str(exp)]) == 2  # report --json printed the trials without the decisions, unsaid
    one_line_error(capsys, "PBT state", str(exp / "pbt_state.json"), "is corrupt",
                   "'population[0]' is a string, not an object")


def test_a_full_disk_while_writing_the_report_is_one_line(tmp_path, capsys, monkeypatch):
    import errno

    import analysis.tables

    exp = stub_experiment(tmp_path, monkeypatch)

    def full(df, out_dir, name, caption=""):
        raise OSError(errno.ENOSPC, "No space left on device", str(Path(out_dir) / f"{name}.md"))

    monkeypatch.setattr(analysis.tables, "write_table", full)
    assert main(["report", str(exp)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "disk full" in err and "free there" in err, err
    assert str(exp / "report") in err


def test_evaluate_refuses_an_experiment_in_use(tmp_path, capsys, monkeypatch):
    """flock conflicts between two open files even in one process: this test holds it, evaluate must refuse."""
    from trainables.experiment import ExperimentLock

    exp = stub_experiment(tmp_path, monkeypatch)
    lock = ExperimentLock(exp, "cifar-tune search").acquire()
    try:
        assert main(["evaluate", str(exp)]) == 2
        one_line_error(capsys, "in use by cifar-tune search", f"pid {os.getpid()}", "since")
    finally:
        lock.release()


def test_resume_with_address_applies_it_before_validation(tmp_path, capsys):
    """--resume --address used to set the address after the spec was checked: no node-local refusal."""
    exp = tmp_path / "r" / "x"
    exp.mkdir(parents=True)
    (exp / "spec.json").write_text(json.dumps({"spec": {"archs": ["origin_net"], "name": "x",
                                                        "storage": str(tmp_path / "r")}}))
    assert main(["search", "--resume", "--name", "x", "--storage", str(tmp_path / "r"),
                 "--address", "127.0.0.1:1"]) == 2
    one_line_error(capsys, "node-local")


def test_a_multi_objective_experiment_from_before_rung_ranking_resumes_as_crowding(tmp_path):
    """spec.json files written before --rung-ranking existed: their MO-ASHA ranked by crowding distance, so the
    resumed search must too (the scheduler refuses to mix rules); new searches default to hypervolume."""
    from search.tuner import spec_from_dir

    exp = tmp_path / "r" / "x"
    exp.mkdir(parents=True)
    spec = {"archs": ["origin_net"], "name": "x", "storage": str(tmp_path / "r"),
            "objectives": [["val_accuracy", "max"], ["params", "min"]]}
    (exp / "spec.json").write_text(json.dumps({"spec": spec}))
    assert spec_from_dir(exp).rung_ranking == "crowding"
    (exp / "spec.json").write_text(json.dumps({"spec": {**spec, "rung_ranking": "hypervolume"}}))
    assert spec_from_dir(exp).rung_ranking == "hypervolume"


def test_evaluate_starts_its_own_ray_unless_given_an_address(monkeypatch):
    """A bare ray.init() joins any cluster `ray start` left on the machine; evaluate must not (search does not)."""
    import ray

    from analysis import evaluate

    import socket

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    with socket.create_server(("127.0.0.1", 0)) as head:  # something listens there, as a Ray head would
        address = f"127.0.0.1:{head.getsockname()[1]}"
        evaluate._init_ray(None)
        evaluate._init_ray(address)
    assert [c["address"] for c in calls] == ["local", address]


def test_an_address_where_nothing_listens_is_one_line_not_minutes_of_ray_retrying(tmp_path, capsys, cifar_path):
    """ray.init(address=HOST:PORT) with no cluster there retried for minutes, printing warnings only; now the
    connection is tried first (trainables.compat.check_reachable), before anything is written."""
    import socket

    with socket.create_server(("127.0.0.1", 0)) as gone:
        port = gone.getsockname()[1]  # free once closed: connection refused
    assert main(["search", "--arch", "origin_net", "--data-dir", str(cifar_path), "--storage", str(tmp_path / "r"),
                 "--storage-is-shared", "--address", f"127.0.0.1:{port}", "--name", "x"]) == 2
    one_line_error(capsys, f"--address 127.0.0.1:{port}", "no Ray cluster answers there", "ray start --head")
    assert not (tmp_path / "r" / "x").exists()


@pytest.mark.parametrize("extra, named", [
    (["--address", "not an address"], "not an address"),
    (["--optuna-storage", "optuna.db"], "optuna.db"),
    (["--optuna-storage", "sqlite:////no/such/dir/optuna.db"], "/no/such/dir/optuna.db"),
    (["--objectives", "val_accuracy:max,params:min", "--rung-ranking", "knee"], "--rung-ranking must be one of"),
])
def test_a_bad_address_or_study_database_is_refused_before_ray(extra, named, tmp_path, capsys, cifar_path):
    import ray

    code = main(["search", "--arch", "origin_net", "--data-dir", str(cifar_path), "--set", "val_size=100",
                 "--storage", str(tmp_path / "r"), "--name", "x", *extra])
    assert code == 2
    one_line_error(capsys, named)
    assert not (tmp_path / "r").exists() and not ray.is_initialized()


def test_train_resume_from_a_garbled_checkpoint_is_one_line(tmp_path, capsys):
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint at all")
    assert main(["train", "--arch", "origin_net", "--data-dir", str(tmp_path), "--checkpoint-dir", str(tmp_path),
                 "--resume"]) == 2
    one_line_error(capsys, "cannot read the checkpoint", str(tmp_path))


def test_data_with_a_negative_val_size_is_one_line(tmp_path, capsys):
    assert main(["data", "--data-dir", str(tmp_path), "--val-size", "-1"]) == 2
    one_line_error(capsys, "--val-size", "-1")


def test_a_name_longer_than_the_filesystem_allows_is_one_line_before_ray(tmp_path, capsys, cifar_path):
    """A real 300-character --name (issue 19: a traceback, ENAMETOOLONG); 200 characters still make a spec."""
    import ray

    from search.spec import ExperimentSpec

    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    name = "n" * (limit + 45)
    assert main(["search", "--arch", "origin_net", "--data-dir", str(cifar_path), "--storage", str(tmp_path / "r"),
                 "--name", name]) == 2
    one_line_error(capsys, "--name", name[:40], f"{len(name)} characters", f"allows {limit}")
    assert main(["search", "--resume", "--storage", str(tmp_path / "r"), "--name", name]) == 2
    one_line_error(capsys, "--name", f"{len(name)} characters")
    assert main(["report", str(tmp_path / name)]) == 2
    one_line_error(capsys, "no experiment directory", "File name too long")
    assert not (tmp_path / "r").exists() and not ray.is_initialized()
    assert ExperimentSpec(archs=["origin_net"], name="n" * 200, storage=str(tmp_path / "r")).name == "n" * 200


def test_a_name_whose_study_name_exceeds_the_database_column_is_one_line(tmp_path, capsys):
    """On object storage no filesystem limits the name, the study table's column does (512, Optuna's)."""
    name = "s" * 600
    assert main(["search", "--arch", "origin_net", "--storage", "s3://bucket/results", "--optuna-storage",
                 f"sqlite:///{tmp_path}/studies.db", "--name", name]) == 2
    one_line_error(capsys, "--name", name[:40], "600 characters", "study", "allows 512")
    assert not (tmp_path / "studies.db").exists()


@pytest.mark.parametrize("value", ["", "  "])
def test_empty_objectives_are_refused_not_run_as_one(value, tmp_path, capsys, cifar_path):
    assert main(["search", "--arch", "origin_net", "--data-dir", str(cifar_path), "--storage", str(tmp_path / "r"),
                 "--name", "x", "--objectives", value]) == 2
    one_line_error(capsys, f"--objectives {value!r}", "empty")
    assert not (tmp_path / "r").exists()


def test_a_budget_flag_a_preset_sets_is_refused_not_replaced(tmp_path, capsys):
    """--preset P:tuned sets the budget: a different --num-samples given with it used to be replaced silently."""
    assert main(["search", "--preset", "report003", "--num-samples", "3", "--storage", str(tmp_path / "r"),
                 "--name", "p"]) == 2
    one_line_error(capsys, "--num-samples 3", "--preset report003", "the preset sets")
    assert main(["search", "--preset", "report000:grid", "--sampler", "tpe", "--storage", str(tmp_path / "r"),
                 "--name", "g"]) == 2
    one_line_error(capsys, "--sampler tpe", "the preset sets grid")
    assert not (tmp_path / "r").exists()


EVALUATION_HEAD = '"test_images": 10, "mode": "retrain", "train_on": "train", "created": "2026-01-01T00:00:00"'


@pytest.mark.parametrize("name, body, named", [
    ("evaluation.json", '{"results": null}', "no 'test_images' key"),
    ("evaluation.json", '{"results": null, %s}' % EVALUATION_HEAD, "'results' is not a list of per-net results"),
    ("evaluation.json", '{"results": [1, "x"], %s}' % EVALUATION_HEAD, "'results' is not a list"),
    ("evaluation.json", '{"results": [], "grid": {"a": 1}, %s}' % EVALUATION_HEAD, "'grid' is not a list"),
    ("spec.json", '{"spec": null}', "'spec.archs' is not a list of net names"),
    ("spec.json", '{"spec": {"archs": "origin_net"}}', "'spec.archs' is not a list"),
    ("spec.json", "[]", "'spec.archs' is not a list"),
])
def test_report_on_valid_json_of_the_wrong_shape_is_one_line(name, body, named, tmp_path, capsys, monkeypatch):
    """Whole JSON that is not what cifar-tune wrote (hand-edited, another tool's): a TypeError in the tables once."""
    exp = stub_experiment(tmp_path, monkeypatch)
    (exp / name).write_text(body)
    assert main(["report", str(exp), "--out", str(tmp_path / "out")]) == 2
    one_line_error(capsys, str(exp / name), named)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("out, named", [
    (None, "'{exp}/report' is a file, not a folder"),  # EXP/report is a file
    ("{tmp}/afile/sub", "'{tmp}/afile' is a file, not a folder"),
    ("/proc/cifar-tune-report", ""),  # a virtual filesystem: no folder can be made (ENOENT; EACCES if not root)
])
def test_a_report_folder_that_cannot_be_made_is_one_line(out, named, tmp_path, capsys, monkeypatch):
    exp = stub_experiment(tmp_path, monkeypatch)
    (exp / "report").write_text("a file, kept")
    (tmp_path / "afile").write_text("a file, kept")
    out = out and out.format(tmp=tmp_path)
    assert main(["report", str(exp), *(["--out", out] if out else [])]) == 2
    one_line_error(capsys, "cannot write the report into", repr(out or str(exp / "report")),
                   named.format(exp=exp, tmp=tmp_path))
    assert (exp / "report").read_text() == (tmp_path / "afile").read_text() == "a file, kept"


def test_a_count_is_an_integer_not_a_bool_and_numpy_integers_count(tmp_path):
    """One test (trainables.config.is_count) behind each "an integer >= N" refusal: `evaluate --top-k` took True for
    1 and the schedulers took numpy integers only by accident of the check each wrote out."""
    import numpy as np

    from analysis.evaluate import evaluate_experiment
    from search.spec import ExperimentSpec, SpecError
    from trainables.config import is_count

    assert is_count(np.int64(3), 1) and is_count(0) and not is_count(True) and not is_count(2.0, 1)
    assert not is_count(0, 1) and not is_count("3")
    assert ExperimentSpec(archs=["origin_net"], num_samples=np.int64(2), storage=str(tmp_path)).num_samples == 2
    with pytest.raises(SpecError, match=r"--num-samples must be an integer >= 1, got True"):
        ExperimentSpec(archs=["origin_net"], num_samples=True, storage=str(tmp_path))
    with pytest.raises(ValueError, match=r"--top-k must be an integer >= 1, got True"):
        evaluate_experiment(tmp_path / "nothing", top_k=True)


@pytest.mark.parametrize("command", [["search", "--arch", "origin_net"], ["reproduce", "report003"]])
def test_a_storage_under_a_file_is_one_line_naming_the_file(command, tmp_path, capsys):
    """--storage FILE/sub: mkdir would fail with NotADirectoryError once work had started; refused when the spec is
    built (search.spec.check_storage_dir), for search and for reproduce, which builds its folder through a spec."""
    from search.cli import main

    (tmp_path / "afile").write_text("x")
    assert main([*command, "--storage", str(tmp_path / "afile" / "sub"), "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{str(tmp_path / 'afile')!r}, a folder on its path, is a file" in err[0], err
