"""The benchmark scripts run (in --smoke mode: tiny sizes, no doc update). Their numbers live in docs/, not here."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from benchmarks.common import REPO


# hpo_efficiency: tests/test_anytime.py; the others: the GPU suite's smoke
@pytest.mark.parametrize("script", ["ray_overhead"])
def test_benchmark_smoke(script, cifar_path):
    doc = REPO / "docs" / "benchmarks.md"
    before = doc.read_text() if doc.exists() else None
    out = subprocess.run([sys.executable, "-m", f"benchmarks.{script}", "--smoke", "--data-dir", str(cifar_path)],
                         capture_output=True, text=True, timeout=600, cwd=REPO,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| " in out.stdout and "device:" in out.stdout
    assert (doc.read_text() if doc.exists() else None) == before  # smoke runs never overwrite measured numbers


def test_gpu_suite_smoke(cifar_path, tmp_path):
    """The one-call GPU suite in its CPU smoke mode: every benchmark step and the reproduction step's plan, each
    step's table and log land under --out, and docs/benchmarks.md is left as it was."""
    doc = REPO / "docs" / "benchmarks.md"
    before = doc.read_text() if doc.exists() else None
    out = subprocess.run([sys.executable, "-m", "benchmarks.gpu_suite", "--smoke", "--data-dir", str(cifar_path),
                          "--out", str(tmp_path / "suite"), "--budget", "1200"],
                         capture_output=True, text=True, timeout=1500, cwd=REPO,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    record = json.loads((tmp_path / "suite" / "gpu_suite.json").read_text())
    steps = {s["step"]: s for s in record["steps"]}
    assert set(steps) == {"loader", "epoch_times", "packing", "speedups", "reproduce-report003"}
    for name in ("loader", "epoch_times", "packing", "speedups"):
        assert steps[name]["exit"] == 0 and "| " in steps[name]["tail"] and "device:" in steps[name]["tail"], name
    # the reproduction step's command, as the GPU runs it, minus the training: its plan and ETA (--list)
    assert steps["reproduce-report003"]["exit"] == 0 and "cheapest first" in steps["reproduce-report003"]["tail"]
    assert (doc.read_text() if doc.exists() else None) == before


def test_size_front_smoke_runs_and_continues(cifar_path, tmp_path, capsys):
    """Issue 11's full-scale comparison in smoke mode: MO-TPE and random searches at one epoch budget, hypervolume at
    a common reference point, the joint front, a front member's test run; run again, it keeps all of it (so the
    rerun and the refusal below run in this process: nothing to train, no Ray)."""
    import ray

    from benchmarks import size_front

    args = ["--smoke", "--data-dir", str(cifar_path), "--storage", str(tmp_path)]
    cmd = [sys.executable, "-m", "benchmarks.size_front", *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, cwd=REPO, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    record = json.loads((tmp_path / "size_front.json").read_text())
    rows = record["summary"]["searches"]
    assert sorted(r["sampler"] for r in rows) == ["random", "tpe"]
    assert all(r["epochs"] <= record["settings"]["epoch_budget"] for r in rows)  # MO-ASHA kept to the budget
    assert len({tuple(r["reference"]) for r in rows}) == 1 and all(r["hypervolume"] > 0 for r in rows)
    # equal fidelity: every trial that trained to the first rung counts there, stopped ones too
    assert all(r["at_first_rung"]["epoch"] == 1 and r["at_first_rung"]["trials"] >= r["completed"] for r in rows)
    (pick,) = record["summary"]["targets"]
    assert pick["member"]["trial_id"] and 0 <= pick["test"]["test_accuracy"]["mean"] <= 1
    capsys.readouterr()
    assert size_front.main(args) == 0
    again = capsys.readouterr().out
    assert again.count(": finished earlier, kept") == 2 and "1 of 1 runs finished earlier" in again, again[-3000:]
    assert json.loads((tmp_path / "size_front.json").read_text())["summary"]["targets"][0]["test"] == pick["test"]
    assert record["settings"]["rung_ranking"] == "hypervolume"  # the default, kept by the rerun
    assert not ray.is_initialized()
    # The storage's searches were ranked one way: asking for the other is one line, before anything runs.
    with pytest.raises(SystemExit) as refused:
        size_front.main(args + ["--rung-ranking", "crowding"])
    err = capsys.readouterr().err
    assert refused.value.code == 2 and "ranked by hypervolume" in err.strip().splitlines()[-1], err


def test_gpu_suite_runs_every_reproduce_plan_at_its_full_budget(tmp_path):
    """Every plan of `cifar-tune reproduce` is a step of the suite, at the plan's own budget (no --num-samples,
    --max-epochs or --repeats cut), with the CPU compromises lifted where a plan made them (a proxy search, fewer
    seeds); the smoke mode stays one toy reproduction; an unknown --reproductions is one line, nothing run."""
    from benchmarks import gpu_suite
    from search.reproduce import get_plan, list_plans

    full = dict(gpu_suite.reproduction_commands("DATA", tmp_path, smoke=False))
    assert list(full) == [f"reproduce-{r}" for r in gpu_suite.REPRODUCTIONS]
    assert set(gpu_suite.REPRODUCTIONS) == set(list_plans())
    for report in list_plans():
        cmd = full[f"reproduce-{report}"]
        assert cmd[:5] == ["-m", "search.cli", "reproduce", report, "--data-dir"]
        assert not {"--num-samples", "--max-epochs", "--archs", "--final-epochs"} & set(cmd)
        plan = get_plan(report)
        if any(n.search_subset for n in plan.nets):
            assert "subset=0" in cmd  # the search on all the training images, not the CPU's proxy
        if any(plan.seeds(n) < 5 for n in plan.nets):
            assert cmd[cmd.index("--repeats") + 1] == "5"
        else:
            assert "--repeats" not in cmd
    smoke = gpu_suite.reproduction_commands("DATA", tmp_path, smoke=True)
    assert [name for name, _ in smoke] == ["reproduce-report003"]
    chosen = gpu_suite.reproduction_commands("DATA", tmp_path, False, ["report002"])
    assert [name for name, _ in chosen] == ["reproduce-report002"]
    assert gpu_suite.main(["--out", str(tmp_path / "x"), "--reproductions", "report002,report9"]) == 2
    assert not (tmp_path / "x").exists()


def test_precision_ab_pairs_the_arms_by_seed_and_continues(cifar_path, tmp_path):
    """benchmarks/precision_ab.py shrunk: both arms of each seed run with the knobs as named, the verdict is read
    from the paired mean against the tolerance, a rerun retrains nothing, and shrunk settings never publish."""
    from benchmarks import precision_ab as ab

    doc = REPO / "docs" / "results" / ab.RECORD
    before = doc.read_text() if doc.exists() else None
    args = ["--storage", str(tmp_path), "--archs", "modified_net", "--epochs", "2", "--seeds", "2", "--subset", "128",
            "--val-size", "64", "--data-dir", str(cifar_path)]
    assert ab.main(args) == 0
    record = json.loads((tmp_path / ab.RECORD).read_text())
    net = record["nets"]["modified_net"]
    for arm, knobs in ab.ARMS.items():
        assert [r["seed"] for r in net["runs"][arm]] == [0, 1]
        for r in net["runs"][arm]:
            assert all(r["config"][k] == v for k, v in knobs.items()) and len(r["epoch_seconds"]) == 2
    j = net["judgement"]
    diffs = [b["val_accuracy"] - a["val_accuracy"] for a, b in zip(net["runs"]["fp32"], net["runs"]["bf16+cl"])]
    assert j["difference"]["mean"] == pytest.approx(sum(diffs) / 2)
    assert j["verdict"] == ("no accuracy cost" if j["difference"]["mean"] >= -ab.TOLERANCE else "costs accuracy")
    units = sorted((tmp_path / "units" / "modified_net").glob("*.json"))
    stamps = [u.stat().st_mtime_ns for u in units]
    assert len(units) == 4 and ab.main(args) == 0
    assert [u.stat().st_mtime_ns for u in units] == stamps
    assert (doc.read_text() if doc.exists() else None) == before


def test_carry_keeps_finished_stages_without_checkpoints_and_restores_only_into_a_new_folder(tmp_path, capsys,
                                                                                              monkeypatch):
    """benchmarks.carry: a finished search's experiment travels without its checkpoints or report, with its saved
    final runs and ledger; an unfinished search is left out whole (the same command starts it afresh); a restore never writes
    over an existing folder; bad input is one line and exit 2, writing nothing."""
    from benchmarks.carry import main as carry
    from tests.searchrun import one_line_error

    root = tmp_path / "runs" / "reproduce-report001"
    files = {"reproduce.json": json.dumps({"report": "report001", "searches": {"keras_cnn": {"done": True}}}),
             "keras_cnn/spec.json": "{}", "keras_cnn/optuna.db": "db",
             "keras_cnn/test_ledger.jsonl": '{"checksum": "abc", "arch": "keras_cnn", "config_hash": "h1", "seed": 0}\n',
             "keras_cnn/keras_cnn_1/result.json": "{}\n", "keras_cnn/eval-runs/keras_cnn-s0-ab.json": "{}",
             "keras_cnn/keras_cnn_1/checkpoint_000003/model.pt": "weights", "keras_cnn/.cifar-tune.lock": "pid",
             # a final run in flight keeps its state on its machine (analysis.evaluate._in_flight_dir)
             "keras_cnn/eval-runs/checkpoint_keras_cnn-s1-cd/checkpoint.pt": "state",
             "keras_cnn/report/report.html": "<html>",  # `cifar-tune report` writes it again where restored
             "resnet18/spec.json": "{}", "resnet18/resnet18_1/result.json": "{}\n", ".cifar-tune.lock": "pid",
             ".reproduce.json.123.tmp": "{", "keras_cnn/.spec.json.9.tmp": "{"}  # writes in flight stay out
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    carried = tmp_path / "carried"
    assert carry(["save", str(root), "--to", str(carried)]) == 0
    said = capsys.readouterr().out
    assert "searches finished keras_cnn; final runs saved: keras_cnn 1; left out (start afresh): resnet18" in said
    archive = carried / "reproduce-report001.tar.gz"
    assert carry(["restore", str(archive), "--storage", str(tmp_path / "runs")]) == 2  # the live folder is kept
    one_line_error(capsys, "exists already")
    ledgers = tmp_path / "ledgers"  # this machine's dataset ledger lacks the carried run's scoring: it gets it once
    monkeypatch.setenv("CIFAR_TUNE_LEDGER_DIR", str(ledgers))
    assert carry(["restore", str(archive), "--storage", str(tmp_path / "new")]) == 0
    assert carry(["restore", str(archive), "--storage", str(tmp_path / "newer")]) == 0
    assert (ledgers / "abc.jsonl").read_text().splitlines() == [files["keras_cnn/test_ledger.jsonl"].strip()]
    new = tmp_path / "new" / "reproduce-report001"
    got = {str(p.relative_to(new)) for p in new.rglob("*") if p.is_file()}
    assert got == {"carry.json", "reproduce.json", "keras_cnn/spec.json", "keras_cnn/optuna.db",
                   "keras_cnn/test_ledger.jsonl", "keras_cnn/keras_cnn_1/result.json",
                   "keras_cnn/eval-runs/keras_cnn-s0-ab.json"}
    assert all((new / rel).read_text() == files[rel] for rel in got - {"carry.json"})
    manifest = json.loads((new / "carry.json").read_text())
    assert manifest["searches_left_out"] == ["resnet18"] and not manifest["finished"]
    (tmp_path / "junk.tar.gz").write_text("not an archive")
    for argv, words in ((["save", str(tmp_path)], "is not a reproduction"),
                        (["restore", str(tmp_path / "junk.tar.gz"), "--storage", str(tmp_path / "x")],
                         "not a readable archive")):
        assert carry(argv) == 2
        one_line_error(capsys, words)
    assert not (tmp_path / "x").exists()


def test_carry_in_flight_takes_what_a_stopped_reproduction_continues_from_and_nothing_more(tmp_path, capsys,
                                                                                           monkeypatch):
    """``carry save --in-flight`` (what long_runs does when it is stopped): a final run's saved state and an
    unfinished search with the newest checkpoint of each trial that has not ended; an ended trial's checkpoints,
    older checkpoints and a search never started stay behind."""
    import analysis.load
    from benchmarks.carry import main as carry
    from trainables.experiment import RUNNING, STOPPED

    root = tmp_path / "runs" / "reproduce-report002"
    files = {"reproduce.json": json.dumps({"report": "report002", "searches": {"a": {"done": True},
                                                                              "b": {"done": False}}}),
             "a/spec.json": "{}", "a/eval-runs/a-s0-x.json": "{}", "a/eval-runs/checkpoint_a-s1-y/checkpoint.pt": "s",
             "a/a_1/checkpoint_000002/model.pt": "finished search: never read",
             "b/spec.json": "{}", "b/optuna.db": "db", "b/experiment_state-1.json": "{}",
             "b/b_1/result.json": "{}\n", "b/b_1/checkpoint_000001/model.pt": "old",
             "b/b_1/checkpoint_000003/model.pt": "newest", "b/b_2/result.json": "{}\n",
             "b/b_2/checkpoint_000004/model.pt": "stopped by ASHA", "c/.cifar-tune.lock": "pid"}
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    trials = [{"status": RUNNING, "path": str(root / "b" / "b_1")},
              {"status": STOPPED, "path": str(root / "b" / "b_2")}]
    monkeypatch.setattr(analysis.load, "load_trials", lambda exp: trials if str(exp).endswith("/b") else [])
    carried = tmp_path / "carried"
    assert carry(["save", str(root), "--to", str(carried)]) == 0  # the default: finished stages only
    assert "left out (start afresh): b, c" in capsys.readouterr().out
    assert carry(["save", str(root), "--to", str(carried), "--in-flight"]) == 0
    said = capsys.readouterr().out
    assert "left out (start afresh): c; in flight (continued where restored): b, a/checkpoint_a-s1-y" in said
    assert carry(["restore", str(carried / "reproduce-report002.tar.gz"), "--storage", str(tmp_path / "new")]) == 0
    new = tmp_path / "new" / "reproduce-report002"
    got = {str(p.relative_to(new)) for p in new.rglob("*") if p.is_file()}
    assert got == {"carry.json", "reproduce.json", "a/spec.json", "a/eval-runs/a-s0-x.json",
                   "a/eval-runs/checkpoint_a-s1-y/checkpoint.pt", "b/spec.json", "b/optuna.db",
                   "b/experiment_state-1.json", "b/b_1/result.json", "b/b_1/checkpoint_000003/model.pt",
                   "b/b_2/result.json"}
    assert json.loads((new / "carry.json").read_text())["in_flight"] == {"searches": ["b"],
                                                                        "final_runs": ["a/checkpoint_a-s1-y"]}


def test_carry_takes_a_benchmarks_finished_units_not_the_one_in_flight(tmp_path, capsys):
    from benchmarks.carry import main as carry

    root = tmp_path / "hpo"
    files = {"settings.json": "{}", "units/simple_cnn/pbt/seed0.json": "{}", "units/simple_cnn/pbt/seed0.retrain.json":
             "{}", "units/simple_cnn/pbt/seed1.segments.json": "{}", "simple_cnn-pbt-seed1/spec.json": "{}",
             "checkpoint_t1/state.pt": "a unit's state in flight (proxy_check)"}
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    assert carry(["save", str(root), "--to", str(tmp_path / "carried")]) == 0
    assert "2 finished units" in capsys.readouterr().out
    assert carry(["restore", str(tmp_path / "carried" / "hpo.tar.gz"), "--storage", str(tmp_path / "new")]) == 0
    got = {str(p.relative_to(tmp_path / "new" / "hpo")) for p in (tmp_path / "new" / "hpo").rglob("*") if p.is_file()}
    assert got == {"carry.json", "settings.json", "units/simple_cnn/pbt/seed0.json",
                   "units/simple_cnn/pbt/seed0.retrain.json"}
    # stopped as asked: the unfinished search (default_space's lies in the storage) travels to be resumed
    assert carry(["save", str(root), "--to", str(tmp_path / "carried"), "--in-flight"]) == 0
    assert "in flight, continued where restored: simple_cnn-pbt-seed1, checkpoint_t1" in capsys.readouterr().out
    assert carry(["restore", str(tmp_path / "carried" / "hpo.tar.gz"), "--storage", str(tmp_path / "newer")]) == 0
    got = {str(p.relative_to(tmp_path / "newer" / "hpo")) for p in (tmp_path / "newer" / "hpo").rglob("*")
           if p.is_file()}
    assert {"simple_cnn-pbt-seed1/spec.json", "checkpoint_t1/state.pt"} <= got


def test_long_runs_restores_a_step_from_its_archive_runs_it_and_carries_it_again(tmp_path, monkeypatch, capsys):
    """benchmarks.long_runs with one stand-in step (a command that extends a reproduction's state): the first run
    carries what the step wrote; on a "new machine" (the storage gone) the step's folder comes back from the archive
    before the step runs, so the step continues from it; a finished step is not run again; a bad --steps is one
    line."""
    import benchmarks.carry as carry
    import benchmarks.long_runs as lr

    grow = ("import json, pathlib; p = pathlib.Path('{storage}/fair/reproduce-x'); p.mkdir(parents=True, "
            "exist_ok=True); f = p / 'reproduce.json'; s = json.loads(f.read_text()) if f.exists() else "
            "{{'report': 'x', 'searches': {{}}}}; s['runs'] = s.get('runs', 0) + 1; f.write_text(json.dumps(s))")
    monkeypatch.setattr(lr, "STEPS", (lr.Step("x", ("-c", grow), ("fair/reproduce-x",), "a stand-in",
                                              "publish {storage}/fair/reproduce-x"),))
    monkeypatch.setattr(carry, "CARRIED", tmp_path / "carried")
    monkeypatch.setattr(lr, "frozen_code", lambda storage: lr.REPO)  # no worktree for a stand-in
    machine = tmp_path / "machine"
    assert lr.main(["--storage", str(machine)]) == 0
    assert (tmp_path / "carried" / "reproduce-x.tar.gz").exists()
    import shutil

    shutil.rmtree(machine)  # the next machine
    assert lr.main(["--storage", str(machine), "--list"]) == 0
    assert "carried (" in capsys.readouterr().out
    assert lr.main(["--storage", str(machine)]) == 0
    out = capsys.readouterr().out
    assert "restored" in out and f"x: finished; to publish: publish {machine}/fair/reproduce-x" in out
    state = machine / "fair" / "reproduce-x" / "reproduce.json"
    assert json.loads(state.read_text())["runs"] == 2
    state.write_text(json.dumps({**json.loads(state.read_text()), "result": {}}))  # the step's record written
    assert lr.main(["--storage", str(machine)]) == 0
    assert "x: finished earlier; not run again" in capsys.readouterr().out
    assert json.loads(state.read_text())["runs"] == 2  # not run: a finished reproduction would only churn
    with pytest.raises(SystemExit) as e:
        lr.main(["--steps", "nope"])
    assert e.value.code == 2 and "--steps nope: unknown" in capsys.readouterr().err


def _git_repo(tmp_path, monkeypatch):
    """A repository of its own under ``tmp_path`` (an author set), and ``git(*args)`` -> its stdout there."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for k, v in (("GIT_AUTHOR_NAME", "t"), ("GIT_AUTHOR_EMAIL", "t@x"), ("GIT_COMMITTER_NAME", "t"),
                 ("GIT_COMMITTER_EMAIL", "t@x")):
        monkeypatch.setenv(k, v)
    git = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True, capture_output=True, text=True).stdout
    git("init", "-q")
    return repo, git


def test_long_runs_runs_the_code_of_head_as_it_starts_even_where_the_machine_kept_an_older_worktree(tmp_path,
                                                                                                    monkeypatch):
    import benchmarks.long_runs as lr

    repo, git = _git_repo(tmp_path, monkeypatch)
    for text in ("one", "two"):
        (repo / "pyproject.toml").write_text(text)
        git("add", "pyproject.toml")
        git("commit", "-q", "-m", text)
        monkeypatch.setattr(lr, "REPO", repo)
        code = lr.frozen_code(tmp_path / "storage")
        assert (code / "pyproject.toml").read_text() == text  # the second start: moved from "one" to HEAD
    (repo / "pyproject.toml").write_text("edited, not committed")
    assert (lr.frozen_code(tmp_path / "storage") / "pyproject.toml").read_text() == "two"


def test_long_runs_commit_commits_the_archive_alone_and_only_when_it_holds_more_progress(tmp_path, monkeypatch):
    """--commit in a repository of its own: the first save is committed (the archive alone, though another file is
    staged and the ledger changed), a save with the same progress is not, and one with a finished search is."""
    import benchmarks.carry as carry
    import benchmarks.long_runs as lr

    repo, git = _git_repo(tmp_path, monkeypatch)
    (repo / "other.txt").write_text("mine")
    git("add", "other.txt")  # staged by someone else: must stay out of the runner's commits
    mark = str(tmp_path / "finish")
    grow = ("import json, os, pathlib; p = pathlib.Path('{storage}/r/reproduce-y'); p.mkdir(parents=True, "
            "exist_ok=True); s = {{'report': 'y', 'searches': {{}}}}; done = os.path.exists(%r); "
            "s['searches']['n'] = {{'done': done}}; (p / 'n').mkdir(exist_ok=True); "
            "(p / 'reproduce.json').write_text(json.dumps(s))" % mark)
    monkeypatch.setattr(lr, "STEPS", (lr.Step("y", ("-c", grow), ("r/reproduce-y",), "a stand-in"),))
    monkeypatch.setattr(lr, "REPO", repo)
    monkeypatch.setattr(carry, "CARRIED", repo / "carried")
    monkeypatch.setattr(lr, "frozen_code", lambda storage: repo)
    monkeypatch.setattr(lr, "LEDGER", repo / "ledger")  # committed by hand with the docs it changes, not here
    (repo / "ledger").mkdir()
    (repo / "ledger" / "data.jsonl").write_text("{}\n")
    log = lambda: git("log", "--format=%s").splitlines()
    assert lr.main(["--storage", str(tmp_path / "m"), "--commit"]) == 0
    assert len(log()) == 1 and "searches finished: none" in log()[0]
    assert git("show", "--name-only", "--format=", "HEAD").split() == ["carried/reproduce-y.tar.gz"]
    assert "other.txt" in git("diff", "--cached", "--name-only")  # still staged, not committed
    assert lr.main(["--storage", str(tmp_path / "m"), "--commit"]) == 0
    assert len(log()) == 1  # the same progress: no commit
    open(mark, "w").close()
    assert lr.main(["--storage", str(tmp_path / "m"), "--commit"]) == 0
    assert len(log()) == 2 and "searches finished: n" in log()[0]


def test_curves_adds_a_validation_curve_to_a_record_continuing_a_killed_run(cifar_path, tmp_path, capsys,
                                                                          monkeypatch):
    """benchmarks.curves: a run killed after epoch 1 of 2 continues from its state with the same command (epochs 1
    and 2 once each); the run lands in the record with its command, code and machine, and publish's table shows it;
    a run already there is not trained again; bad input is one line, exit 2, the record untouched."""
    import trainables.train as tr
    from benchmarks.curves import main as curves
    from benchmarks.publish import Uses, curves_block
    from tests.searchrun import one_line_error

    results = tmp_path / "results"
    results.mkdir()
    record = {"what": "t", "date": "2026-11-29", "code": "commit abc", "runs": {}}
    (results / "r-curves.json").write_text(json.dumps(record))
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"arch": "simple_cnn", "subset": 256, "val_size": 128, "epochs": 2, "seed": 0,
                                  "batch_size": 64, "latency_batch": 0}))
    argv = ["--record", "r-curves", "--key", "E", "--what", "a tiny run", "--config", str(config), "--data-dir",
            str(cifar_path), "--storage", str(tmp_path / "ckpt"), "--results", str(results)]
    real_save = tr.save_state

    def killed_after_one(state, directory):
        real_save(state, directory)
        raise KeyboardInterrupt

    monkeypatch.setattr(tr, "save_state", killed_after_one)
    assert curves(argv) == 130  # Ctrl-C: one line, no traceback
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["curves: interrupted (SIGINT); the epochs trained are saved; continue with: the same command (it "
                   "goes on from the last finished epoch)"], err
    monkeypatch.setattr(tr, "save_state", real_save)
    assert json.loads((results / "r-curves.json").read_text())["runs"] == {}  # nothing written before the end
    assert curves(argv) == 0
    run = json.loads((results / "r-curves.json").read_text())["runs"]["E"]
    assert [r["epoch"] for r in run["curve"]] == [1, 2] and 0 <= run["curve"][-1]["val_accuracy"] <= 1
    assert run["config"]["arch"] == "simple_cnn" and "data_dir" not in run["config"]
    assert "benchmarks.curves --record r-curves --key E" in run["command"] and run["machine"].startswith("device: ")
    capsys.readouterr()
    assert curves(argv) == 0 and "nothing trained" in capsys.readouterr().out
    block = curves_block("r-curves", json.loads((results / "r-curves.json").read_text()), Uses({}, []))
    assert "| E: a tiny run |" in block and "Run E: code " in " ".join(block.split())  # para() wraps lines
    before = (results / "r-curves.json").read_text()
    config.write_text(json.dumps({"arch": "simple_cnn", "val_size": 0}))
    assert curves([*argv[:3], "F", *argv[4:]]) == 2
    one_line_error(capsys, "val_size 0 leaves no validation split")
    config.write_text(json.dumps({"arch": "no_such_net"}))
    assert curves([*argv[:3], "F", *argv[4:]]) == 2
    one_line_error(capsys, "--config")
    assert (results / "r-curves.json").read_text() == before


def test_long_runs_list_shows_a_reproductions_saved_final_runs_per_net(tmp_path):
    import benchmarks.long_runs as lr

    root = tmp_path / "fair" / "reproduce-x"
    (root / "a" / "eval-runs").mkdir(parents=True)
    (root / "a" / "eval-runs" / "a-s0-1.json").write_text("{}")
    (root / "reproduce.json").write_text(json.dumps({"searches": {"a": {"done": True}, "b": {"done": False}}}))
    step = lr.Step("x", (), ("fair/reproduce-x",), "a stand-in")
    assert lr.status(tmp_path, step) == "searches done: a; final runs saved: a 1"
    assert not lr.finished(tmp_path, step)


def test_long_runs_stop_carries_what_is_in_flight_and_a_plain_sigterm_does_not(tmp_path, capsys):
    """A session's end (``--stop``): the runner's step stops and its archive holds the unfinished search too; a plain
    SIGTERM (a restart on a machine that keeps its storage) carries finished work only, as before; a second runner
    of the same storage is refused; --stop with no runner is one line."""
    import tarfile
    import time

    import benchmarks.long_runs as lr

    machine, carried = tmp_path / "machine", tmp_path / "carried"
    # a stand-in step: a reproduction whose search has started (its spec written) and goes on
    step = ("import json, pathlib, time; p = pathlib.Path('{storage}/fair/reproduce-z'); (p / 'n').mkdir(parents=True, "
            "exist_ok=True); (p / 'n' / 'spec.json').write_text('{{}}'); (p / 'reproduce.json').write_text(json.dumps("
            "{{'report': 'z', 'searches': {{'n': {{'done': False}}}}}})); time.sleep(600)")
    script = tmp_path / "long_runs_stand_in.py"  # the runner's command line names long_runs, as the real one's does
    script.write_text(
        "import sys\nfrom pathlib import Path\nimport benchmarks.carry as carry, benchmarks.long_runs as lr\n"
        f"lr.STEPS = (lr.Step('z', ('-c', {step!r}), ('fair/reproduce-z',), 'a stand-in'),)\n"
        f"carry.CARRIED = Path({str(carried)!r})\nlr.frozen_code = lambda storage: lr.REPO\n"
        f"sys.exit(lr.main(['--storage', {str(machine)!r}]))\n")

    def manifest_after(stop) -> dict:
        proc = subprocess.Popen([sys.executable, str(script)], cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPO)})
        try:
            deadline = time.monotonic() + 120
            while not (machine / "fair" / "reproduce-z" / "reproduce.json").exists() or not lr.running_pid(machine):
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
            assert lr.main(["--storage", str(machine)]) == 2  # one runner per storage
            assert "is running already" in capsys.readouterr().err
            stop(proc)
            assert proc.wait(timeout=120) == 143
        finally:
            proc.kill()
        with tarfile.open(carried / "reproduce-z.tar.gz") as tar:
            return json.loads(tar.extractfile("reproduce-z/carry.json").read())

    plain = manifest_after(lambda proc: proc.send_signal(15))
    assert "in_flight" not in plain and plain["searches_left_out"] == ["n"]
    at_end = manifest_after(lambda proc: lr.main(["--storage", str(machine), "--stop"]) == 0 or pytest.fail("stop"))
    assert at_end["in_flight"] == {"searches": ["n"], "final_runs": []} and at_end["searches_left_out"] == []
    assert not (machine / lr.PIDFILE).exists() and not (machine / lr.IN_FLIGHT_MARK).exists()
    capsys.readouterr()
    assert lr.main(["--storage", str(machine), "--stop"]) == 1
    assert "no runner of" in capsys.readouterr().err
