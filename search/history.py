"""A trial's history (``result.json``) holds an epoch only once its checkpoint is on record: no epoch twice.

Ray Tune handles a result that carries a checkpoint in two steps on the driver: it logs the result (Ray's
``JsonLoggerCallback`` appends the line to ``result.json`` at once), then asks the trial's actor for the checkpoint
in a second call and only when that returns records it as the trial's newest (``on_checkpoint``). A node lost
between the two steps (more likely the busier the machine) leaves epoch k in the history while the retry restores
the checkpoint of epoch k-1 and trains epoch k again: epoch k twice (seen in test_fault3 under load).

:class:`CheckpointedResults` takes the place of Ray's JSON logger and keeps the invariant by construction: a result
is held back until the checkpoint that contains it is recorded (``on_checkpoint``), and dropped when the trial is
retried before that (``on_trial_recover``: the retry trains that epoch again and reports it afresh). A trial that
ends (completed, stopped, diverged, or errored for good) writes what it still holds: nothing of it is run again.
A driver killed while it held a trial's last result leaves that result in Tune's saved state (the trial's
``last_result``, on which a scheduler may already have decided) and not in the file: when such a trial ends after
``--resume`` without training on (HyperBand stopping a paused trial at its milestone), that result is written then.

The other way round, a driver killed after it wrote an epoch but before Tune saved its state: ``--resume`` restores
the older checkpoint in that state and the trial trains the epoch again (PBT re-making an exploit Tune's state
predates; a fallback past a corrupt checkpoint likewise). A result whose epoch the file already holds therefore
first moves the lines from that epoch on to ``results_superseded.jsonl`` beside it (and drops a last line cut short
by the kill): the history is the run that went on, each epoch once, and what it replaced is still on record.
"""
from __future__ import annotations

import json
from pathlib import Path

from ray.tune.logger import JsonLoggerCallback
from ray.tune.result import EXPR_RESULT_FILE


def _step(result: dict):
    """The epoch a result reports (Tune's ``training_iteration`` where it has no ``epoch``)."""
    return result.get("epoch", result.get("training_iteration"))


SUPERSEDED_FILE = "results_superseded.jsonl"  # beside result.json; not .json, which Tune's resume copies back


_CUT = object()  # the epoch of a line that does not parse: cut short by a kill


def _lines(path: Path) -> tuple[str, list[tuple[str, object]]]:
    """A trial's ``result.json`` as (its text, each line with the epoch it reports or ``_CUT``); ("", []) when there
    is no file yet."""
    try:
        text = path.read_text()
    except OSError:
        return "", []
    out = []
    for line in text.splitlines():
        try:
            out.append((line, _step(json.loads(line))))
        except ValueError:
            out.append((line, _CUT))
    return text, out


def _keep_before(path: Path, step) -> None:
    """Make ``result.json`` ready for a result of epoch ``step``: move the lines from that epoch on to
    ``SUPERSEDED_FILE`` and drop any line that does not parse (cut short by a kill), rewriting the file in place only
    when there is such a line (Ray's logger holds it open for appending, which goes on at the new end)."""
    text, lines = _lines(path)
    kept, superseded, rewrite = [], [], bool(text) and not text.endswith("\n")
    for line, s in lines:
        if s is _CUT:
            rewrite = True
        else:
            (superseded if step is not None and s is not None and s >= step else kept).append(line)
    if superseded:
        with (path.parent / SUPERSEDED_FILE).open("a") as f:
            f.write("".join(f"{line}\n" for line in superseded))
    if rewrite or superseded:
        with path.open("r+") as f:
            f.write("".join(f"{line}\n" for line in kept))
            f.truncate()


def _last_step(path: Path):
    """The last epoch a trial's ``result.json`` holds (None: no file, or no readable line)."""
    return next((s for _, s in reversed(_lines(path)[1]) if s is not _CUT), None)


class CheckpointedResults(JsonLoggerCallback):
    def __init__(self):
        super().__init__()
        self._held: dict[str, list[dict]] = {}  # trial_id -> results not yet covered by a recorded checkpoint

    def log_trial_result(self, iteration: int, trial, result: dict):
        # A copy: Tune later marks the trial's last result dict done=True in place.
        self._held.setdefault(trial.trial_id, []).append(dict(result))

    def _write(self, trial, result: dict) -> None:
        _keep_before(Path(trial.local_path) / EXPR_RESULT_FILE, _step(result))
        super().log_trial_result(0, trial, result)

    def _write_held(self, trial) -> None:
        for result in self._held.pop(trial.trial_id, []):
            self._write(trial, result)

    def on_checkpoint(self, iteration: int, trials, trial, checkpoint, **info):
        self._write_held(trial)

    def on_trial_start(self, iteration: int, trials, trial, **info):
        # A resumed trial may list a checkpoint Ray deleted just before the driver was killed; Ray's next deletion
        # of it would raise (a traceback, and a skipped state snapshot). The folder is gone, so is the record.
        from trainables.compat import forget_missing_checkpoints

        forget_missing_checkpoints(trial)

    def on_trial_recover(self, iteration: int, trials, trial, **info):
        # The retry restores the newest recorded checkpoint; what came after it is trained and reported again.
        self._held.pop(trial.trial_id, None)

    def _write_ended(self, trial) -> None:
        """A trial that ended: what it holds, then its last result where the file stops short of it (held by a
        driver that was killed, restored by ``--resume`` as Tune's ``last_result``)."""
        self._write_held(trial)
        last = dict(trial.last_result or {})
        # only the very next epoch: a history with a gap would misstate the run (more than one result held when the
        # driver died: the older ones are gone, and the file stays short of last_result as before)
        if _step(last) is not None and (_last_step(Path(trial.local_path) / EXPR_RESULT_FILE) or 0) + 1 == _step(last):
            self._write(trial, last)

    def on_trial_complete(self, iteration: int, trials, trial, **info):
        self._write_ended(trial)
        super().on_trial_complete(iteration, trials, trial, **info)

    def on_trial_error(self, iteration: int, trials, trial, **info):
        self._write_ended(trial)
        super().on_trial_error(iteration, trials, trial, **info)

    # Which trials have their result file open: kept here (Ray's own record of it is private). A callback unpickled
    # from an experiment made before this existed gets it on first use.
    def _open_files(self) -> set:
        return self.__dict__.setdefault("_open_trials", set())

    def log_trial_start(self, trial):
        super().log_trial_start(trial)  # opens the trial's result.json (Ray's logger also calls it on a first result)
        self._open_files().add(trial)

    def log_trial_end(self, trial, failed: bool = False):
        self._open_files().discard(trial)
        super().log_trial_end(trial, failed=failed)

    def on_experiment_end(self, trials, **info):
        # Interrupted: a running trial's held epochs are trained again by --resume (it restores the recorded
        # checkpoint), so they are not written; files are closed.
        for trial in list(self._open_files()):
            self.log_trial_end(trial)
