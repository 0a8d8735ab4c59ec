"""Synchronous HyperBand per architecture (Ray Tune's ``HyperBandScheduler``), with its brackets persisted by us.

:class:`PerArchHyperBand` keeps one ``HyperBandScheduler`` per net (trials carry ``arch`` in their config), so a
net's trials share brackets only with each other, as :class:`~search.scheduler.PerArchASHA` does for ASHA. HyperBand
puts trials into brackets of ``max_t / eta^s`` first epochs (s = 0, 1, ...): a trial that reaches its bracket's
milestone is *paused* until every trial of the bracket is there, then the best ``1/eta`` go on to the next milestone
and the others are *stopped*. ``max_t`` is ``--max-epochs``, ``eta`` is ``--reduction-factor``; HyperBand chooses
each bracket's first milestone itself (there is no grace period).

Ray keeps the brackets in memory only, keyed by the Trial objects a resume replaces, and restores no scheduler on
resume (ray#30838). Every event (a trial added, paused, kept, stopped, finished) is written to
``hyperband_state.json`` at once; on resume the brackets are put back (``trainables.compat.hyperband_restore``) with
stand-ins that Tune's restored trials take over as it re-adds them. A trial waiting at its milestone waits again
(paused, not re-run past it), and a stop on record stands: the trial is stopped, whatever Tune's older saved state
says. The record also lists every pause and every halving (the values at the milestone, who was kept, the
cut-off), which ``cifar-tune report`` shows per trial.

A trial's last epoch (``max_t``) and a diverged result are not handed to HyperBand: the trial ends by itself and
leaves its bracket then (HyperBand would otherwise pause a trial that has nothing left to train).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from ray.tune.schedulers import FIFOScheduler, HyperBandScheduler, TrialScheduler

from analysis.load import NUMBER, Maybe, shape_problem
from search.scheduler import TIME_ATTR, PersistedRungs
from search.spec import MAX_BRACKETS, hyperband_brackets
from trainables.compat import (controller_view, hyperband_adopt, hyperband_bracket, hyperband_forget_result,
                               hyperband_restore, hyperband_snapshot, hyperband_trials)
from trainables.config import METRIC, MODE, is_count
from trainables.experiment import HYPERBAND_FILE as STATE_FILE  # noqa: F401 (the file PerArchHyperBand writes)


def brackets(max_t: int, reduction_factor: float) -> list[list[int]]:
    """The milestones of each bracket HyperBand makes for ``max_t`` and ``eta`` (s = 0, 1, ...), as Ray computes
    them; a bracket whose first milestone rounds to 0 epochs is left out, as Ray skips it.

    >>> brackets(2, 2)
    [[2], [1, 2]]
    >>> brackets(9, 3)
    [[9], [3, 9], [1, 3, 9]]
    """
    out = []
    for s in range(hyperband_brackets(max_t, reduction_factor)):
        r = int(max_t * reduction_factor ** (-s))
        if r == 0:
            continue
        steps = [r]
        for _ in range(s):
            r = int(min(r * reduction_factor, max_t))
            steps.append(r)
        out.append(steps)
    return out


def bracket_sizes(max_t: int, reduction_factor: float) -> list[int]:
    """How many trials each bracket takes (Ray's n0 for s = 0, 1, ...; brackets too small to exist left out).

    >>> bracket_sizes(2, 2), bracket_sizes(9, 3)
    ([2, 2], [3, 5, 9])
    """
    s_max_1 = hyperband_brackets(max_t, reduction_factor)
    return [int(math.ceil(s_max_1 / (s + 1) * reduction_factor ** s)) for s in range(s_max_1)
            if int(max_t * reduction_factor ** (-s)) > 0]


def pending_trials(archs: list[str], max_t: int, reduction_factor: float) -> int:
    """Trials Tune must create ahead of time for synchronous HyperBand: a bracket's trials have to be in it before
    its first trial reaches the milestone, or it is halved among the few that are (Tune asks a searcher for one
    trial at a time by default, so a bracket would never fill). The largest bracket, per net."""
    return max(bracket_sizes(max_t, reduction_factor)) * len(archs)


def milestones(max_t: int, reduction_factor: float) -> list[int]:
    """Every epoch at which some bracket judges its trials, below ``max_t``."""
    return sorted({m for b in brackets(max_t, reduction_factor) for m in b if m < max_t})


class StandIn:
    """A trial a restored bracket holds until Tune re-adds the real one (see the module docstring)."""

    status = "PENDING"
    is_saving = False

    def __init__(self, trial_id: str):
        self.trial_id = trial_id

    def __repr__(self) -> str:
        return f"StandIn({self.trial_id})"


class PerArchHyperBand(PersistedRungs, FIFOScheduler):
    """One synchronous HyperBand per architecture; every decision on record in ``state_path``.

    >>> PerArchHyperBand(["origin_net"], max_t=9).milestones
    [1, 3]
    """

    def __init__(self, archs: list[str], max_t: int, reduction_factor: float = 3,
                 state_path: str | os.PathLike | None = None):
        super().__init__()
        FIFOScheduler.set_search_properties(self, METRIC, MODE)  # our override below ignores Tune's call
        if not is_count(max_t, 1):
            raise ValueError(f"max_t must be an integer >= 1, got {max_t!r}")
        if reduction_factor <= 1:
            raise ValueError(f"reduction_factor must be > 1, got {reduction_factor!r}")
        count = hyperband_brackets(max_t, reduction_factor)
        if count > min(max_t, MAX_BRACKETS):  # search.spec says why
            raise ValueError(f"reduction_factor {reduction_factor!r} makes {count} brackets for max_t {max_t}, more "
                             f"than {min(max_t, MAX_BRACKETS)}")
        if not archs:
            raise ValueError("archs: at least one architecture is needed")
        self.archs, self.max_t, self.reduction_factor = list(archs), max_t, reduction_factor
        self.milestones = milestones(max_t, reduction_factor)
        self.schedulers = {a: self._new(a) for a in self.archs}
        self.pauses: list[dict] = []  # {"trial_id", "arch", "bracket", "epoch", "milestone"}
        self.halvings: list[dict] = []  # {"arch", "bracket", "milestone", "values", "kept", "stopped", "cutoff"}
        self.stops: list[dict] = []  # {"trial_id", "arch", "bracket", "epoch", "value", "cutoff"}
        self.restoring: dict[str, dict] = {}  # arch -> trial id -> StandIn, until Tune re-adds the trial
        self.to_stop: list = []  # restored trials whose stop is on record, stopped at the next step
        self._open_state(state_path)

    def _new(self, arch: str) -> HyperBandScheduler:
        return HyperBandScheduler(time_attr=TIME_ATTR, metric=METRIC, mode=MODE, max_t=self.max_t,
                                  reduction_factor=self.reduction_factor)

    @property
    def supports_buffered_results(self) -> bool:
        return False  # HyperBand must see every epoch to pause a trial at its milestone

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True  # metric and mode are fixed: METRIC, MODE

    def _view(self, controller, arch: str):
        return controller_view(controller, lambda t: t.config.get("arch") == arch,
                               before_stop=lambda t: _tell_stopped(controller, t))

    def _stopped_at(self, trial_id: str) -> int | None:
        return next((s["epoch"] for s in self.stops if s["trial_id"] == trial_id), None)

    # --------------------------------------------------------------------------------------------- Tune's calls
    def on_trial_add(self, tune_controller, trial) -> None:
        self._drop_staged_copy(trial)
        arch = trial.config["arch"]
        stand_in = self.restoring.get(arch, {}).pop(trial.trial_id, None)
        if stand_in is not None:  # a trial of the state put back on resume
            hyperband_adopt(self.schedulers[arch], stand_in, trial)
            self._settle(trial, arch)
        elif self._stopped_at(trial.trial_id) is not None:
            self._settle(trial, arch)
        else:  # a new trial: whatever the records held that Tune does not know is gone
            self._tidy(tune_controller)
            if hyperband_bracket(self.schedulers[arch], trial) is None:
                self.schedulers[arch].on_trial_add(self._view(tune_controller, arch), trial)
        self.persist()

    def _settle(self, trial, arch: str) -> None:
        """A restored trial (Tune has made every unfinished one PENDING) takes the place the records give it: one
        stopped on record, or waiting at its bracket's milestone, is paused again if its saved checkpoint is there
        already (a stopped one is then stopped at the next step); otherwise it runs on to that epoch."""
        if trial.status != "PENDING":
            return
        restored_epoch = (trial.last_result or {}).get(TIME_ATTR) or 0
        stopped_at = self._stopped_at(trial.trial_id)
        if stopped_at is not None:
            if restored_epoch >= stopped_at:
                trial.set_status("PAUSED")
                self.to_stop.append(trial)
            return
        place = hyperband_bracket(self.schedulers[arch], trial)
        if place is None:
            return
        bracket, _, milestone, _, _, live = place
        waiting = (live.get(trial) or {}).get(TIME_ATTR) or 0
        if waiting >= milestone and restored_epoch >= milestone and trial not in bracket.trials_to_unpause:
            trial.set_status("PAUSED")
        elif waiting > restored_epoch:
            # Its result came after Tune's last save: it re-runs those epochs, so its bracket waits for it to report
            # them again. Left in, that result could complete the bracket's milestone while the trial is PENDING,
            # and Ray's halving refuses a PENDING trial (a TuneError that ended the resumed search).
            hyperband_forget_result(self.schedulers[arch], trial)

    def _tidy(self, tune_controller) -> None:
        """Once Tune has re-added its trials: drop the stand-ins of trials its saved state lost (started after its
        last save; new trials take their places), and stop the paused trials whose stop is on record (restored
        ones, and any a pause in flight left behind). Runs at every step (choose_trial_to_run)."""
        if self.restoring:
            for arch, left in self.restoring.items():
                for stand_in in left.values():
                    hyperband_adopt(self.schedulers[arch], stand_in, None)
            self.restoring = {}
            self.persist()
        while self.to_stop:
            trial = self.to_stop.pop(0)
            self._view(tune_controller, trial.config["arch"]).stop_trial(trial)
        # A trial HyperBand stopped while Tune was still pausing it can end up PAUSED in no bracket (Ray's halving
        # assumes every other trial of the bracket has finished pausing): it would wait for ever. Stopped here.
        for trial in tune_controller.get_trials():
            if trial.status == "PAUSED" and self._stopped_at(trial.trial_id) is not None:
                self._view(tune_controller, trial.config["arch"]).stop_trial(trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        self._drop_staged_copy(trial)
        self._tidy(tune_controller)
        arch, epoch = trial.config["arch"], result.get(TIME_ATTR)
        stopped_at = self._stopped_at(trial.trial_id)
        if stopped_at is not None and epoch is not None and epoch >= stopped_at:
            return TrialScheduler.STOP  # a stop on record stands (a re-run after a driver kill)
        sched = self.schedulers[arch]
        place = hyperband_bracket(sched, trial)
        if epoch is None or place is None or trial not in place[5]:
            # Not judged (any more): a trial that finished before a driver kill Tune's saved state missed redoes
            # its last epochs and ends as it did.
            return TrialScheduler.CONTINUE
        if epoch >= self.max_t or result.get("status") != "running":
            return TrialScheduler.CONTINUE  # it ends by itself and leaves its bracket in on_trial_complete
        view = self._view(tune_controller, arch)
        action = self._observe(arch, lambda: sched.on_trial_result(view, trial, result), trial, result)
        if action != TrialScheduler.STOP and self._stopped_at(trial.trial_id) is not None:
            # The halving this result set off stopped this trial, yet Ray answered otherwise: its halving assumes the
            # trial reporting is the only RUNNING one, and after a resume another of the bracket may be re-running
            # its epochs up to the milestone; a kept RUNNING trial then sets the answer to CONTINUE for both.
            action = TrialScheduler.STOP
        if action == TrialScheduler.STOP:  # at its bracket's last milestone (a halving recorded its own stops)
            place = hyperband_bracket(sched, trial)
            self._record_stop(trial.trial_id, arch, place[1], epoch, result.get(METRIC), None,
                              "last milestone of its bracket")
        if action == TrialScheduler.PAUSE:
            place = hyperband_bracket(sched, trial)
            record = {"trial_id": trial.trial_id, "arch": arch, "bracket": list(place[1]), "epoch": epoch,
                      "milestone": place[2]}
            if record not in self.pauses:  # the same wait again after a resume is one wait
                self.pauses.append(record)
        self.persist()
        return action

    def _observe(self, arch: str, call, trial=None, result: dict | None = None, leaving=None):
        """Run a HyperBand call and record what it decided: per bracket whose halvings-left went down, a halving
        (the values at the milestone, who was kept and who stopped, the cut-off: the lowest value kept); a trial
        that left a bracket otherwise (not ``leaving``, which finished or errored) was stopped at the bracket's last
        milestone, which HyperBand caps below max_t for some brackets."""
        sched = self.schedulers[arch]
        before = {}
        for t in hyperband_trials(sched):
            place = hyperband_bracket(sched, t)
            if place is not None:
                before.setdefault(place[1], place)
        out = call()
        for where, (bracket, _, milestone, halves, _, live) in before.items():
            after = next((p for t in hyperband_trials(sched) if (p := hyperband_bracket(sched, t)) and p[1] == where),
                         None)
            if after is None:
                continue
            values = {t.trial_id: (r or {}).get(METRIC) for t, r in live.items()}
            if trial is not None and trial in live and result is not None:
                values[trial.trial_id] = result.get(METRIC)
            if leaving is not None:  # it left by finishing (or erroring): not stopped by what it set off
                values.pop(leaving.trial_id, None)
            kept = [t.trial_id for t in after[5]]
            if after[3] < halves:
                stopped = [t for t in values if t not in kept]
                cutoff = min((values[t] for t in kept if values.get(t) is not None), default=None)
                self.halvings.append({"arch": arch, "bracket": list(where), "milestone": milestone,
                                      "values": values, "kept": kept, "stopped": stopped, "cutoff": cutoff,
                                      "keep": after[4]})
                for tid in stopped:
                    self._record_stop(tid, arch, where, milestone, values[tid], cutoff)
            else:
                for tid in (t for t in values if t not in kept):
                    self._record_stop(tid, arch, where, milestone, values[tid], None, "last milestone of its bracket")
        return out

    def _record_stop(self, tid: str, arch: str, where, epoch: int, value, cutoff, reason: str | None = None) -> None:
        if self._stopped_at(tid) is None:
            self.stops.append({"trial_id": tid, "arch": arch, "bracket": list(where), "epoch": epoch, "value": value,
                               "cutoff": cutoff, **({"reason": reason} if reason else {})})

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        self._leave(tune_controller, trial, lambda sched, view: sched.on_trial_complete(view, trial, result))

    def on_trial_remove(self, tune_controller, trial) -> None:
        self._leave(tune_controller, trial, lambda sched, view: sched.on_trial_remove(view, trial))

    def on_trial_error(self, tune_controller, trial) -> None:
        self._leave(tune_controller, trial, lambda sched, view: sched.on_trial_error(view, trial))

    def _leave(self, tune_controller, trial, call) -> None:
        arch = trial.config["arch"]
        sched = self.schedulers[arch]
        place = hyperband_bracket(sched, trial)
        if place is None or trial not in place[5]:  # not in a bracket, or left it already
            return
        self._observe(arch, lambda: call(sched, self._view(tune_controller, arch)), leaving=trial)
        self.persist()

    def choose_trial_to_run(self, tune_controller):
        self._tidy(tune_controller)
        chosen = [t for a in self.archs
                  if (t := self.schedulers[a].choose_trial_to_run(self._view(tune_controller, a))) is not None]
        # A paused trial its bracket let go on first: Tune starts pending trials by itself, paused ones never, and
        # one net's pending trials must not keep another net's waiting.
        return next((t for t in chosen if t.status == "PAUSED"), chosen[0] if chosen else None)

    def debug_string(self) -> str:
        return "PerArchHyperBand: " + ", ".join(
            f"{a} stopped {sum(s['arch'] == a for s in self.stops)}" for a in self.archs)

    # ------------------------------------------------------------------------------------------- persistence
    def judged_epochs(self) -> list[int]:
        return [*self.milestones, self.max_t]

    def state(self) -> dict:
        return {"kind": "hyperband", "max_t": self.max_t, "reduction_factor": self.reduction_factor,
                "brackets": brackets(self.max_t, self.reduction_factor),
                "archs": {a: hyperband_snapshot(s, TIME_ATTR, METRIC) for a, s in self.schedulers.items()},
                "pauses": self.pauses, "halvings": self.halvings, "stops": self.stops}

    def load(self, path: str | os.PathLike) -> None:
        state = json.loads(Path(path).read_text())
        try:
            check_state(state, self.archs, self.max_t, self.reduction_factor)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
        self.restoring = {}
        for arch, snapshot in state["archs"].items():
            if arch in self.schedulers:
                self.schedulers[arch] = self._new(arch)
                self.restoring[arch] = hyperband_restore(self.schedulers[arch], snapshot, StandIn)
        self.pauses, self.halvings, self.stops = (list(state[k]) for k in ("pauses", "halvings", "stops"))
        self.to_stop = []


# What load() reads of hyperband_state.json (state() writes it; an arch's record is trainables.compat's
# hyperband_snapshot): checked by check_state before a resume puts any of it back.
_BRACKET = Maybe({"n": NUMBER, "r": NUMBER, "milestone": NUMBER, "halves": int, "progress": NUMBER,
                  "live": {"*": Maybe({TIME_ATTR: Maybe(NUMBER), METRIC: Maybe(NUMBER)})}, "all": [str],
                  "to_unpause": [str], "being_processed": bool})
_PLACE = [int]
STATE_SHAPE = {"max_t": NUMBER, "reduction_factor": NUMBER,
               "archs": {"*": {"bands": [[_BRACKET]], "current": Maybe(_PLACE), "band_idx": int, "num_stopped": int,
                               "trials": {"*": _PLACE}}},
               "pauses": [dict], "halvings": [dict],
               "stops": [{"trial_id": str, "arch": str, "epoch": NUMBER, "bracket": list}]}


def check_state(state, archs: list[str], max_t: int, reduction_factor: float) -> None:
    """Refuse (ValueError saying what and where) a HyperBand record that :meth:`PerArchHyperBand.load` (and Ray's
    scheduler after it) could not take: another shape than ``state()`` writes, brackets made for another max_t or
    reduction factor, a band longer than HyperBand's, a trial's place or the current bracket naming no bracket."""
    problem = shape_problem(state, STATE_SHAPE)
    if problem:
        raise ValueError(problem)
    if (state["max_t"], state["reduction_factor"]) != (max_t, reduction_factor):
        raise ValueError(f"its brackets were made for max_t {state['max_t']} and reduction factor "
                         f"{state['reduction_factor']}, not {max_t} and {reduction_factor}")
    most = hyperband_brackets(max_t, reduction_factor)
    for arch, snapshot in state["archs"].items():
        if arch not in archs:
            continue  # load() leaves it out
        bands = snapshot["bands"]
        long = next((i for i, band in enumerate(bands) if len(band) > most), None)
        if long is not None:
            raise ValueError(f"'archs.{arch}.bands[{long}]' has {len(bands[long])} brackets; HyperBand makes {most}")
        if not 0 <= snapshot["band_idx"] < max(len(bands), 1):
            raise ValueError(f"'archs.{arch}.band_idx' is {snapshot['band_idx']}, but there are {len(bands)} bands")
        places = {"current": snapshot["current"], **{f"trials.{t}": p for t, p in snapshot["trials"].items()}}
        for where, place in places.items():
            if place is None:
                continue
            if len(place) != 2 or not 0 <= place[0] < len(bands) or not 0 <= place[1] < len(bands[place[0]]) \
                    or bands[place[0]][place[1]] is None:
                raise ValueError(f"'archs.{arch}.{where}' is {place}, which is no bracket of 'archs.{arch}.bands'")


def _tell_stopped(controller, trial) -> None:
    """Before HyperBand stops a trial it had paused: tell the searcher with the trial's last result. Tune's own
    call for a paused trial has no result, which the searcher would have to take for an error (FAIL in Optuna);
    told first, the stop reaches Optuna as PRUNED, like an ASHA stop."""
    searcher = controller.search_alg
    while getattr(searcher, "searcher", None) is not None:  # SearchGenerator -> ConcurrencyLimiter -> ours
        searcher = searcher.searcher
    if searcher is not None and trial.last_result:
        from ray.tune.utils import flatten_dict

        searcher.on_trial_complete(trial.trial_id, result=flatten_dict(trial.last_result))
