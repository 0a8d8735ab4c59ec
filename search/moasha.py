"""Multi-objective ASHA per architecture (MOASHA, Schmucker et al. 2021, on Ray Tune), with persisted rungs.

Ray's ASHA ranks by one metric, and Optuna refuses intermediate values (and so pruning) in multi-objective studies.
:class:`PerArchMOASHA` is ASHA with the comparison replaced: when a trial reaches a rung (epoch ``grace_period * eta^k``
below ``max_t``), it is ranked among every trial of its net recorded at that rung so far, by non-dominated sorting of
the objectives observed there and then, within a front, by ``ranking`` (``trainables.objectives.rank_order``), and it
trains on only if it is among the top ``ceil(n / eta)`` of those ``n``. Asynchronous like ASHA: a trial is judged
against those that got to the rung before it, and a decision is never revisited. The first trial at a rung always
goes on.

The order within a front matters more than it looks: when accuracy rises with size, nearly every trial at a rung is
on its front, and the order decides alone. ``"crowding"`` (NSGA-II; the only rule until the option existed) puts a
front's two ends first, and the first trials at a rung are usually such ends: at full scale (docs/results.md,
"Size-aware search at full scale") they held the kept places and every later trial between them was stopped.
``"hypervolume"`` (the default) orders a front by each member's exclusive contribution to the hypervolume of the
rung's trials, at the kind of reference point the analysis uses (accuracy 0, every other objective 10% beyond the
worst value the net has recorded at any rung): the rung keeps the trials the reported hypervolume would miss most.
A small net that is accurate for its size goes first, not because it is an end; the largest net counts for its
margin over the next.

A stopped trial ends like an ASHA stop: its last result has ``status="running"``, which
:class:`~search.searcher.StatusAwareOptunaSearch` tells Optuna as PRUNED (without values: a multi-objective study
has no intermediate values to rank it by).

Every decision (the rung, the trial's values, its place in the ranking, the population size, kept or stopped) is
written to ``moasha_state.json`` as it is made and read back on resume, as ``PerArchASHA`` does with
``asha_state.json``: a resumed search ranks against the same records and a stop made before a crash stands.

An epoch budget (``epoch_budget``, per net) works as in ``PerArchASHA``, by the same reservation code
(:class:`~search.scheduler.PersistedRungs`): a trial the ranking keeps is stopped with ``"reason": "budget"`` when the
epochs to its next rung no longer fit.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from search.scheduler import TIME_ATTR, PersistedRungs
from trainables.config import METRIC, MODE, is_count
from trainables.experiment import MOASHA_FILE as STATE_FILE  # noqa: F401 (the file PerArchMOASHA writes)
from trainables.objectives import DEFAULT_RANKING, RANKINGS, parse_objectives, rank_order, reference_point, to_loss

LEGACY_RANKING = "crowding"  # what a moasha_state.json without "ranking" was made with


def milestones(max_t: int, grace_period: int, reduction_factor: float) -> list[int]:
    """Rung epochs: grace_period * eta^k, rounded up, below max_t (a trial at max_t is finished anyway)."""
    out, k = [], 0
    while True:
        m = math.ceil(grace_period * reduction_factor ** k - 1e-9)
        if m >= max_t:
            return out
        if not out or m > out[-1]:
            out.append(m)
        k += 1


class PerArchMOASHA(PersistedRungs, FIFOScheduler):
    """One set of multi-objective rungs per architecture (trials carry ``arch`` in their config).

    >>> s = PerArchMOASHA(["origin_net"], [("val_accuracy", "max"), ("params", "min")], max_t=9)
    >>> s.milestones
    [1, 3]
    """

    ranking = LEGACY_RANKING  # a scheduler Tune pickled before the option existed; __init__ sets its own

    def __init__(self, archs: list[str], objectives, max_t: int, grace_period: int = 1,
                 reduction_factor: float = 3, state_path: str | os.PathLike | None = None,
                 epoch_budget: int | None = None, num_samples: int | None = None, ranking: str = DEFAULT_RANKING):
        super().__init__()
        FIFOScheduler.set_search_properties(self, METRIC, MODE)  # our override below ignores Tune's call
        if not is_count(max_t, 1):
            raise ValueError(f"max_t must be an integer >= 1, got {max_t!r}")
        if grace_period < 1 or grace_period > max_t:
            raise ValueError(f"grace_period must be in [1, max_epochs={max_t}], got {grace_period!r}")
        if reduction_factor <= 1:
            raise ValueError(f"reduction_factor must be > 1, got {reduction_factor!r}")
        if not archs:
            raise ValueError("archs: at least one architecture is needed")
        if ranking not in RANKINGS:
            raise ValueError(f"ranking must be one of {', '.join(RANKINGS)}, got {ranking!r}")
        self.ranking = ranking
        self.objectives = [list(o) for o in parse_objectives(objectives)]
        self.max_t, self.grace_period, self.reduction_factor = max_t, grace_period, reduction_factor
        self.milestones = milestones(max_t, grace_period, reduction_factor)
        # arch -> milestone -> trial_id -> objective values (as reported, not turned into losses)
        self.rungs: dict[str, dict[int, dict[str, list]]] = {a: {m: {} for m in self.milestones} for a in archs}
        self.decisions: list[dict] = []  # every ranking made: trial, arch, epoch, values, place, population, kept
        self.stops: list[dict] = []  # the decisions that stopped a trial (and budget stops, "reason": "budget")
        self._set_budget(epoch_budget, num_samples, grace_period)
        self._open_state(state_path)

    def judged_epochs(self) -> list[int]:
        return [*self.milestones, self.max_t]

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True  # the objectives are fixed at construction

    def on_trial_add(self, tune_controller, trial) -> None:
        self._drop_staged_copy(trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        self._drop_staged_copy(trial)
        action = self.decide(trial.trial_id, trial.config["arch"], result)
        return action

    def decide(self, trial_id: str, arch: str, result: dict) -> str:
        """The rung decision for one result (CONTINUE or STOP); recorded and persisted when a rung is reached."""
        epoch = result.get(TIME_ATTR)
        stopped_at = next((s["epoch"] for s in self.stops if s["trial_id"] == trial_id), None)
        if stopped_at is not None and epoch is not None and epoch >= stopped_at:
            # Stopped before a driver kill that came before Tune saved it: the decision on record stands.
            return TrialScheduler.STOP
        if epoch is None or epoch >= self.max_t or result.get("status") == "diverged":
            return TrialScheduler.CONTINUE  # the trial ends by itself
        rungs = self.rungs.setdefault(arch, {m: {} for m in self.milestones})
        milestone = next((m for m in reversed(self.milestones) if epoch >= m and trial_id not in rungs[m]), None)
        if milestone is None:
            return TrialScheduler.CONTINUE
        names = [name for name, _ in self.objectives]
        values = [result.get(name) for name in names]
        others = list(rungs[milestone].items())
        population = [v for _, v in others] + [values]
        directions = [d for _, d in self.objectives]
        losses = [to_loss(v, directions) for v in population]
        order = rank_order(losses, prefer=len(population) - 1, by=self.ranking, names=names,
                           reference=self._reference(arch, losses, names) if self.ranking == "hypervolume" else None)
        place = order.index(len(population) - 1)
        keep = math.ceil(len(population) / self.reduction_factor)
        kept = place < keep
        rungs[milestone][trial_id] = values
        decision = {"trial_id": trial_id, "arch": arch, "epoch": epoch, "rung": milestone,
                    "values": dict(zip(names, values)), "place": place + 1, "population": len(population),
                    "keep": keep, "kept": kept}
        self.decisions.append(decision)
        over_budget = kept and self.epoch_budget is not None and not self._promote(trial_id, arch, epoch)
        if not kept or over_budget:  # kept by its rank but the budget cannot pay its next rung: stopped anyway
            self.stops.append({**decision, "reason": "budget"} if over_budget else decision)
        self.persist()
        return TrialScheduler.CONTINUE if kept and not over_budget else TrialScheduler.STOP

    def _reference(self, arch: str, population: list[list[float]], names: list[str]) -> list[float] | None:
        """The hypervolume ranking's reference point: ``reference_point`` of every complete value this net has
        recorded at any rung so far, with the newcomer's. Not the rung's own: a rung's first few trials would set
        it, and the largest of them would always sit 10% from the reference (a thin slab, stopped however
        accurate); the sizes seen at the first rung are the search's sizes."""
        directions = [d for _, d in self.objectives]
        seen = [to_loss(v, directions) for rung in self.rungs.get(arch, {}).values() for v in rung.values()]
        complete = [p for p in seen + population if all(math.isfinite(x) for x in p)]
        return reference_point(complete, names) if complete else None

    def debug_string(self) -> str:
        counts: dict[str, int] = {}
        for s in self.stops:
            counts[s["arch"]] = counts.get(s["arch"], 0) + 1
        return "PerArchMOASHA: " + ", ".join(f"{a} stopped {counts.get(a, 0)}" for a in self.rungs)

    # ------------------------------------------------------------------------------------------- persistence
    def state(self) -> dict:
        return {"kind": "moasha", "objectives": self.objectives, "ranking": self.ranking, "max_t": self.max_t,
                "grace_period": self.grace_period, "reduction_factor": self.reduction_factor,
                "milestones": self.milestones,
                # The same shape as asha_state.json's rungs (milestone, {trial: value}), values being vectors.
                "rungs": {a: [[m, rec[m]] for m in sorted(rec, reverse=True)] for a, rec in self.rungs.items()},
                "num_stopped": {a: sum(s["arch"] == a for s in self.stops) for a in self.rungs},
                "decisions": self.decisions, "stops": self.stops, **self._budget_state()}

    def load(self, path: str | os.PathLike) -> None:
        state = json.loads(Path(path).read_text())
        if [list(o) for o in state["objectives"]] != self.objectives:
            raise ValueError(f"{path}: rungs were recorded for objectives {state['objectives']}, "
                             f"not {self.objectives}")
        if state.get("ranking", LEGACY_RANKING) != self.ranking:  # one search, one rule: no mixed decisions
            raise ValueError(f"{path}: rungs were ranked by {state.get('ranking', LEGACY_RANKING)!r}, "
                             f"not {self.ranking!r}")
        for arch, rungs in state["rungs"].items():
            self.rungs[arch] = {int(m): {t: list(v) for t, v in recorded.items()} for m, recorded in rungs}
            for m in self.milestones:
                self.rungs[arch].setdefault(m, {})
        self.decisions = list(state["decisions"])
        self.stops = list(state["stops"])
        self._load_budget(state)
