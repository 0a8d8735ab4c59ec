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
"""
from __future__ import annotations

from ray.tune.logger import JsonLoggerCallback


class CheckpointedResults(JsonLoggerCallback):
    def __init__(self):
        super().__init__()
        self._held: dict[str, list[dict]] = {}  # trial_id -> results not yet covered by a recorded checkpoint

    def log_trial_result(self, iteration: int, trial, result: dict):
        # A copy: Tune later marks the trial's last result dict done=True in place.
        self._held.setdefault(trial.trial_id, []).append(dict(result))

    def _write_held(self, trial) -> None:
        for result in self._held.pop(trial.trial_id, []):
            super().log_trial_result(0, trial, result)

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

    def on_trial_complete(self, iteration: int, trials, trial, **info):
        self._write_held(trial)
        super().on_trial_complete(iteration, trials, trial, **info)

    def on_trial_error(self, iteration: int, trials, trial, **info):
        self._write_held(trial)
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
