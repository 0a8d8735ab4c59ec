"""The test-split ledger: every scoring of a test split, counted, so a published number can say how many looks it took.

A record is appended each time a model is run on a dataset's test split (``analysis.evaluate`` is the only code
that does so: retrained runs, grid checkpoints, the SVM baseline). It names the dataset by checksum, the net, a hash
of the config without its seed (``config_hash``), the seed, the number of training images, the experiment, the
command, the time and what the run scored. Records go to two files, both append-only JSON lines:

- the dataset's ledger, ``<ledger dir>/<dataset checksum>.jsonl`` (``CIFAR_TUNE_LEDGER_DIR``, default
  ``test-ledger/`` inside the data cache ``CIFAR_TUNE_CACHE_DIR``): every use on this machine, any experiment;
- the experiment's own ``EXP/test_ledger.jsonl``, which travels with the experiment folder.

A **use** is one config of one net scored on the test split: its seeds are runs of the same use (an evaluation
interrupted and continued scores the missing seeds, not a new config). A saved run that an evaluation re-reads
from disk is not scored again and writes nothing. Appends take an exclusive ``fcntl`` lock on the file and write
whole lines, so two processes appending at once leave both records intact.

    >>> config_hash({"arch": "simple_cnn", "lr": 0.1, "seed": 3}) == config_hash({"lr": 0.1, "arch": "simple_cnn"})
    True
"""
from __future__ import annotations

import datetime as _dt
import fcntl
import hashlib
import json
import math
import os
import socket
from pathlib import Path

EXPERIMENT_LEDGER = "test_ledger.jsonl"
# What a config hash ignores: the seed (runs of one use) and where the run happened (not the model).
NOT_HASHED = ("seed", "data_dir", "device")


def ledger_dir() -> Path:
    """The dataset ledgers' folder (``CIFAR_TUNE_LEDGER_DIR``, else ``test-ledger/`` in the data cache); DataError,
    one line naming the variable and its value, where it cannot be a folder (a file is there, or above it)."""
    from trainables.data import default_cache_dir

    d = Path(os.environ.get("CIFAR_TUNE_LEDGER_DIR") or default_cache_dir() / "test-ledger")
    _check_dir(d)
    return d


def check_writable() -> Path:
    """``ledger_dir()``, checked before a test-split scoring is made: a folder there (or one that can be made) that
    this process can write. A scoring whose record cannot be appended is a use lost from the count, after its
    training: a command that will score calls this before it trains (DataError, one line)."""
    d = ledger_dir()
    existing = next(p for p in (d, *d.parents) if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise _dir_error(d, f"{str(existing)!r} is not writable by this user")
    return d


def _dir_error(d: Path, why: str):
    from trainables.data import DataError

    named = os.environ.get("CIFAR_TUNE_LEDGER_DIR")
    where = f"CIFAR_TUNE_LEDGER_DIR={named!r}" if named else f"the test-split ledger's folder {str(d)!r}"
    return DataError(f"{where}: {why}; the ledger needs a folder (made if missing): "
                     + ("point the variable at one, or unset it for the default in the data cache" if named else
                        "set CIFAR_TUNE_LEDGER_DIR to one, or CIFAR_TUNE_CACHE_DIR to another cache"))


def _check_dir(d: Path) -> None:
    """DataError where ``d`` or a folder above it is not a folder (a file, or a path the system refuses)."""
    for p in (d, *d.parents):
        try:
            if p.is_dir():
                return
            if p.exists():
                raise _dir_error(d, f"{str(p)!r} is a file, not a folder" if p == d else
                                 f"{str(p)!r}, a folder on its path, is a file")
        except OSError as e:  # e.g. a name longer than the filesystem allows
            raise _dir_error(d, e.strerror or str(e)) from None


def ledger_path(checksum: str) -> Path:
    return ledger_dir() / f"{checksum}.jsonl"


def config_hash(config: dict) -> str:
    """16 hex digits of the config without its seed and machine settings: what identifies one use."""
    kept = {k: v for k, v in config.items() if k not in NOT_HASHED}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _append(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released on close; O_APPEND puts each write at the end
        try:
            f.write("".join(lines))
            f.flush()
            os.fsync(f.fileno())
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def append(path: str | os.PathLike, record: dict) -> None:
    """Append one record as it is (a scoring carried from another machine's ledger) to the ledger file ``path``."""
    _append(Path(path), [json.dumps(record, default=str) + "\n"])


def record_use(*, checksum: str, dataset: str, arch: str, config: dict, seed: int, train_images: int | None,
               experiment: str | os.PathLike | None, command: str, scores: dict) -> dict:
    """Append one scoring of the test split to the dataset's ledger and the experiment's; returns the record."""
    record = {"time": _dt.datetime.now().isoformat(timespec="seconds"), "dataset": dataset, "checksum": checksum,
              "arch": arch, "config_hash": config_hash(config), "seed": seed, "train_images": train_images,
              "experiment": str(Path(experiment).resolve()) if experiment else None, "command": command,
              "host": socket.gethostname(), "scores": scores}
    line = json.dumps(record, default=str) + "\n"
    _append(ledger_path(checksum), [line])
    if experiment:
        _append(Path(experiment) / EXPERIMENT_LEDGER, [line])
    return record


def is_record(record) -> bool:
    """Whether a parsed line is a record a use can be counted from: a JSON object naming its net and its config
    hash, both strings (what identifies a use). Its score is read with care in ``uses``."""
    return isinstance(record, dict) and isinstance(record.get("arch"), str) and isinstance(
        record.get("config_hash"), str)


def _accuracy(record: dict) -> float | None:
    """The record's finite test accuracy, or None (no scores, or scores that are not a number)."""
    scores = record.get("scores")
    acc = scores.get("test_accuracy") if isinstance(scores, dict) else None
    if isinstance(acc, bool) or not isinstance(acc, (int, float)) or not math.isfinite(acc):
        return None
    return acc


def read(path: str | os.PathLike) -> list[dict]:
    """The records of one ledger file (an absent file: none). A line that is not a record is skipped, not fatal:
    one cut short by a crash, one that is not UTF-8 or not JSON, or JSON that is not a record (``is_record``);
    ``read_counted`` also says how many."""
    return read_counted(path)[0]


def read_counted(path: str | os.PathLike) -> tuple[list[dict], int]:
    """(``read``'s records, how many non-blank lines it skipped): each skipped line may be a test-split use it
    cannot count, so ``cifar-tune ledger`` says so rather than show a smaller count as the whole story."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return [], 0
    out, bad = [], 0
    for line in raw.splitlines():  # each line decoded alone: a line of stray bytes costs that line only
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            record = None
        if is_record(record):
            out.append(record)
        else:
            bad += 1
    return out, bad


def read_dataset(checksum: str) -> list[dict]:
    return read(ledger_path(checksum))


def read_experiment(exp_dir: str | os.PathLike) -> list[dict]:
    return read(Path(exp_dir) / EXPERIMENT_LEDGER)


def uses(records: list[dict], arch: str | None = None) -> list[dict]:
    """One entry per use (net, config hash), in order of first scoring: runs, seeds, first and last time, scores."""
    out: dict[tuple, dict] = {}
    for r in records:
        if not is_record(r):  # records as read() returns them always are; a caller's own list may hold others
            continue
        if arch is not None and r.get("arch") != arch:
            continue
        key = (r.get("arch"), r.get("config_hash"))
        u = out.setdefault(key, {"arch": key[0], "config_hash": key[1], "first": r.get("time"), "runs": 0,
                                 "seeds": [], "train_images": r.get("train_images"),
                                 "experiment": r.get("experiment"), "test_accuracy": []})
        u["runs"] += 1
        u["seeds"].append(r.get("seed"))
        u["last"] = r.get("time")
        acc = _accuracy(r)
        if acc is not None:
            u["test_accuracy"].append(acc)
    per_net: dict = {}
    for u in out.values():  # numbered per net, in order of first scoring
        per_net[u["arch"]] = u["use"] = per_net.get(u["arch"], 0) + 1
    return list(out.values())
