"""A tiny real multi-objective search end to end (embedded Ray, 200 images): MO-ASHA stops, Optuna states with two
values, the Pareto front in report --json and report.html, hypervolume, evaluate --pareto; and bad --objectives."""
from __future__ import annotations

import json
import math

import optuna
import pytest

from tests.searchrun import kill_session, one_line_error, report, run_cli, saved_trials, start_cli, wait_for
from trainables.objectives import dominates, to_loss

ARCH = "origin_net"
NUM_SAMPLES = 4
OBJECTIVES = [("val_accuracy", "max"), ("params", "min")]
COMMON = ["--data-dir", None, "--set", "subset=200", "--set", "val_size=100", "--set", "latency_batch=8",
          "--set", "optimizer=adam", "--set", "lr=0.003"]


def common(cifar_path):
    return [str(cifar_path) if a is None else a for a in COMMON]


@pytest.fixture(scope="module")
def experiment(cifar_path, tmp_path_factory):
    storage = tmp_path_factory.mktemp("results")
    out = run_cli(["search", "--arch", ARCH, "--objectives", "val_accuracy:max,params:min",
                   "--num-samples", NUM_SAMPLES, "--max-epochs", 2, "--reduction-factor", 2, "--seed", 1,
                   *common(cifar_path), "--storage", storage, "--name", "mo"], timeout=1200)  # slow Ray starts under load
    assert out.returncode == 0, out.stdout[-4000:]
    return storage / "mo"


@pytest.fixture(scope="module")
def reported(experiment):
    """``cifar-tune report EXP --json``, in this process (a report starts no Ray)."""
    import contextlib
    import io

    from search.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["report", str(experiment), "--json"])
    assert code == 0, out.getvalue()[-3000:]
    return json.loads(out.getvalue().strip().splitlines()[-1])


def test_every_trial_reports_the_objectives_and_searches_size(reported):
    trials = reported["trials"]
    assert len(trials) == NUM_SAMPLES and all(t["status"] in ("completed", "stopped") for t in trials)
    for t in trials:
        assert t["params"] > 0 and t["size_mb"] > 0 and t["inference_latency_ms"] > 0
        assert t["inference_images_per_s"] > 0 and t["inference_batch"] == 8
        assert {"width", "kernel", "pool"} <= set(t["config"])  # spaces/size/origin_net.yaml was used
    assert len({t["params"] for t in trials}) > 1  # the nets differ in size


def test_moasha_stops_and_optuna_records_values_and_pruned_trials(experiment, reported):
    trials = {t["trial_id"]: t for t in reported["trials"]}
    state = json.loads((experiment / "moasha_state.json").read_text())
    assert state["objectives"] == [list(o) for o in OBJECTIVES]
    at_rung_1 = {d["trial_id"] for d in state["decisions"] if d["rung"] == 1}
    assert at_rung_1 == set(trials)  # every trial was ranked at the first rung
    stopped = {i for i, t in trials.items() if t["status"] == "stopped"}
    assert stopped and stopped == {s["trial_id"] for s in state["stops"]}
    for d in state["decisions"]:  # each decision is what its ranking said
        assert d["kept"] == (d["place"] <= d["keep"]) and d["keep"] == math.ceil(d["population"] / 2)
    study = optuna.load_study(study_name=f"mo-{ARCH}", storage=f"sqlite:///{experiment}/optuna.db")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert len(study.trials) == NUM_SAMPLES
    for ot in study.trials:
        t = trials[ot.user_attrs["tune_trial_id"]]
        if t["status"] == "completed":
            assert ot.state == optuna.trial.TrialState.COMPLETE
            assert ot.values == pytest.approx([t["val_accuracy"], t["params"]])
        else:
            assert ot.state == optuna.trial.TrialState.PRUNED and ot.values is None
            assert ot.user_attrs["last_values"]["params"] == t["params"]


def test_pareto_front_is_the_non_dominated_completed_trials(reported):
    completed = [t for t in reported["trials"] if t["status"] == "completed"]
    front_ids = {m["trial_id"] for m in reported["pareto"]}
    assert front_ids and front_ids <= {t["trial_id"] for t in completed}
    loss = {t["trial_id"]: to_loss([t["val_accuracy"], t["params"]], ["max", "min"]) for t in completed}
    for t in completed:
        dominated = any(dominates(loss[o], loss[t["trial_id"]]) for o in loss if o != t["trial_id"])
        assert (t["trial_id"] in front_ids) == (not dominated)
    for m in reported["pareto"]:
        assert m["config"]["arch"] == ARCH and m["size_mb"] > 0 and m["inference_latency_ms"] > 0
    history = reported["hypervolume"]["history"]
    assert [h["completed"] for h in history] == list(range(1, len(completed) + 1))
    volumes = [h["hypervolume"] for h in history]
    assert all(b >= a for a, b in zip(volumes, volumes[1:])) and volumes[-1] == reported["hypervolume"]["final"] > 0


def test_report_html_shows_the_front_and_the_hypervolume(experiment, reported):
    from search.cli import main

    assert main(["report", str(experiment)]) == 0
    page = (experiment / "report" / "report.html").read_text()
    assert "Pareto front of the completed trials" in page and "Hypervolume" in page
    assert all(m["trial_id"] in page for m in reported["pareto"])
    assert (experiment / "report" / "pareto.csv").exists()


def test_front_members_are_evaluated_on_the_test_split(experiment, reported, capsys):
    """In this process (the evaluation starts a Ray of its own and shuts it down)."""
    import ray

    from search.cli import main

    assert main(["evaluate", str(experiment), "--pareto", "--repeats", "1", "--epochs", "1", "--json"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["pareto"] is True
    assert {r["trial_id"] for r in record["results"]} == {m["trial_id"] for m in reported["pareto"]}
    assert all(0 <= r["test_accuracy"]["mean"] <= 1 for r in record["results"])
    assert not ray.is_initialized()
    # One member picked by id: the same config, seed and epochs, so its saved run is taken, not retrained.
    picked = record["results"][0]
    assert main(["evaluate", str(experiment), "--trials", picked["trial_id"], "--repeats", "1", "--epochs", "1",
                 "--json"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["trial_id"] for r in again["results"]] == [picked["trial_id"]]
    assert again["results"][0]["test_accuracy"] == picked["test_accuracy"]
    assert not ray.is_initialized()
    assert main(["evaluate", str(experiment), "--trials", f"{picked['trial_id']},nope"]) == 2
    one_line_error(capsys, "--trials nope")


@pytest.mark.parametrize("args, named", [
    (["--objectives", "val_accuracy:max,flops:min"], "'flops'"),
    (["--objectives", "val_accuracy:best,params:min"], "'best'"),
    (["--objectives", "params:min"], "at least two"),
    (["--objectives", "val_accuracy,inference_latency_ms", "--set", "latency_batch=0"], "latency_batch=0"),
    (["--objectives", "val_accuracy,params", "--sampler", "cmaes"], "--sampler"),
])
def test_bad_objectives_are_refused_before_ray(args, named, tmp_path, capsys):
    import ray

    from search.cli import main

    assert main(["search", "--arch", ARCH, *args, "--storage", str(tmp_path), "--name", "bad"]) == 2
    captured = capsys.readouterr()
    lines = [ln for ln in (captured.out + captured.err).splitlines() if ln.strip()]
    assert len(lines) == 1 and named in lines[0], captured
    assert not (tmp_path / "bad").exists() and not ray.is_initialized()


def test_nsga2_generation_size_follows_the_budget():
    from search.searcher import make_sampler, nsga2_population

    assert [nsga2_population(n) for n in (3, 16, 64, 1000)] == [4, 4, 16, 50]
    assert isinstance(make_sampler("nsga2", 0, 8), optuna.samplers.NSGAIISampler)


@pytest.mark.slow
def test_moasha_records_and_stops_survive_a_driver_kill(cifar_path, tmp_path):
    """SIGKILL the driver once MO-ASHA has stopped a trial, resume: the rung records made before the kill are all
    there afterwards, unchanged, every stop stands (the trial ended at that rung), and Optuna has one trial per
    Tune trial in the state the trial ended in. The study is NSGA-II's, on objectives given without directions
    (val_accuracy is maximised, size_mb minimised by default)."""
    storage, name = tmp_path / "results", "mokill"
    exp = storage / name
    args = ["search", "--arch", ARCH, "--objectives", "val_accuracy,size_mb", "--sampler", "nsga2",
            "--num-samples", 6, "--max-epochs", 4, "--reduction-factor", 2, "--max-concurrent", 2, *common(cifar_path),
            "--storage", storage, "--name", name]
    log = tmp_path / "first.log"
    proc = start_cli(args, log)

    def stopped_one():
        path = exp / "moasha_state.json"
        try:
            state = json.loads(path.read_text()) if path.exists() else {}
        except ValueError:  # being replaced: look again
            return None
        return state.get("stops") and saved_trials(exp) and state

    wait_for(stopped_one, 400, proc, log, "a MO-ASHA stop", interval=0.05)
    kill_session(proc)
    before = json.loads((exp / "moasha_state.json").read_text())
    resumed = run_cli(["search", "--resume", "--name", name, "--storage", storage], timeout=1200)
    assert resumed.returncode == 0, resumed.stdout[-4000:]
    after = json.loads((exp / "moasha_state.json").read_text())
    decided = {(d["trial_id"], d["rung"]): d for d in after["decisions"]}
    for d in before["decisions"]:
        assert decided[(d["trial_id"], d["rung"])] == d  # made once, never re-made after the resume
    trials = {t["trial_id"]: t for t in report(exp)}
    assert len(trials) == 6 and all(t["status"] in ("completed", "stopped") for t in trials.values())
    before_stops = {s["trial_id"] for s in before["stops"]}
    for s in after["stops"]:
        if s["trial_id"] in trials:
            assert trials[s["trial_id"]]["status"] == "stopped" and trials[s["trial_id"]]["epochs"] == s["epoch"]
        else:  # stopped, then the driver died before Tune saved the trial at all: the record of it stays, and
            # so does its Optuna trial, listed as lost (checked below)
            assert s["trial_id"] in before_stops
    assert {s["trial_id"] for s in before["stops"]} <= {s["trial_id"] for s in after["stops"]}
    from search.searcher import LOST_ATTR

    study = optuna.load_study(study_name=f"{name}-{ARCH}", storage=f"sqlite:///{exp}/optuna.db")
    # One Optuna trial per Tune trial, plus one per trial Tune lost (stopped before the kill, never saved by Tune).
    lost = set(study.user_attrs.get(LOST_ATTR, []))
    assert lost <= before_stops - set(trials), (lost, before_stops)
    assert sorted(o.user_attrs["tune_trial_id"] for o in study.trials) == sorted([*trials, *lost])
    for o in study.trials:
        if o.user_attrs["tune_trial_id"] in lost:
            assert o.state.name == "PRUNED"
            continue
        expected = "COMPLETE" if trials[o.user_attrs["tune_trial_id"]]["status"] == "completed" else "PRUNED"
        assert o.state.name == expected
        assert len(o.values) == 2 if expected == "COMPLETE" else o.values is None
    spec = json.loads((exp / "spec.json").read_text())["spec"]
    assert spec["sampler"] == "nsga2" and spec["objectives"] == [["val_accuracy", "max"], ["size_mb", "min"]]


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "random"])
def test_multi_objective_samplers_keep_sampling_past_their_start_with_pruned_trials(sampler):
    """No Ray cluster: the searcher alone, 24 trials, every third stopped early (PRUNED without values). TPE leaves
    its 5 random start-up trials and NSGA-II its first generations (6 trials each) behind without tripping over
    the pruned ones, and every trial ends in the study in the state its status says."""
    from search.searcher import MultiArchSearcher
    from search.tuner import size_space_file
    from spaces import load_space

    space = load_space(ARCH, size_space_file(ARCH))
    searcher = MultiArchSearcher({ARCH: space.define_by_run}, 24, {}, storage=None, study_prefix="unit",
                                 sampler=sampler, seed=0, objectives=OBJECTIVES)
    for i in range(24):
        config = searcher.suggest(f"t{i}")
        assert config["arch"] == ARCH and "width" in config
        status = "running" if i % 3 == 2 else "completed"  # "running" at the end = stopped by the scheduler
        result = {"epoch": 1 if status == "running" else 2, "val_accuracy": 0.3 + 0.02 * (i % 7),
                  "params": int(40_000 * config["width"] ** 2), "status": status}
        searcher.on_trial_result(f"t{i}", result)
        searcher.on_trial_complete(f"t{i}", result)
    from trainables.compat import searcher_study

    study = searcher_study(searcher.searchers[ARCH])
    states = [t.state.name for t in study.trials]
    assert states == ["PRUNED" if i % 3 == 2 else "COMPLETE" for i in range(24)]
    assert all(t.intermediate_values == {} for t in study.trials)  # nothing reported per epoch
    assert searcher.suggest("t24") == "FINISHED"


def test_an_experiment_pickled_with_the_dropped_mo_tpe_ranking_resumes_with_optunas_tpe():
    """Issue 22, build 2: ranking MO-ASHA's stopped trials for MO-TPE made no difference over 10 paired seeds (the
    anytime benchmark's size front), so ``tpe`` is Optuna's TPE. A searcher pickled before that holds an instance of
    the old class by name; it must unpickle (a resume) as Optuna's TPE, and tpe-plain (the comparison arm) must still
    build the same sampler, so experiments started with either resume."""
    import pickle

    from search.searcher import make_sampler

    old = pickle.dumps(optuna.samplers.TPESampler(seed=3), protocol=0)
    ref = b"coptuna.samplers._tpe.sampler\nTPESampler\n"
    assert ref in old  # how protocol 0 names a class: the old pickles named ours the same way
    sampler = pickle.loads(old.replace(ref, b"csearch.searcher\nStoppedTrialTPESampler\n"))
    assert type(sampler) is optuna.samplers.TPESampler
    dist = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    draws = []
    for kind in ("tpe", "tpe-plain"):
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler(kind, seed=0))
        for _ in range(8):
            trial = study.ask(dist)
            study.tell(trial, [trial.params["x"], 1.0 - trial.params["x"]])
        draws.append([t.params["x"] for t in study.trials])
    assert draws[0] == draws[1]
