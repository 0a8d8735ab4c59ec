"""analysis/: loader, tables, final evaluation, SVM baseline and the plotly report, on real small experiments.

Two experiments are built once for the module (tmp dirs, real searches in subprocesses):

* ``main``: ``cifar-tune search`` over origin_net and simple_cnn, TPE + ASHA: completed and ASHA-stopped trials;
* ``grid``: report 003's grid preset shrunk to CPU size (two of its Table VIII rows x two seeds, 1 epoch, 300 images)
  plus a row that diverges (lr 1e30) and a row that raises inside its trial (device "mps" on a machine without it).

The data layer is instrumented across processes: a ``sitecustomize`` on PYTHONPATH replaces
``trainables.data._split_access_log`` (the log every split read appends to) in every Python process, the CLI driver
and each Ray worker, by a list that also appends to a file; so the test sees what the trials read, not only what the
pytest process read.

The render test needs Debian's ``chromium`` (``apt-get install -y chromium``; found on PATH as ``chromium`` or
``chromium-browser``, or at ``$CHROMIUM``). It is skipped when absent, except in CI (``$CI`` set), where it fails.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import tables
from analysis.load import ExperimentError, load, load_trials
from analysis.stats import mean_ci, paired_comparison
from trainables.config import METRIC

SPY = '''
import importlib.abc, importlib.machinery, os, sys


class _FileLog(list):
    """trainables.data's own access log, also appended to a file every process shares."""
    def append(self, which):
        super().append(which)
        with open(os.environ["CIFAR_TUNE_SPLIT_LOG"], "a") as f:
            f.write(f"{os.getpid()} {which}\\n")


class _SplitSpy(importlib.abc.MetaPathFinder):
    """When trainables.data is imported, swap its _split_access_log for a _FileLog."""
    def find_spec(self, name, path=None, target=None):
        if name != "trainables.data":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None:
            return None
        exec_module = spec.loader.exec_module

        def patched(module):
            exec_module(module)
            module._split_access_log = _FileLog(module._split_access_log)
        spec.loader.exec_module = patched
        return spec


if os.environ.get("CIFAR_TUNE_SPLIT_LOG"):
    sys.meta_path.insert(0, _SplitSpy())
'''

API_SEARCH = '''
import sys
from search import api

exp = api.search(["origin_net", "simple_cnn"], num_samples=4, max_epochs=2, data_dir=sys.argv[1],
                 set={"subset": 300, "val_size": 200}, storage=sys.argv[2], name="main")
best = exp.best()
print("api:", len(exp.trials), ",".join(best["arch"]), exp.path, flush=True)
'''

# Run after API_SEARCH in the same process, on the same Ray (one Ray start for both experiments).
GRID = '''
from search.presets import get_preset, grid_runs
from search.spec import ExperimentSpec
from search.tuner import run_search

data_dir, storage = sys.argv[1], sys.argv[2]
small = {"epochs": 1, "subset": 300, "val_size": 200}
points = [r for r in grid_runs(get_preset("report003"))
          if r["arch"] == "modified_net" and r.get("optimizer") == "sgd" and r["lr"] in (1e-4, 5e-3)]
rows = [{**r, **small, "seed": seed} for r in points for seed in (0, 1)]  # the report ran one seed; we run two
rows.append({**rows[0], "lr": 1e30})                   # diverges in its first epoch
rows.append({**rows[0], "lr": 2e-3, "device": "mps"})  # raises inside the trial: no MPS device on Linux
spec = ExperimentSpec(archs=["modified_net"], sampler="grid", scheduler="none", grid=rows, max_epochs=1,
                      preset="report003:grid", max_failures=0, name="grid", storage=storage,
                      fixed={"data_dir": data_dir, "subset": 300, "val_size": 200})
run_search(spec)
'''


def _run(args: list[str], env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    out = subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout)
    assert out.returncode == 0, f"{args[:4]} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def _cli() -> list[str]:
    return [sys.executable, "-m", "search.cli"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory, cifar_path):
    root = tmp_path_factory.mktemp("analysis")
    (root / "spy").mkdir()
    (root / "spy" / "sitecustomize.py").write_text(SPY)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "spy"), os.environ.get("PYTHONPATH", "")]),
           "CIFAR_TUNE_SPLIT_LOG": str(root / "search-splits.log"), "RAY_USAGE_STATS_ENABLED": "0",
           # A fresh embedded Ray per command: ray.init() alone would join any cluster already running on this
           # machine (another test's `ray start`), whose nodes that test may kill under our trials.
           "RAY_ADDRESS": "local"}
    storage = root / "exps"
    # The two-net search through the Python API (search.api), which the CLI is a layer over; then, in the same
    # process and Ray, the grid through run_search; the CLI's own search is the fixture of test_search.
    out = _run([sys.executable, "-c", API_SEARCH + GRID, str(cifar_path), str(storage)], env)
    api = [line.split()[1:3] for line in out.stdout.splitlines() if line.startswith("api: ")]
    assert api == [["8", "origin_net,simple_cnn"]], out.stdout[-2000:]
    return {"root": root, "env": env, "main": storage / "main", "grid": storage / "grid", "data": cifar_path}


def _splits(path: Path) -> list[str]:
    return [line.split()[1] for line in path.read_text().splitlines()] if path.exists() else []


# --------------------------------------------------------------------------------------------- loading

def test_loader_sees_every_status(lab):
    main, grid = load(lab["main"]), load(lab["grid"])
    statuses = set(main.frame["status"]) | set(grid.frame["status"])
    assert {"completed", "stopped", "diverged", "errored"} <= statuses
    # ASHA's own record and the loader agree on which trials it stopped, and at which epoch.
    stops = {s["trial_id"]: s["epoch"] for s in main.asha["stops"]}
    assert stops, "ASHA stopped no trial: the experiment lost its early-stopped case"
    for _, row in main.frame.iterrows():
        if row["trial_id"] in stops:
            assert row["status"] == "stopped" and row["epochs"] == stops[row["trial_id"]]
        elif row["status"] == "completed":
            assert row["epochs"] == row["max_epochs"] == 2
    df = pd.concat([main.frame, grid.frame], ignore_index=True)
    scored = df[df["params"].notna()]
    # size_mb is what the trial reported: float32 weights plus buffers (BatchNorm statistics, a few per channel)
    weights = scored["params"] * 4 / 1e6
    assert ((scored["size_mb"] >= weights - 1e-12) & (scored["size_mb"] <= weights * 1.02)).all()
    assert np.allclose(scored.loc[scored["norm"] == "none", "size_mb"], weights[scored["norm"] == "none"])
    assert (df.loc[df["status"] == "completed", "best_val_accuracy"] >= df.loc[df["status"] == "completed",
                                                                                METRIC] - 1e-12).all()
    diverged = grid.frame[grid.frame["status"] == "diverged"].iloc[0]
    assert diverged["lr"] == 1e30 and pd.isna(diverged["train_loss"]) and diverged["epochs"] == 1
    errored = grid.frame[grid.frame["status"] == "errored"].iloc[0]
    assert errored["device"] == "mps" and "mps" in errored["error"].lower() and errored["epochs"] == 0
    for column in ("best_val_loss", "train_accuracy", "train_time_s", "best_epoch", "max_epochs"):
        assert column in df.columns


def test_report_json_keeps_its_keys(lab, capsys):
    from search.cli import main

    assert main(["report", str(lab["main"]), "--json"]) == 0
    trials = json.loads(capsys.readouterr().out)["trials"]
    assert {"trial_id", "arch", "config", "status", "epochs", "val_accuracy", "best_val_accuracy", "params",
            "train_time_s", "history", "path"} <= set(trials[0])


def test_missing_or_half_written_experiment_is_a_clear_error(lab, tmp_path, capsys):
    from search.cli import main

    with pytest.raises(ExperimentError, match="no experiment directory"):
        load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExperimentError, match="spec.json is missing"):
        load(tmp_path / "empty")
    broken = tmp_path / "broken"
    shutil.copytree(lab["main"], broken)
    state = sorted(broken.glob("experiment_state*.json"))[-1]
    text = state.read_text()
    state.write_text(text[: len(text) // 2])
    with pytest.raises(ExperimentError, match="Ray Tune state"):
        load(broken)
    state.unlink()
    with pytest.raises(ExperimentError, match="no Ray Tune experiment state"):
        load(broken)
    spec = broken / "spec.json"
    spec.write_text(spec.read_text()[:100])
    with pytest.raises(ExperimentError, match="half-written"):
        load(broken)
    # The CLI turns it into one line naming the directory, exit status 2.
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nowhere" in err


def test_a_result_line_cut_by_a_kill_keeps_the_epochs_before_it(lab, tmp_path):
    copy = tmp_path / "cut"
    shutil.copytree(lab["main"], copy)
    trial = next(t for t in load_trials(copy) if t["status"] == "completed")
    result = Path(trial["path"]) / "result.json"
    lines = result.read_text().splitlines()
    result.write_text(lines[0] + "\n" + lines[1][:40])  # the last line half-written
    again = next(t for t in load_trials(copy) if t["trial_id"] == trial["trial_id"])
    assert [h["epoch"] for h in again["history"]] == [1]


# --------------------------------------------------------------------------------------------- tables

def test_effect_tables_read_every_trial_at_the_same_epoch(lab):
    exp = load(lab["main"])
    epoch, effects = tables.effect_tables(exp)
    assert epoch == exp.spec["grace_period"] == 1
    at = exp.history[exp.history["epoch"] == epoch].set_index("trial_id")[METRIC]
    for name, t in effects.items():
        best, median = t.columns[-2], t.columns[-1]
        assert best.endswith(f"@{epoch}") and median.endswith(f"@{epoch}")
        for arch, rows in t.groupby("arch"):
            ids = exp.frame[(exp.frame["arch"] == arch) & exp.frame[name].notna()]["trial_id"]
            assert rows["trials"].sum() == len(ids)  # every trial counted once, stopped ones included
            assert rows[best].max() == pytest.approx(at[ids].max())
    lr = effects["lr"]["lr"]
    assert lr.str.contains("–").all()  # a log-scale float is binned into intervals


def _toy_experiment(runs: dict) -> "object":
    """An Experiment from hand-written histories: {trial_id: (status, lr, [val acc per epoch])}."""
    from analysis.load import Experiment, history_frame, trials_frame

    trials = []
    for tid, (status, lr, accs) in runs.items():
        hist = [{"epoch": e + 1, METRIC: a, "train_accuracy": a, "train_loss": 1.0, "val_loss": 1.0,
                 "epoch_seconds": 1.0} for e, a in enumerate(accs)]
        trials.append({"trial_id": tid, "arch": "toy", "config": {"arch": "toy", "lr": lr, "epochs": 3},
                       "status": status, "epochs": len(accs), "max_epochs": 3, METRIC: accs[-1], "val_loss": 1.0,
                       "best_val_accuracy": max(accs), "best_epoch": int(np.argmax(accs)) + 1, "best_val_loss": 1.0,
                       "train_accuracy": accs[-1], "train_loss": 1.0, "params": 10, "size_mb": 4e-5,
                       "train_time_s": 1.0, "error": None, "history": hist, "path": None})
    record = {"spec": {"archs": ["toy"], "scheduler": "asha", "grace_period": 1, "sampler": "tpe", "name": "toy"},
              "spaces": {"toy": {"params": {"lr": {"type": "categorical", "choices": [0.1, 0.01]}}}}}
    return Experiment(path=Path("."), record=record, trials=trials, frame=trials_frame(trials),
                      history=history_frame(trials))


def test_effect_table_is_not_biased_by_asha():
    # lr 0.1 was stopped after epoch 1 with the better start; lr 0.01 trained on. Final numbers would crown 0.01.
    exp = _toy_experiment({"a": ("stopped", 0.1, [0.30]), "b": ("completed", 0.01, [0.20, 0.40, 0.60])})
    _, effects = tables.effect_tables(exp)
    t = effects["lr"].set_index("lr")
    assert t.loc["0.1", f"best {METRIC}@1"] == 0.30 and t.loc["0.01", f"best {METRIC}@1"] == 0.20
    assert tables.leaderboard(exp, 1)["trial_id"].tolist() == ["b"]  # the leaderboard still ranks by best value


def test_ci_maths_match_scipy_on_known_numbers():
    from scipy import stats

    r = mean_ci([1, 2, 3, 4, 5])
    # mean 3, s = sqrt(2.5), t(0.975, 4) = 2.776445: half-width 2.776445 * sqrt(2.5 / 5) = 1.963243
    assert r["mean"] == 3 and r["ci95"] == pytest.approx([1.036757, 4.963243], abs=1e-6)
    acc = [0.7018, 0.6929, 0.7108, 0.7050, 0.6985]
    lo, hi = stats.t.interval(0.95, len(acc) - 1, loc=np.mean(acc), scale=stats.sem(acc))
    assert mean_ci(acc)["ci95"] == pytest.approx([lo, hi])
    assert mean_ci([0.5])["ci95"] is None and mean_ci([0.5, 0.5])["ci95"] == [0.5, 0.5]
    a, b = {0: 0.71, 1: 0.72, 2: 0.70}, {0: 0.69, 1: 0.71, 2: 0.66, 7: 0.9}  # seed 7 has no partner
    p = paired_comparison(a, b, ("x", "y"))
    ref = stats.ttest_rel([0.71, 0.72, 0.70], [0.69, 0.71, 0.66])
    assert p["seeds"] == [0, 1, 2] and p["t"] == pytest.approx(ref.statistic) and p["p_value"] == pytest.approx(
        ref.pvalue)
    assert p["mean_difference"] == pytest.approx((0.02 + 0.01 + 0.04) / 3)
    assert "at least 2" in paired_comparison({0: 0.5}, {0: 0.4})["note"]
    assert tables.fmt_ci(r) == "3.0000 ± 1.9632"


# --------------------------------------------------------------------------------------------- evaluation

def test_search_never_reads_test_and_evaluate_reads_it_once(lab):
    searched = _splits(lab["root"] / "search-splits.log")
    assert "train" in searched and "val" in searched  # the spy saw the trials' reads
    assert "test" not in searched
    log = lab["root"] / "evaluate-splits.log"
    env = {**lab["env"], "CIFAR_TUNE_SPLIT_LOG": str(log)}
    out = _run(_cli() + ["evaluate", str(lab["main"]), "--top-k", "1", "--repeats", "2", "--epochs", "1",
                         "--svm-subset", "300", "--svm-k", "16", "--address", "local"], env)
    assert _splits(log).count("test") == 1
    assert "evaluate: run 1/4 done" in out.stdout and "ETA" in out.stdout  # progress from the CLI too
    assert "paired t-test" in out.stdout or "paired comparison" in out.stdout
    record = json.loads((lab["main"] / "evaluation.json").read_text())
    assert {g["arch"] for g in record["results"]} == {"origin_net", "simple_cnn"}
    for g in record["results"]:
        assert g["rank"] == 1 and g["seeds"] == [0, 1] and g["train_on"] == "train"
        values = [r["test_accuracy"] for r in g["runs"]]
        ref = mean_ci(values)
        assert g["test_accuracy"]["mean"] == pytest.approx(ref["mean"])
        assert g["test_accuracy"]["ci95"] == pytest.approx(ref["ci95"])
        assert np.asarray(g["confusion_matrix"]).sum() == 2 * record["test_images"] == 20000
        assert len(g["per_class"]) == 10 and 0 <= g["weighted_f1"]["mean"] <= 1
        assert math.isfinite(g["test_loss"]["mean"])
    assert record["paired"]["n"] == 2
    assert record["svm"]["subset"] == 300 and 0 <= record["svm"]["test_accuracy"] <= 1
    assert (lab["main"] / "evaluation.csv").exists()
    comparison = tables.comparison(load(lab["main"]))
    assert comparison["test_accuracy (95% CI)"].str.contains("±").sum() == 2
    assert comparison["net"].iloc[-1] == "svm_pca (subset 300)"
    assert comparison.set_index("net").loc["origin_net", "published"] == 0.5521
    # beside the published number: the verdict from the CI and the count of test-split uses (the ledger)
    for net in ("origin_net", "simple_cnn"):
        row = comparison.set_index("net").loc[net]
        assert row["verdict (95% CI)"] in ("beats", "matches", "misses")
        assert re.fullmatch(r"use \d+ of \d+", row["test-split uses"])
    assert "test split: use " in out.stdout and " for origin_net on this data" in out.stdout


def test_each_scoring_of_the_test_split_is_ledgered_once(lab, tmp_path, monkeypatch):
    """Two configs of one net -> two uses, each final run on exactly --train-images images; the same evaluation
    again takes the saved runs and scores nothing (no new record)."""
    import shutil

    from analysis.evaluate import evaluate_experiment, summary_lines
    from search import api
    from trainables import ledger

    monkeypatch.setenv("CIFAR_TUNE_LEDGER_DIR", str(tmp_path / "ledgers"))
    exp = tmp_path / "copy"
    shutil.copytree(lab["main"], exp)
    copied = ledger.read_experiment(exp)  # the ledger travels with the experiment: earlier tests' uses
    kw = dict(top_k=2, repeats=1, epochs=1, archs=["origin_net"], train_on="trainval", train_images=150,
              address="local", cpus_per_run=2)  # both cores per run: one at a time, each with two torch threads
    frame = api.open_experiment(exp).evaluate(**kw)  # the Python API: a DataFrame, one row per config
    assert list(frame["arch"]) == ["origin_net"] * 2 and list(frame["rank"]) == [1, 2]
    assert frame["test_accuracy"].between(0, 1).all() and (frame["train_images"] == 150).all()
    first = api.open_experiment(exp).evaluation
    assert [g["test_accuracy"]["mean"] for g in first["results"]] == list(frame["test_accuracy"])
    runs = [r for g in first["results"] for r in g["runs"]]
    assert len(runs) == 2 and {r["train_images"] for r in runs} == {150}  # what each run's loop really saw
    assert {r["threads"] for r in runs} == {2}
    assert first["train_draw"]["images"] == 150 and first["train_draw"]["of"] == 50_000
    records = ledger.read_experiment(exp)[len(copied):]
    assert len(records) == 2 and len(ledger.uses(records, "origin_net")) == 2
    assert ledger.read_dataset(records[0]["checksum"]) == records  # this test's own dataset ledger: these two
    assert first["test_split"]["nets"]["origin_net"]["this_evaluation"] == [1, 2]
    assert any("test split: use 1, 2 for origin_net on this data (2 in all" in line for line in summary_lines(first))
    again = evaluate_experiment(exp, **kw)
    assert ledger.read_experiment(exp)[len(copied):] == records  # saved runs re-read: not a new use
    assert again["test_split"]["nets"]["origin_net"]["uses"] == 2
    with pytest.raises(ValueError, match="--train-images 60,000: the trainval split .* has 50,000 images"):
        evaluate_experiment(exp, **{**kw, "train_images": 60_000})
    for cpus, words in ((0, "--cpus-per-run must be an integer >= 1, got 0"), (999, "--cpus-per-run 999: this "
                                                                                     "machine has")):
        with pytest.raises(ValueError, match=words):
            evaluate_experiment(exp, **{**kw, "cpus_per_run": cpus})


def test_a_final_run_killed_mid_training_continues_from_its_last_epoch(cifar, tmp_path, monkeypatch):
    """A final run (evaluate's _retrain) saves its state each epoch beside its result; killed after epoch 2 of 3 and
    started again, it trains epoch 3 only and ends where a run in one go ends; a state of another config is not
    taken (the run starts over); the folder goes when the run's result is saved."""
    import trainables.train as tr
    from analysis import evaluate as ev

    cfg = {"arch": "simple_cnn", "subset": 320, "val_size": 200, "batch_size": 64, "optimizer": "adam", "lr": 2e-3,
           "augment": True, "dropout": 0.2, "schedule": "cosine", "epochs": 3, "seed": 0, "latency_batch": 0}
    scored = cifar.split("val", 200)  # the runs score any images; these spare the test split
    straight = ev._retrain(cfg, cifar, scored, 1)
    assert straight["resumed_at_epoch"] == 0 and straight["epochs"] == 3
    folder = ev._in_flight_dir(tmp_path, cfg)
    real_save = tr.save_state

    def killed_after_two(state, directory):
        real_save(state, directory)
        if state["epoch"] == 2:
            raise KeyboardInterrupt  # as a session's end would

    monkeypatch.setattr(tr, "save_state", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        ev._retrain(cfg, cifar, scored, 1, str(folder))
    monkeypatch.setattr(tr, "save_state", real_save)
    assert tr.load_state(folder)["epoch"] == 2
    torn = ev._in_flight_dir(tmp_path, {**cfg, "seed": 7})
    torn.mkdir()
    (torn / tr.CHECKPOINT_FILE).write_bytes(b"PK\x03")  # a copy cut short: counts nothing done
    assert ev.in_flight_epochs(tmp_path, "simple_cnn") == [2, 0]  # what reproduce's ETA takes as done
    shutil.rmtree(torn)
    other = {**cfg, "seed": 1}
    assert tr.resume_point(folder, other) is None  # another config's state: never taken
    again = ev._retrain(cfg, cifar, scored, 1, str(folder))
    assert again["resumed_at_epoch"] == 2 and again["epochs"] == 3
    assert again["predictions"] == straight["predictions"]
    assert again["test_loss"] == pytest.approx(straight["test_loss"], rel=1e-6)
    assert again["train_seconds"] > 0
    ev._save_run(tmp_path, cfg, again)
    assert not folder.exists() and ev._load_run(tmp_path, cfg)["resumed_at_epoch"] == 2


def test_evaluate_stopped_by_sigterm_says_so_in_one_line_and_the_same_command_goes_on_from_the_last_epoch(lab,
                                                                                                         tmp_path):
    """SIGTERM while a final run trains: exit 143 and one line (not the stack dump of the handler ray.init gives the
    driver); the same command then finishes the run from its saved epoch and scores it once."""
    import time

    from trainables import ledger

    exp = tmp_path / "copy"
    shutil.copytree(lab["main"], exp)
    env = {**lab["env"], "CIFAR_TUNE_LEDGER_DIR": str(tmp_path / "ledgers")}
    cmd = [sys.executable, "-m", "search.cli", "evaluate", str(exp), "--archs", "origin_net", "--top-k", "1",
           "--repeats", "1", "--epochs", "6", "--train-on", "trainval", "--train-images", "4000"]
    before = len(ledger.read_experiment(exp))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while not list((exp / "eval-runs").glob("checkpoint_*/checkpoint.pt")):  # epoch 1 saved, 5 to go
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    lines = [line for line in err.splitlines() if "cifar-tune evaluate" in line]
    assert lines and lines[-1].startswith("cifar-tune evaluate: interrupted (SIGTERM); finish it with: the same"), err
    assert "Traceback" not in err and "SIGTERM received" not in err, err[-2000:]
    assert len(ledger.read_experiment(exp)) == before  # nothing scored: the run had not ended
    again = _run(cmd, env)
    runs = json.loads((exp / "evaluation.json").read_text())["results"][0]["runs"]
    assert len(runs) == 1 and runs[0]["resumed_at_epoch"] >= 1 and runs[0]["epochs"] == 6, again.stdout[-2000:]
    assert "continued from epoch" in again.stdout
    assert len(ledger.read_experiment(exp)) == before + 1  # scored once, at the end
    assert not list((exp / "eval-runs").glob("checkpoint_*"))


def test_the_python_api_reads_reports_and_refuses_like_the_cli(lab, tmp_path):
    from search import api
    from search.spec import SpecError

    exp = api.open_experiment(lab["main"])
    trials, best = exp.trials, exp.best()
    assert sorted(best["arch"]) == ["origin_net", "simple_cnn"]
    for _, row in best.iterrows():  # each net's best validation score, never a test-split number
        assert row["val_accuracy"] == trials.loc[trials["arch"] == row["arch"], "val_accuracy"].max()
    for _, row in exp.best("val_loss").iterrows():  # a loss is best lowest (best() took the highest)
        assert row["val_loss"] == trials.loc[trials["arch"] == row["arch"], "val_loss"].min()
    for column in ("status", ["val_accuracy"]):  # not a metric: it ranked by status, or raised TypeError
        with pytest.raises(SpecError, match="is not a metric of the trials"):
            exp.best(column)
    assert set(exp.history["trial_id"]) == set(trials["trial_id"])
    assert exp.spec["archs"] == ["origin_net", "simple_cnn"]
    page = exp.report(out=tmp_path / "r")
    assert page == tmp_path / "r" / "report.html" and page.stat().st_size > 0
    with pytest.raises(SpecError, match="unknown option 'num_sample' .*num_samples"):
        api.search("simple_cnn", num_sample=3)
    with pytest.raises(SpecError, match=r"unknown option 'n_trials' \(did you mean num_samples\?\)"):  # Optuna's
        api.search("simple_cnn", n_trials=3)
    with pytest.raises(SpecError, match=r"unknown option 'lr' \(did you mean set=\{'lr': 0.1\}\?\)"):
        api.search("simple_cnn", lr=0.1)
    # values of a type the flag cannot take: one line naming them, not a TypeError from deep inside
    for kwargs, named in (({"arch": 5}, "arch=5: a string or a list"), ({"name": 5}, "name=5: a string"),
                          ({"cpus_per_trial": "x"}, "cpus_per_trial='x': a number"),
                          ({"set": [("lr", 0.1)]}, "a dict of config values"), ({"resume": 1}, "True or False")):
        with pytest.raises(SpecError, match=re.escape(named)):
            api.search(**{"arch": "simple_cnn", **kwargs})
    with pytest.raises(ExperimentError, match="an experiment folder's path"):
        api.open_experiment(None)
    with pytest.raises(ExperimentError, match="lists of names"):
        exp.evaluate(archs="simple_cnn")
    with pytest.raises(ExperimentError, match="--top-k must be an integer >= 1"):
        exp.evaluate(top_k=0)
    for kwargs, named in (({"archs": []}, "--archs: a list of names, got []"),  # was every net, a test use each
                          ({"archs": [1]}, "--archs: a list of names, got [1]"),
                          ({"pareto": "yes"}, "pareto='yes': True or False")):
        with pytest.raises(ExperimentError, match=re.escape(named)):
            exp.evaluate(**kwargs)
    for kwargs, named in (({"top_k": 0}, "top_k must be an integer >= 1"), ({"top_k": "3"}, "got '3'"),
                          ({"out": 3}, "out must be a folder's path")):
        with pytest.raises(ExperimentError, match=named):
            exp.report(**kwargs)
    with pytest.raises(ExperimentError, match="a folder's path, got None"):
        api.Experiment(None)
    with pytest.raises(SpecError, match="--num-samples must be"):
        api.search("simple_cnn", num_samples=0, storage=str(tmp_path), name="never")
    assert not (tmp_path / "never").exists()
    with pytest.raises(ExperimentError, match="no experiment directory"):
        api.open_experiment(tmp_path / "nowhere")


def test_evaluate_refuses_bad_arguments_naming_them(lab, capsys):
    from search.cli import main

    runs = sorted((lab["main"] / "eval-runs").glob("*"))
    for args, named in ((["--top-k", "0"], "0"), (["--archs", "no_such_net"], "no_such_net"),
                        (["--epochs", "-3"], "-3"),
                        # the SVM's k was checked only after the final runs had trained (and met the test split)
                        (["--svm-subset", "50", "--svm-k", "0"], "got 0"),
                        (["--svm-subset", "50", "--svm-k", "60"], "k=60")):
        assert main(["evaluate", str(lab["main"]), *args]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and named in err, err
    assert sorted((lab["main"] / "eval-runs").glob("*")) == runs  # nothing trained


def test_grid_preset_table_beside_the_published_rows(lab):
    from analysis.evaluate import evaluate_experiment

    best, worst = "arch=modified_net, optimizer=sgd, lr=0.005", "arch=modified_net, optimizer=sgd, lr=0.0001"
    exp = load(lab["grid"])
    before = tables.grid_table(exp).set_index("point")
    assert len(before) == 9  # report 003: Table VIII's five lrs, Table IX's three optimizers, OriginNet
    assert before.loc[best, "runs"] == before.loc[worst, "runs"] == 2
    assert before.loc[best, "published test_accuracy"] == 0.728
    assert before.loc["arch=origin_net", "runs"] == 0 and before.loc[best, "test_accuracy (95% CI)"] == ""
    record = evaluate_experiment(lab["grid"], address="local")
    assert record["mode"] == "grid checkpoints" and record["trials"] is None  # no trials were picked
    assert {g["label"] for g in record["grid"]} == {best, worst}  # the diverged and errored rows are no point
    after = tables.grid_table(load(lab["grid"])).set_index("point")
    assert "±" in after.loc[best, "test_accuracy (95% CI)"] and 0 <= after.loc[worst, "weighted_f1"] <= 1
    assert after.loc["arch=origin_net", "published weighted_f1"] == 0.5521


# --------------------------------------------------------------------------------------------- SVM

def test_svm_on_a_small_subset(cifar):
    from trainables import data
    from trainables.svm import build_svm, fit_svm

    pipe = build_svm()
    assert pipe.named_steps["pca"].n_components == 448 and pipe.named_steps["svc"].kernel == "rbf"
    assert pipe.named_steps["svc"].C == 1.0 and pipe.named_steps["svc"].gamma == "scale"
    data._split_access_log.clear()
    r = fit_svm(cifar, subset=400, k=24, val_size=300)
    assert "test" not in data._split_access_log and "test_accuracy" not in r
    assert r["subset"] == 400 and 0.12 < r[METRIC] <= 1 and 0 <= r["val_weighted_f1"] <= 1
    with pytest.raises(ValueError, match="k=448"):
        fit_svm(cifar, subset=100, val_size=0)
    with pytest.raises(ValueError, match="-1"):
        build_svm(C=-1)
    with pytest.raises(ValueError, match="'wide'"):
        build_svm(gamma="wide")


# --------------------------------------------------------------------------------------------- report

def _chromium() -> str | None:
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    msg = "headless Chromium not found (Debian: apt-get install -y chromium; or set $CHROMIUM)"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


def test_report_writes_tables_and_a_page_that_renders(lab, tmp_path, capsys):
    from analysis.report import write_report

    browser = _chromium()
    out = tmp_path / "report"
    assert write_report(lab["main"], out=out) == 0
    printed = capsys.readouterr().out
    assert "Cross-net comparison" in printed and "origin_net" in printed
    for name in ("comparison", "leaderboard", "effect_lr"):
        for ext in ("md", "csv", "tex", "html"):
            assert (out / f"{name}.{ext}").stat().st_size > 0
    assert "\\begin{tabular}" in (out / "comparison.tex").read_text()
    page = (out / "report.html").read_text()
    assert not re.search(r"<script[^>]+src=", page)  # offline: plotly.js is inline, nothing is fetched
    figures = page.count('class="plotly-graph-div"')
    assert figures >= 6  # curves, rungs, 2 parallel coordinates, importance, accuracy vs params, confusion
    dom = subprocess.run([browser, "--headless", "--disable-gpu", "--no-sandbox", "--enable-unsafe-swiftshader",
                          "--virtual-time-budget=10000", "--enable-logging=stderr", "--v=0", "--dump-dom",
                          (out / "report.html").as_uri()], capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "Uncaught" not in dom.stderr  # no script error reached the console
    assert re.search(r'<div id="js-errors"[^>]*></div>', dom.stdout), "the page's error hook caught a script error"
    drawn = re.findall(r'class="plotly-graph-div js-plotly-plot"', dom.stdout)
    assert len(drawn) == figures  # plotly.js ran and drew every figure
    assert dom.stdout.count('class="main-svg"') >= figures


def test_grid_report_shows_the_reports_table(lab, tmp_path):
    from analysis.report import write_report

    assert write_report(lab["grid"], out=tmp_path, quiet=True) == 0
    md = (tmp_path / "grid_table.md").read_text()
    assert "arch=modified_net, optimizer=sgd, lr=0.005" in md and "0.728" in md
    assert "Not drawn: grid experiment" in (tmp_path / "report.html").read_text()


def test_a_second_evaluation_keeps_the_first(tmp_path):
    from analysis.evaluate import save

    def record(created, acc):
        runs = [{"seed": 0, "test_accuracy": acc}]
        return {"created": created, "grid": [], "results": [{"arch": "origin_net", "rank": 1, "trial_id": "t1",
                                                              "train_on": "train", "runs": runs}]}

    save(record("2026-11-20T10:00:00", 0.5), tmp_path)
    save(record("2026-11-21T11:00:00", 0.6), tmp_path)
    assert json.loads((tmp_path / "evaluation.json").read_text())["created"] == "2026-11-21T11:00:00"
    kept = json.loads((tmp_path / "evaluation-20261120T100000.json").read_text())
    assert kept["results"][0]["runs"][0]["test_accuracy"] == 0.5
    assert (tmp_path / "evaluation-20261120T100000.csv").exists() and (tmp_path / "evaluation.csv").exists()


def test_proxy_check_retrains_a_proxy_searchs_trials_on_more_data_and_ranks_both(lab, tmp_path, capsys):
    """benchmarks.proxy_check on the lab's proxy search (300 training images): bad input is one line before anything
    trains; then trials spread over the proxy's ranking at epoch 1 are trained again on more images (their config,
    seed and validation split), the two rankings compared, the record published as a table; a unit saved is kept
    by the same command (only a missing one retrains), and the test split is never read."""
    from benchmarks import publish
    from benchmarks.proxy_check import main
    from trainables import data

    results, storage = tmp_path / "results", tmp_path / "store"
    results.mkdir()
    base = [str(lab["main"]), "--record", "p", "--storage", str(storage), "--results", str(results), "--data-dir",
            str(lab["data"])]
    for extra, words in (([], "several nets (origin_net, simple_cnn): name one with --arch"),
                         (["--arch", "resnet18"], "--arch resnet18: not a net of this search"),
                         (["--arch", "simple_cnn", "--trials", "2"], "--trials 2: at least 3"),
                         (["--arch", "simple_cnn", "--trials", "9"], "--trials 9: only 4 of simple_cnn's trials"),
                         (["--arch", "simple_cnn", "--against", "300"], "not more than the proxy's 300 images"),
                         (["--arch", "simple_cnn", "--epochs", "3"], "--epochs 3: outside the search's 1..2")):
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err
    assert not storage.exists() and not list(results.iterdir())

    argv = base + ["--arch", "simple_cnn", "--trials", "3", "--epochs", "1", "--against", "600"]
    data._split_access_log.clear()
    assert main(argv) == 0, capsys.readouterr()
    assert data._split_access_log and "test" not in data._split_access_log
    record = json.loads((results / "p.json").read_text())
    trials = {t["trial_id"]: t for t in load_trials(lab["main"])}
    units = record["units"]
    assert len(units) == 3 and record["epochs"] == 1 and record["proxy_images"] == 300 and record["full_images"] == 600
    assert sorted(u["proxy_rank"] for u in units)[0] == 1  # the proxy's best is always among them
    for u in units:
        trial = trials[u["trial_id"]]
        assert trial["arch"] == "simple_cnn"
        assert u["proxy_val"] == next(h["val_accuracy"] for h in trial["history"] if h["epoch"] == 1)
        assert u["config"]["subset"] == 600 and u["config"].get("seed", 0) == trial["config"].get("seed", 0)
        assert 0 <= u["full_val"] <= 1 and len(u["epoch_seconds"]) == 1
    s = record["proxy_check"]
    assert s["kendall_tau"] is None or -1 <= s["kendall_tau"] <= 1
    assert s["top_third"] == 1 and s["same_best"] == (s["top_third_shared"] == 1)
    assert sorted(u["full_rank"] for u in units) == [1, 2, 3]
    assert not list(storage.glob("checkpoint_*"))  # each unit's state goes when it is saved
    block = publish.blocks({"p": record}, ledger_records=[])["p"](Path("docs/results.md"))
    assert all(u["trial_id"] in block for u in units) and "full data: val acc @1 (rank)" in block

    # the same command: the record is there, nothing trains; without the record, only a missing unit retrains
    assert main(argv) == 0 and "written already; nothing trained" in capsys.readouterr().out
    kept = {p.name: p.read_bytes() for p in (storage / "units").glob("*.json")}
    (results / "p.json").unlink()
    gone = sorted(kept)[0]
    (storage / "units" / gone).unlink()
    assert main(argv) == 0
    assert {p.name for p in (storage / "units").glob("*.json")} == set(kept)
    for name, blob in kept.items():
        if name != gone:
            assert (storage / "units" / name).read_bytes() == blob
    again = json.loads((results / "p.json").read_text())
    assert [u["full_val"] for u in again["units"]] == [u["full_val"] for u in units]  # same seed, same run
    # units of another setting in the same storage are refused, not compared as if they were this one's
    (results / "p.json").unlink()
    assert main([*argv[:-2], "--against", "900"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "on subset 600, not --epochs 1 --against 900: use another --storage" in err[0], err
    assert not (results / "p.json").exists()


def test_evaluate_on_data_other_than_the_searchs_is_refused_before_any_run(lab, tmp_path, capsys):
    """The data under the experiment's data_dir changed since the search: evaluate scored the other data's test
    split and filed the use under that data's ledger. `search --resume` refused it already; evaluate does now."""
    import ray

    from search.cli import main
    from tests.searchrun import one_line_error

    exp = tmp_path / "main"
    shutil.copytree(lab["main"], exp, ignore=shutil.ignore_patterns("eval-runs", "evaluation.json"))
    record = json.loads((exp / "spec.json").read_text())
    record["data"]["checksum"] = "0" * 64  # as if the files had been replaced since
    (exp / "spec.json").write_text(json.dumps(record))
    assert main(["evaluate", str(exp), "--top-k", "1", "--repeats", "1", "--epochs", "1"]) == 2
    one_line_error(capsys, "the data changed since the search (sha256 000000000000...", "restore the original files")
    assert not (exp / "eval-runs").exists() and not (exp / "evaluation.json").exists() and not ray.is_initialized()
