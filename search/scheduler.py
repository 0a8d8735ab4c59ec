"""ASHA per architecture, with its rung records persisted by us.

One ASHA over several nets would compare a small net's accuracy with a big net's and stop the weaker net's trials
for being the weaker net. :class:`PerArchASHA` keeps one ``AsyncHyperBandScheduler`` per architecture (trials
carry ``arch`` in their config), so each net's trials compete only with each other.

Ray Tune restores its searcher on resume but not ASHA's rungs (ray#30838). Every decision is written to
``asha_state.json`` in the experiment directory (atomically), and :meth:`PerArchASHA.load` puts the rungs back, so
a resumed search cuts at the same values and the record of which trial stopped at which rung is intact.

Epoch budget (``epoch_budget``, per architecture): asynchronous ASHA bounds nothing by itself (a run of trials that
each beat the ones before is promoted all the way), so a budget is enforced by reservation. Every trial of the net
is reserved its first rung (``num_samples x grace_period``, which the spec checks fits); a trial that ASHA would
promote is promoted only if the epochs to its next milestone still fit in what is left, otherwise it is stopped
with ``"reason": "budget"`` in its stop record. The epochs the search trains per net are then at most the budget,
plus only what a retried trial re-trains after a failure. The same code caps MO-ASHA (``search/moasha.py``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from trainables.compat import (asha_bracket, asha_num_stopped, asha_trial_brackets, bracket_rungs,
                               driver_staging_dir, rung_cutoff, set_asha_num_stopped, set_bracket_rungs)
from trainables.config import METRIC, MODE
from trainables.experiment import ASHA_FILE as STATE_FILE  # noqa: F401 (the file PerArchASHA writes; tuner reads it)
from trainables.experiment import restored_path, write_json

TIME_ATTR = "epoch"  # reported by the trainable; equals Tune's training_iteration, also after a resume


class PersistedRungs:
    """What ASHA and MO-ASHA share: rung records in a JSON file of the experiment dir, and the epoch budget.

    A subclass gives ``state()`` (what to write), ``load(path)`` (how to put it back) and ``judged_epochs()``, and
    calls ``_set_budget(...)`` then ``_open_state(state_path)`` at the end of ``__init__``. The records are read back
    when the scheduler is built and when Tune unpickles it on resume (from the tuner pickled when ``fit()`` began:
    the file is newer), written by ``persist()`` after every decision, and protected from Tune's staging copy by
    ``_drop_staged_copy``. The budget (module docstring) is ``_promote``, asked whenever the rungs let a trial go on.
    """

    state_path: Path | None = None
    epoch_budget: int | None = None
    num_samples: int | None = None

    def _open_state(self, state_path: str | os.PathLike | None) -> None:
        self.state_path = Path(state_path) if state_path else None
        if self.state_path and self.state_path.exists():
            self.load(self.state_path)

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        # Pickled with the path of the folder it was built in: a copied or moved experiment keeps its own records.
        self.state_path = restored_path(self.state_path)
        if self.state_path and self.state_path.exists():
            self.load(self.state_path)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_staging_checked"}

    def _drop_staged_copy(self, trial) -> None:
        """Tune's restore copies every ``*.json`` of the experiment dir into its driver staging dir and uploads that
        dir back at each save: its copy of our file would overwrite the live one with the rungs as they were at the
        resume. Delete that copy (once per staging dir) so the file ``persist`` writes is the only one.

        The staging dir is found from the trial (``trainables.compat.driver_staging_dir``), not from the controller
        Tune passes: reading its storage through Tune's restricted wrapper made Ray warn every user."""
        staging = driver_staging_dir(trial)
        if self.state_path is None or staging is None or getattr(self, "_staging_checked", None) == staging:
            return
        self._staging_checked = staging
        copy = staging / self.state_path.name
        if copy.exists() and copy.resolve() != self.state_path.resolve():
            copy.unlink()

    def persist(self) -> None:
        if self.state_path is not None:
            write_json(self.state_path, self.state(), sort_keys=True)

    def state(self) -> dict:
        raise NotImplementedError

    def load(self, path: str | os.PathLike) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------ epoch budget
    def judged_epochs(self) -> list[int]:
        """Epochs at which a trial is judged, ascending, ending with max_t (the rungs below max_t)."""
        raise NotImplementedError

    def _set_budget(self, epoch_budget: int | None, num_samples: int | None, grace_period: int) -> None:
        if epoch_budget is not None and (num_samples is None or num_samples * grace_period > epoch_budget):
            raise ValueError(f"epoch_budget {epoch_budget!r} cannot pay every trial's first rung "
                             f"({num_samples!r} trials x grace period {grace_period})")
        self.epoch_budget, self.num_samples = epoch_budget, num_samples
        self.allowed: dict[str, tuple[str, int]] = {}  # trial id -> (arch, epoch it is cleared to train to)

    def _budget_state(self) -> dict:
        return {"epoch_budget": self.epoch_budget, "num_samples": self.num_samples, "allowed": self.allowed}

    def _load_budget(self, state: dict) -> None:
        self.allowed = {t: (a, e) for t, (a, e) in state.get("allowed", {}).items()}

    def reserved(self, arch: str) -> int:
        """Epochs promised to ``arch``'s trials: what each is cleared to reach, and a first rung for each trial
        not yet seen (of ``num_samples``)."""
        mine = [t for t, (a, _) in self.allowed.items() if a == arch]
        return (sum(e for a, e in self.allowed.values() if a == arch)
                + max(0, self.num_samples - len(mine)) * self.judged_epochs()[0])

    def _promote(self, trial_id: str, arch: str, epoch: int) -> bool:
        """Budget mode: may the trial, which the rungs let go on at ``epoch``, train on? Reserves the epochs if so.
        Called at a rung result, after which the caller persists (the reservation goes to disk with the decision)."""
        judged = self.judged_epochs()
        if trial_id not in self.allowed:
            self.allowed[trial_id] = (arch, judged[0])  # its first rung was reserved when the budget was set
        cleared = self.allowed[trial_id][1]
        if epoch < cleared or cleared >= self.max_t:
            return True
        nxt = next(m for m in judged if m > cleared)
        if self.reserved(arch) + (nxt - cleared) > self.epoch_budget:
            return False
        self.allowed[trial_id] = (arch, nxt)
        return True


class PerArchASHA(PersistedRungs, FIFOScheduler):
    def __init__(self, archs: list[str], max_t: int, grace_period: int = 1, reduction_factor: float = 3,
                 state_path: str | os.PathLike | None = None, epoch_budget: int | None = None,
                 num_samples: int | None = None):
        super().__init__()
        FIFOScheduler.set_search_properties(self, METRIC, MODE)  # our override below ignores Tune's call
        if grace_period < 1 or grace_period > max_t:
            raise ValueError(f"grace_period must be in [1, max_epochs={max_t}], got {grace_period!r}")
        if reduction_factor <= 1:
            raise ValueError(f"reduction_factor must be > 1, got {reduction_factor!r}")
        self.max_t, self.grace_period, self.reduction_factor = max_t, grace_period, reduction_factor
        self.schedulers = {a: AsyncHyperBandScheduler(time_attr=TIME_ATTR, metric=METRIC, mode=MODE, max_t=max_t,
                                                      grace_period=grace_period, reduction_factor=reduction_factor,
                                                      brackets=1)
                           for a in archs}
        self.stops: list[dict] = []  # {"trial_id", "arch", "epoch", "value", "cutoff"[, "reason": "budget"]}
        self._set_budget(epoch_budget, num_samples, grace_period)
        self._open_state(state_path)

    def _sched(self, trial) -> AsyncHyperBandScheduler:
        return self.schedulers[trial.config["arch"]]

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True  # metric and mode are fixed: METRIC, MODE

    def on_trial_add(self, tune_controller, trial) -> None:
        self._drop_staged_copy(trial)
        sched = self._sched(trial)
        if trial.trial_id not in asha_trial_brackets(sched):
            asha_trial_brackets(sched)[trial.trial_id] = asha_bracket(sched)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        self._drop_staged_copy(trial)
        sched = self._sched(trial)
        if trial.trial_id not in asha_trial_brackets(sched):  # restored trial the controller did not re-add
            self.on_trial_add(tune_controller, trial)
        stopped_at = next((s["epoch"] for s in self.stops if s["trial_id"] == trial.trial_id), None)
        if stopped_at is not None and result.get(TIME_ATTR, 0) >= stopped_at:
            # Stopped before a driver kill that came before Tune saved it: re-run from an older checkpoint, it
            # would pass its rung as "already recorded" and train on. The decision on record stands.
            return TrialScheduler.STOP
        rung = self._rung_for(sched, result)
        cutoff = rung_cutoff(sched, rung[1]) if rung else None
        action = sched.on_trial_result(tune_controller, trial, result)
        reason = None
        if action == TrialScheduler.CONTINUE and self.epoch_budget is not None:
            if not self._promote(trial.trial_id, trial.config["arch"], result.get(TIME_ATTR, 0)):
                action, reason = TrialScheduler.STOP, "budget"
        if action == TrialScheduler.STOP and result.get(TIME_ATTR, 0) < self.max_t:
            self.stops.append({"trial_id": trial.trial_id, "arch": trial.config["arch"], "epoch": result[TIME_ATTR],
                               "value": result[METRIC], "cutoff": None if cutoff is None else float(cutoff),
                               **({"reason": reason} if reason else {})})
        if rung is not None or action == TrialScheduler.STOP:
            self.persist()
        return action

    def judged_epochs(self) -> list[int]:
        rungs = sorted(m for m, _ in bracket_rungs(asha_bracket(next(iter(self.schedulers.values())))))
        return [int(m) for m in rungs if m < self.max_t] + [self.max_t]

    @staticmethod
    def _rung_for(sched, result):
        """The rung this result will be recorded at (before it is), or None."""
        epoch = result.get(TIME_ATTR)
        if epoch is None:
            return None
        for milestone, recorded in bracket_rungs(asha_bracket(sched)):
            if epoch >= milestone:
                return (milestone, dict(recorded))
        return None

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        sched = self._sched(trial)
        if trial.trial_id in asha_trial_brackets(sched) and result:
            sched.on_trial_complete(tune_controller, trial, result)
            self.persist()
        else:
            asha_trial_brackets(sched).pop(trial.trial_id, None)

    def on_trial_remove(self, tune_controller, trial) -> None:
        asha_trial_brackets(self._sched(trial)).pop(trial.trial_id, None)

    def on_trial_error(self, tune_controller, trial) -> None:
        asha_trial_brackets(self._sched(trial)).pop(trial.trial_id, None)

    def debug_string(self) -> str:
        return "PerArchASHA: " + ", ".join(f"{a} stopped {asha_num_stopped(s)}" for a, s in self.schedulers.items())

    # ------------------------------------------------------------------------------------------- persistence
    def state(self) -> dict:
        return {"max_t": self.max_t, "grace_period": self.grace_period, "reduction_factor": self.reduction_factor,
                "rungs": {a: [[m, recorded] for m, recorded in bracket_rungs(asha_bracket(s))]
                          for a, s in self.schedulers.items()},
                "num_stopped": {a: asha_num_stopped(s) for a, s in self.schedulers.items()},
                "stops": self.stops, **self._budget_state()}

    def load(self, path: str | os.PathLike) -> None:
        state = json.loads(Path(path).read_text())
        for arch, rungs in state["rungs"].items():
            if arch in self.schedulers:
                set_bracket_rungs(asha_bracket(self.schedulers[arch]), [(m, dict(recorded)) for m, recorded in rungs])
                set_asha_num_stopped(self.schedulers[arch], state["num_stopped"].get(arch, 0))
        self.stops = list(state["stops"])
        self._load_budget(state)
