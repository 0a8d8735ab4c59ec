"""Round two of the faults: a full disk, a search where nothing finished, a stale lock. Real ``cifar-tune search``
subprocesses on the offline CIFAR-10 copy (200 images, 1-2 epochs, origin_net). Two drivers on one experiment and
a SIGTERM (exit 143, the trials kept unfinished, resumed) are checked on the search tests/test_where_it_lies.py
interrupts, and SIGINT (exit 130) on tests/test_reproduce.py's: each of those Ray starts serves both.
"""
from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from tests.searchrun import epochs_of, report, results, run_cli

NAME = "two"


def args(storage: Path, name: str = NAME, samples: int = 2, epochs: int = 2, cifar_path=None) -> list:
    return ["search", "--arch", "origin_net", "--num-samples", samples, "--max-epochs", epochs,
            "--scheduler", "none", "--data-dir", cifar_path, "--set", "subset=200", "--set", "val_size=100",
            "--storage", storage, "--name", name]


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


def test_ray_init_through_compat_keeps_the_clis_sigterm_handler_and_leaves_a_bare_process_rays(monkeypatch):
    """ray.init replaces the driver's SIGTERM handler (the source check in test_private_api); compat.ray_init puts
    back a handler the caller set in Python (the CLI's: one line, exit 143) and keeps Ray's where none was set."""
    import signal

    import ray

    from trainables.compat import ray_init

    def rays(signum, frame):  # what ray.init installs: sys.exit(signum)
        raise SystemExit(signum)

    monkeypatch.setattr(ray, "init", lambda **kw: signal.signal(signal.SIGTERM, rays))
    before = signal.getsignal(signal.SIGTERM)
    try:
        def ours(signum, frame):
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, ours)
        ray_init(address="local")
        assert signal.getsignal(signal.SIGTERM) is ours
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        ray_init(address="local")
        assert signal.getsignal(signal.SIGTERM) is rays
    finally:
        signal.signal(signal.SIGTERM, before)


def test_every_command_stops_on_sigterm_in_one_line_and_puts_the_handler_back(tmp_path, capsys, monkeypatch):
    """The CLI's stop (search.tuner.stop_on_sigterm) around any command: a SIGTERM where none of its own code
    catches it is one line and exit 143 (the signal remembered even where Ray re-raises a plain KeyboardInterrupt);
    the caller's handler is back afterwards."""
    import os
    import signal

    from search.cli import archs, main

    def stopped(args):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            signal.pause()
        except KeyboardInterrupt:
            raise KeyboardInterrupt from None  # as Ray re-raises one: a fresh exception, no attribute
        raise AssertionError("SIGTERM did not stop the command")

    def caller(signum, frame):  # what runs if main does not put its own in (a clean failure, not pytest killed)
        raise RuntimeError("the CLI set no SIGTERM handler")

    monkeypatch.setattr(archs, "cmd_archs", stopped)
    before = signal.signal(signal.SIGTERM, caller)
    try:
        assert main(["archs"]) == 143
        err = capsys.readouterr().err.strip().splitlines()
        assert err == ["cifar-tune archs: interrupted (SIGTERM)"], err
        assert signal.getsignal(signal.SIGTERM) is caller
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_search_stopped_before_it_started_says_nothing_was_written(tmp_path, capsys, monkeypatch):
    """A Ctrl-C while a new search still validates (here: the storage check) leaves nothing to resume: its line
    says so instead of naming a --resume that would answer "no experiment there"."""
    import search.tuner
    from search.cli import main

    def stopped(storage):
        raise KeyboardInterrupt

    monkeypatch.setattr(search.tuner, "check_storage", stopped)
    assert main(["search", "--arch", "origin_net", "--storage", str(tmp_path / "r"), "--name", "x"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["cifar-tune search: interrupted (SIGINT); nothing was written (the search had not started)"], err
    assert not (tmp_path / "r" / "x").exists()
