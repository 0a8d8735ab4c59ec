"""The cifar-tune CLI: archs, data, train, and bad input refused before any work."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from search.cli import main
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
