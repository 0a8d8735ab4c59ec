"""Round two of the faults: two drivers on one experiment, SIGINT / SIGTERM, a full disk, a search where nothing
finished. Real ``cifar-tune search`` subprocesses on the offline CIFAR-10 copy (200 images, 1-2 epochs, origin_net);
no assertion depends on timing: a trial that must still be running when a signal comes waits (``hold_after_epoch``
in tests/fault_driver.py) until Tune stops it.
"""
from __future__ import annotations

import os
import re
import signal
import socket
from pathlib import Path

import optuna
import pytest

from tests.searchrun import (epochs_of, kill_session, report, results, run_cli, start_cli, trial_dirs,
                             wait_for)

NAME = "two"


def args(storage: Path, name: str = NAME, samples: int = 2, epochs: int = 2, cifar_path=None) -> list:
    return ["search", "--arch", "origin_net", "--num-samples", samples, "--max-epochs", epochs,
            "--scheduler", "none", "--data-dir", cifar_path, "--set", "subset=200", "--set", "val_size=100",
            "--storage", storage, "--name", name]


def a_trial_reported(exp: Path):
    """True once some trial has epoch 1 in its history (written with its checkpoint on record)."""
    return exp.is_dir() and any(epochs_of(results(d)) for d in trial_dirs(exp).values())


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def resume_and_check(storage: Path, name: str, samples: int, epochs: int) -> list[dict]:
    out = run_cli(["search", "--resume", "--name", name, "--storage", storage], timeout=600)
    assert out.returncode == 0, out.stdout[-4000:]
    assert "best configuration per net" in out.stdout
    trials = report(storage / name)
    assert len(trials) == samples and {t["status"] for t in trials} == {"completed"}, trials
    for t in trials:  # every epoch once, none lost, none twice
        assert [h["epoch"] for h in t["history"]] == list(range(1, epochs + 1)), t["trial_id"]
        assert epochs_of(results(Path(t["path"]))) == list(range(1, epochs + 1)), t["trial_id"]
    studied = optuna.load_study(study_name=f"{name}-origin_net", storage=f"sqlite:///{storage / name}/optuna.db")
    assert sorted(s.state.name for s in studied.trials) == ["COMPLETE"] * samples
    return trials


@pytest.mark.slow
def test_two_drivers_on_one_experiment_one_refuses_naming_the_other_then_sigint_and_resume(tmp_path, cifar,
                                                                                             cifar_path):
    storage = tmp_path / "r"
    hold = {"hold_after_epoch": 1}
    procs = [start_cli(args(storage, cifar_path=cifar_path), tmp_path / f"{i}.log", faults=hold) for i in (0, 1)]
    try:
        # One of the two takes the experiment; the other refuses at once (before Ray) naming it.
        loser = wait_for(lambda: [i for i, p in enumerate(procs) if p.poll() is not None], 300,
                         what="one of the two to refuse")[0]
        winner = 1 - loser
        assert procs[loser].returncode == 2
        out = (tmp_path / f"{loser}.log").read_text()
        assert len(out.strip().splitlines()) == 1, out
        assert "in use by" in out and f"pid {procs[winner].pid}" in out and socket.gethostname() in out \
            and "since" in out, out
        # The winner runs on (its trials wait after epoch 1); SIGINT to the driver alone, as Ctrl-C would.
        exp = storage / NAME
        wait_for(lambda: a_trial_reported(exp), 400, procs[winner], tmp_path / f"{winner}.log", "a trial's epoch 1")
        os.kill(procs[winner].pid, signal.SIGINT)
        assert procs[winner].wait(timeout=300) == 130
        log = (tmp_path / f"{winner}.log").read_text()
        assert "interrupted (SIGINT)" in last_line(log) and \
            f"cifar-tune search --resume --name {NAME} --storage {storage}" in last_line(log), log[-3000:]
        assert "best configuration" not in log and "Tuner.restore" not in log, log[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                kill_session(p)
    # One experiment: two Tune trials, two Optuna trials (the loser asked for none).
    resume_and_check(storage, NAME, samples=2, epochs=2)


@pytest.mark.slow
def test_sigterm_stops_cleanly_with_143_and_saves_the_unfinished_trial(tmp_path, cifar, cifar_path):
    """SIGTERM takes SIGINT's path (both handed to Tune's stop; the test above resumes after it): exit 143, one line,
    and the state Tune saved keeps the trial unfinished, so --resume will continue it."""
    storage = tmp_path / "r"
    proc = start_cli(args(storage, name="term", samples=1, cifar_path=cifar_path), tmp_path / "log",
                     faults={"hold_after_epoch": 1})
    try:
        wait_for(lambda: a_trial_reported(storage / "term"), 400, proc, tmp_path / "log", "a trial's epoch 1")
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=300) == 143
    finally:
        if proc.poll() is None:
            kill_session(proc)
    log = (tmp_path / "log").read_text()
    assert "interrupted (SIGTERM)" in last_line(log) and "--resume --name term" in last_line(log), log[-3000:]
    # the trial held after its first epoch is unfinished, not "stopped early" (Tune marks it TERMINATED in memory)
    assert "1 trial(s) unfinished" in last_line(log), last_line(log)
    assert not re.search(r"stopped early [1-9]", log), log[-3000:]
    assert "best configuration" not in log
    (trial,) = report(storage / "term")
    assert trial["status"] in ("running", "pending") and trial["epochs"] < 2, trial


@pytest.mark.slow
def test_a_full_disk_is_one_line_with_path_free_space_and_resume_then_resume_finishes(tmp_path, cifar, cifar_path):
    storage = tmp_path / "r"
    cmd = args(storage, name="full", samples=1, cifar_path=cifar_path)
    cmd[cmd.index("--scheduler") + 1] = "asha"  # its rung records are what the full disk refuses to take
    out = run_cli(cmd, faults={"driver_enospc": True}, timeout=600)
    assert out.returncode == 1, out.stdout[-3000:]
    line = last_line(out.stdout)
    assert "disk full" in line and "asha_state.json" in line and "free there" in line, out.stdout[-3000:]
    assert f"cifar-tune search --resume --name full --storage {storage}" in line
    assert "best configuration" not in out.stdout
    resume_and_check(storage, "full", samples=1, epochs=2)


@pytest.mark.slow
def test_a_search_in_which_no_trial_finished_exits_non_zero_quoting_the_first_error(tmp_path, cifar, cifar_path):
    cmd = args(tmp_path / "r", name="none", samples=2, epochs=1, cifar_path=cifar_path) + ["--max-failures", 0]
    out = run_cli(cmd, faults={"raise_at_epoch": 1}, timeout=600)
    assert out.returncode == 1, out.stdout[-3000:]
    line = last_line(out.stdout)
    assert "no trial finished (2 of 2 errored)" in line and "injected fault: trial raised at epoch 1" in line, line
    assert "best configuration" not in out.stdout


def test_a_stale_lock_of_a_killed_holder_is_taken_over(tmp_path):
    """flock goes with its holder's death however it dies (SIGKILL too): the next one takes it and says whose."""
    import subprocess
    import sys

    from trainables.experiment import ExperimentLock, ExperimentLocked

    code = ("import sys, time; from trainables.experiment import ExperimentLock; "
            f"ExperimentLock({str(tmp_path)!r}, 'holder').acquire(); print('held', flush=True); time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[1])
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ExperimentLocked, match=f"holder on host .* pid {holder.pid} since"):
            ExperimentLock(tmp_path, "second").acquire()
    finally:
        holder.kill()
        holder.wait()
    lock = ExperimentLock(tmp_path, "after the kill").acquire()
    assert lock.held and lock.stale["pid"] == holder.pid
    lock.release()
