"""`cifar-tune reproduce`: every plan obeys its budget rule, the scheduler enforces the epoch budget, the ETA counts
ASHA's stops, and the whole pipeline (search -> evaluate -> tables) runs end to end, killed and rerun without
redoing finished work."""
from __future__ import annotations

import json
import os
import signal
from types import SimpleNamespace

import pytest

from search.presets import arch_grid_cost, get_preset
from search.reproduce import get_plan, list_plans, space_file
from tests.searchrun import kill_session, run_cli, start_cli, trial_dirs, wait_for

PLANS = [(r, n) for r in list_plans() for n in get_plan(r).nets]


@pytest.mark.parametrize("report,net", PLANS, ids=[f"{r}-{n.arch}" for r, n in PLANS])
def test_every_plan_obeys_its_budget_rule(report, net):
    from spaces import load_space

    # what the report spent tuning this net is its preset's grid, not a number typed twice
    assert net.report_epochs == arch_grid_cost(get_preset(report))[net.arch]
    assert net.epoch_budget <= net.report_epochs // 5
    # and the number to beat is a cell of the same preset's published table
    assert net.published_row[0] == report and 0 < net.published < 1
    # every trial's first rung is paid for, with at least half the budget left for promotions; and there are as
    # many trials as a third of the budget pays first rungs for, up to the 24 TPE needs
    assert net.num_samples * net.grace_period <= net.epoch_budget // 2
    assert net.num_samples >= min(24, net.epoch_budget // (3 * net.grace_period))
    assert 1 <= net.grace_period < net.max_epochs <= 50
    space = load_space(net.arch, space_file(net.arch))
    for point in net.enqueue:  # the configs tried first lie inside the space they seed
        for key, value in point.items():
            p = space.params[key]
            if p.type == "categorical":
                assert value in p.choices, (key, value)
            else:
                assert p.low <= value <= p.high, (key, value)


@pytest.mark.parametrize("report,net", PLANS, ids=[f"{r}-{n.arch}" for r, n in PLANS])
def test_the_first_config_tried_is_the_reports_own_setting(report, net):
    """Exactly as the registry has it: on every key the space searches, and the space fixes no key to another value
    (speed knobs aside: bf16 / channels_last change the time, not the model)."""
    from search.reproduce import SPEED_KNOBS
    from spaces import load_space
    from trainables.config import resolve_config

    own = resolve_config({"arch": net.arch})
    first = net.enqueue[0]
    assert first == {k: own[k] for k in first} and set(first) == set(load_space(net.arch, space_file(net.arch)).params)
    for key, value in load_space(net.arch, space_file(net.arch)).fixed.items():
        assert key in SPEED_KNOBS or own[key] == value, (key, value, own[key])
    if net.arch == "origin_net":  # the case: the author's code, SGD lr 1e-4, no BatchNorm, constant lr
        assert (first["lr"], first["norm"], first["schedule"], first["weight_decay"]) == (1e-4, "none", "constant", 0)
    # and the plan's final runs train on the report's own training-set size, which the preset states with its source
    preset = get_preset(report)
    assert get_plan(report).train_images == preset.train_images and preset.train_images_why


class _Trial(SimpleNamespace):
    pass


def _feed(sched, trials: int, epochs: int, value_of) -> int:
    """Drive ``sched`` like Tune, one trial after another; returns the epochs trained in all."""
    from ray.tune.schedulers import TrialScheduler

    spent = 0
    for i in range(trials):
        t = _Trial(trial_id=f"t{i}", config={"arch": "origin_net"})
        sched.on_trial_add(None, t)
        for epoch in range(1, epochs + 1):
            spent += 1
            action = sched.on_trial_result(None, t, {"epoch": epoch, "val_accuracy": value_of(i, epoch)})
            if action == TrialScheduler.STOP or epoch == epochs:
                sched.on_trial_complete(None, t, {"epoch": epoch, "val_accuracy": value_of(i, epoch)})
                break
    return spent


def test_epoch_budget_caps_a_search_asha_alone_would_promote_all_the_way(tmp_path):
    from search.scheduler import PerArchASHA

    def better_each_time(i, epoch):  # each trial beats every earlier one: async ASHA promotes every trial
        return 0.1 + 0.01 * i + 0.001 * epoch

    free = PerArchASHA(["origin_net"], max_t=27, grace_period=1)
    assert _feed(free, 10, 27, better_each_time) == 10 * 27  # the worst case: ASHA alone saves nothing

    state = tmp_path / "asha_state.json"
    capped = PerArchASHA(["origin_net"], max_t=27, grace_period=1, state_path=state, epoch_budget=60, num_samples=10)
    spent = _feed(capped, 10, 27, better_each_time)
    assert 10 <= spent <= 60
    reasons = [s.get("reason") for s in capped.stops]
    assert "budget" in reasons  # the cap, not ASHA, stopped them
    # the budget was spent on the first trials' promotions, and the record survives a restart
    restored = PerArchASHA(["origin_net"], max_t=27, grace_period=1, state_path=state, epoch_budget=60, num_samples=10)
    assert restored.allowed == capped.allowed and restored.stops == capped.stops
    assert restored.reserved("origin_net") == capped.reserved("origin_net") <= 60


def test_epoch_budget_must_pay_every_first_rung():
    from search.scheduler import PerArchASHA
    from search.spec import ExperimentSpec, SpecError

    with pytest.raises(ValueError, match="cannot pay"):
        PerArchASHA(["origin_net"], max_t=9, grace_period=3, epoch_budget=10, num_samples=4)
    with pytest.raises(SpecError, match=r"--epoch-budget 10 cannot pay .* 4 x --grace-period 3"):
        ExperimentSpec(archs=["origin_net"], num_samples=4, max_epochs=9, grace_period=3, epoch_budget=10)


def test_eta_counts_the_epochs_asha_is_expected_to_train():
    from search.progress import ProgressCallback

    cb = ProgressCallback(24, 50, milestones=[5, 15, 45, 50], reduction_factor=3)
    # a new trial: 5 epochs surely, 10 more with chance 1/3, 30 more with 1/9, 5 more with 1/27
    assert cb.expected_epochs_left(0) == pytest.approx(5 + 10 / 3 + 30 / 9 + 5 / 27)
    assert cb.expected_epochs_left(45) == pytest.approx(5)
    assert cb.expected_epochs_left(50) == 0
    assert ProgressCallback(4, 8).expected_epochs_left(3) == 5  # no scheduler: every epoch left


@pytest.mark.slow
def test_reproduce_end_to_end_killed_and_rerun(tmp_path, cifar_path, monkeypatch):
    """search -> evaluate -> tables on a tiny subset; interrupted during the search, killed once evaluation runs are
    being saved, then the same command finishes without retraining a finished trial or evaluation run."""
    args = ["reproduce", "report003", "--archs", "origin_net", "--data-dir", cifar_path, "--storage", tmp_path,
            "--set", "subset=300", "--set", "val_size=100", "--num-samples", "3", "--max-epochs", "2",
            "--repeats", "3", "--train-images", "200"]
    root = tmp_path / "reproduce-report003"
    runs_dir = root / "origin_net" / "eval-runs"
    # a ledger of this test's own: the session's data cache is shared with other tests that score origin_net
    monkeypatch.setenv("CIFAR_TUNE_LEDGER_DIR", str(tmp_path / "ledger"))
    # 1. Ctrl-C during the search: exit 130, one line saying so and the command that continues
    log = tmp_path / "first.log"
    proc = start_cli(args, log)
    try:
        wait_for(lambda: list((root / "origin_net").glob("origin_net_*/result.json")), 600, proc, log, "a result")
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=300) == 130, log.read_text()[-3000:]
    finally:
        kill_session(proc)
    last = log.read_text().strip().splitlines()[-1]
    assert "cifar-tune reproduce: interrupted (SIGINT)" in last and "continue with: cifar-tune reproduce report003" in last
    # 2. SIGKILL once final runs are being saved
    log = tmp_path / "second.log"
    proc = start_cli(args, log)
    try:
        wait_for(lambda: runs_dir.is_dir() and list(runs_dir.glob("*.json")), 600, proc, log, "a saved final run")
    finally:
        kill_session(proc)
    trials_before = set(trial_dirs(root / "origin_net"))
    saved = {p.name: p.read_bytes() for p in runs_dir.glob("*.json")}
    assert trials_before and saved
    state = json.loads((root / "reproduce.json").read_text())
    assert state["searches"]["origin_net"]["done"] and "result" not in state

    second = run_cli(args, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:]
    assert "search origin_net: finished earlier, kept" in second.stdout
    assert f"evaluate: {len(saved)} of 3 runs finished earlier, kept" in second.stdout or len(saved) == 3
    assert set(trial_dirs(root / "origin_net")) == trials_before  # no trial added or re-run
    for name, blob in saved.items():  # a finished final run is never retrained (nor scored on the test split again)
        assert (runs_dir / name).read_bytes() == blob
    record = json.loads((root / "reproduce.json").read_text())["result"]
    (net,) = record["nets"]
    assert net["arch"] == "origin_net" and net["metric"] == "weighted_f1" and net["seeds"] == [0, 1, 2]
    assert len(net["per_seed"]) == 3 and net["ci95"] is not None
    assert net["mean"] == pytest.approx(sum(net["per_seed"]) / 3)
    assert 0 < net["search_epochs"] <= net["search_epoch_budget"] and net["final_epochs"] == 3 * 2
    assert net["report_epochs"] == 300 and net["published"] == 0.5521
    assert "data_dir" not in net["config"]
    # the fair protocol: every final run saw exactly --train-images images, and each was one scoring of the test split
    assert net["train_images"] == 200 and net["config"]["subset"] == 200 and net["config"]["val_size"] == 0
    assert net["verdict"] in ("beats", "matches", "misses") and net["test_split_use"] == [1]
    from trainables import ledger

    records = ledger.read_experiment(root / "origin_net")
    assert {r["seed"] for r in records} == {0, 1, 2} and {r["train_images"] for r in records} == {200}
    assert len(ledger.uses(records, "origin_net")) == 1
    assert record["caveat"].startswith("offline copy: JPEG")
    table = (root / "reproduce.md").read_text()
    assert "| origin_net | weighted_f1 |" in table and "0.5521" in table and f"| {net['verdict']} | 200 |" in table
    assert (root / "origin_net" / "report" / "report.html").exists()
    # a finished search is kept only for the same plan: a changed budget is refused naming it, never ignored
    changed = [a if a != "3" or args[i - 1] != "--num-samples" else "4" for i, a in enumerate(args)]
    third = run_cli(changed, timeout=300)
    assert third.returncode == 2 and "--num-samples 4" in third.stdout.strip().splitlines()[-1], third.stdout
    assert "Traceback" not in third.stdout
