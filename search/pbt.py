"""Population Based Training per architecture (Ray Tune's ``PopulationBasedTraining``), with its exploits on record.

**The population and the searcher.** Ray's PBT refuses any search algorithm (its ``on_trial_add`` raises "Search
algorithms cannot be used with PopulationBasedTraining schedulers" for a ``SearchGenerator``): a searcher would be
told results of configs it did not suggest once PBT has changed them. So the whole initial population is asked of
our searcher (:class:`~search.searcher.MultiArchSearcher`: each net's own Optuna study, sampler, seed, enqueued report
setting and warm start) before Tune starts, under stand-in ids, and handed to Tune as fixed configs
(``BasicVariantGenerator(points_to_evaluate=...)``, which PBT accepts). Asking up front changes nothing a sampler
could have used: a population starts together, so no member has finished before the last one is asked. When Tune
adds a trial, the study's trial with that config takes the Tune trial's id. Optuna is told each trial's own values
only: every epoch until its first exploit, then COMPLETE with its final value if it was never replaced, or PRUNED
(its values up to the exploit; user attributes ``pbt_replaced_at_epoch`` and ``pbt_donor``) once its weights and
hyperparameters were replaced by another trial's: what finished is a lineage, not the config Optuna suggested.

**Exploit and explore.** One synchronous PBT per net (``synch=True``): every ``interval`` epochs (``--grace-period``)
each of the net's trials pauses until all its live trials are there; then the bottom quarter copies a random trial of
the top quarter, weights and hyperparameters, from that trial's checkpoint of the same epoch (the checkpoints
``trainables.train`` writes every epoch), and perturbs the copied ``lr``, ``weight_decay``, ``dropout`` and
``label_smoothing`` (those the net's space searches without a condition, not fixed by ``--set``): x0.8 or x1.2, or a
fresh draw from the space's range with probability 1/4, clipped to the range. Ray's PBT compares every trial the
controller holds; each net's PBT is given a view of the controller with that net's trials only
(``trainables.compat.controller_view``), so a trial only ever copies one of its own net. Synchronous, so a trial
copies a checkpoint of the epoch it is at itself: its history goes on at the next epoch, never repeats or skips one.
``trainables.train`` applies the new values after it loads the donor's checkpoint (lr and weight decay in the
optimizer's parameter groups and the schedule's base rates; dropout and label smoothing are built from the config).

**On record.** ``pbt_state.json`` holds the population (Optuna trial -> Tune trial), every exploit (trial, epoch,
donor, donor's checkpoint, old -> new values, the full new config) and each net's perturbation clock. PBT's random
draws are seeded per net and epoch from ``--seed``. On resume the clock is put back (else a resumed population is
perturbed at odd epochs and never unpaused again) and every trial's place on it is set from the epoch it resumes at;
an exploit on record that Tune's older saved state does not hold is made again (the trial resumes from the donor's
recorded checkpoint with the recorded config), or, if that checkpoint is gone, marked ``"lost"`` with why.
"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

from ray.tune.schedulers import FIFOScheduler, PopulationBasedTraining, TrialScheduler

from analysis.load import NUMBER, Maybe, shape_problem
from search.scheduler import TIME_ATTR, PersistedRungs
from search.spec import PERTURBABLE, perturbable
from trainables.compat import (controller_view, pbt_next_sync, pbt_perturbations, pbt_trial_times, searcher_trials,
                               set_trial_checkpoint, trial_dir_name)
from trainables.config import METRIC, MODE, is_count
from trainables.experiment import PBT_FILE as STATE_FILE  # noqa: F401 (the file PerArchPBT writes)

QUANTILE = 0.25  # the bottom quarter copies the top quarter (Ray's default, the paper's truncation selection)
RESAMPLE = 0.25  # chance of a fresh draw from the range instead of x0.8 / x1.2
POPULATION_ID = "population-{:04d}"  # the stand-in id a member is asked under, before Tune names it


def mutations(params: dict) -> dict:
    """Ray's ``hyperparam_mutations`` for the perturbable params: a range is a tune domain, choices a list."""
    from ray import tune

    out = {}
    for name, p in perturbable(params).items():
        if p["type"] == "categorical":
            out[name] = list(p["choices"])
        else:
            out[name] = (tune.loguniform if p.get("log") else tune.uniform)(p["low"], p["high"])
    return out


class Clip:
    """PBT's ``custom_explore_fn``: a perturbed value (x1.2 of one near the top) back into its space's range, on
    its step if it has one."""

    def __init__(self, params: dict):
        self.ranges = {n: (p["low"], p["high"], p.get("step")) for n, p in perturbable(params).items()
                       if p["type"] == "float"}

    def __call__(self, config: dict) -> dict:
        for name, (low, high, step) in self.ranges.items():
            if name in config and isinstance(config[name], (int, float)):
                value = min(max(float(config[name]), low), high)
                if step:
                    value = min(high, low + round((value - low) / step) * step)
                config[name] = value
        return config


def ask_population(searcher, total: int) -> list[dict]:
    """``total`` configs from the searcher (round-robin over its nets), asked under stand-in ids."""
    rows = []
    for i in range(total):
        config = searcher.suggest(POPULATION_ID.format(i))
        if not isinstance(config, dict):  # Searcher.FINISHED: every net has its num_samples
            break
        rows.append({"key": POPULATION_ID.format(i), "arch": config["arch"], "config": config, "trial_id": None})
    return rows


class PerArchPBT(PersistedRungs, FIFOScheduler):
    """One synchronous PBT per architecture over a population asked of ``searcher`` (see the module docstring).

    ``params``: arch -> the net's searched params (``Param.to_dict()``); ``interval``: epochs between perturbations.
    """

    def __init__(self, archs: list[str], params: dict, interval: int, max_t: int, searcher, population: list[dict],
                 state_path: str | os.PathLike | None = None, seed: int = 0):
        super().__init__()
        FIFOScheduler.set_search_properties(self, METRIC, MODE)  # our override below ignores Tune's call
        if not is_count(interval, 1) or interval >= max_t:
            raise ValueError(f"interval must be an integer in [1, max_t={max_t}), got {interval!r}")
        empty = [a for a in archs if not perturbable(params.get(a, {}))]
        if empty:
            raise ValueError(f"arch {empty[0]!r}: its space searches none of {', '.join(PERTURBABLE)}")
        self.archs, self.params, self.interval, self.max_t, self.seed = list(archs), params, interval, max_t, seed
        self.searcher = searcher
        self.population = [dict(r) for r in population]
        self.pbts = {a: self._new(a) for a in self.archs}
        self.clock = {a: {"next_sync": float(interval), "perturbations": 0, "steps": []} for a in self.archs}
        self.exploits: list[dict] = []
        self._open_state(state_path)

    def _new(self, arch: str) -> PopulationBasedTraining:
        return PopulationBasedTraining(time_attr=TIME_ATTR, metric=METRIC, mode=MODE,
                                       perturbation_interval=self.interval, quantile_fraction=QUANTILE,
                                       hyperparam_mutations=mutations(self.params[arch]),
                                       resample_probability=RESAMPLE, custom_explore_fn=Clip(self.params[arch]),
                                       log_config=False, synch=True)

    @property
    def supports_buffered_results(self) -> bool:
        return False  # PBT must see every epoch to stop a trial at a perturbation boundary

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True  # metric and mode are fixed: METRIC, MODE

    def _view(self, controller, arch: str):
        return controller_view(controller, lambda t: t.config.get("arch") == arch)

    def _exploits_of(self, trial_id: str) -> list[dict]:
        return [e for e in self.exploits if e["trial_id"] == trial_id and e.get("status") != "lost"]

    def _exp_dir(self) -> Path | None:
        return self.state_path.parent if self.state_path is not None else None

    # --------------------------------------------------------------------------------------------- Tune's calls
    def on_trial_add(self, tune_controller, trial) -> None:
        self._drop_staged_copy(trial)
        arch = trial.config["arch"]
        row = next((r for r in self.population if r["trial_id"] == trial.trial_id), None)
        restored = row is not None
        if row is None:  # a new trial: the population member with its config (Tune adds them in order)
            row = next((r for r in self.population if r["trial_id"] is None and _is_member(trial.config, r)), None)
            if row is not None:
                row["trial_id"] = trial.trial_id
                trial.set_config(dict(row["config"]))  # without the None of keys other members set
                self._link(row)
        pbt = self.pbts[arch]
        pbt.on_trial_add(self._view(tune_controller, arch), trial)
        if restored:
            self._settle(trial, arch)
        self.persist()

    def _link(self, row: dict) -> None:
        """The searcher's trial asked under the stand-in id is the Tune trial's from now on."""
        if row["trial_id"] is None or self.searcher is None:
            return
        search = self.searcher.searchers[row["arch"]]
        trials = searcher_trials(search)
        if row["key"] in trials:
            trials[row["trial_id"]] = trials.pop(row["key"])
            self.searcher.trial_arch[row["trial_id"]] = self.searcher.trial_arch.pop(row["key"], row["arch"])
        if row["trial_id"] in trials:
            try:
                trials[row["trial_id"]].set_user_attr("tune_trial_id", row["trial_id"])
            except Exception:  # a finished study trial (told before a driver kill) keeps its attributes
                pass

    def _settle(self, trial, arch: str) -> None:
        """A trial Tune restored on resume: put back its exploits that Tune's saved state is older than, and set its
        place on the net's perturbation clock from the epoch it resumes at.

        The trial resumes at ``e``, the epoch of its newest checkpoint in Tune's state: its history
        (``result.json``) is written up to there. Tune's last result can be ahead of it (a driver killed between a
        result and its checkpoint): that epoch's line is not in the history, and the trial trains it again. An
        exploit on record at epoch ``k`` is in effect if ``e > k`` or the trial's checkpoint is the donor's. If
        ``e == k`` it is made again now; if ``e < k`` the trial first trains its own epochs up to ``k`` again (its
        history stays whole) and the exploit is made when it reports ``k`` (:meth:`_redo`)."""
        epoch = (getattr(trial.latest_checkpoint_result, "metrics", None) or {}).get(TIME_ATTR) or 0
        checkpoint = trial.checkpoint
        for record in (self._exploits_of(trial.trial_id) if trial.status == "PENDING" else []):
            if record["epoch"] < epoch:
                continue  # trained past it: in effect
            if checkpoint is not None and Path(checkpoint.path).as_posix().endswith(record["donor_checkpoint"]):
                epoch = record["epoch"]  # Tune saved the exploit, not yet a result after it
            elif record["epoch"] == epoch:
                if self._redo(trial, record):
                    epoch = record["epoch"]
            else:  # made when the trial reports that epoch again (on_trial_result)
                record["redo_at_resume"] = "pending"
        pbt_trial_times(self.pbts[arch], trial, perturbed=max(self.clock[arch]["steps"], default=0), trained=epoch)

    def _redo(self, trial, record: dict, tune_controller=None) -> bool:
        """Make a recorded exploit again, as PBT made it: the trial's config becomes the recorded one and it resumes
        from the donor's recorded checkpoint (a running trial is paused first). If that checkpoint is gone, the
        record is marked lost and the trial goes on as it is."""
        path = self._exp_dir() / record["donor_checkpoint"] if self._exp_dir() else None
        if path is None or not path.is_dir():
            record.update(status="lost", why="Tune's state saved before the driver was killed predates this "
                                             "exploit and the donor's checkpoint is gone: the trial went on as itself")
            record.pop("redo_at_resume", None)
            return False
        if tune_controller is not None:
            tune_controller.pause_trial(trial, should_checkpoint=False)
        trial.set_config(dict(record["config"]))
        set_trial_checkpoint(trial, str(path), {TIME_ATTR: record["donor_epoch"]})
        record["redo_at_resume"] = "done"
        pbt_trial_times(self.pbts[record["arch"]], trial, perturbed=record["epoch"], trained=record["epoch"])
        return True

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        self._drop_staged_copy(trial)
        arch, epoch = trial.config["arch"], result.get(TIME_ATTR)
        if self.searcher is not None and not self._exploits_of(trial.trial_id):
            self.searcher.on_trial_result(trial.trial_id, result)  # its own value at this epoch, for Optuna
        if epoch is None or epoch >= self.max_t or result.get("status") != "running":
            return TrialScheduler.CONTINUE  # the trial ends by itself
        pending = next((e for e in self._exploits_of(trial.trial_id)
                        if e.get("redo_at_resume") == "pending" and e["epoch"] == epoch), None)
        if pending is not None:  # re-trained up to an exploit on record (see _settle): it is made now, as it was
            done = self._redo(trial, pending, tune_controller)
            self.persist()
            if done:
                return TrialScheduler.NOOP if trial.status == "PAUSED" else TrialScheduler.PAUSE
        pbt, view = self.pbts[arch], self._view(tune_controller, arch)
        before = {t.trial_id: (dict(t.config), _checkpoint_path(t)) for t in view.get_trials()}
        sync_before = pbt_next_sync(pbt)
        rng = random.getstate()
        random.seed(f"{self.seed}:{arch}:{epoch}")  # PBT draws from the module-level RNG: one stream per boundary
        try:
            action = pbt.on_trial_result(view, trial, result)
        finally:
            random.setstate(rng)
        if pbt_next_sync(pbt) != sync_before:  # a perturbation step over the whole net's population
            self.clock[arch]["steps"].append(epoch)
        self.clock[arch].update(next_sync=pbt_next_sync(pbt), perturbations=pbt_perturbations(pbt))
        for t in view.get_trials():
            config, path = before.get(t.trial_id, (None, None))
            now = _checkpoint_path(t)
            if config is None or now is None or now == path or Path(now).parent.name == trial_dir_name(t):
                continue
            self._record_exploit(view, t, trial, result, config, now)
        self.persist()
        return action

    def _record_exploit(self, view, t, current, result: dict, old_config: dict, path: str) -> None:
        donors = {trial_dir_name(d): d for d in view.get_trials()}
        donor = donors.get(Path(path).parent.name)
        own = result if t is current else (t.last_result or {})
        donor_result = t.latest_checkpoint_result.metrics if t.latest_checkpoint_result else {}
        keys = list(perturbable(self.params[t.config["arch"]]))
        record = {"trial_id": t.trial_id, "arch": t.config["arch"], "epoch": own.get(TIME_ATTR),
                  "value": own.get(METRIC), "donor": donor.trial_id if donor else None,
                  "donor_epoch": donor_result.get(TIME_ATTR), "donor_value": donor_result.get(METRIC),
                  "donor_checkpoint": "/".join(Path(path).parts[-2:]),
                  "old": {k: old_config.get(k) for k in keys}, "new": {k: t.config.get(k) for k in keys},
                  "config": dict(t.config), "status": "applied"}
        self.exploits.append(record)
        if self.searcher is not None and len(self._exploits_of(t.trial_id)) == 1:
            ot = searcher_trials(self.searcher.searchers[record["arch"]]).get(t.trial_id)
            if ot is not None:
                try:
                    ot.set_user_attr("pbt_replaced_at_epoch", record["epoch"])
                    ot.set_user_attr("pbt_donor", record["donor"])
                except Exception:  # already told (a re-run after a driver kill)
                    pass

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        if self.searcher is None:
            return
        mine = self._exploits_of(trial.trial_id)
        if mine and result:  # a lineage finished, not the config Optuna suggested: its own values, then PRUNED
            first = mine[0]
            result = {"status": "running", TIME_ATTR: first["epoch"], METRIC: first["value"]}
        self.searcher.on_trial_complete(trial.trial_id, result)

    def on_trial_error(self, tune_controller, trial) -> None:
        if self.searcher is not None:
            self.searcher.on_trial_complete(trial.trial_id, None, error=True)

    def choose_trial_to_run(self, tune_controller):
        chosen = [t for a in self.archs if (t := self.pbts[a].choose_trial_to_run(self._view(tune_controller, a)))]
        return min(chosen, key=lambda t: (t.last_result or {}).get(TIME_ATTR) or 0, default=None)

    def debug_string(self) -> str:
        return "PerArchPBT: " + ", ".join(f"{a} exploits {sum(e['arch'] == a for e in self.exploits)}"
                                          for a in self.archs)

    # ------------------------------------------------------------------------------------------- persistence
    def judged_epochs(self) -> list[int]:
        return [*range(self.interval, self.max_t, self.interval), self.max_t]

    def state(self) -> dict:
        return {"kind": "pbt", "interval": self.interval, "max_t": self.max_t, "quantile_fraction": QUANTILE,
                "resample_probability": RESAMPLE, "seed": self.seed,
                "perturbed": {a: list(perturbable(self.params[a])) for a in self.archs},
                "population": self.population, "clock": self.clock, "exploits": self.exploits}

    def load(self, path: str | os.PathLike) -> None:
        state = json.loads(Path(path).read_text())
        try:
            check_state(state, self.archs, self.interval, self.max_t)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
        self.population, self.exploits = list(state["population"]), list(state["exploits"])
        for arch in self.archs:
            self.pbts[arch] = self._new(arch)
            self.clock[arch] = dict(state["clock"].get(arch, self.clock[arch]))
            pbt_next_sync(self.pbts[arch], self.clock[arch]["next_sync"])
            pbt_perturbations(self.pbts[arch], self.clock[arch]["perturbations"])
        if self.searcher is not None:
            for row in self.population:
                self._link(row)
            self.searcher.reconcile()  # the studies are written at once; Tune saved this searcher at fit() start


# What load() (and the scheduler after it) reads of pbt_state.json, as state() writes it: checked by check_state
# before a resume puts any of it back.
STATE_SHAPE = {"interval": NUMBER, "max_t": NUMBER,
               "population": [{"key": str, "arch": str, "config": dict, "trial_id": Maybe(str)}],
               "clock": {"*": {"next_sync": NUMBER, "perturbations": int, "steps": [NUMBER]}},
               "exploits": [{"trial_id": str, "arch": str, "epoch": NUMBER, "donor": Maybe(str),
                             "donor_epoch": Maybe(NUMBER), "donor_checkpoint": str, "config": dict}]}


def check_state(state, archs: list[str], interval: int, max_t: int) -> None:
    """Refuse (ValueError saying what and where) a PBT record that :meth:`PerArchPBT.load` could not take: another
    shape than ``state()`` writes, one recorded for another interval or max_t, a member or exploit of a net that is
    not in the search."""
    problem = shape_problem(state, STATE_SHAPE)
    if problem:
        raise ValueError(problem)
    if (state["interval"], state["max_t"]) != (interval, max_t):
        raise ValueError(f"recorded for interval {state['interval']} and max_t {state['max_t']}, not {interval} "
                         f"and {max_t}")
    for key in ("population", "exploits"):
        stray = next((i for i, row in enumerate(state[key]) if row["arch"] not in archs), None)
        if stray is not None:
            raise ValueError(f"'{key}[{stray}].arch' is {state[key][stray]['arch']!r}, not a net of this search "
                             f"({', '.join(archs)})")


def _checkpoint_path(trial) -> str | None:
    checkpoint = trial.checkpoint
    return checkpoint.path if checkpoint is not None else None


def _is_member(config: dict, row: dict) -> bool:
    """Whether a trial's config is the population member ``row`` (its values, and None for every other key the
    param space lists)."""
    mine = row["config"]
    return all(config.get(k) == v for k, v in mine.items()) and all(v is None for k, v in config.items()
                                                                      if k not in mine)
