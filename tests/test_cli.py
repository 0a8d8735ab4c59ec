"""The cifar-tune CLI: archs, data, train, and bad input refused before any work."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from search.cli import main
from tests.conftest import stub_experiment
from tests.searchrun import one_line_error

EXPECTED_PARAMS = {"simple_cnn": 84_714, "keras_cnn": 160_650, "resnet18": 11_181_642, "ghasemi_net": 2_753_546,
                   "origin_net": 48_252, "modified_net": 35_730, "lozano_c": 1_182_858, "lozano_e": 1_379_722,
                   "lozano_f": 1_705_610}


def test_archs_json_lists_the_zoo(capsys):
    assert main(["archs", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    from trainables.models import get_arch, list_models

    # the report nets' counts as written here; a net added later is checked against its own @register(params=)
    expected = {n: EXPECTED_PARAMS.get(n, get_arch(n).params) for n in list_models()}
    assert {r["name"]: r["params"] for r in rows} == expected
    assert all(r["report"] and r["defaults"]["optimizer"] for r in rows)


def test_data_json_reports_the_splits(cifar_path, capsys):
    assert main(["data", "--data-dir", str(cifar_path), "--json", "--no-download"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["train"], out["val"], out["test"]) == (45000, 5000, 10000)
    assert out["class_counts"]["test"]["cat"] == 1000 and out["cache"].endswith(".npz")


def test_train_json_ends_with_the_final_metrics(cifar_path, tmp_path, capsys):
    args = ["train", "--arch", "origin_net", "--data-dir", str(cifar_path), "--json", "--checkpoint-dir",
            str(tmp_path), "--set", "subset=256", "--set", "val_size=200", "--set", "epochs=1"]
    assert main(args) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["event"] == "final" and 0 <= last["val_accuracy"] <= 1 and last["config"]["arch"] == "origin_net"
    (tmp_path / "row.json").write_text(json.dumps({"config": {**last["config"], "epochs": 2}}))
    # Re-run from a saved config, resuming the checkpoint: only epoch 2 runs.
    assert main(["train", "--config", str(tmp_path / "row.json"), "--json", "--checkpoint-dir", str(tmp_path),
                 "--resume"]) == 0
    epochs = [json.loads(l)["epoch"] for l in capsys.readouterr().out.strip().splitlines()]
    assert epochs == [2, 2]  # one epoch line, then the final line
    # Resuming it as another config (it checked the arch only) or with no epoch left to train: one line each.
    before = (tmp_path / "checkpoint.pt").read_bytes()
    for extra, named in ((["--set", "lr=0.5"], "lr="), (["--set", "subset=128"], "subset=256"),
                         (["--set", "epochs=2"], "has trained 2 epochs already")):
        assert main([*args[:-2], "--resume", *extra]) == 2
        one_line_error(capsys, "--resume", named)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


@pytest.mark.parametrize("args, named", [
    (["--arch", "no_such_net"], "no_such_net"),
    (["--set", "optimizer=lion"], "lion"),
    (["--set", "lr=-1"], "-1"),
    (["--set", "batch_size=abc"], "abc"),
    (["--set", "colour=blue"], "colour"),
    (["--set", "lr"], "lr"),
    (["--config", "/nonexistent/row.json"], "/nonexistent/row.json"),
])
def test_bad_train_input_is_one_clear_line(args, named, capsys, tmp_path):
    # --data-dir points at an empty folder: a refusal must come before any data is looked for.
    assert main(["train", "--data-dir", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err and "error" in err


def test_missing_data_is_a_clear_error(tmp_path, capsys):
    assert main(["data", "--data-dir", str(tmp_path), "--no-download"]) == 2
    assert "accepted data layouts" in capsys.readouterr().err


def test_console_script_runs():
    env = {**os.environ}
    out = subprocess.run([sys.executable, "-m", "search.cli", "archs"], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0 and "modified_net" in out.stdout and "35,730" in out.stdout


# --------------------------------------------------------------------------------------------- evaluate, report, API
# On an experiment that loads without Ray (spec.json and the Optuna study whole, the trials stubbed) whose data dir
# does not exist: a refusal must come before the data, the lock's work and Ray; an input let through would stop at
# the data ("does not exist"), never at a download or a Ray start.

def _experiment(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR_TUNE_LEDGER_DIR", str(tmp_path / "ledger"))
    return stub_experiment(tmp_path, monkeypatch, fixed={"data_dir": str(tmp_path / "no-data")})


@pytest.mark.parametrize("args, named", [
    # Ray's "Invalid address format: bogus" after the data was read, or nothing at all when every run was saved
    (["--address", "bogus", "--repeats", "7"], ["--address", "'bogus'", "HOST:PORT"]),
    (["--trials", "a", "--top-k", "2"], ["--top-k 2", "--trials"]),  # --top-k was dropped unsaid
    (["--pareto", "--top-k", "1"], ["--top-k 1", "--pareto"]),
    (["--svm-k", "0"], ["--svm-k", "0"]),
    (["--svm-k", "100"], ["--svm-k 100", "--svm-subset"]),  # no SVM without a subset: the k was dropped unsaid
    (["--trials", "a,a"], ["--trials a,a", "a named twice"]),
    (["--archs", "origin_net,origin_net"], ["origin_net named twice"]),
])
def test_evaluate_refuses_options_it_would_ignore_or_misread_before_any_work(args, named, tmp_path, monkeypatch,
                                                                              capsys):
    exp = _experiment(tmp_path, monkeypatch)
    assert main(["evaluate", str(exp), *args]) == 2
    one_line_error(capsys, *named)
    assert not (exp / "eval-runs").exists() and not (tmp_path / "ledger").exists()


def test_evaluate_refuses_a_ledger_dir_that_is_a_file_before_any_run(tmp_path, monkeypatch, capsys):
    from search import api
    from trainables.data import DataError

    exp = _experiment(tmp_path, monkeypatch)
    (tmp_path / "a-file").write_text("x")
    monkeypatch.setenv("CIFAR_TUNE_LEDGER_DIR", str(tmp_path / "a-file"))
    assert main(["evaluate", str(exp)]) == 2  # was NotADirectoryError after the first run's training
    one_line_error(capsys, "CIFAR_TUNE_LEDGER_DIR", str(tmp_path / "a-file"), "is a file")
    with pytest.raises(DataError, match="CIFAR_TUNE_LEDGER_DIR"):
        api.open_experiment(exp).evaluate(top_k=1, repeats=1)
    assert not (exp / "eval-runs").exists()


def test_report_json_with_out_is_refused_not_an_empty_folder(tmp_path, monkeypatch, capsys):
    exp = _experiment(tmp_path, monkeypatch)
    assert main(["report", str(exp), "--json", "--out", str(tmp_path / "out")]) == 2
    one_line_error(capsys, "--json", "--out", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["data", "ledger"])
def test_a_dataset_named_but_not_there_is_refused_not_replaced_by_the_folder(command, tmp_path, monkeypatch, capsys):
    """An image-folder tree is read whatever --dataset says: `ledger --dataset cifar100` showed its ledger."""
    from tests.conftest import make_image_folder

    monkeypatch.setenv("CIFAR_TUNE_LEDGER_DIR", str(tmp_path / "ledger"))
    root = make_image_folder(tmp_path / "imgs")
    for dataset in ("cifar100", "fashion_mnist"):
        assert main([command, "--data-dir", str(root), "--dataset", dataset]) == 2
        one_line_error(capsys, f"--dataset {dataset}", str(root), "image-folder tree")
    small = ["--val-size", "3"] if command == "data" else []
    assert main([command, "--data-dir", str(root), "--json", *small]) == 0  # cifar10, the default: the folder's too
    assert main([command, "--data-dir", str(root), "--dataset", "cifar10", "--json", *small]) == 0


@pytest.mark.parametrize("argv", [["train", "--arch", "origin_net", "--dataset", "cifar100"],
                                  ["search", "--arch", "origin_net", "--set", "dataset=cifar100"],
                                  ["reproduce", "report003", "--set", "dataset=cifar100"]])
def test_training_on_a_folder_under_another_datasets_name_is_refused(argv, tmp_path, monkeypatch, capsys):
    """`train --dataset cifar100 --data-dir FOLDER` trained on the folder's images with cifar100 in its config."""
    from tests.conftest import make_image_folder

    monkeypatch.setenv("CIFAR_TUNE_LEDGER_DIR", str(tmp_path / "ledger"))
    root = make_image_folder(tmp_path / "imgs")
    storage = ["--storage", str(tmp_path / "r")] if argv[0] != "train" else []
    assert main([*argv, "--data-dir", str(root), *storage]) == 2
    one_line_error(capsys, "--dataset cifar100", str(root), "image-folder tree")
    assert not (tmp_path / "r").exists()


def test_api_bool_keywords_take_booleans_only(tmp_path, monkeypatch):
    """`report(without_study="no")` built the report without the study: "no" is truthy."""
    from analysis.load import ExperimentError
    from search import api
    from search.spec import SpecError

    exp = api.open_experiment(_experiment(tmp_path, monkeypatch))
    for value in ("no", 0, None):
        with pytest.raises(ExperimentError, match=re.escape(f"report: without_study={value!r}: True or False")):
            exp.report(out=tmp_path / "r", without_study=value)
        with pytest.raises(ExperimentError, match=re.escape(f"evaluate: pareto={value!r}: True or False")):
            exp.evaluate(pareto=value)
    with pytest.raises(SpecError, match=re.escape("search: resume='no': True or False")):
        api.search("origin_net", resume="no")
    assert not (tmp_path / "r").exists()


def test_api_evaluate_refuses_a_progress_that_is_not_a_function(tmp_path, monkeypatch):
    """It was a raw `TypeError: 'int' object is not callable` from inside evaluate, after work had started."""
    from analysis.load import ExperimentError
    from search import api

    exp = api.open_experiment(_experiment(tmp_path, monkeypatch))
    with pytest.raises(ExperimentError, match=r"progress must be a function .*or None, got 5"):
        exp.evaluate(top_k=1, repeats=2, progress=5)


def test_api_evaluate_has_the_clis_svm_and_address(tmp_path, monkeypatch):
    import analysis.evaluate
    from analysis.load import ExperimentError
    from search import api
    from search.spec import SpecError

    exp = api.open_experiment(_experiment(tmp_path, monkeypatch))
    with pytest.raises(ExperimentError, match=r"--svm-k 3 .*--svm-subset"):
        exp.evaluate(svm_k=3)
    with pytest.raises(ExperimentError, match=r"--svm-subset must be an integer >= 0, got -1"):
        exp.evaluate(svm_subset=-1)
    for address in ("bogus", 5):
        with pytest.raises(SpecError, match=re.escape(f"--address must be auto, HOST:PORT or ray://HOST:PORT, got "
                                                      f"{address!r}")):
            exp.evaluate(address=address)
    seen = {}

    def fake(exp_dir, **kwargs):  # what the CLI's SVM path gets, and the record it returns
        seen.update(kwargs)
        return {"results": []}

    monkeypatch.setattr(analysis.evaluate, "evaluate_experiment", fake)
    assert exp.evaluate(top_k=1, repeats=1, svm_subset=500, svm_k=40).empty
    assert (seen["svm_subset"], seen["svm_k"]) == (500, 40)


def test_api_evaluation_of_a_folder_that_is_not_an_experiment_is_refused(tmp_path, monkeypatch):
    from analysis.load import ExperimentError
    from search import api

    for path in (tmp_path / "nowhere", tmp_path):  # no folder; a folder without spec.json
        with pytest.raises(ExperimentError):  # as .trials, .spec, .best() and .report() (it was None)
            api.Experiment(path).evaluation
    assert api.Experiment(_experiment(tmp_path, monkeypatch)).evaluation is None  # an experiment not evaluated yet
