"""The anytime HPO benchmark (benchmarks/hpo_efficiency.py): its statistics (benchmarks/anytime.py) on hand-made
numbers, and its smoke run end to end on the real data copy: monotone curves, one budget for every method, seeds
paired, retrains scored on images no search saw, and a rerun that keeps every finished unit. No timing is asserted."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from benchmarks import anytime
from benchmarks.common import REPO

OBJECTIVES = [["val_accuracy", "max"], ["params", "min"]]


def events(values, times=None):
    return [{"t": float(i if times is None else times[i]), "value": v} for i, v in enumerate(values)]


# --------------------------------------------------------------------------------------------- statistics

def test_best_so_far_never_falls_and_a_diverged_epoch_counts_for_nothing():
    assert anytime.best_so_far(events([None, 0.3, 0.2, float("nan"), 0.5, 0.4])) == [None, 0.3, 0.3, 0.3, 0.5, 0.5]


def test_a_curve_read_at_budget_points_in_epochs_and_seconds():
    curve = [0.1, 0.3, 0.3, 0.6]
    assert anytime.at_epochs(curve, [1, 2, 4, 6]) == [0.1, 0.3, 0.6, 0.6]  # a search that spent less keeps its last
    assert anytime.at_times([2.0, 3.0, 3.0, 7.5], curve, [1.0, 2.0, 3.0, 7.0, 100.0]) == [None, 0.1, 0.3, 0.3, 0.6]
    assert anytime.epoch_points(45) == [6, 12, 23, 34, 45]


def test_band_is_median_and_quartiles_and_empty_where_a_seed_has_nothing_yet():
    band = anytime.band([[None, 1.0], [0.2, 2.0], [0.4, 3.0], [0.6, 4.0]])  # rows: seeds, columns: points
    assert band[0] is None
    assert band[1] == {"median": 2.5, "q1": 1.75, "q3": 3.25, "n": 4}


def test_paired_wilcoxon_gives_the_exact_p_of_hand_made_examples():
    # Every one of five seeds favours A: of the 2**5 equally likely sign patterns, one is as extreme on each side.
    r = anytime.paired_test([0.51, 0.52, 0.53, 0.54, 0.55], [0.50] * 5)
    assert r["n"] == 5 and r["p"] == pytest.approx(2 / 32) and r["median_difference"] == pytest.approx(0.03)
    # Differences 1, 2, 3, -4, 5: W- = 4, and 7 sign patterns ({}, {1}, {2}, {3}, {4}, {1,2}, {1,3}) have a
    # negative rank sum <= 4, so the two-sided p is 2 * 7 / 32.
    r = anytime.paired_test([1, 2, 3, 0, 5], [0, 0, 0, 4, 0])
    assert r["statistic"] == 4 and r["p"] == pytest.approx(14 / 32)
    assert anytime.paired_test([0.5, 0.6], [0.5, 0.6])["p"] == 1.0  # equal on every seed
    assert anytime.paired_test([0.5, None, 0.7], [0.4, 0.6, 0.6])["n"] == 2  # seed 1 has no pair
    assert anytime.paired_test([], [])["p"] is None


def test_cost_to_reach_a_target_and_by_when_half_of_the_seeds_had():
    assert anytime.cost_to_reach([5.0, 9.0, 12.0], [0.2, 0.4, 0.6], 0.4) == {"epochs": 2, "seconds": 9.0}
    assert anytime.cost_to_reach([5.0], [0.2], 0.4) == {"epochs": None, "seconds": None}
    assert anytime.half_cost([3, None, 5, 1]) == 3  # 2 of 4 seeds by 3 epochs
    assert anytime.half_cost([None, None, 1]) is None  # 1 of 3 ever did


def test_hypervolume_so_far_on_a_hand_computed_front():
    # Reference (accuracy 0, 100 params), box 1 x 100. (0.5, 50 params) dominates 0.5 x 50 = 25; (0.8, 80) adds
    # 0.3 x 20 = 6 more; (0.4, 70) is dominated; a diverged epoch adds nothing.
    ev = [{"value": 0.5, "params": 50}, {"value": None, "params": 60}, {"value": 0.8, "params": 80},
          {"value": 0.4, "params": 70}]
    assert anytime.hypervolume_so_far(ev, OBJECTIVES, [0.0, 100.0]) == pytest.approx([0.25, 0.25, 0.31, 0.31])


# --------------------------------------------------------------------------------------------- the smoke run

def _run(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def _docs():
    return [p.read_text() if p.exists() else None
            for p in (REPO / "docs" / "benchmarks.md", REPO / "docs" / "results" / "hpo_efficiency.json")]


@pytest.fixture(scope="module")
def smoke(cifar_path, tmp_path_factory):
    storage = tmp_path_factory.mktemp("hpo")
    cmd = [sys.executable, "-m", "benchmarks.hpo_efficiency", "--smoke", "--data-dir", str(cifar_path),
           "--storage", str(storage)]
    before = _docs()
    out = _run(cmd)
    assert _docs() == before  # a smoke run never overwrites measured numbers
    return storage, cmd, out, json.loads((storage / "hpo_efficiency.json").read_text())


def _units(storage, kind=""):
    return {(p.parent.name, int(p.name.split(".")[0].removeprefix("seed"))): json.loads(p.read_text())
            for p in (storage / "units").rglob(f"seed*.{kind + '.' if kind else ''}json")
            if p.name.count(".") == (2 if kind else 1)}


def test_smoke_curves_never_fall_and_every_method_spends_the_same_budget(smoke):
    storage, _, out, record = smoke
    assert "| " in out.stdout and "device:" in out.stdout
    from importlib.metadata import version

    assert record["code"].startswith(version("cifar-tune"))  # the code that made it, beside the libraries' versions
    block = record["anytime"]["modified_net"]
    budget = record["settings"]["grid_rows"] * record["settings"]["max_epochs"]  # the report's rows x E
    assert block["budget"] == budget and set(block["methods"]) == {"tpe+asha", "grid"}
    units = _units(storage)
    assert sorted(units) == [("grid", 0), ("grid", 1), ("tpe+asha", 0), ("tpe+asha", 1)]
    for (method, seed), unit in units.items():
        assert unit["budget"] == budget and unit["budget_enforced"]
        assert unit["spent_epochs"] == len(unit["events"]) <= budget  # ASHA's budget held by the scheduler
        times = [e["t"] for e in unit["events"]]
        assert times == sorted(times) and times[0] >= 0
        assert unit["load_1m_max"] >= unit["load_1m_mean"] >= 0  # sampled while the search ran
    assert units[("grid", 0)]["spent_epochs"] == budget  # every row trained to the horizon
    for method, info in block["methods"].items():
        assert info["seeds"] == [0, 1]
        assert len(info["curve_epochs"]) == budget and block["epoch_grid"] == list(range(1, budget + 1))
        medians = [c["median"] for c in info["curve_epochs"]]
        assert medians == sorted(medians)
        for k, seed in enumerate(info["seeds"]):
            at = [col["per_seed"][k] for col in info["at_epochs"]]
            assert at == sorted(at)
            # at the full budget the curve is the best the search found, which is what it picked
            assert at[-1] == units[(method, seed)]["pick"]["val_accuracy"]
    (test,) = block["tests"].values()
    assert test["seeds"] == [0, 1] and len(test["epochs"]) == len(block["epoch_points"])
    from benchmarks.hpo_efficiency_report import shared_configs

    assert test["shared_configs"] == [shared_configs(units[("tpe+asha", s)], units[("grid", s)]) for s in (0, 1)]
    assert 0 <= test["same_pick"] <= 2
    assert block["target"] == block["methods"]["grid"]["curve_epochs"][-1]["median"]


def test_smoke_retrains_are_scored_on_images_no_search_saw(smoke, cifar_path):
    from benchmarks.hpo_efficiency import Bench, parse

    storage, _, _, record = smoke
    retrains = _units(storage, "retrain")
    assert sorted(retrains) == [("grid", 0), ("grid", 1), ("tpe+asha", 0), ("tpe+asha", 1)]
    units = _units(storage)
    for key, r in retrains.items():
        assert r["heldout_images"] == 200 and r["train_images"] == 200 and 0 <= r["heldout_accuracy"] <= 1
        assert r["config"]["seed"] == 1000 + key[1] and r["config"]["epochs"] == record["settings"]["max_epochs"]
        assert r["config"]["lr"] == units[key]["pick"]["config"]["lr"]
    bench = Bench(parse(["--smoke", "--data-dir", str(cifar_path), "--storage", str(storage)])[1])
    train_idx, val_idx = bench.data.split_indices(bench.args.val_size)
    heldout = set(bench.heldout_index().tolist())
    assert len(heldout) == 200
    assert not heldout & set(train_idx[:bench.args.subset].tolist()) and not heldout & set(val_idx.tolist())
    assert len(bench.data.test_y) == 0  # the benchmark holds no test images at all


def test_a_rerun_keeps_every_finished_unit_and_rebuilds_a_lost_record(smoke):
    storage, cmd, _, record = smoke
    again = _run(cmd)
    assert again.stdout.count("finished earlier, kept") == 4
    assert " trials of <= " not in again.stdout and "retrain " not in again.stdout  # nothing searched or trained
    rerun = json.loads((storage / "hpo_efficiency.json").read_text())
    assert rerun["anytime"] == record["anytime"]
    # A run killed after a search ended but before its record was written: the search is kept and read back.
    # Its invocation killed hard (SIGKILL: no end written, as a session's end leaves it): counted to its last event.
    lost = storage / "units" / "modified_net" / "grid" / "seed1.json"
    before = json.loads(lost.read_text())
    lost.unlink()
    segments = lost.with_suffix(".segments.json")
    segments.write_text(json.dumps({"segments": [[before["segments"][0][0], None]]}))
    third = _run(cmd)
    assert third.stdout.count("finished earlier, kept") == 3 and "grid seed 1: " in third.stdout
    rebuilt = json.loads(lost.read_text())
    assert rebuilt["events"] == before["events"] and rebuilt["pick"] == before["pick"]  # same epochs, same seconds
    assert rebuilt["resumed"] and len(rebuilt["segments"]) == 2 and rebuilt["segments"][0][1] is None
    resumed_for = rebuilt["segments"][1][1] - rebuilt["segments"][1][0]  # wall_seconds is rounded to 0.01
    assert before["events"][-1]["t"] - 0.01 <= rebuilt["wall_seconds"] <= before["events"][-1]["t"] + resumed_for + 0.01


def test_shared_draws_are_the_configs_both_seeds_tried():
    """Seed i of TPE and of random share their first draws (Optuna's RandomSampler on one seed): counted per pair."""
    from benchmarks.hpo_efficiency_report import shared_configs

    a = {"configs": {"t1": {"lr": 0.1, "arch": "x"}, "t2": {"arch": "x", "lr": 0.2}, "t2#3": {"lr": 0.5, "arch": "x"}}}
    b = {"configs": {"u1": {"lr": 0.2, "arch": "x"}, "u2": {"lr": 0.3, "arch": "x"}, "u3": {"lr": 0.5, "arch": "x"}}}
    assert shared_configs(a, b) == 2 and shared_configs(a, a) == 3 and shared_configs(b, {"configs": {}}) == 0


def test_an_invocation_killed_hard_ends_at_its_last_event():
    from benchmarks.hpo_efficiency import closed_segments

    assert closed_segments([[10.0, None], [50.0, 60.0]], [12.0, 15.0, 52.0]) == [[10.0, 15.0], [50.0, 60.0]]
    assert closed_segments([[10.0, None], [50.0, None]], [12.0, 55.0]) == [[10.0, 12.0], [50.0, 55.0]]
    assert closed_segments([[10.0, None]], []) == [[10.0, 10.0]]  # killed before its first epoch: nothing counted


def test_quiet_load_sets_a_loaded_search_aside_with_its_retrain_and_keeps_a_quiet_one(tmp_path):
    """--quiet-load: a finished search whose load went above the limit is run again; what it measured is kept
    beside (seedN.loadedK.json, its retrain too), and its experiment goes, so the rerun starts afresh."""
    from benchmarks.hpo_efficiency import retire_loaded

    folder = tmp_path / "units" / "simple_cnn" / "tpe+asha"
    folder.mkdir(parents=True)
    for seed, load in ((0, 5.2), (1, 2.1)):
        exp = tmp_path / "searches" / f"s{seed}"
        exp.mkdir(parents=True)
        (folder / f"seed{seed}.json").write_text(json.dumps({"arch": "simple_cnn", "method": "tpe+asha", "seed": seed,
                                                              "experiment": str(exp), "load_1m_max": load}))
        (folder / f"seed{seed}.retrain.json").write_text("{}")
        (folder / f"seed{seed}.segments.json").write_text("{}")
    assert retire_loaded(folder / "seed0.json", 3.0) and not retire_loaded(folder / "seed1.json", 3.0)
    assert sorted(p.name for p in folder.iterdir()) == ["seed0.loaded1.json", "seed0.loaded1.retrain.json",
                                                        "seed1.json", "seed1.retrain.json", "seed1.segments.json"]
    assert not (tmp_path / "searches" / "s0").exists() and (tmp_path / "searches" / "s1").exists()
    (folder / "seed0.json").write_text(json.dumps({"arch": "simple_cnn", "method": "tpe+asha", "seed": 0,
                                                   "experiment": str(tmp_path / "gone"), "load_1m_at_end": 4.0}))
    assert retire_loaded(folder / "seed0.json", 3.0)  # a record from before the sampler: its load at the end
    assert (folder / "seed0.loaded2.json").exists()
