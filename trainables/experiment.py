"""The experiment folder, owned here: its file names, study names, trial outcomes, the test-split rule, the lock.

``search/`` writes an experiment and ``analysis/`` reads it; both take every name from this module, which sits below
both (it imports neither, as the design guide asks). An experiment directory ``STORAGE/NAME`` holds:

    spec.json           the resolved search (command, spaces, versions, hardware, data checksum)   SPEC_FILE
    asha_state.json     ASHA's rung records and stops, written as they are made                      ASHA_FILE
    moasha_state.json   the same for MO-ASHA (a multi-objective search), with every ranking      MOASHA_FILE
    hyperband_state.json  HyperBand's brackets, pauses, halvings and stops (hyperband)         HYPERBAND_FILE
    pbt_state.json      PBT's population and exploits: who copied whom, when, old -> new (pbt)       PBT_FILE
    optuna.db           one Optuna study per net, named NAME-ARCH (unless --optuna-storage)        OPTUNA_DB
    evaluation.json     the final test-set evaluation (and evaluation.csv)                     EVALUATION_FILE
    .cifar-tune.lock    who uses the experiment now (host, pid, since), see ExperimentLock        LOCK_FILE
    <arch>_<trial id>/  one folder per trial (Ray Tune's result.json, checkpoint_NNNNNN/)
"""
from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import shlex
import shutil
import socket
from pathlib import Path

SPEC_FILE = "spec.json"
ASHA_FILE = "asha_state.json"
MOASHA_FILE = "moasha_state.json"
HYPERBAND_FILE = "hyperband_state.json"
PBT_FILE = "pbt_state.json"
OPTUNA_DB = "optuna.db"
EVALUATION_FILE = "evaluation.json"
EVALUATION_CSV = "evaluation.csv"
LOCK_FILE = ".cifar-tune.lock"

# A trial's outcome. Ended: one of OUTCOMES_ENDED; otherwise running or pending (a live or killed search).
COMPLETED, STOPPED, DIVERGED, ERRORED, RUNNING, PENDING = "completed", "stopped", "diverged", "errored", "running", \
    "pending"
OUTCOMES_ENDED = (COMPLETED, STOPPED, DIVERGED, ERRORED)


def study_name(experiment_name: str, arch: str) -> str:
    """The Optuna study of one net in an experiment: ``{name}-{arch}``."""
    return f"{experiment_name}-{arch}"


def sqlite_url(exp_dir: str | os.PathLike) -> str:
    """The default Optuna storage of an experiment: ``sqlite:///EXP/optuna.db`` (absolute)."""
    return f"sqlite:///{Path(exp_dir).resolve()}/{OPTUNA_DB}"


# --------------------------------------------------------------------------------------------- where it lies
# An experiment is where it lies: its files are found from the folder a command is given, never from a path recorded
# inside it (spec.json's storage and name say where it was started). Only a study kept in a database by URL
# (--optuna-storage, e.g. PostgreSQL) is found by the URL recorded.

# Optuna's column for study names: String(MAX_INDEXED_STRING_LENGTH) in optuna/storages/_rdb/models.py, 512 in the
# pinned Optuna (PostgreSQL and MySQL enforce it, SQLite does not). tests/test_where_it_lies.py checks it.
STUDY_NAME_MAX = 512

# Tune's restore unpickles our searcher and scheduler, which were pickled with the absolute paths of the folder
# they were built in. While a resume restores them, this holds (folder it lies in, its study URL or None when the
# study is not in the folder), so that they open the files of that folder (search.tuner.run_search sets it).
_RESTORING: list[tuple[Path, str | None]] = []


def restoring(exp_dir: str | os.PathLike | None, study_url: str | None = None) -> None:
    """Say which experiment folder Tune is restoring now (None: none)."""
    _RESTORING[:] = [(Path(exp_dir).resolve(), study_url)] if exp_dir is not None else []


def restored_path(path: str | os.PathLike | None) -> Path | None:
    """A file of an experiment recorded by absolute path, as the same file in the folder being restored."""
    if path is None or not _RESTORING:
        return Path(path) if path is not None else None
    return _RESTORING[0][0] / Path(path).name


def restored_study_url(url: str) -> str:
    """The study URL a restored searcher opens: the restored folder's optuna.db if its study lives there."""
    return (_RESTORING[0][1] or url) if _RESTORING else url


def study_url(exp_dir: str | os.PathLike, spec: dict) -> str | None:
    """Where an experiment's Optuna studies are: its --optuna-storage URL, else ``optuna.db`` in the folder it lies
    in; None for a grid experiment (it has no study)."""
    if spec.get("sampler") == "grid":
        return None
    return spec.get("optuna_storage") or sqlite_url(exp_dir)


def shown_url(url: str) -> str:
    """A database URL fit to print: its password hidden."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy parses: shown as given
        return url


def study_error(exp_dir: str | os.PathLike, spec: dict) -> str | None:
    """Why the experiment's Optuna studies cannot be read (a damaged or missing file, a database that does not
    answer, a net's study missing), naming the storage; None when every net's study is there. Only reads: a
    missing optuna.db is not created, and Optuna (which would create its tables) never opens a damaged one."""
    url = study_url(exp_dir, spec)
    if url is None:
        return None
    wanted = [study_name(spec.get("name", ""), a) for a in spec.get("archs", [])]
    try:
        missing = [n for n in wanted if n not in _study_names(url)]
        if not missing:
            return None
        why = f"no study {missing[0]!r} in it"
    except Exception as e:  # sqlite3 / SQLAlchemy / driver errors: a damaged file, a server that does not answer
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        why = f"{type(e).__name__}: {lines[0][:200] if lines else ''}"
    return f"the Optuna study storage {shown_url(url)} cannot be read ({why})"


def unreadable_study(exp_dir: str | os.PathLike, spec: dict) -> str | None:
    """:func:`study_error` as the one line a command refuses with: what is broken, what is left (the Ray
    results) and what to do; None when the studies can be read."""
    error = study_error(exp_dir, spec)
    if error is None:
        return None
    exp = Path(exp_dir)
    trials = sum(1 for d in exp.iterdir() if (d / "params.json").is_file()) if exp.is_dir() else 0
    state = ", Tune's saved state" if exp.is_dir() and any(exp.glob("experiment_state*.json")) else ""
    return (f"{error}; the Ray results in {str(exp)!r} ({trials} trial folders{state}) are intact and untouched: "
            f"restore the study (its {OPTUNA_DB} from a backup, or reach its database again), or read the trials "
            f"without it: cifar-tune report {shlex.quote(str(exp))} --without-study")


def _study_names(url: str) -> set[str]:
    """The study names in an Optuna database, read with a plain connection (SQLite: after an integrity check)."""
    if url.startswith("sqlite:///"):
        import sqlite3
        import urllib.parse

        path = url[len("sqlite:///"):]
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path} is missing")
        # mode=rw: never creates the file; a hot journal left by a killed writer is rolled back as Optuna would.
        con = sqlite3.connect(f"file:{urllib.parse.quote(path)}?mode=rw", uri=True, timeout=30)
        try:
            check = con.execute("PRAGMA quick_check").fetchone()
            if not check or check[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check: {check[0] if check else 'no answer'}")
            return {row[0] for row in con.execute("SELECT study_name FROM studies")}
        finally:
            con.close()
    import sqlalchemy

    backend = sqlalchemy.engine.make_url(url).get_backend_name()
    # A server that does not answer must not hang the command: 10 s, then one line.
    connect_args = {"connect_timeout": 10} if backend in ("postgresql", "mysql") else {}
    engine = sqlalchemy.create_engine(url, connect_args=connect_args)
    try:
        with engine.connect() as con:
            return {row[0] for row in con.execute(sqlalchemy.text("SELECT study_name FROM studies"))}
    finally:
        engine.dispose()


def write_json(path: str | os.PathLike, obj, *, indent: int | None = 1, sort_keys: bool = False) -> None:
    """Write ``obj`` as JSON atomically: to a hidden temporary file beside ``path`` (named by this process, so two
    writers never share one), then renamed over it. A reader sees the old file or the whole new one, never half."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(obj, indent=indent, sort_keys=sort_keys, default=str))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def trial_outcome(tune_status: str, last_result: dict | None) -> str:
    """completed | stopped | diverged | errored | running | pending, from Tune's trial status and the last result.

    A TERMINATED trial whose last epoch said ``running`` was stopped early (by ASHA); one that said nothing errored.
    """
    if tune_status == "ERROR":
        return ERRORED
    if tune_status == "TERMINATED":
        status = (last_result or {}).get("status")
        return {"completed": COMPLETED, "diverged": DIVERGED, "running": STOPPED}.get(status, ERRORED)
    return RUNNING if tune_status == "RUNNING" else PENDING


def without_test_split(data):
    """The dataset with its test split emptied: what a trial (or a retrain) gets, so search never sees test images
    (they are not even shipped to the workers). Only ``analysis.evaluate`` reads the test split, once."""
    import dataclasses

    return dataclasses.replace(data, test_x=data.test_x[:0], test_y=data.test_y[:0])


def data_change(record: dict, data) -> str | None:
    """How ``data`` differs from the data spec.json's ``record`` says the experiment ran on ("sha256 <then>..., now
    <now>... in <source>"), or None when it is the same (or the record names none). A search resumed, or scored,
    on other data would mix two experiments and file its test-split uses under another data's ledger."""
    then = (record.get("data") or {}).get("checksum")
    if not then or then == data.checksum:
        return None
    return f"sha256 {then[:12]}..., now {data.checksum[:12]}... in {data.source}"


# --------------------------------------------------------------------------------------------- disk full

def free_space(path: str | os.PathLike) -> str:
    """Free space on the filesystem holding ``path`` (its nearest existing parent), e.g. '12.3 MB'; '?' if unknown."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        free = shutil.disk_usage(p).free
    except OSError:
        return "?"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if free < 1000 or unit == "TB":
            return f"{free:.0f} {unit}" if unit == "B" else f"{free:.1f} {unit}"
        free /= 1000
    return "?"


def disk_full_cause(exc: BaseException) -> OSError | None:
    """The ENOSPC / EDQUOT OSError in ``exc``'s chain (cause, context, or a message saying so), else None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return exc
        text = str(exc)
        if "No space left on device" in text or "database or disk is full" in text or "Disk quota exceeded" in text:
            # Ray hands a driver-side error on as the text of its traceback: take the file name from there.
            import re

            named = re.findall(r"(?:No space left on device|Disk quota exceeded): '([^']+)'", text)
            return OSError(errno.ENOSPC, "No space left on device",
                           getattr(exc, "filename", None) or (named[-1] if named else None))
        exc = exc.__cause__ or exc.__context__
    return None


# --------------------------------------------------------------------------------------------- the lock

class ExperimentLocked(RuntimeError):
    """Another live process holds the experiment; the message names it (host, pid, since)."""


class ExperimentLock:
    """Exclusive use of an experiment directory for the lifetime of a search, resume or evaluate.

    ``flock`` on ``EXP/.cifar-tune.lock``; the file's body says who holds it (host, pid, command, since). The kernel
    drops an flock when its holder dies, however it dies, so a lock left by a SIGKILLed driver is stale by
    construction: the next ``--resume`` takes it (and says whose it was). Where flock is not enforced, or for a
    URL storage (s3://...), there is no lock: :meth:`acquire` returns without one (``held`` stays False).

    On NFSv4 (and AWS EFS, which is NFSv4.1) flock is mapped to a byte-range lock the server enforces across
    clients, and released when the client's lease expires (a lost node's lock goes after ~90 s).
    """

    def __init__(self, exp_dir: str | os.PathLike, what: str):
        self.exp_dir, self.what = str(exp_dir), what
        self.fd: int | None = None
        self.stale: dict = {}

    @property
    def held(self) -> bool:
        return self.fd is not None

    @property
    def path(self) -> Path:
        return Path(self.exp_dir) / LOCK_FILE

    def acquire(self, create: bool = True, announce: bool = True) -> "ExperimentLock":
        """Take the lock (creating the directory unless ``create`` is False: then a missing one is not locked);
        raises :class:`ExperimentLocked` naming the holder. ``announce``: say so on stderr when taking over the
        lock of a holder that died without releasing it."""
        import fcntl

        if "://" in self.exp_dir:  # object storage: no lock primitive (see README, Reliability)
            return self
        if not create and not Path(self.exp_dir).is_dir():
            return self
        Path(self.exp_dir).mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            self._wait_for_live_holder()
            raise ExperimentLocked(f"experiment {self.exp_dir!r} is in use by {self.holder_text()}; wait for it "
                                   f"to end, or stop that process") from None
        except OSError as e:  # ENOLCK etc.: a filesystem without locks; go on unlocked rather than refuse
            if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                os.close(fd)
                return self
            os.close(fd)
            raise
        self.stale = self.holder()  # a body left by a holder that did not release (killed): now ours
        if self.stale and announce:
            import sys

            print(f"note: {self.exp_dir!r} was last held by {self.holder_text()}, which is gone; lock taken over",
                  file=sys.stderr, flush=True)
        body = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "what": self.what,
                           "since": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
        os.ftruncate(fd, 0)
        os.pwrite(fd, body.encode() + b"\n", 0)
        self.fd = fd
        return self

    def holder(self) -> dict:
        """The lock file's body ({} if absent or unreadable)."""
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def _wait_for_live_holder(self, seconds: float = 10.0) -> None:
        """The holder writes its body just after taking the lock; until then the file is empty or still names a
        dead earlier holder. Wait (briefly) for the body of a live holder, so the refusal names the right one."""
        import time

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            h = self.holder()
            if h and (h.get("host") != socket.gethostname() or _pid_alive(h.get("pid"))):
                return
            time.sleep(0.05)

    def holder_text(self) -> str:
        h = self.holder()
        if not h:
            return "another process (no holder recorded yet)"
        return f"{h.get('what', 'a process')} on host {h.get('host')} pid {h.get('pid')} since {h.get('since')}"

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.ftruncate(self.fd, 0)  # the body is about a holder; no holder now
        except OSError:
            pass
        os.close(self.fd)  # closing the descriptor drops the flock
        self.fd = None

    def __enter__(self) -> "ExperimentLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _pid_alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (TypeError, ValueError, ProcessLookupError):
        return False
    except PermissionError:  # alive, another user's
        return True
    return True
