"""Live view of a search: trial counts by outcome, best so far with its config, elapsed time and an ETA."""
from __future__ import annotations

import sys
import time

from ray.tune import Callback

from trainables.config import METRIC
from trainables.experiment import trial_outcome as outcome_of


def trial_outcome(trial) -> str:
    """completed | stopped | diverged | errored | running | pending (see trainables.experiment.trial_outcome)."""
    return outcome_of(trial.status, trial.last_result)


def _hms(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class ProgressCallback(Callback):
    """Prints a status line at most every ``interval`` seconds and whenever a trial ends."""

    def __init__(self, total_trials: int, max_epochs: int, interval: float = 15.0):
        # No stream attribute: Tune pickles callbacks, and sys.stdout may not pickle (pytest's capture does not).
        self.total, self.max_epochs, self.interval = total_trials, max_epochs, interval
        self.start = time.monotonic()
        self.last_print = 0.0

    def line(self, trials) -> str:
        counts: dict[str, int] = {}
        for t in trials:
            o = trial_outcome(t)
            counts[o] = counts.get(o, 0) + 1
        ended = sum(counts.get(k, 0) for k in ("completed", "stopped", "diverged", "errored"))
        # Best among trials that did not diverge; a diverged run is never the best.
        scored = [t for t in trials if t.last_result and METRIC in t.last_result
                  and t.last_result.get("status") != "diverged"]
        best = max(scored, key=lambda t: t.last_result[METRIC], default=None)
        elapsed = time.monotonic() - self.start
        # ETA from epochs: each unfinished trial may still run up to max_epochs.
        epochs_done = sum((t.last_result or {}).get("epoch", 0) for t in trials)
        epochs_left = sum(self.max_epochs - (t.last_result or {}).get("epoch", 0)
                          for t in trials if trial_outcome(t) in ("running", "pending"))
        epochs_left += (self.total - len(trials)) * self.max_epochs
        eta = _hms(elapsed / epochs_done * epochs_left) + " (at most)" if epochs_done else "?"
        text = (f"[{_hms(elapsed)}] trials {ended}/{self.total} ended: completed {counts.get('completed', 0)}, "
                f"stopped early {counts.get('stopped', 0)}, diverged {counts.get('diverged', 0)}, "
                f"errored {counts.get('errored', 0)} | running {counts.get('running', 0)}, "
                f"pending {counts.get('pending', 0)} | ETA {eta}")
        if best is not None:
            cfg = best.config
            shown = ", ".join(f"{k}={cfg[k]:.3g}" if isinstance(cfg[k], float) else f"{k}={cfg[k]}"
                              for k in ("arch", "optimizer", "lr", "batch_size", "dropout", "norm") if k in cfg)
            text += f"\n    best {METRIC} {best.last_result[METRIC]:.4f} (epoch {best.last_result.get('epoch')}) {shown}"
        return text

    def _maybe_print(self, trials, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last_print >= self.interval:
            self.last_print = now
            print(self.line(trials), flush=True)

    def on_step_end(self, iteration, trials, **info):
        self._maybe_print(trials)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._maybe_print(trials, force=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._maybe_print(trials, force=True)

    def on_experiment_end(self, trials, **info):
        print(self.line(trials), flush=True)
