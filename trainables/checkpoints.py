"""Resume a trial from its newest checkpoint that loads; fall back to an older one when the newest is corrupt.

Ray Tune hands a restarted trial only the checkpoint it recorded last (``tune.get_checkpoint()``) and has no
fallback when that one cannot be read (a node died mid-upload, a disk filled up, a file was truncated). Tune keeps
``num_to_keep`` checkpoints of a trial as sibling folders ``checkpoint_000000``, ``checkpoint_000001``, ... in the
trial directory. :func:`load_newest_valid` tries the recorded one, then its older siblings, taking the one that holds
the latest epoch (a folder's number does not always order its epoch), and when it had to skip one it says so: a
warning in the trial's log and a line in ``checkpoint_fallback.jsonl`` beside the checkpoints (which checkpoint
failed, why, and which one the trial resumed from). Not ``.json``: Tune's resume copies the experiment's ``*.json``
files to the driver and back, which would put an old copy over a newer one.

The state it returns carries its own ``epoch`` and ``history``, so training continues at the epoch after the
checkpoint actually loaded: the epochs after it are trained and reported again, none is skipped, and no metric is
carried over from the unreadable checkpoint.
"""
from __future__ import annotations

import json
import logging
import re
import sys
import time
from pathlib import Path
from typing import Callable

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = re.compile(r"^checkpoint_(\d+)$")  # Tune's folder names
FALLBACK_FILE = "checkpoint_fallback.jsonl"  # one JSON record per line
STATE_KEYS = ("model", "optimizer", "epoch")  # what a checkpoint of trainables.train must hold


def checkpoint_index(path: str) -> int | None:
    """The number of a ``checkpoint_000042`` folder (42), or None for any other name."""
    match = CHECKPOINT_DIR.match(path.rstrip("/").rsplit("/", 1)[-1])
    return int(match.group(1)) if match else None


def candidates(checkpoint) -> list:
    """``checkpoint`` and then its older siblings in the same trial directory, newest first."""
    from pyarrow.fs import FileSelector, FileType
    from ray.tune import Checkpoint

    index = checkpoint_index(checkpoint.path)
    if index is None:  # not in a trial directory: nothing to fall back to
        return [checkpoint]
    parent = checkpoint.path.rstrip("/").rsplit("/", 1)[0]
    infos = checkpoint.filesystem.get_file_info(FileSelector(parent, allow_not_found=True))
    older = sorted(((checkpoint_index(i.path), i.path) for i in infos
                    if i.type == FileType.Directory and (checkpoint_index(i.path) or 0) < index
                    and checkpoint_index(i.path) is not None), reverse=True)
    return [checkpoint] + [Checkpoint(p, filesystem=checkpoint.filesystem) for _, p in older]


def newest_on_disk(trial_dir, load: Callable[[str], dict]) -> tuple | None:
    """``(folder, state)`` of the checkpoint in the local ``trial_dir`` that holds the latest epoch; None if the folder
    has no checkpoint. Unreadable ones are passed over; if none reads, ValueError names the folder and the first error.

    A folder's number does not always order its epoch: after a PBT exploit Tune gave a trial's epoch-3 checkpoint
    the number 0, beside its epoch-2 one numbered 1. The epoch each state carries is the order; a tie goes to the
    higher number.
    """
    best, failed = None, []
    for folder in Path(trial_dir).iterdir() if Path(trial_dir).is_dir() else []:
        index = checkpoint_index(folder.name)
        if index is None or not folder.is_dir():
            continue
        try:
            state = _check(load(str(folder)))
        except Exception as e:  # torch.load raises many types for a truncated or garbled file
            failed.append(f"{folder.name} ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})")
            continue
        if best is None or (int(state["epoch"]), index) > best[0]:
            best = ((int(state["epoch"]), index), folder, state)
    if best is None and failed:
        raise ValueError(f"no checkpoint in {str(trial_dir)!r} can be read: {failed[0]}")
    return (best[1], best[2]) if best else None


def _check(state) -> dict:
    if not isinstance(state, dict) or any(k not in state for k in STATE_KEYS):
        keys = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"not a training checkpoint (holds {keys})")
    return state


def _name(checkpoint) -> str:
    return checkpoint.path.rstrip("/").rsplit("/", 1)[-1]


def load_newest_valid(checkpoint, load: Callable[[str], dict]) -> dict | None:
    """The state in ``checkpoint``, or in the newest older sibling that loads; None if none does.

    ``load(directory)`` reads a state from a local checkpoint directory (``trainables.train.load_state``).
    A fallback is logged and recorded in ``FALLBACK_FILE`` in the trial directory; so is None (no readable
    checkpoint at all: the trial starts again from epoch 1).
    """
    failed, best = [], None
    for n, cand in enumerate(candidates(checkpoint)):
        try:
            with cand.as_directory() as d:
                state = _check(load(d))
        except Exception as e:  # torch.load raises many types for a truncated or garbled file
            failed.append({"checkpoint": _name(cand), "error": f"{type(e).__name__}: {e}"[:500]})
            continue
        if n == 0:  # the recorded one loads: the usual case, nothing else read
            return state
        # A fallback: every older sibling is read and the latest epoch wins (a tie: the higher number), since a
        # folder's number does not always order its epoch (after a PBT exploit, see newest_on_disk).
        key = (int(state["epoch"]), checkpoint_index(cand.path) or 0)
        if best is None or key > best[0]:
            best = (key, cand, state)
    if best is None:
        _say(checkpoint, failed, None, 0)
        return None
    _say(checkpoint, failed, _name(best[1]), int(best[2]["epoch"]))
    return best[2]


def _say(checkpoint, failed: list[dict], used: str | None, epoch: int) -> None:
    """Warn in the trial's log and add a line to FALLBACK_FILE in the trial directory."""
    bad = ", ".join(f"{f['checkpoint']} ({f['error'].splitlines()[0][:120]})" for f in failed)
    if used:
        msg = f"checkpoint fallback: could not read {bad}; resuming from {used} (epoch {epoch}), " \
              f"epochs after {epoch} are trained again"
    else:
        msg = f"checkpoint fallback: could not read any checkpoint ({bad}); the trial starts again from epoch 1"
    logger.warning(msg)
    print(f"WARNING: {msg}", file=sys.stderr, flush=True)  # Ray's worker log, whatever the logging config
    record = {"time": time.time(), "recorded": _name(checkpoint), "failed": failed, "resumed_from": used,
              "epoch": epoch}
    if checkpoint_index(checkpoint.path) is None:
        return
    path = checkpoint.path.rstrip("/").rsplit("/", 1)[0] + "/" + FALLBACK_FILE
    fs = checkpoint.filesystem
    try:
        try:  # read and rewrite: object stores have no append
            with fs.open_input_stream(path) as f:
                before = f.read()
        except (FileNotFoundError, OSError):
            before = b""
        with fs.open_output_stream(path) as f:
            f.write(before + json.dumps(record).encode() + b"\n")
    except Exception as e:  # the record is a courtesy: never fail a trial over it
        logger.warning("could not write %s: %s", path, e)
