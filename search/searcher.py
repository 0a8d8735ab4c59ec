"""Optuna on Ray Tune, the way the budget deserves: pruned trials told as pruned, one study per architecture.

Ray's ``OptunaSearch`` tells Optuna every finished trial as COMPLETE with its last value, including trials ASHA
stopped after one epoch. TPE would then learn from a 1-epoch accuracy as if it were final. :class:`StatusAwareOptunaSearch`
reads our trainable's ``status`` in the last result: only ``completed`` trials are COMPLETE; a trial stopped early or
diverged is PRUNED (TPE ranks it by its last intermediate value, which ``on_trial_result`` reported); an error is FAIL.

:class:`MultiArchSearcher` gives each architecture its own space, its own Optuna study and exactly ``num_samples``
trials, handing out suggestions round-robin so every net gets its share of the cluster from the start.

``--sampler tpe`` is Optuna's TPE as it ships (multivariate, grouped). Until issue 22's anytime benchmark, ``tpe`` in a
multi-objective study ranked the trials MO-ASHA stopped by the epoch they reached and their values there (Optuna's
TPE ranks them all equal); over 10 paired seeds it made no difference to the size front's hypervolume at any budget
point (docs/benchmarks.md, "HPO efficiency"), so it was dropped. ``tpe-plain``, its comparison arm, is now the same
sampler, kept as a name so experiments started with it resume.
"""
from __future__ import annotations

import math
import pickle
from typing import Callable

import optuna
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from search.spec import TPE_STARTUP
from trainables.compat import (optuna_trial, optuna_trial_id, reported_steps, searcher_study, searcher_told,
                               searcher_trials)
from trainables.config import METRIC, MODE
from trainables.experiment import restored_study_url, study_name

# Study user attribute: Tune ids of trials Optuna was told of that Tune's saved state lost in a driver kill.
LOST_ATTR = "lost_tune_trials"


class StatusAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that maps our trial statuses onto Optuna trial states (see module docstring).

    With a list of metrics (a multi-objective study) nothing is reported per epoch (Optuna refuses intermediate
    values there), a completed trial is told its final values, and a stopped or diverged one is PRUNED without
    values; its values at the stop are kept in the trial's ``last_values`` user attribute.
    """

    @property
    def multi_objective(self) -> bool:
        return isinstance(self.metric, (list, tuple))

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in searcher_told(self):  # told before a driver kill, re-run after the resume
            return
        if self.multi_objective:
            return
        # Step = the epoch the result is for. Tune's training_iteration runs ahead of it once a trial resumes from
        # an older checkpoint than the last one Tune recorded (a corrupt checkpoint, a resume after a driver kill).
        searcher_trials(self)[trial_id].report(result[self.metric], result.get("epoch", result["training_iteration"]))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in searcher_told(self) or trial_id not in searcher_trials(self):
            return
        ot_trial = searcher_trials(self)[trial_id]
        status = (result or {}).get("status")
        ot_trial.set_user_attr("tune_trial_id", trial_id)
        # Tune hands the last result only to on_trial_complete: record it as the last intermediate value, which is
        # what TPE ranks a pruned trial by.
        if self.multi_objective:
            self._tell_multi(ot_trial, status, result, error)
            searcher_told(self).add(trial_id)
            return
        if result and self.metric in result and "epoch" in result:
            value = float(result[self.metric])
            if value == value and result["epoch"] not in reported_steps(ot_trial):
                ot_trial.report(value, result["epoch"])
        if error or result is None or status is None:
            ot_trial.set_user_attr("status", "errored")
            searcher_study(self).tell(ot_trial, None, state=optuna.trial.TrialState.FAIL)
        elif status == "completed":
            ot_trial.set_user_attr("status", "completed")
            searcher_study(self).tell(ot_trial, result[self.metric], state=optuna.trial.TrialState.COMPLETE)
        else:  # stopped by ASHA ("running" when stopped) or diverged
            ot_trial.set_user_attr("status", "diverged" if status == "diverged" else "stopped")
            ot_trial.set_user_attr("epochs_run", result.get("epoch"))
            searcher_study(self).tell(ot_trial, None, state=optuna.trial.TrialState.PRUNED)
        searcher_told(self).add(trial_id)

    def _tell_multi(self, ot_trial, status: str | None, result: dict | None, error: bool) -> None:
        values = [(result or {}).get(m) for m in self.metric]
        finite = all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
        if result:
            ot_trial.set_user_attr("last_values", dict(zip(self.metric, values)))
            ot_trial.set_user_attr("epochs_run", result.get("epoch"))
        if error or result is None or status is None:
            ot_trial.set_user_attr("status", "errored")
            searcher_study(self).tell(ot_trial, None, state=optuna.trial.TrialState.FAIL)
        elif status == "completed" and finite:
            ot_trial.set_user_attr("status", "completed")
            searcher_study(self).tell(ot_trial, [float(v) for v in values], state=optuna.trial.TrialState.COMPLETE)
        elif status == "completed":  # an objective the trial did not report: nothing Optuna could rank
            ot_trial.set_user_attr("status", "errored")
            ot_trial.set_user_attr("missing_objectives", [m for m, v in zip(self.metric, values) if v is None])
            searcher_study(self).tell(ot_trial, None, state=optuna.trial.TrialState.FAIL)
        else:
            ot_trial.set_user_attr("status", "diverged" if status == "diverged" else "stopped")
            searcher_study(self).tell(ot_trial, None, state=optuna.trial.TrialState.PRUNED)


# Pickled into experiments started before the stopped-trial ranking was dropped (their searcher holds a sampler of
# this class): the name resolves to what it now is, so they resume with Optuna's TPE.
StoppedTrialTPESampler = optuna.samplers.TPESampler


def make_sampler(kind: str, seed: int, population_size: int = 50) -> optuna.samplers.BaseSampler:
    if kind in ("tpe", "tpe-plain"):  # tpe-plain: the same since the stopped-trial ranking was dropped
        # multivariate + group: TPE models the conditional parameters (momentum only under sgd, ...) jointly. Both
        # are marked experimental in Optuna 5.0 (pinned): the warning is about our choice, not the user's input.
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=TPE_STARTUP)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=population_size)
    raise ValueError(f"unknown sampler {kind!r}; known: tpe, tpe-plain, random, nsga2")


def nsga2_population(num_samples: int) -> int:
    """NSGA-II generation size for a budget of ``num_samples`` trials: about four generations, 4..50 trials each
    (Optuna's default of 50 would leave a smaller search purely random)."""
    return max(4, min(50, num_samples // 4))


class StudyStorage(optuna.storages.RDBStorage):
    """The studies' database, which a copied or moved experiment reopens where it lies now.

    Tune pickles the searcher (and with it this storage, by URL) into the experiment; unpickled while a resume
    restores a folder whose study is its own ``optuna.db``, it opens that file, not the one of the folder it was
    pickled in (``trainables.experiment.restored_study_url``). A study kept by URL (PostgreSQL) keeps its URL.
    """

    def __setstate__(self, state: dict) -> None:
        super().__setstate__({**state, "url": restored_study_url(state["url"])})


class PickledSearcher(Searcher):
    """A searcher whose whole state is its ``__dict__``, pickled into Tune's experiment checkpoint."""

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))


class MultiArchSearcher(PickledSearcher):
    """One StatusAwareOptunaSearch per architecture, ``num_samples`` trials each, suggested round-robin.

    ``spaces`` maps arch -> define-by-run function; ``fixed`` values go into every trial's config.
    """

    def __init__(self, spaces: dict[str, Callable], num_samples: int, fixed: dict, *, storage: str | None,
                 study_prefix: str, sampler: str = "tpe", seed: int = 0, warm_start: dict[str, list] | None = None,
                 enqueue: dict[str, list[dict]] | None = None, objectives: list | None = None):
        super().__init__(metric=METRIC, mode=MODE)
        # objectives [(metric, "max"|"min"), ...]: one multi-objective study per net instead of val_accuracy alone
        metric = [m for m, _ in objectives] if objectives else METRIC
        mode = [d for _, d in objectives] if objectives else MODE
        self.archs = list(spaces)
        self.num_samples = num_samples
        self.fixed = dict(fixed)
        self.suggested = {a: 0 for a in self.archs}
        self.trial_arch: dict[str, str] = {}
        self.searchers = {}
        for i, arch in enumerate(self.archs):
            rdb = StudyStorage(storage) if storage else None
            # points_to_evaluate: enqueued in the study, asked before the sampler's own (a new search only: a
            # resumed one gets this searcher back from Tune's pickle, with the queue as far as it got).
            s = StatusAwareOptunaSearch(space=spaces[arch], metric=metric, mode=mode, storage=rdb,
                                        study_name=study_name(study_prefix, arch),
                                        sampler=make_sampler(sampler, seed + i, nsga2_population(num_samples)),
                                        points_to_evaluate=list((enqueue or {}).get(arch, [])) or None)
            for frozen in (warm_start or {}).get(arch, []):
                searcher_study(s).add_trial(frozen)
            self.searchers[arch] = s

    def suggest(self, trial_id: str):
        open_archs = [a for a in self.archs if self.suggested[a] < self.num_samples]
        if not open_archs:
            return Searcher.FINISHED
        arch = min(open_archs, key=lambda a: (self.suggested[a], self.archs.index(a)))
        searcher = self.searchers[arch]
        orphans = getattr(self, "orphans", {}).get(arch)
        if orphans:  # asked before a driver kill but never saved by Tune: this trial takes it over
            searcher_trials(searcher)[trial_id] = optuna_trial(searcher_study(searcher), orphans.pop(0))
        params = searcher.suggest(trial_id)
        searcher_trials(searcher)[trial_id].set_user_attr("tune_trial_id", trial_id)
        self.suggested[arch] += 1
        self.trial_arch[trial_id] = arch
        return {**self.fixed, **params, "arch": arch}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.trial_arch:
            self.searchers[self.trial_arch[trial_id]].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self.trial_arch:
            self.searchers[self.trial_arch[trial_id]].on_trial_complete(trial_id, result, error)

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        self.reconcile()

    def reconcile(self) -> None:
        """Catch up with the Optuna studies, which are written at once while Tune saves this searcher every few
        seconds: after a driver kill a study can be ahead of the state just restored.

        A trial the study has finished is marked completed here, so a re-run of it after the resume is not told
        (or reported to) Optuna again. A RUNNING study trial this searcher never handed out (asked after Tune's
        last save) is an orphan: the next suggestion for its net takes it over instead of asking a new one, so the
        study ends with exactly one trial per Tune trial.

        A *finished* study trial this searcher never handed out is a trial that started and ended between Tune's
        last save and the kill: Tune lost it and runs a new trial in its place, but Optuna's verdict on it cannot be
        taken back (and the sampler learned from it). It stays, and its Tune id is listed in the study's
        ``LOST_ATTR`` user attribute, so the study holds one trial per Tune trial plus one per listed lost trial.
        """
        self.orphans = {}
        for arch, s in self.searchers.items():
            known = {optuna_trial_id(ot) for ot in searcher_trials(s).values()}
            stored = {optuna_trial_id(t): t for t in searcher_study(s).get_trials(deepcopy=False)}
            for tune_id, ot in searcher_trials(s).items():
                if stored[optuna_trial_id(ot)].state.is_finished():
                    searcher_told(s).add(tune_id)
            self.orphans[arch] = sorted(i for i, t in stored.items()
                                        if i not in known and t.state == optuna.trial.TrialState.RUNNING)
            lost = {t.user_attrs.get("tune_trial_id") for i, t in stored.items()
                    if i not in known and t.state.is_finished()} - {None}
            listed = set(searcher_study(s).user_attrs.get(LOST_ATTR, []))
            if lost - listed:
                searcher_study(s).set_user_attr(LOST_ATTR, sorted(listed | lost))


def finished_trials(storage: str, study_name: str) -> list[optuna.trial.FrozenTrial]:
    """COMPLETE and PRUNED trials of an earlier study, to warm-start a new one (FAIL and RUNNING are left out)."""
    study = optuna.load_study(study_name=study_name, storage=storage)
    keep = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return [optuna.trial.create_trial(state=t.state, value=t.value, params=t.params, distributions=t.distributions,
                                      intermediate_values=t.intermediate_values, user_attrs=t.user_attrs)
            for t in study.get_trials(deepcopy=False, states=keep)]


class RowSearcher(PickledSearcher):
    """Hands out a fixed list of configs in order (a preset's grid), then reports FINISHED."""

    def __init__(self, rows: list[dict]):
        super().__init__(metric=METRIC, mode=MODE)
        self.rows = [dict(r) for r in rows]
        self.next = 0

    def suggest(self, trial_id: str):
        if self.next >= len(self.rows):
            return Searcher.FINISHED
        self.next += 1
        return dict(self.rows[self.next - 1])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass
