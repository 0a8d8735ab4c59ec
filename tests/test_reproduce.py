"""`cifar-tune reproduce`: every plan obeys its budget rule, the scheduler enforces the epoch budget, the ETA counts
ASHA's stops, and the whole pipeline (search -> evaluate -> tables) runs end to end, killed and rerun without
redoing finished work."""
from __future__ import annotations

import json
import os
import re
import signal
from types import SimpleNamespace

import pytest

from search.presets import arch_grid_cost, get_preset
from search.reproduce import get_plan, list_plans, space_file
from tests.searchrun import kill_session, one_line_error, run_cli, start_cli, trial_dirs, wait_for

PLANS = [(r, n) for r in list_plans() for n in get_plan(r).nets]


@pytest.mark.parametrize("report,net", PLANS, ids=[f"{r}-{n.arch}" for r, n in PLANS])
def test_every_plan_obeys_its_budget_rule(report, net):
    """The rule each plan states (search/reproduce_plans.py): a search within a fifth of the report's tuning epochs,
    or, where a fifth cannot pay TPE's start-up, the report's own setting and the long-horizon default(s) only; a
    proxy only for a net slower than a minute per measured epoch; 5 final seeds, or 3-4 where the plan says why."""
    from search.reproduce_plans import (MIN_SEEDS, PROXY_ABOVE_SECONDS, RULE_OWN_AND_DEFAULTS, RULE_SEARCH,
                                        measured_speeds)
    from search.spec import TPE_STARTUP  # below that many first rungs, TPE learns nothing
    from spaces import load_space

    # what the report spent tuning this net is its preset's grid, not a number typed twice
    assert net.report_epochs == arch_grid_cost(get_preset(report))[net.arch]
    assert net.epoch_budget <= net.report_epochs // 5
    # and the number to beat is a cell of the same preset's published table
    assert net.published_row[0] == report and 0 < net.published < 1
    assert 1 <= net.grace_period < net.max_epochs <= 50
    can_search = net.epoch_budget // 2 >= TPE_STARTUP  # five first rungs, half the budget left for promotions
    if net.rule == RULE_SEARCH:
        assert can_search
        # every trial's first rung is paid for, with at least half the budget left for promotions; and there are
        # as many trials as a third of the budget pays first rungs for, up to the 24 TPE needs
        assert net.num_samples * net.grace_period <= net.epoch_budget // 2
        assert net.num_samples >= min(24, net.epoch_budget // (3 * net.grace_period))
    else:
        assert net.rule == RULE_OWN_AND_DEFAULTS and not can_search  # only where searching cannot pay
        assert net.num_samples == len(net.enqueue) >= 2 and net.num_samples * net.grace_period <= net.epoch_budget
        assert "too few epochs to search" in net.why  # the plan says so
    speeds, _ = measured_speeds()
    if net.search_subset:  # a reduced-fidelity search: only where a full epoch is slow, and said in the plan
        assert 45_000 / speeds[net.arch] > PROXY_ABOVE_SECONDS, (net.arch, speeds.get(net.arch))
        assert "proxy" in net.why and f"{net.search_subset:,}" in net.why
    # a final run on more than one core only for a net slower than a minute per epoch, and said in the plan
    assert net.final_cpus == 1 or (net.final_cpus == 2 and 45_000 / speeds[net.arch] > PROXY_ABOVE_SECONDS
                                   and "both cores" in net.why)
    seeds = get_plan(report).seeds(net)
    assert seeds == 5 or (MIN_SEEDS <= seeds < 5 and f"{seeds} seeds" in net.why), (net.arch, seeds)
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

    import inspect

    from trainables.models import get_arch

    # the registry's setting; a size knob the config leaves unset is the builder's own default (keras_cnn's padding)
    built = {n: p.default for n, p in inspect.signature(get_arch(net.arch).builder).parameters.items()}
    own = {k: built.get(k) if v is None else v for k, v in resolve_config({"arch": net.arch}).items()}
    first = net.enqueue[0]
    if net.arch == "keras_cnn":
        assert first["padding"] == "valid"  # Keras's default, which the report's code kept
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
def test_reproduce_end_to_end_killed_and_rerun(tmp_path, cifar_path, monkeypatch, capsys):
    """search -> evaluate -> tables on a tiny subset, for report 003 (origin_net, weighted F1 on the test split,
    trained on train + validation) and, in the same command (one Ray for both), report 004 (lozano_f: its own
    setting and a default only, scored on a held-out validation split with the test accuracy beside it):
    interrupted during the first search, stopped by SIGTERM once the last net's final runs are being saved, then
    the same command finishes without retraining a finished trial or final run, on a copy carried to a "new machine"
    by benchmarks.carry (checkpoints left behind); a changed flag is refused. The other plans'
    records and tables (001's from-scratch resnet18, 002's proxy search) are checked without training, in
    test_every_plans_record_and_table_say_how_its_nets_ran."""
    nets = {"report003": "origin_net", "report004": "lozano_f"}
    args = ["reproduce", *nets, "--archs", ",".join(nets.values()), "--data-dir", str(cifar_path), "--storage",
            str(tmp_path), "--set", "subset=300", "--set", "val_size=100", "--num-samples", "2", "--max-epochs", "1",
            "--repeats", "2", "--train-images", "200", "--final-epochs", "1",  # --max-epochs is the search's alone
            # the nets at an eighth of their width: scoring the 10,000 test images takes seconds
            "--set", "width=0.125", "--set", "latency_batch=0"]
    root = tmp_path / "reproduce-report003"
    exps = {a: tmp_path / f"reproduce-{r}" / a for r, a in nets.items()}
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
    first = log.read_text()
    last = first.strip().splitlines()[-1]
    assert "cifar-tune reproduce: interrupted (SIGINT)" in last and "continue with: cifar-tune reproduce report003" in last
    # the whole plan up front, with its cost at the measured speed, then an overall ETA at each stage
    assert "reproduce: the plan (speeds: docs/benchmarks.md, 'Epoch time per net'" in first, first[-3000:]
    assert "reproduce: overall 0/4 stages done; ETA " in first and "reproduce: total ~" in first
    # ... carried to a "new machine" with what was in flight (long_runs does so when stopped): the unfinished
    # search travels and is resumed there, its ended trials kept as they were
    from benchmarks.carry import main as carry

    started = set(trial_dirs(root / "origin_net"))
    interrupted = not json.loads((root / "reproduce.json").read_text())["searches"].get("origin_net", {}).get("done")
    capsys.readouterr()
    assert carry(["save", str(root), "--to", str(tmp_path / "carried"), "--in-flight"]) == 0
    # (the SIGINT came after the first trial's result; the search had not ended unless the second trial was quicker)
    assert ("in flight (continued where restored): origin_net" in capsys.readouterr().out) == interrupted
    os.rename(root, tmp_path / "old-machine-first")
    assert carry(["restore", str(tmp_path / "carried" / "reproduce-report003.tar.gz"), "--storage",
                  str(tmp_path)]) == 0
    # --searches-only: the searches finished, no final run (e.g. a proxy search checked before hours of them)
    only = run_cli([*args, "--searches-only"], timeout=600)
    assert only.returncode == 0, only.stdout[-3000:]
    assert started <= set(trial_dirs(root / "origin_net"))
    said = next(line for line in only.stdout.splitlines() if "search origin_net:" in line)
    assert ("[resumed]" if interrupted else "finished earlier, kept") in said, only.stdout[-3000:]
    assert "reproduce report004: searches finished; the final runs: the same command without --searches-only" \
        in only.stdout
    assert not list(tmp_path.glob("reproduce-*/*/eval-runs")) and "result" not in json.loads(
        (root / "reproduce.json").read_text())
    assert all(s["done"] for s in json.loads((root / "reproduce.json").read_text())["searches"].values())
    # 2. SIGTERM (what benchmarks.long_runs sends at a session's end) once the last net's final runs are being
    # saved: exit 143 and one line, wherever the command then is (training, scoring, writing the tables); Ray's
    # own handler, which ray.init gives the driver, would end it with exit 1 or 15 and no word
    log = tmp_path / "second.log"
    proc = start_cli(args, log)
    try:
        wait_for(lambda: list((exps["lozano_f"] / "eval-runs").glob("*.json")), 600, proc, log, "a saved final run")
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=300) == 143, log.read_text()[-3000:]
    finally:
        kill_session(proc)
    last = log.read_text().strip().splitlines()[-1]
    assert last.startswith("cifar-tune reproduce: interrupted (SIGTERM); finished trials and final runs are saved; "
                           "continue with: cifar-tune reproduce report003"), log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()
    trials_before = {a: set(trial_dirs(e)) for a, e in exps.items()}
    saved = {p: p.read_bytes() for e in exps.values() for p in (e / "eval-runs").glob("*.json")}
    assert all(trials_before.values()) and len(saved) >= 2 + 1
    state = json.loads((root / "reproduce.json").read_text())
    assert state["searches"]["origin_net"]["done"] and "result" in state
    # 3. on a new machine that kept only the repository: each reproduction carried as an archive of its finished
    # stages (benchmarks.carry), restored where the same command finds it, and continued from there
    from benchmarks.carry import main as carry

    for report in nets:
        assert carry(["save", str(tmp_path / f"reproduce-{report}"), "--to", str(tmp_path / "carried")]) == 0
        os.rename(tmp_path / f"reproduce-{report}", tmp_path / f"old-machine-{report}")
        assert carry(["restore", str(tmp_path / "carried" / f"reproduce-{report}.tar.gz"), "--storage",
                      str(tmp_path)]) == 0
    assert not list(tmp_path.glob("reproduce-*/*/*/checkpoint_*"))  # checkpoints stay behind: never read again

    second = run_cli(args, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:]
    for arch in nets.values():
        assert f"search {arch}: finished earlier, kept" in second.stdout
    assert second.stdout.count("evaluate: 2 of 2 runs finished earlier, kept") >= 1
    assert {a: set(trial_dirs(e)) for a, e in exps.items()} == trials_before  # no trial added or re-run
    for path, blob in saved.items():  # a finished final run is never retrained (nor scored on the test split again)
        assert path.read_bytes() == blob
    records = {r: json.loads((tmp_path / f"reproduce-{r}" / "reproduce.json").read_text()) for r in nets}
    tables = {r: (tmp_path / f"reproduce-{r}" / "reproduce.md").read_text() for r in nets}
    result = {}
    for report, arch in nets.items():
        (net,) = records[report]["result"]["nets"]
        result[report] = net
        assert net["arch"] == arch and net["seeds"] == [0, 1] and len(net["per_seed"]) == 2
        assert net["ci95"] is not None and net["mean"] == pytest.approx(sum(net["per_seed"]) / 2)
        assert 0 < net["search_epochs"] <= net["search_epoch_budget"] and net["final_epochs"] == 2 * 1
        assert "data_dir" not in net["config"]
        # the fair protocol: every final run saw exactly --train-images images, each config one scoring of the test
        assert net["train_images"] == 200 and net["config"]["subset"] == 200
        assert net["verdict"] in ("beats", "matches", "misses") and net["test_split_use"] == [1]
        assert f"| {arch} | {net['metric']} |" in tables[report] and f"| {net['verdict']} | 200 |" in tables[report]
        # how the search ran, as the plan says and as it really ran (--set subset=300 is a proxy of the search)
        plan_net = next(n for n in get_plan(report).nets if n.arch == arch)
        assert net["search_rule"] == plan_net.rule and net["search_images"] == 300
        assert f"- {arch}: searched on a proxy, the first 300 training images" in tables[report]
        assert (exps[arch] / "report" / "report.html").exists()
    net = result["report003"]
    assert net["metric"] == "weighted_f1" and net["report_epochs"] == 300 and net["published"] == 0.5521
    assert net["config"]["val_size"] == 0
    from trainables import ledger

    records3 = ledger.read_experiment(root / "origin_net")
    assert {r["seed"] for r in records3} == {0, 1} and {r["train_images"] for r in records3} == {200}
    assert len(ledger.uses(records3, "origin_net")) == 1
    assert records["report003"]["result"]["caveat"].startswith("offline copy: JPEG")
    assert "| origin_net | weighted_f1 |" in tables["report003"] and "0.5521" in tables["report003"]
    # 004: the final model's accuracy on a held-out validation split, as the report measured it, test beside it;
    # not searched (a fifth of 20 epochs cannot pay TPE's start-up), said below the table
    lozano = result["report004"]
    assert records["report004"]["result"]["train_on"] == "train" and lozano["metric"] == "val_accuracy"
    assert lozano["config"]["val_size"] == 100 and lozano["published"] == 0.7979
    assert lozano["search_rule"] == "own+defaults" and "- lozano_f: not searched" in tables["report004"]
    evaluation = json.loads((exps["lozano_f"] / "evaluation.json").read_text())["results"][0]
    assert lozano["per_seed"] == [r["val_accuracy"] for r in evaluation["runs"]]
    assert lozano["test_accuracy"]["values"] == [r["test_accuracy"] for r in evaluation["runs"]]
    assert lozano["published_test_accuracy"] == 0.79 and lozano["test_verdict"] in ("beats", "matches", "misses")
    assert "; test accuracy " in tables["report004"] and "(report: 0.7900, " in tables["report004"]
    assert "held-out validation split" in tables["report004"]
    # a finished search is kept only for the same plan: a changed budget or --max-concurrent is refused naming it,
    # never ignored (refused before any Ray or training, so this process can ask)
    from search.cli import main

    capsys.readouterr()
    changed = [a if a != "2" or args[i - 1] != "--num-samples" else "4" for i, a in enumerate(args)]
    assert main(changed) == 2
    one_line_error(capsys, "--num-samples 4", "was started with --num-samples 2")
    assert main([*args, "--max-concurrent", "1"]) == 2
    one_line_error(capsys, "--max-concurrent 1", "was started with --max-concurrent 0")
    # its final runs are kept only as they were made: other ones would score the test split again, never silently
    uses = {r: len(ledger.read_experiment(e)) for r, e in exps.items()}
    for more, named in ((["--train-images", "300"], "--train-images 300"), (["--train-images", "all"],
                        "--train-images all"), (["--repeats", "4", "--train-images", "150"], "--repeats 4 ")):
        assert main([*args, *more]) == 2
        one_line_error(capsys, named, "made with --repeats 2 --final-epochs 1 --train-images 200", "new --name")
    assert {r: len(ledger.read_experiment(e)) for r, e in exps.items()} == uses
    assert json.loads((root / "reproduce.json").read_text()) == records["report003"]  # a refusal records nothing
    # Its records for docs/results (benchmarks.record_reproduction): reproduce.json as written, and every search
    # trial with its per-epoch validation accuracy; an older record marked superseded; each refusal writes nothing
    from benchmarks.record_reproduction import main as record

    results = tmp_path / "results"
    results.mkdir()
    (results / "old.json").write_text(json.dumps({"report": "report003"}))
    assert record([str(root), "--as", "new", "--supersedes", "old", "--why", "a fairer protocol",
                   "--results", str(results)]) == 0
    assert json.loads((results / "new.json").read_text()) == records["report003"]
    trials = json.loads((results / "new-trials.json").read_text())
    assert sorted(t["trial_id"] for t in trials["trials"]) == sorted(trials_before["origin_net"])
    assert all(len(t["val_accuracy"]) == t["epochs"] >= 1 and t["net"] == "origin_net" for t in trials["trials"])
    assert "(git " in trials["code"] or trials["code"] == records["report003"]["result"]["environment"]["cifar_tune"]
    assert json.loads((results / "old.json").read_text()) == {"report": "report003", "superseded_by": "new.json",
                                                               "why": "a fairer protocol"}
    capsys.readouterr()
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "reproduce.json").write_text(json.dumps({k: v for k, v in records["report003"].items()
                                                           if k != "result"}))
    (results / "corrupt.json").write_text('{"report": "rep')  # an older record cut short
    lost = tmp_path / "lost"  # a finished reproduction whose net's experiment is gone
    lost.mkdir()
    (lost / "reproduce.json").write_text(json.dumps(
        {**records["report003"], "searches": {"origin_net": {"experiment": str(tmp_path / "gone"), "done": True}}}))
    before = sorted(p.name for p in results.iterdir())
    for argv, words in (([str(root), "--as", "new"], "--as new: docs/results already has that record"),
                        ([str(root), "--as", "newer", "--supersedes", "old", "--why", "x"], "already superseded"),
                        ([str(root), "--as", "newer", "--supersedes", "gone", "--why", "x"], "no such record"),
                        ([str(root), "--as", "newer", "--supersedes", "corrupt", "--why", "x"], "is unreadable"),
                        ([str(lost), "--as", "newer"], "no experiment directory at"),
                        ([str(unfinished), "--as", "newer"], "has not finished")):
        assert record([*argv, "--results", str(results)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, err
    assert sorted(p.name for p in results.iterdir()) == before


@pytest.mark.parametrize("report", list_plans())
def test_every_plans_record_and_table_say_how_its_nets_ran(report, tmp_path, monkeypatch):
    """The record and table of each plan, from the job the command builds (the same flags as the end-to-end test
    above) and an evaluation of the shape analysis.evaluate returns, without training: the number to beat, what
    ours is (001: from scratch), how each search ran (not searched where a fifth of the report's epochs cannot pay
    TPE; a proxy where the plan searches on fewer images, 002's recorded in the plan even where --set replaced it)."""
    from analysis.stats import mean_ci
    from search import reproduce
    from search.reproduce_tables import markdown_table
    from trainables.experiment import SPEC_FILE

    subset = {"subset": 300} if report != "report002" else {}  # 002: the plan's own proxy, not a --set one
    job = reproduce._job(report, storage=str(tmp_path), name="", repeats=2, fixed={"val_size": 100, **subset},
                         archs=None, num_samples=2, max_epochs=1, final_epochs=None, train_images=200,
                         max_concurrent=0)
    plan = get_plan(report)
    assert [n.arch for n in job.nets] == [n.arch for n in plan.nets]
    monkeypatch.setattr("analysis.load.load_trials", lambda exp: [])  # no trials: no rung agreement to measure
    evaluations = {}
    for i, net in enumerate(job.nets):
        spec = job.specs[net.arch]
        (job.root / net.arch).mkdir(parents=True)
        (job.root / net.arch / SPEC_FILE).write_text(json.dumps({"spec": spec.to_dict(), "data": {"checksum": "x"}}))
        # the best config, retrained on --train-images images (the search's data dir is never part of the record)
        config = {**spec.fixed, **net.enqueue[0], "subset": 200, "epochs": 1, "data_dir": str(tmp_path)}
        runs = [{"seed": s, "epochs": 1, "test_accuracy": 0.5 + 0.01 * (s + i), "weighted_f1": 0.45 + 0.01 * s,
                 "val_accuracy": 0.55 + 0.01 * s} for s in (0, 1)]
        best = {"rank": 1, "trial_id": f"t{i}", "seeds": [0, 1], "runs": runs, "config": config, "train_images": 200,
                **{m: mean_ci([r[m] for r in runs]) for m in ("test_accuracy", "weighted_f1", "val_accuracy")}}
        evaluations[net.arch] = {"results": [best], "test_split": {"nets": {net.arch: {"this_evaluation": [1],
                                                                                        "uses": 1}}}}
    state = {"searches": {n.arch: {"done": True, "epochs": 2} for n in job.nets}, "commands": []}
    record = reproduce._record(job, state, evaluations)
    table = markdown_table(record)
    assert record["train_on"] == plan.train_on and record["report_train_images"] == plan.train_images
    for net, row in zip(plan.nets, record["nets"], strict=True):
        assert (row["arch"], row["metric"], row["published"]) == (net.arch, net.metric, net.published)
        runs = evaluations[net.arch]["results"][0]["runs"]
        assert row["verdict"] in ("beats", "matches", "misses") and row["per_seed"] == [r[net.metric] for r in runs]
        assert f"| {net.arch} | {net.metric} |" in table and f"{net.published:.4f}" in table
        assert row["search_rule"] == net.rule and row["ours_note"] == net.ours_note
        if net.ours_note:
            assert f", {net.ours_note}" in table
        not_searched = f"- {net.arch}: not searched" in table
        assert not_searched == (net.rule == "own+defaults")
        proxy = 300 if subset else net.search_subset
        assert row["search_images"] == (proxy or None)
        assert (f"- {net.arch}: searched on a proxy, the first {proxy:,} training images" in table) == bool(proxy)
        assert "data_dir" not in row["config"] and row["config"]["subset"] == 200
        # none of the configs tried first, nor the search's fixed values, is a pretrained net
        assert not any(p.get("pretrained") for p in (*net.enqueue, job.specs[net.arch].fixed))
        if net.published_test is not None:  # a metric other than test accuracy: the report's test number beside ours
            assert f"(report: {net.published_test:.4f}, " in table and row["test_verdict"] in ("beats", "matches",
                                                                                               "misses")
    if report == "report001":  # resnet18 from scratch, beside the report's fine-tuned number; not searched
        row = next(n for n in record["nets"] if n["arch"] == "resnet18")
        assert (row["ours_note"], row["search_rule"], row["published"]) == ("from scratch", "own+defaults", 0.8003)
        assert ", from scratch" in table and "- resnet18: not searched" in table
    if report == "report002":  # the plan's proxy: the search on the first 10,000 images, recorded in the plan
        row = next(n for n in record["nets"] if n["arch"] == "ghasemi_net")
        assert plan.to_dict()["nets"][0]["search_subset"] == 10_000  # what reproduce.json keeps as the plan
        assert row["search_images"] == 10_000 and row["published"] == 0.84 and plan.train_on == "trainval"
        assert "- ghasemi_net: searched on a proxy, the first 10,000 training images" in table


def test_a_proxy_is_the_searchs_alone_and_a_set_lifts_it(tmp_path):
    """ghasemi_net searches on its plan's 10,000-image proxy; ``--set subset=0`` (what a GPU pays) searches on all
    the data; the final runs train on the report's number of images either way (their subset is train_images)."""
    from search.reproduce import net_spec

    plan = get_plan("report002")
    (net,) = plan.nets
    assert net_spec(plan, net, tmp_path, {}).fixed["subset"] == net.search_subset == 10_000
    assert net_spec(plan, net, tmp_path, {"subset": 0}).fixed["subset"] == 0
    plan4 = get_plan("report004")  # 004 validates on the report's 10,000 held-out images, in the search too
    assert all(net_spec(plan4, n, tmp_path, {}).fixed == {"val_size": 10_000} for n in plan4.nets)
    assert plan4.train_on == "train" and plan4.train_images == 40_000


def test_list_prints_each_nets_epochs_and_eta_from_the_measured_speed(capsys):
    from search.cli import main
    from search.reproduce_plans import epoch_seconds, hms, measured_speeds, precision_speedups, trains_in_bf16

    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    speeds, source = measured_speeds()
    assert out.splitlines()[0] == source and "docs/benchmarks.md" in source and "Epoch time per net" in source
    assert speeds["ghasemi_net"] == 66 and speeds["resnet18"] == 629  # the fp32 CPU rows of that table
    for _, net in PLANS:
        line = next(line for line in out.splitlines() if f" {net.arch} " in line)
        assert f"budget {net.epoch_budget:>3} epochs" in line and "~" in line, line
    # ghasemi_net's final runs: 5 seeds x 20 epochs of 50,000 images at 66 images/s (fp32) times the bf16 A/B's
    # speed-up for it (its space fixes bf16 + channels_last), printed as h:mm:ss; modified_net's space does not
    faster = precision_speedups()
    assert faster["ghasemi_net"] > 1.5 and "precision_ab.json" in source
    assert trains_in_bf16("ghasemi_net", {}) and not trains_in_bf16("modified_net", {})
    assert not trains_in_bf16("ghasemi_net", {"amp": False})  # a --set wins
    seconds = 5 * 20 * epoch_seconds(66 * faster["ghasemi_net"], 50_000, 0)
    assert f"5 seeds x 20 epochs on 50,000 images of trainval: ~{hms(seconds)}" in out
    assert "resnet18" in out and "(from scratch)" in out and "proxy" in out
    cheapest = out.strip().splitlines()[-1]
    assert cheapest.startswith("cheapest first: ")
    order = re.findall(r"(\w+) ~(\d+:\d\d:\d\d)", cheapest)
    assert len(order) == len(PLANS) and order[-1][0] == "ghasemi_net"
    as_seconds = [int(h) * 3600 + int(m) * 60 + int(x) for _, t in order for h, m, x in [t.split(":")]]
    assert as_seconds == sorted(as_seconds)


@pytest.mark.parametrize("value", ["x", "0", "-2", "1.5"])
def test_a_bad_max_concurrent_is_one_line_before_anything_runs(value, tmp_path, capsys):
    from search.cli import main

    assert main(["reproduce", "report004", "--storage", str(tmp_path), "--max-concurrent", value]) == 2
    one_line_error(capsys, f"--max-concurrent {value!r}", "integer >= 1")
    assert not any(tmp_path.iterdir())  # nothing made


def test_several_reports_are_checked_before_any_starts(tmp_path, capsys):
    from search.cli import main

    for args, named in ((["report001", "report001"], "named twice"),
                        (["report001", "report004", "--name", "x"], "--name x"),
                        (["report001", "report004", "--archs", "resnet18,lozano_z"], "--archs lozano_z"),
                        (["report001", "report004", "--archs", "resnet18"], "no net of report004"),
                        (["report003", "--archs", "origin_net,origin_net"], "--archs: a net is listed twice"),
                        (["report001", "report9"], "unknown report 'report9'"),
                        # 0 is not "the plan's": it was taken as such and ran the whole plan
                        (["report001", "--num-samples", "0"], "--num-samples must be an integer >= 1, got 0"),
                        (["report001", "--max-epochs", "0"], "--max-epochs must be"),
                        (["report001", "--final-epochs", "0"], "--final-epochs must be"),
                        (["report001", "--name", "../x"], "'../x'")):  # it wrote beside --storage
        assert main(["reproduce", *args, "--storage", str(tmp_path)]) == 2
        one_line_error(capsys, named)
    assert not any(tmp_path.iterdir()) and not (tmp_path.parent / "x").exists()


def test_a_storage_that_is_a_file_or_a_url_is_one_line_before_anything(tmp_path, capsys):
    """As search refuses a --storage that is a file (its own check, on the reproduction's folder); a URL, which
    reproduce made into a local folder 's3:', too. Before either, a file in the way was a NotADirectoryError."""
    from search.cli import main

    taken = tmp_path / "file"
    taken.write_text("mine")
    for storage, named in ((taken, f"--storage {str(taken)!r} exists and is not a directory"),
                           ("s3://bucket/results", "--storage 's3://bucket/results'")):
        for more in ([], ["--list"]):
            assert main(["reproduce", "report003", "--storage", str(storage), *more]) == 2
            one_line_error(capsys, named)
    assert taken.read_text() == "mine" and [p.name for p in tmp_path.iterdir()] == ["file"]


def test_bad_data_is_refused_before_the_plan_is_printed_or_anything_written(tmp_path, capsys):
    """A data dir that is not there: one line, before the plan and the overall ETA, and no reproduce.json (it held
    the command and wall time of a search that never ran, and each attempt added to it)."""
    from search.cli import main

    storage = tmp_path / "results"
    for _ in range(2):
        assert main(["reproduce", "report003", "--data-dir", str(tmp_path / "none"), "--storage", str(storage)]) == 2
        out = capsys.readouterr()
        assert out.out == "" and len(out.err.strip().splitlines()) == 1 and str(tmp_path / "none") in out.err
    assert not storage.exists()


def test_a_stage_refused_before_it_started_adds_no_wall_time(tmp_path):
    import threading

    from search.reproduce import STATE_FILE, _Clock
    from search.spec import SpecError
    from trainables.data import DataError

    state = {"wall_seconds": {"origin_net": {"search": 5.0}}}
    for key, error in (("search", SpecError("refused")), ("evaluate", DataError("no data"))):
        with pytest.raises(type(error)):
            with _Clock(tmp_path, state, ("origin_net", key), threading.Lock(), every=0.01):
                threading.Event().wait(0.05)  # a few saves while the stage checked its inputs
                raise error
        assert state["wall_seconds"] == {"origin_net": {"search": 5.0}}
        assert json.loads((tmp_path / STATE_FILE).read_text()) == state
    with pytest.raises(RuntimeError):  # a stage that failed while it ran: its time counts
        with _Clock(tmp_path, state, ("origin_net", "search"), threading.Lock()):
            raise RuntimeError("a trial crashed")
    assert state["wall_seconds"]["origin_net"]["search"] > 5.0


def _started(storage, *, final: dict | None = None, saved_run: dict | None = None, in_flight: bool = False,
             done: bool = True, result: dict | None = None, **options):
    """A reproduction of report003's origin_net as ``reproduce report003 --archs origin_net`` with ``options``
    (run_reproductions's) leaves it, without Ray: the search's spec.json (finished with ``done``); ``final``: the
    final-run options recorded, ``saved_run``: the config of one final run saved, ``in_flight``: one stopped mid-way,
    ``result``: the net's row of a finished record."""
    from analysis.evaluate import RUNS_DIR
    from trainables.experiment import SPEC_FILE

    job = _a_job(storage, **options)
    exp = job.root / "origin_net"
    exp.mkdir(parents=True)
    (exp / SPEC_FILE).write_text(json.dumps({"spec": job.specs["origin_net"].to_dict()}))
    state = {"report": "report003", "searches": {"origin_net": {"done": True, "epochs": 4}} if done else {},
             **({"final_runs": {"origin_net": final}} if final else {}),
             **({"result": {"nets": [{"arch": "origin_net", **result}]}} if result else {})}
    (job.root / "reproduce.json").write_text(json.dumps(state))
    if saved_run is not None:
        (exp / RUNS_DIR).mkdir()
        (exp / RUNS_DIR / "origin_net-s0-0123456789abcdef.json").write_text(json.dumps({"config": saved_run,
                                                                                        "result": {}}))
    if in_flight:
        (exp / RUNS_DIR / "checkpoint_origin_net-s1-0123456789abcdef").mkdir(parents=True)
    return job, state


def _a_job(storage, report="report003", archs=("origin_net",), **options):
    """The job ``reproduce REPORT`` builds from ``options`` (run_reproductions's)."""
    from search import reproduce

    given = {"name": "", "repeats": None, "fixed": {}, "num_samples": None, "max_epochs": None, "final_epochs": None,
             "train_images": None, "max_concurrent": 0}
    return reproduce._job(report, storage=str(storage), archs=list(archs or []), **{**given, **options})


SMALL = {"num_samples": 2, "max_epochs": 2, "fixed": {"val_size": 100}}
SMALL_ARGS = ["reproduce", "report003", "--archs", "origin_net", "--num-samples", "2", "--max-epochs", "2", "--set",
              "val_size=100"]


@pytest.mark.parametrize("kept", ["recorded", "in-flight", "saved-run-only", "result-only"])
def test_final_runs_are_kept_only_for_the_options_they_were_made_with(kept, tmp_path, capsys):
    """Other final runs of a net that has some (finished or in flight) would score the test split again: refused in
    one line naming what they were made with, before anything runs or is written. They were retrained and scored
    (rc 0) for a changed --train-images, --train-images all, --repeats. The same options pass."""
    from search import reproduce
    from search.cli import main

    made = {"repeats": 2, "epochs": 1, "train_images": 200}
    run = {"arch": "origin_net", "epochs": 1, "subset": 200, "seed": 0, "val_size": 0}
    # recorded when they start; a record written before that kept them in its result or its saved runs' configs
    legacy = {"repeats": 2, "final_epochs_per_run": 1, "config": run, "train_images": 200}
    job, state = _started(tmp_path, final=made if kept in ("recorded", "in-flight") else None,
                          saved_run=None if kept == "in-flight" else run, in_flight=kept == "in-flight",
                          result=legacy if kept == "result-only" else None, repeats=2, final_epochs=1,
                          train_images=200, **SMALL)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    was = ("made with --final-epochs 1 --train-images 200" if kept == "saved-run-only"  # written before final_runs
           else "made with --repeats 2 --final-epochs 1 --train-images 200")
    without_final_epochs = [*SMALL_ARGS, "--storage", str(tmp_path), "--repeats", "2", "--train-images", "200"]
    base = [*without_final_epochs, "--final-epochs", "1"]
    changes = [(["--train-images", "300"], "--train-images 300:"), (["--train-images", "all"], "--train-images all:"),
               (["--final-epochs", "3"], "--final-epochs 3:")]
    if kept != "saved-run-only":
        changes.append((["--repeats", "4", "--train-images", "150"], "--repeats 4 --train-images 150:"))
    for more, named in changes:
        assert main([*base, *more]) == 2
        one_line_error(capsys, named, was, str(job.root), "test split", "new --name")
    # left out, --final-epochs is the plan's (50): also other final runs, said so
    assert main(without_final_epochs) == 2
    one_line_error(capsys, "--final-epochs 50 (left out: the plan's)", was)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before  # nothing written
    reproduce._check_continued(job, state)  # the same options: continued (runs not made yet are made)
    # a reproduction whose final runs have not started is free to choose them
    _, state = _started(tmp_path / "fresh", final=made, repeats=2, final_epochs=1, train_images=200, **SMALL)
    reproduce._check_continued(_a_job(tmp_path / "fresh", repeats=3, train_images=300, **SMALL), state)


@pytest.mark.parametrize("done", [True, False])
def test_a_search_started_with_num_samples_asks_for_it_again_not_to_leave_it_out(done, tmp_path, capsys):
    """Left out, reproduce's --num-samples is the plan's: "leave the option out" (search's advice) asked for the
    wrong value. The message names what this command asked for and the value to give again."""
    from search.cli import main

    job, _ = _started(tmp_path, done=done, **SMALL)
    exp = str(job.root / "origin_net")
    args = ["reproduce", "report003", "--archs", "origin_net", "--storage", str(tmp_path), "--set", "val_size=100"]
    assert main([*args, "--max-epochs", "2"]) == 2
    one_line_error(capsys, "--num-samples left out (the plan's 12)", exp, "was started with --num-samples 2",
                   "give --num-samples 2 again")
    assert main([*args, "--max-epochs", "2", "--num-samples", "12"]) == 2
    one_line_error(capsys, "--num-samples 12:", "give --num-samples 2 again")
    assert main([*args, "--num-samples", "2"]) == 2
    one_line_error(capsys, "--max-epochs left out (the plan's 20)", "give --max-epochs 2 again")


def test_max_epochs_bounds_the_search_alone(tmp_path, capsys):
    """--final-epochs says "default: the plan's"; --max-epochs N made the final runs N epochs too."""
    from search.cli import main

    job = _a_job(tmp_path, archs=None, max_epochs=3)
    assert [job.specs[n.arch].max_epochs for n in job.nets] == [3, 3]
    assert job.epochs == {"modified_net": 50, "origin_net": 50}
    assert _a_job(tmp_path, archs=None, max_epochs=3, final_epochs=2).epochs == {"modified_net": 2, "origin_net": 2}
    assert main(["reproduce", "report003", "--list", "--max-epochs", "3"]) == 0
    out = capsys.readouterr().out
    assert "x <=  3 epochs" in out and "5 seeds x 50 epochs" in out and "x 3 epochs" not in out


def test_list_shows_the_plan_with_the_options_given_checked_as_a_run(tmp_path, capsys):
    """--list is the estimate before a run: it ignored every option but --set, and accepted what a run refuses."""
    from search.cli import main

    assert main(["reproduce", "report003", "--list", "--repeats", "2", "--num-samples", "3", "--max-epochs", "4",
                 "--final-epochs", "2", "--train-images", "1000", "--archs", "origin_net"]) == 0
    out = capsys.readouterr().out
    assert "modified_net" not in out and "report003 origin_net" in out
    assert "search  3 trials x <=  4 epochs" in out and "final  2 seeds x 2 epochs on 1,000 images" in out
    assert main(["reproduce", "--list", "--archs", "lozano_f"]) == 0  # no report named: those that have the net
    out = capsys.readouterr().out
    assert "report004 lozano_f" in out and "lozano_c" not in out and "report003" not in out
    for more, named in ((["--archs", "nope"], "--archs nope"), (["--repeats", "0"], "--repeats must be"),
                        (["--archs", "origin_net,origin_net"], "listed twice"),
                        (["--final-epochs", "0"], "--final-epochs must be")):
        assert main(["reproduce", "report003", "--list", *more]) == 2
        one_line_error(capsys, named)


def test_more_train_images_than_the_split_holds_is_refused_before_the_searches(tmp_path, capsys, cifar_path):
    from search.cli import main

    assert main(["reproduce", "report001", "--train-images", "99999999", "--data-dir", str(cifar_path),
                 "--storage", str(tmp_path)]) == 2
    one_line_error(capsys, "--train-images 99999999", "images")
    assert not any(tmp_path.iterdir())


def test_resnet18_loads_a_saved_state_dict_as_pretrained_without_the_network(tmp_path, monkeypatch):
    """The pretrained path on a machine without network: a state dict saved on a connected machine, named by
    $CIFAR_TUNE_RESNET18_WEIGHTS, is what "pretrained" loads (here one the test saves itself); a wrong file is one
    error naming it."""
    import socket

    import torch
    import torchvision

    from trainables.models import create_model
    from trainables.models.report001 import WEIGHTS_ENV

    def no_network(*_a, **_k):
        raise AssertionError("the network was used")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(torchvision.models.ResNet18_Weights, "get_state_dict", no_network)
    torch.manual_seed(1)
    saved = torchvision.models.resnet18(weights=None).state_dict()  # a 1000-way head, as torchvision's file has
    saved = {k: v + 0.01 + torch.rand_like(v) if v.is_floating_point() else v for k, v in saved.items()}  # not an init
    torch.save(saved, tmp_path / "resnet18-imagenet.pt")
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "resnet18-imagenet.pt"))
    model = create_model("resnet18", pretrained=True, freeze=2)
    fresh = create_model("resnet18")
    for key in ("conv1.weight", "layer3.0.conv1.weight", "layer4.1.bn2.running_var"):
        assert torch.equal(model.state_dict()[key], saved[key]) and not torch.equal(fresh.state_dict()[key], saved[key])
    assert model.fc.out_features == 10 and not model.layer1[0].conv1.weight.requires_grad
    # a file that is not ResNet-18's weights, and one that is missing: one error naming the variable and the file
    torch.save({k: v for k, v in saved.items() if not k.startswith("layer4.")}, tmp_path / "cut.pt")
    for name, why in (("cut.pt", "not a torchvision ResNet-18 state dict"), ("none.pt", "cannot be read")):
        monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / name))
        with pytest.raises(RuntimeError, match=f"{WEIGHTS_ENV}=.*{name}.*{why}"):
            create_model("resnet18", pretrained=True)
