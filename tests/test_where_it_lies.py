"""An experiment is where it lies (issue 19): a copy or a moved experiment resumes as itself and never writes where it
was started; a study that cannot be read is one line for every command that needs it; flags given with --resume
are compared with the experiment's own, never ignored.

One search is interrupted (SIGTERM to its process group, as `timeout` or a batch scheduler sends it, while its
trials wait after epoch 1, ``hold_after_epoch``: Tune's state saved, trials unfinished) and shared by every test
here; each test works on its own real copy (``cp -a`` or ``shutil.copytree``) and checks that the shared original is
byte for byte what it was. What SIGTERM itself must do (exit 143, one line, the trials kept unfinished) is checked on
that search too, and so is a second driver started on the same experiment at once (it refuses, naming the first).
SIGINT takes the same path (tests/test_reproduce.py interrupts `cifar-tune reproduce` with it).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import optuna
import pytest

from search.cli import main
from tests.searchrun import (epochs_of, kill_session, one_line_error, report, results, run_cli, saved_trials,
                             start_cli, trial_dirs, wait_for)

ARCH, SAMPLES, EPOCHS, NAME = "origin_net", 2, 2, "orig"


def search_args(storage: Path, name: str, cifar_path) -> list:
    return ["search", "--arch", ARCH, "--num-samples", SAMPLES, "--max-epochs", EPOCHS, "--reduction-factor", 2,
            "--data-dir", cifar_path, "--set", "subset=200", "--set", "val_size=100", "--storage", storage,
            "--name", name]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder``: relative path -> sha256 of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory, cifar, cifar_path):
    """A search stopped by SIGTERM with trials unfinished: {"storage", "exp", "before" (its snapshot), "log"}.

    Two drivers are started at once on it: one takes the experiment, the other refuses at once ("refused": its
    output and both pids)."""
    tmp = tmp_path_factory.mktemp("lies")
    storage = tmp / "r"
    exp = storage / NAME
    logs = [tmp / f"first-{i}.log" for i in (0, 1)]
    procs = [start_cli(search_args(storage, NAME, cifar_path), log, faults={"hold_after_epoch": 1}) for log in logs]
    try:
        loser = wait_for(lambda: [i for i, p in enumerate(procs) if p.poll() is not None], 300,
                         what="one of the two drivers to refuse")[0]
        winner = 1 - loser
        proc, log = procs[winner], logs[winner]
        refused = {"code": procs[loser].returncode, "out": logs[loser].read_text(), "winner_pid": proc.pid}
        wait_for(lambda: exp.is_dir() and any(epochs_of(results(d)) for d in trial_dirs(exp).values()), 400, proc,
                 log, "a trial's epoch 1")
        os.killpg(proc.pid, signal.SIGTERM)  # to the driver's process group, as `timeout` or a batch scheduler does
        assert proc.wait(timeout=300) == 143, log.read_text()[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                kill_session(p)
    saved = saved_trials(exp)
    assert saved and any(t["status"] != "TERMINATED" for t in saved.values()), saved  # really unfinished
    return {"storage": storage, "exp": exp, "before": snapshot(exp), "log": log.read_text(), "refused": refused}


@pytest.mark.slow
def test_two_drivers_on_one_experiment_one_refuses_naming_the_other(interrupted):
    """The loser refuses at once, before Ray, in one line naming the holder (pid, host, since); it asks Optuna for
    no trial (the copy test below finds exactly one Optuna trial per Tune trial)."""
    refused = interrupted["refused"]
    out = refused["out"]
    assert refused["code"] == 2 and len(out.strip().splitlines()) == 1, out
    assert "in use by" in out and f"pid {refused['winner_pid']}" in out and socket.gethostname() in out \
        and "since" in out, out


@pytest.mark.slow
def test_sigterm_stops_cleanly_with_143_and_saves_the_unfinished_trials(interrupted, tmp_path):
    """SIGTERM and SIGINT are both handed to Tune's stop: exit 143 (the fixture), one line naming the command that
    continues, and the state Tune saved keeps the trials unfinished, so --resume continues them (the copy and move
    tests below resume it). Tune marks the trials it stopped for the signal TERMINATED in memory: they are counted
    from the saved state as unfinished, never as stopped early (only ASHA's own stops are)."""
    log = interrupted["log"]
    lines = [line for line in log.strip().splitlines() if line.strip()]
    last = lines[-1]
    assert "interrupted (SIGTERM)" in last and f"--resume --name {NAME}" in last, log[-3000:]
    # The signal went to the whole process group: Ray's GCS, started in the driver's group, died of it and the stop
    # waited 60 s for it, then said "Failed to connect to GCS" after our line (trainables.compat.ray_init).
    assert "GCS" not in log, log[-3000:]
    assert "best configuration" not in log
    copy = tmp_path / NAME  # read from a copy: the shared original stays as it was
    shutil.copytree(interrupted["exp"], copy, symlinks=True)
    trials = report(copy)
    stops = json.loads((copy / "asha_state.json").read_text())["stops"]
    assert {t["trial_id"] for t in trials if t["status"] == "stopped"} == {s["trial_id"] for s in stops}
    held = [t for t in trials if t["status"] != "stopped"]  # the trial that reported first waits: never stopped
    assert held and all(t["status"] in ("running", "pending") and t["epochs"] < EPOCHS for t in held), trials
    unfinished = len(held) + SAMPLES - len(trials)  # plus any trial Tune had not created yet
    assert f"{unfinished} trial(s) unfinished" in last, last
    counted = [int(n) for n in re.findall(r"stopped early (\d+)", log)]
    assert all(n <= len(stops) for n in counted), (counted, stops)


def study_trials(exp: Path) -> list:
    return optuna.load_study(study_name=f"{NAME}-{ARCH}", storage=f"sqlite:///{exp}/optuna.db").trials


def study_states(exp: Path) -> list[str]:
    """The states of exp's study trials, read with a read-only connection (the original must not change)."""
    import sqlite3

    con = sqlite3.connect(f"file:{exp / 'optuna.db'}?mode=ro", uri=True)
    try:
        return [row[0] for row in con.execute("SELECT state FROM trials")]
    finally:
        con.close()


def assert_finished_in(exp: Path) -> None:
    """Every trial of ``exp`` ended, its folder and history in ``exp``, its Optuna trial finished in exp's study."""
    trials = report(exp)
    assert len(trials) == SAMPLES and {t["status"] for t in trials} <= {"completed", "stopped"}, trials
    for t in trials:
        assert Path(t["path"]).parent == exp
        assert [h["epoch"] for h in t["history"]] == list(range(1, t["epochs"] + 1)), t["trial_id"]
    studied = study_trials(exp)
    assert sorted(o.user_attrs["tune_trial_id"] for o in studied) == sorted(t["trial_id"] for t in trials)
    assert all(o.state.is_finished() for o in studied), [o.state for o in studied]


# --------------------------------------------------------------------------------------------- copies and moves

@pytest.mark.slow
def test_a_copy_resumes_as_itself_and_never_writes_to_the_original(interrupted):
    """The issue's own command: cp -a EXP COPY && cifar-tune search --resume --name COPY --storage S."""
    storage, original = interrupted["storage"], interrupted["exp"]
    copy = storage / "copy"
    subprocess.run(["cp", "-a", str(original), str(copy)], check=True)
    out = run_cli(["search", "--resume", "--name", "copy", "--storage", storage], timeout=600)
    assert out.returncode == 0, out.stdout[-4000:]
    assert f"experiment: {copy}\n" in out.stdout and f"experiment: {original}\n" not in out.stdout, out.stdout[-2000:]
    assert snapshot(original) == interrupted["before"]  # not one byte written to the original, no file added
    assert_finished_in(copy)
    # The copy's ASHA records were written in the copy (the original's are as they were, above).
    assert (copy / "asha_state.json").stat().st_mtime_ns > (original / "asha_state.json").stat().st_mtime_ns
    assert "RUNNING" in study_states(original)  # the original's study still waits for its unfinished trial


@pytest.mark.slow
def test_a_moved_experiment_resumes_where_it_lies_with_the_same_flags(interrupted, tmp_path):
    """mv: the folder it was started in is gone; nothing is made there again, its optuna.db included. Budget flags
    equal to the experiment's own are accepted."""
    original = interrupted["exp"]
    moved = tmp_path / "elsewhere" / "moved"
    shutil.copytree(original, moved, symlinks=True)
    away = original.with_name("orig.away")
    original.rename(away)
    try:
        out = run_cli(["search", "--resume", "--name", "moved", "--storage", moved.parent, "--num-samples", SAMPLES,
                       "--max-epochs", EPOCHS, "--reduction-factor", 2], timeout=600)
        assert out.returncode == 0, out.stdout[-4000:]
        assert not original.exists(), sorted(p.name for p in original.iterdir())
    finally:
        away.rename(original)
    assert f"experiment: {moved}\n" in out.stdout
    assert snapshot(original) == interrupted["before"]
    assert_finished_in(moved)


def test_the_study_name_limit_is_optunas_column():
    import importlib

    from trainables.experiment import STUDY_NAME_MAX

    models = importlib.import_module("optuna.storages._rdb.models")  # the column's own definition
    assert models.StudyModel.__table__.c.study_name.type.length == STUDY_NAME_MAX


# --------------------------------------------------------------------------------------------- unreadable study

def reproduce_layout(exp: Path, root: Path) -> list:
    """``exp`` as the origin_net search of a reproduction of report003 under ``root``; the reproduce command that
    continues it (the same small plan it would have been started with)."""
    shutil.copytree(exp, root / "reproduce-report003" / ARCH, symlinks=True)
    return ["reproduce", "report003", "--archs", ARCH, "--storage", str(root), "--num-samples", str(SAMPLES),
            "--max-epochs", str(EPOCHS)]


@pytest.mark.slow
def test_a_truncated_study_is_one_line_for_resume_report_evaluate_and_reproduce(interrupted, tmp_path, capsys):
    import ray

    exp = tmp_path / "r" / "broken"
    shutil.copytree(interrupted["exp"], exp, symlinks=True)
    db = exp / "optuna.db"
    with open(db, "r+b") as f:  # cut to half, as a copy interrupted mid-file leaves it
        f.truncate(db.stat().st_size // 2)
    reproduce = reproduce_layout(exp, tmp_path / "rr")
    before = snapshot(exp)
    named = ("optuna.db", "cannot be read", "malformed", "Ray results", "trial folders", "--without-study")
    assert main(["search", "--resume", "--name", "broken", "--storage", str(exp.parent)]) == 2
    one_line_error(capsys, *named, "cifar-tune search")
    assert main(["report", str(exp)]) == 2
    one_line_error(capsys, *named)
    assert main(["report", str(exp), "--json"]) == 2
    one_line_error(capsys, *named)
    assert main(["evaluate", str(exp), "--top-k", "1", "--repeats", "2"]) == 2
    one_line_error(capsys, *named)
    assert main(reproduce) == 2
    one_line_error(capsys, "optuna.db", "cannot be read", "Ray results")
    assert not ray.is_initialized()
    assert snapshot(exp) == before  # nothing damaged, nothing added (no lock file, no repaired database)
    # Read without the study, the report says so (and still has every trial, from the Ray results).
    assert main(["report", str(exp), "--json", "--without-study"]) == 0
    captured = capsys.readouterr()
    assert "without the Optuna study" in captured.err and "malformed" in captured.err, captured.err
    record = json.loads(captured.out)
    assert len(record["trials"]) == len(saved_trials(exp)) and "malformed" in record["without_study"]
    assert main(["report", str(exp), "--without-study", "--out", str(tmp_path / "out")]) == 0
    assert "without the Optuna study" in capsys.readouterr().err
    assert (tmp_path / "out" / "report.html").exists()


def test_a_study_database_that_does_not_answer_is_one_line(interrupted, tmp_path, capsys):
    """The study kept by URL (--optuna-storage) elsewhere: a database file that is gone, a PostgreSQL server that
    does not answer (with the driver installed): the URL recorded is the one used, and named (password hidden)."""
    exp = tmp_path / "r" / "elsewhere"
    shutil.copytree(interrupted["exp"], exp, symlinks=True)
    record = json.loads((exp / "spec.json").read_text())
    urls = [f"sqlite:///{tmp_path}/gone/studies.db"]
    try:
        import psycopg2  # noqa: F401

        from tests.searchrun import free_port

        urls.append(f"postgresql+psycopg2://cifar:secret@127.0.0.1:{free_port()}/postgres")
    except ImportError:
        pass
    for url in urls:
        record["spec"]["optuna_storage"] = url
        (exp / "spec.json").write_text(json.dumps(record))
        assert main(["report", str(exp), "--json"]) == 2
        err = one_line_error(capsys, "cannot be read", "Ray results", url.split("@")[-1])
        assert "secret" not in err
        assert main(["search", "--resume", "--name", "elsewhere", "--storage", str(exp.parent)]) == 2
        one_line_error(capsys, "cannot be read", url.split("@")[-1])
    assert not (tmp_path / "gone").exists()


# --------------------------------------------------------------------------------------------- flags on resume

@pytest.mark.parametrize("flags, named", [
    (["--num-samples", "5"], ["--num-samples 5", "--num-samples 2"]),
    (["--max-epochs", "3"], ["--max-epochs 3", "--max-epochs 2"]),
    (["--grace-period", "2"], ["--grace-period 2", "--grace-period 1"]),
    (["--reduction-factor", "3"], ["--reduction-factor 3", "--reduction-factor 2"]),
    (["--epoch-budget", "4"], ["--epoch-budget 4", "--epoch-budget 0"]),
    (["--seed", "7"], ["--seed 7"]),
    (["--max-failures", "3"], ["--max-failures 3"]),
    (["--set", "subset=300"], ["--set subset=300", "subset=200"]),
    (["--set", "lr=0.1"], ["--set lr=0.1", "no --set lr"]),
    (["--arch", "simple_cnn"], ["--arch simple_cnn", "--arch origin_net"]),
    (["--objectives", "val_accuracy:max,params:min"], ["--objectives"]),
    (["--objectives", ""], ["--objectives ''", "empty"]),
])
def test_a_budget_or_search_flag_given_with_resume_is_refused_naming_it(flags, named, interrupted, tmp_path, capsys):
    """Tune's saved state cannot take them: refused before Ray, nothing written (an equal value is accepted, in
    test_a_moved_experiment_resumes_where_it_lies_with_the_same_flags)."""
    import ray

    exp = tmp_path / "r" / "flags"
    shutil.copytree(interrupted["exp"], exp, symlinks=True)
    before = snapshot(exp)
    assert main(["search", "--resume", "--name", "flags", "--storage", str(exp.parent), *flags]) == 2
    one_line_error(capsys, *named)
    assert snapshot(exp) == before and not ray.is_initialized()


def test_reproduce_rerun_with_a_different_budget_is_refused_naming_it(interrupted, tmp_path, capsys, cifar_path):
    """reproduce continues an unfinished search with the plan it builds from its options: a changed one used to be
    ignored (Tune's saved state won); now run_search compares it with the experiment's spec.json."""
    import ray

    exp = tmp_path / "r" / NAME
    shutil.copytree(interrupted["exp"], exp, symlinks=True)
    args = reproduce_layout(exp, tmp_path / "rr")
    args[args.index("--num-samples") + 1] = "3"
    assert main([*args, "--data-dir", str(cifar_path), "--set", "subset=200", "--set", "val_size=100"]) == 2
    one_line_error(capsys, "--num-samples 3", "--num-samples 2", str(tmp_path / "rr" / "reproduce-report003" / ARCH))
    assert not ray.is_initialized()
