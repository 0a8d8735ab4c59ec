"""Helpers for tests that run real searches in subprocesses: start, wait, SIGKILL, and read what they left.

A search runs as ``python -m search.cli search ...`` (the ``cifar-tune`` entry point) in its own session, so a
SIGKILL to its process group takes the driver and the Ray processes it started (raylet, GCS, workers) with it,
as a crash of the machine's login session would. ``tests/fault_driver.py`` is the same CLI with faults injected
into the trials.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAULT_DRIVER = REPO / "tests" / "fault_driver.py"


def env(**extra) -> dict:
    e = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_USAGE_STATS_ENABLED": "0", **extra}
    e["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), e.get("PYTHONPATH", "")) if p)
    return e


def command(args: list[str], faults: dict | None = None) -> list[str]:
    if faults:
        return [sys.executable, str(FAULT_DRIVER), json.dumps(faults), *map(str, args)]
    return [sys.executable, "-m", "search.cli", *map(str, args)]


def run_cli(args: list, faults: dict | None = None, timeout: float = 600, **env_extra) -> subprocess.CompletedProcess:
    """Run to the end; stdout and stderr together in ``.stdout``."""
    return subprocess.run(command(args, faults), env=env(**env_extra), cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout, start_new_session=True)


def start_cli(args: list, log: Path, faults: dict | None = None, **env_extra) -> subprocess.Popen:
    """Start in a new session (its own process group); output goes to ``log``."""
    with open(log, "w") as out:
        return subprocess.Popen(command(args, faults), env=env(**env_extra), cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def session_pids(sid: int) -> list[int]:
    """Processes still alive in session ``sid`` (all started by us: the driver and its Ray processes)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[3]) == sid and fields[0] != "Z":  # field 6 of stat: session id; skip zombies
            out.append(int(entry.name))
    return out


def kill_session(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGKILL the driver's process group, then any straggler of its session, and wait until all are gone."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=timeout)
    deadline = time.monotonic() + timeout
    while (left := session_pids(proc.pid)) and time.monotonic() < deadline:
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
    assert not session_pids(proc.pid), f"processes of the killed search survive: {session_pids(proc.pid)}"


def wait_for(predicate, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None,
             what: str = "condition", interval: float = 0.2):
    """Poll ``predicate`` until it returns something truthy; fail early if ``proc`` ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-3000:] if log else ""
            raise AssertionError(f"search exited ({proc.returncode}) before {what}:\n{tail}")
        time.sleep(interval)
    tail = log.read_text()[-3000:] if log else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}:\n{tail}")


# --------------------------------------------------------------------------------------------- reading an experiment

def trial_dirs(exp: Path) -> dict[str, Path]:
    """trial_id -> trial folder (named <arch>_<trial id> by search.tuner.trial_dirname)."""
    return {d.name.rsplit("_", 1)[1]: d for d in Path(exp).iterdir() if d.is_dir() and (d / "params.json").exists()}


def results(trial_dir: Path) -> list[dict]:
    """Every line of result.json that parses (a line cut short by a kill is dropped)."""
    path = Path(trial_dir) / "result.json"
    rows = []
    for line in (path.read_text().splitlines() if path.exists() else []):
        try:
            rows.append(json.loads(line))
        except ValueError:
            break
    return rows


def asha_stops(exp: Path) -> dict[str, int]:
    path = Path(exp) / "asha_state.json"
    if not path.exists():
        return {}
    try:
        return {s["trial_id"]: s["epoch"] for s in json.loads(path.read_text())["stops"]}
    except ValueError:  # being replaced: os.replace makes that rare but a read can still race
        return {}


def checkpoints(trial_dir: Path) -> list[Path]:
    return sorted(p for p in Path(trial_dir).glob("checkpoint_*") if p.is_dir())


def report(exp: Path) -> list[dict]:
    """What ``cifar-tune report EXP --json`` prints: one record per trial."""
    from analysis.load import load_trials

    return load_trials(exp)


def optuna_trials(storage: str, study_name: str):
    import optuna

    return optuna.load_study(study_name=study_name, storage=storage).get_trials(deepcopy=False)


def epochs_of(rows: list[dict]) -> list[int]:
    return [r["epoch"] for r in rows if "epoch" in r]


def saved_trials(exp: Path) -> dict[str, dict]:
    """Tune's own view as last saved to the experiment dir: trial_id -> {"status", "last_result", "num_failures"}.

    Read straight from the newest ``experiment_state-*.json`` (plain JSON around a few pickled fields), so it can be
    polled while the search runs; {} while the file is missing or half-copied.
    """
    files = sorted(Path(exp).glob("experiment_state-*.json"))
    if not files:
        return {}
    try:
        data = json.loads(files[-1].read_text())
        out = {}
        for state, meta in data["trial_data"]:
            state, meta = json.loads(state), json.loads(meta)
            out[state["trial_id"]] = {"status": state["status"], "last_result": meta.get("last_result") or {},
                                      "num_failures": meta.get("num_failures", 0)}
        return out
    except (OSError, ValueError, KeyError):
        return {}


def lost_tune_trials(storage: str, name: str, archs: list[str]) -> dict[str, set[str]]:
    """arch -> the Tune ids the searcher listed as lost in a driver kill (search.searcher.LOST_ATTR)."""
    import optuna

    from search.searcher import LOST_ATTR

    out = {}
    for arch in archs:
        try:
            study = optuna.load_study(study_name=f"{name}-{arch}", storage=storage)
        except KeyError:
            study = None
        out[arch] = set(study.user_attrs.get(LOST_ATTR, [])) if study else set()
    return out


def optuna_by_tune_id(storage: str, name: str, archs: list[str]) -> dict[str, list]:
    """arch -> the study's trials (FrozenTrial), for the experiment ``name``."""
    out = {}
    for arch in archs:
        try:
            out[arch] = optuna_trials(storage, f"{name}-{arch}")
        except KeyError:
            out[arch] = []
    return out


# --------------------------------------------------------------------------------------------- PostgreSQL

def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """A throw-away PostgreSQL server of our own on a loopback port: ``initdb`` into a temporary directory,
    ``pg_ctl start``; ``stop()`` shuts it down and deletes it. As root, it runs as the ``postgres`` user (initdb
    refuses root). ``url`` is the SQLAlchemy URL of its ``postgres`` database (user ``cifar``, trust auth)."""

    def __init__(self):
        import pwd
        import shutil
        import tempfile

        missing = [exe for exe in ("initdb", "pg_ctl") if not shutil.which(exe)]
        if missing:
            raise FileNotFoundError(f"PostgreSQL binaries not on PATH: {', '.join(missing)}")
        self.user = None
        self.root = Path(tempfile.mkdtemp(prefix="cifar-tune-pg-"))
        if os.geteuid() == 0:
            name = "postgres" if _has_user("postgres") else "nobody"
            self.user = name
            pw = pwd.getpwnam(name)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self.data = self.root / "data"
        self.port = free_port()
        self._run(["initdb", "-D", str(self.data), "-U", "cifar", "--auth=trust", "-E", "UTF8", "--no-sync"])
        # max_connections: PostgreSQL's default (100). At 50, a resume right after a SIGKILLed driver was once refused
        # "too many clients already" on a loaded machine (the killed driver's backends not yet gone).
        self._run(["pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-t", "60", "-o",
                   f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} "
                   f"-c fsync=off -c max_connections=100", "start"])
        self.url = f"postgresql+psycopg2://cifar@127.0.0.1:{self.port}/postgres"

    def _run(self, cmd: list[str]) -> None:
        out = subprocess.run(cmd, user=self.user, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             cwd=self.root, timeout=120)
        if out.returncode:
            raise RuntimeError(f"{' '.join(cmd[:1])} failed ({out.returncode}):\n{out.stdout[-2000:]}")

    def stop(self) -> None:
        import shutil

        try:
            self._run(["pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop"])
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def one_line_error(capsys, *named) -> str:
    """The CLI refused with exactly one stderr line naming each of ``named``; returns it."""
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error" in err, err
    for n in named:
        assert n in err, err
    return err
