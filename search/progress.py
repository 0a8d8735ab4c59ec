"""Live view of a search: trial counts by outcome, best so far with its config, elapsed time and an ETA."""
from __future__ import annotations

import os
import threading
import time

from ray.tune import Callback

from trainables.config import METRIC
from trainables.experiment import trial_outcome as outcome_of


# Set by search.tuner while it hands a SIGINT / SIGTERM to Tune (the callbacks run in the driver's process).
INTERRUPTED = threading.Event()


def trial_outcome(trial) -> str:
    """completed | stopped | diverged | errored | running | pending (see trainables.experiment.trial_outcome)."""
    return outcome_of(trial.status, trial.last_result)


def _hms(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class ProgressCallback(Callback):
    """Prints a status line at most every ``interval`` seconds and whenever a trial ends."""

    def __init__(self, total_trials: int, max_epochs: int, interval: float = 15.0, milestones: list[int] | None = None,
                 reduction_factor: float = 3.0, epoch_budget: int | None = None):
        # No stream attribute: Tune pickles callbacks, and sys.stdout may not pickle (pytest's capture does not).
        self.total, self.max_epochs, self.interval = total_trials, max_epochs, interval
        # ASHA's milestones (ending with max_epochs): a trial reaches the k-th with probability 1/eta^k, so the ETA
        # counts the epochs a trial is expected to train, not the max_epochs it might; [max_epochs]: no early stops.
        self.milestones = list(milestones or [max_epochs])
        self.reduction_factor, self.epoch_budget = reduction_factor, epoch_budget
        self.start = time.monotonic()
        self.last_print = 0.0

    def expected_epochs_left(self, epoch: int) -> float:
        """Epochs a trial now at ``epoch`` is expected to train still, if ASHA keeps 1/eta at each rung."""
        left, chance, previous = 0.0, 1.0, epoch
        for m in self.milestones:
            if m <= epoch:
                continue
            left += chance * (m - previous)
            previous, chance = m, chance / self.reduction_factor
        return left

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
        # ETA from epochs: what each unfinished trial is expected to train under ASHA (capped by the epoch budget),
        # at the pace of the epochs trained so far in this run of the search.
        epochs_done = sum((t.last_result or {}).get("epoch", 0) for t in trials)
        epochs_left = sum(self.expected_epochs_left((t.last_result or {}).get("epoch", 0))
                          for t in trials if trial_outcome(t) in ("running", "pending"))
        epochs_left += (self.total - len(trials)) * self.expected_epochs_left(0)
        if self.epoch_budget is not None:
            epochs_left = min(epochs_left, max(0, self.epoch_budget - epochs_done))
        # Pace: epochs trained since this process first looked (a resumed search inherits the epochs, not the time).
        if getattr(self, "_pace_origin", (None,))[0] != os.getpid():
            self._pace_origin = (os.getpid(), time.monotonic(), epochs_done)
        _, t0, e0 = self._pace_origin
        eta = _hms((time.monotonic() - t0) / (epochs_done - e0) * epochs_left) if epochs_done > e0 else "?"
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
        # After SIGINT / SIGTERM Tune has marked the running trials TERMINATED: a line now would count them as
        # stopped early. The saved state keeps them unfinished; the CLI's closing line says how many.
        if not INTERRUPTED.is_set():
            print(self.line(trials), flush=True)
