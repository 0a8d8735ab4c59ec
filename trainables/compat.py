"""Every place cifar-tune reaches past a library's public API, in one module (the design guide's rule).

Ray Tune and Optuna are pinned in pyproject.toml to the versions this was checked on; ``tests/test_private_api.py``
walks the code and fails on a private access anywhere else, and checks that everything listed in ``PRIVATE``
still exists on the installed versions. To add one: a function here, its entries in ``PRIVATE`` (why the public API
does not suffice, what upstream would remove it), and the caller calls the function.

It sits in ``trainables/`` because ``analysis/`` and ``trainables/`` use it too (the layering lets neither import
``search/``). It imports no library at module level: a trial's worker does not pay for Ray's or Optuna's import.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from trainables.config import ConfigError


@dataclass(frozen=True)
class Private:
    """One attribute of a library class that the public API does not give us."""

    owner: str  # importable dotted path of the class that has it
    attr: str
    used_by: str  # the function below
    why: str  # why the public API does not suffice
    upstream: str  # the issue / feature that would remove the need ("none found" when we found none)


OPTUNA_SEARCH = "ray.tune.search.optuna.OptunaSearch"
ASHA = "ray.tune.schedulers.AsyncHyperBandScheduler"
BRACKET = "ray.tune.schedulers.async_hyperband._Bracket"
STORAGE = "ray.train._internal.storage.StorageContext"
HYPERBAND = "ray.tune.schedulers.HyperBandScheduler"
HB_BRACKET = "ray.tune.schedulers.hyperband._Bracket"
PBT = "ray.tune.schedulers.PopulationBasedTraining"
PBT_TRIAL = "ray.tune.schedulers.pbt._PBTTrialState"
CONTROLLER = "ray.tune.execution.tune_controller.TuneController"
CHECKPOINTS = "ray.train._internal.checkpoint_manager._CheckpointManager"
HB_RESUME = ("ray#30838 and ray#15177: Tune restores no scheduler's state on resume (HyperBand's brackets included); "
             "a public state_dict for schedulers: none found")

PRIVATE: tuple[Private, ...] = (
    # ------------------------------------------------------------------------------------- Ray's OptunaSearch
    Private(OPTUNA_SEARCH, "_ot_trials", "searcher_trials",
            "OptunaSearch keeps the Tune trial id -> Optuna trial map to itself; we need it to report per-epoch "
            "values under our step (the epoch), to tell PRUNED/FAIL ourselves, and to hand a study trial left "
            "RUNNING by a driver kill to the next Tune trial",
            "ray#15283 chose the state OptunaSearch tells, yet a trial ASHA stopped is still told COMPLETE with its "
            "last value (search/searcher.py); a hook for the state, or a public trial map: none found"),
    Private(OPTUNA_SEARCH, "_ot_study", "searcher_study",
            "OptunaSearch builds the study from storage/study_name and does not expose it; we tell it trial states, "
            "warm-start it (add_trial) and keep user attributes on it",
            "ray#48500 (storage configurable for OptunaSearch); a public `study` property: none found"),
    Private(OPTUNA_SEARCH, "_completed_trials", "searcher_told",
            "the set of Tune trials OptunaSearch has told Optuna of; after a resume a re-run trial must not be "
            "told twice, and reconcile() marks those a study finished before a driver kill",
            "none found"),
    # ----------------------------------------------------------------------------------------------- Optuna
    Private("optuna.trial.Trial", "_trial_id", "optuna_trial_id",
            "a Trial's storage id (not its study-local number) is what BaseStorage.get_trial and the Trial "
            "constructor take; number -> id needs the study's private _study_id",
            "optuna#5647 and optuna#6365 (get a trial by number / id; both closed without a public id)"),
    Private("optuna.trial.FrozenTrial", "_trial_id", "optuna_trial_id",
            "matching the study's stored trials with the live ones of OptunaSearch by the same id",
            "optuna#5647, optuna#6365"),
    # ---------------------------------------------------------------------------------------- Ray's ASHA
    Private(ASHA, "_trial_info", "asha_trial_brackets",
            "PerArchASHA runs one ASHA per net and forwards each trial to its net's: it must know whether a trial "
            "is registered (a trial restored on resume that Tune did not re-add), register it without "
            "on_trial_add's np.random draw of a bracket (it moves the global RNG), and drop a removed or errored "
            "trial without on_trial_remove's KeyError for one it never saw",
            "ray#30838 (ASHA's state is not restored on resume); none found for a public registry"),
    Private(ASHA, "_brackets", "asha_bracket",
            "the rungs (milestones and recorded values) and the cutoff live in the bracket; we persist them to "
            "asha_state.json and put them back on resume, and record the cutoff with each stop",
            "ray#30838, ray#15177 (scheduler save/restore exists, but Tune does not restore a scheduler on resume)"),
    Private(ASHA, "_num_stopped", "asha_num_stopped",
            "persisted with the rungs so the resumed scheduler's counts and debug string continue",
            "ray#30838"),
    Private(BRACKET, "_rungs", "bracket_rungs",
            "the records each rung's cutoff is computed from (see _brackets)", "ray#30838"),
    Private(BRACKET, "cutoff", "rung_cutoff",
            "the value a trial had to beat at a rung, recorded with each stop (a public method of a private class)",
            "ray#30838"),
    # ---------------------------------------------------------------------------------- Ray's storage layout
    Private(STORAGE, "trial_fs_path", "trial_storage",
            "a callback must push a trial's result files to its storage folder before Tune copies them back over "
            "the driver's on a retry; Trial.path is the folder, but the filesystem is only on the StorageContext "
            "(a DeveloperAPI in ray.train._internal)",
            "ray#39281 (StorageContext as a developer API, from inside a trainable only)"),
    Private(STORAGE, "storage_filesystem", "trial_storage", "see trial_fs_path", "ray#39281"),
    Private("ray.train._internal.checkpoint_manager._CheckpointManager", "_checkpoint_results",
            "forget_missing_checkpoints",
            "a driver killed after Ray deleted a checkpoint (num_to_keep) but before its next state snapshot resumes "
            "with the deleted one still listed; Ray's next deletion of it raises FileNotFoundError, logged as a "
            "traceback, and skips the state snapshot that checkpoint should force. Nothing public edits the list",
            "none found (ray.train._internal.storage._delete_fs_path could ignore a missing path)"),
    Private(STORAGE, "trial_dir_name", "trial_dir_name",
            "reading an experiment with ExperimentAnalysis (no Ray session), the folder a trial's files are in is "
            "the name Ray stored; its driver-side path needs a session",
            "none found"),
    Private(STORAGE, "trial_driver_staging_path", "driver_staging_dir",
            "Trial.local_path (public) is this; that its parent is the experiment's driver staging dir (where Tune's "
            "restore copies the experiment's *.json, and which it uploads at each save) is Ray's layout, not API. "
            "Reading TuneController._storage instead made Ray warn every user ('restricted')",
            "ray#35769, ray#20446 (the scheduler <-> controller interface, deprioritised)"),
    # ------------------------------------------------------------------------------ Ray's synchronous HyperBand
    Private(HYPERBAND, "_hyperbands", "hyperband_snapshot",
            "PerArchHyperBand persists each net's bands of brackets to hyperband_state.json and puts them back on "
            "resume (Ray keeps them only in memory, keyed by Trial objects that a resume replaces)", HB_RESUME),
    Private(HYPERBAND, "_trial_info", "hyperband_snapshot",
            "which bracket (and band) each trial is in: persisted, restored, and re-keyed to the Trial objects a "
            "resume creates", HB_RESUME),
    Private(HYPERBAND, "_state", "hyperband_snapshot",
            "the bracket new trials join: restored so a resumed search fills the bracket it was filling", HB_RESUME),
    Private(HYPERBAND, "_num_stopped", "hyperband_snapshot", "persisted with the brackets (debug string)",
            HB_RESUME),
    Private(HYPERBAND, "_create_bracket", "hyperband_restore",
            "a restored bracket is made by HyperBand's own factory (its n0, r0 and total work), then put back at "
            "the progress recorded", HB_RESUME),
    Private(HB_BRACKET, "_live_trials", "hyperband_snapshot",
            "the trials a bracket still judges and their result at its milestone: persisted, restored, re-keyed, "
            "and read to record each halving (who was kept, who stopped, the cut-off)", HB_RESUME),
    Private(HB_BRACKET, "_all_trials", "hyperband_snapshot", "every trial the bracket ever held", HB_RESUME),
    Private(HB_BRACKET, "_n", "hyperband_snapshot",
            "how many trials the bracket keeps at its current milestone", HB_RESUME),
    Private(HB_BRACKET, "_r", "hyperband_snapshot", "the bracket's current rung length", HB_RESUME),
    Private(HB_BRACKET, "_cumul_r", "hyperband_snapshot", "the bracket's current milestone (epoch)", HB_RESUME),
    Private(HB_BRACKET, "_halves", "hyperband_snapshot", "how many halvings the bracket has left", HB_RESUME),
    Private(HB_BRACKET, "_completed_progress", "hyperband_snapshot",
            "the bracket's progress, which orders the brackets in choose_trial_to_run", HB_RESUME),
    Private(HB_BRACKET, "_time_attr", "hyperband_forget_result",
            "the result key of the bracket's milestones (our epoch): the progress a taken-back result had made",
            HB_RESUME),
    # -------------------------------------------------------------------------- Ray's PopulationBasedTraining
    Private(CONTROLLER, "_schedule_trial_save", "controller_view",
            "PBT asks the controller to save a top trial it may copy; each net's PBT is given a view of the "
            "controller that lists only that net's trials (Ray's PBT compares every trial the controller has, so "
            "it would copy across nets), and the view must pass this call on. Tune whitelists it for schedulers",
            "ray#35769 (the scheduler <-> controller interface, deprioritised)"),
    Private("ray.tune.execution.tune_controller.TrialRunnerWrapper", "_tune_controller", "resave_trial",
            "what Tune hands a scheduler wraps the controller and warns on any method outside its whitelist; the "
            "mark below is not on it, so it is called on the controller the wrapper holds (no warning to the user)",
            "ray#35769 (the scheduler <-> controller interface, deprioritised)"),
    Private(CONTROLLER, "_mark_trial_to_checkpoint", "resave_trial",
            "TuneController._schedule_trial_stop returns before marking a trial without an actor for the next "
            "state save, so a paused trial HyperBand stops stays PAUSED in the saved experiment state (report: "
            "pending); marking it after the stop makes the save write TERMINATED",
            "none found (a fix would mark before the early return in _schedule_trial_stop)"),
    Private(PBT, "_next_perturbation_sync", "pbt_next_sync",
            "synchronous PBT's next perturbation epoch: persisted and put back on resume, else a resumed "
            "population (all past the first boundary) is perturbed at once at odd epochs and then never unpaused",
            "ray#30838 (no scheduler state restored on resume); none found for PBT"),
    Private(PBT, "_trial_state", "pbt_trial_times",
            "each trial's last perturbation and train time: set from the epoch a restored trial resumes at, so "
            "the resumed population waits for the same boundaries", "none found"),
    Private(PBT_TRIAL, "last_perturbation_time", "pbt_trial_times", "see _trial_state", "none found"),
    Private(PBT_TRIAL, "last_train_time", "pbt_trial_times", "see _trial_state", "none found"),
    Private(PBT, "_num_perturbations", "pbt_perturbations", "persisted with the exploits (debug string)",
            "none found"),
    Private(CHECKPOINTS, "_latest_checkpoint_result", "set_trial_checkpoint",
            "an exploit PBT decided (and we recorded) before a driver kill that Tune's saved state does not hold "
            "is put back on resume the way PBT makes it: the trial's newest checkpoint becomes the donor's",
            "none found (Ray's PBT writes the same attribute)"),
    # ------------------------------------------------------------------------------- torchvision (not Ray/Optuna)
    Private("torchvision.models.resnet.ResNet", "_make_layer", "resnet_stage",
            "ResNet fixes the stage widths (64..512); a width-scaled ResNet-18 rebuilds its stages with the "
            "constructor's own helper so blocks, downsampling and norm layers are exactly torchvision's",
            "none found"),
    # ----------------------------------------------------------------------------- argparse (the standard library)
    Private("argparse.ArgumentParser", "_actions", "parser_actions",
            "a parser's flags with their types and defaults: the CLI names the flag an unknown one most likely "
            "meant, and the Python API types each keyword as the flag would",
            "none found (argparse has no public list of a parser's actions)"),
)


# ------------------------------------------------------------------------------------------ Ray's OptunaSearch
def searcher_trials(search) -> dict:
    """OptunaSearch's live ``{tune trial id: optuna.trial.Trial}`` (mutable: an adopted orphan is put in it)."""
    return search._ot_trials


def searcher_study(search):
    """The ``optuna.Study`` an OptunaSearch asks and tells."""
    return search._ot_study


def searcher_told(search) -> set:
    """OptunaSearch's set of Tune trial ids whose outcome Optuna was told (mutable)."""
    return search._completed_trials


# ------------------------------------------------------------------------------------------------------ Optuna
def optuna_trial_id(trial) -> int:
    """The storage id of an ``optuna.trial.Trial`` or ``FrozenTrial``."""
    return trial._trial_id


def optuna_trial(study, trial_id: int):
    """A live ``optuna.trial.Trial`` for a trial the study already holds (RUNNING), as ``Study.ask`` makes one.

    No private attribute, but Optuna documents the constructor as not for users; kept here for that reason."""
    import optuna

    return optuna.trial.Trial(study, trial_id)


def reported_steps(trial) -> dict:
    """The intermediate values stored for a live trial (the trial's own cache can be older)."""
    return trial.storage.get_trial(optuna_trial_id(trial)).intermediate_values


# ------------------------------------------------------------------------------------------------- Ray's ASHA
def asha_trial_brackets(sched) -> dict:
    """AsyncHyperBandScheduler's ``{trial id: bracket}`` of the trials it judges (mutable)."""
    return sched._trial_info


def asha_bracket(sched):
    """The scheduler's one bracket (we build every ASHA with ``brackets=1``)."""
    return sched._brackets[0]


def bracket_rungs(bracket) -> list:
    """``[(milestone, {trial id: value}), ...]``, the highest milestone first, as ASHA records them."""
    return bracket._rungs


def set_bracket_rungs(bracket, rungs: list) -> None:
    bracket._rungs = rungs


def rung_cutoff(sched, recorded: dict):
    """The value a trial must reach to go on at a rung holding ``recorded`` (None while it is too empty)."""
    return asha_bracket(sched).cutoff(recorded)


def asha_num_stopped(sched) -> int:
    return sched._num_stopped


def set_asha_num_stopped(sched, count: int) -> None:
    sched._num_stopped = count


# ---------------------------------------------------------------------------------------- Ray's storage layout
def trial_storage(trial) -> tuple:
    """``(pyarrow filesystem, the trial's folder on it)`` of a Tune trial."""
    return trial.storage.storage_filesystem, trial.storage.trial_fs_path


def forget_missing_checkpoints(trial) -> list[str]:
    """Drop from a trial's checkpoint bookkeeping the checkpoints gone from its storage (deleted by Ray before a
    driver kill, still listed in the state the resume read); returns their paths."""
    from pyarrow.fs import FileType

    manager = trial.run_metadata.checkpoint_manager
    kept, gone = [], []
    for result in manager._checkpoint_results:
        ckpt = result.checkpoint
        missing = ckpt.filesystem.get_file_info(ckpt.path).type == FileType.NotFound
        (gone if missing else kept).append(result)
    if gone:
        manager._checkpoint_results = kept
    return [r.checkpoint.path for r in gone]


def trial_dir_name(trial) -> str | None:
    """The name of a trial's folder in its experiment directory, as Ray stored it (None if it has none)."""
    return getattr(getattr(trial, "storage", None), "trial_dir_name", None)


def driver_staging_dir(trial) -> Path | None:
    """The driver-side staging copy of the experiment directory Tune syncs to the storage (None for a trial that
    has no storage yet, or a stand-in without one)."""
    try:
        local = trial.local_path
    except (AttributeError, RuntimeError):  # no storage / no folder name yet
        return None
    return Path(local).parent if local else None


# ------------------------------------------------------------------------------------------------- torchvision
def resnet_stage(model, block, planes: int, blocks: int, stride: int = 1):
    """A ResNet stage of ``blocks`` x ``block`` with ``planes`` channels, made by torchvision's own helper (it also
    advances ``model.inplanes``)."""
    return model._make_layer(block, planes, blocks, stride=stride)


# ---------------------------------------------------------------------------------- Ray's synchronous HyperBand
def hyperband_snapshot(sched, time_attr: str, metric: str) -> dict:
    """A HyperBandScheduler's whole state as plain values (trials by id): its bands of brackets (None where HyperBand
    skipped a bracket too small to exist), which bracket new trials join, the stop count, and every trial's place."""
    places = {}
    bands = []
    for band_idx, band in enumerate(sched._hyperbands):
        out = []
        for s, bracket in enumerate(band):
            if bracket is None:
                out.append(None)
                continue
            places[id(bracket)] = [band_idx, s]
            out.append({"n": bracket._n, "r": bracket._r, "milestone": bracket._cumul_r, "halves": bracket._halves,
                        "progress": bracket._completed_progress,
                        "live": {t.trial_id: _stats(r, time_attr, metric)
                                 for t, r in bracket._live_trials.items()},
                        "all": [t.trial_id for t in bracket._all_trials],
                        "to_unpause": sorted(t.trial_id for t in bracket.trials_to_unpause),
                        "being_processed": bool(bracket.is_being_processed)})
        bands.append(out)
    current = sched._state["bracket"]
    return {"bands": bands, "current": places.get(id(current)) if current is not None else None,
            "band_idx": sched._state["band_idx"], "num_stopped": sched._num_stopped,
            "trials": {t.trial_id: places[id(b)] for t, (b, _) in sched._trial_info.items() if id(b) in places}}


def _stats(result: dict | None, time_attr: str, metric: str) -> dict | None:
    if result is None:
        return None
    return {time_attr: result.get(time_attr), metric: result.get(metric)}


def hyperband_restore(sched, snapshot: dict, stand_in) -> dict:
    """Put ``snapshot`` (from :func:`hyperband_snapshot`) back into a fresh HyperBandScheduler; every trial is the
    object ``stand_in(trial_id)`` until :func:`hyperband_adopt` swaps in the real one. Returns id -> stand-in."""
    stand_ins: dict = {}

    def one(tid):
        if tid not in stand_ins:
            stand_ins[tid] = stand_in(tid)
        return stand_ins[tid]

    brackets = {}
    sched._hyperbands = []
    for band_idx, band in enumerate(snapshot["bands"]):
        out = []
        for s, rec in enumerate(band):
            if rec is None:
                out.append(None)
                continue
            bracket = sched._create_bracket(s)
            bracket._n, bracket._r, bracket._cumul_r = rec["n"], rec["r"], rec["milestone"]
            bracket._halves, bracket._completed_progress = rec["halves"], rec["progress"]
            bracket._live_trials = {one(t): (dict(r) if r is not None else None) for t, r in rec["live"].items()}
            bracket._all_trials = [one(t) for t in rec["all"]]
            bracket.trials_to_unpause = {one(t) for t in rec["to_unpause"]}
            bracket.is_being_processed = rec["being_processed"]
            brackets[(band_idx, s)] = bracket
            out.append(bracket)
        sched._hyperbands.append(out)
    if not sched._hyperbands:
        sched._hyperbands = [[]]
    current = snapshot.get("current")
    sched._state = {"bracket": brackets[tuple(current)] if current else None, "band_idx": snapshot["band_idx"]}
    sched._num_stopped = snapshot["num_stopped"]
    sched._trial_info = {one(t): (brackets[tuple(place)], place[0]) for t, place in snapshot["trials"].items()}
    return stand_ins


def hyperband_adopt(sched, old, new) -> None:
    """Swap trial ``old`` for ``new`` in every structure of a HyperBandScheduler (``new`` None: drop ``old``)."""
    if old in sched._trial_info:
        place = sched._trial_info.pop(old)
        if new is not None:
            sched._trial_info[new] = place
    for band in sched._hyperbands:
        for bracket in band:
            if bracket is None:
                continue
            if old in bracket._live_trials:
                bracket._live_trials = {(new if t is old else t): r for t, r in bracket._live_trials.items()
                                        if not (t is old and new is None)}
            bracket._all_trials = [new if t is old else t for t in bracket._all_trials
                                   if not (t is old and new is None)]
            if old in bracket.trials_to_unpause:
                bracket.trials_to_unpause.discard(old)
                if new is not None:
                    bracket.trials_to_unpause.add(new)


def hyperband_forget_result(sched, trial) -> None:
    """Take back ``trial``'s result in its bracket, as if it had not reported there yet (its progress with it). Ray
    halves a bracket once every trial it judges has a result at the milestone, and refuses one that is PENDING."""
    bracket = (sched._trial_info.get(trial) or (None,))[0]
    result = bracket._live_trials.get(trial) if bracket is not None else None
    if result is not None:
        bracket._completed_progress -= result[bracket._time_attr]
        bracket._live_trials[trial] = None


def hyperband_trials(sched) -> list:
    """Every trial a HyperBandScheduler has placed in a bracket (finished ones too)."""
    return list(sched._trial_info)


def hyperband_bracket(sched, trial):
    """``(bracket, (band, s), milestone, halvings left, kept at this milestone, {trial: result})`` of a trial, or
    None for one HyperBand does not hold."""
    info = sched._trial_info.get(trial)
    if info is None:
        return None
    bracket, band_idx = info
    s = next(i for i, b in enumerate(sched._hyperbands[band_idx]) if b is bracket)
    return bracket, (band_idx, s), bracket._cumul_r, bracket._halves, bracket._n, dict(bracket._live_trials)


# ------------------------------------------------------------------------------- Ray's PopulationBasedTraining
def controller_view(controller, keep, before_stop=None):
    """What a scheduler gets of Tune's controller, narrowed to the trials ``keep(trial)`` accepts (one net's);
    ``before_stop(trial)`` runs before the view stops a trial."""

    class View:
        search_alg = property(lambda self: controller.search_alg)

        def get_trials(self):
            return [t for t in controller.get_trials() if keep(t)]

        def get_live_trials(self):
            return {t for t in controller.get_live_trials() if keep(t)}

        def pause_trial(self, trial, should_checkpoint: bool = True):
            return controller.pause_trial(trial, should_checkpoint=should_checkpoint)

        def stop_trial(self, trial):
            if before_stop is not None:
                before_stop(trial)
            out = controller.stop_trial(trial)
            resave_trial(controller, trial)
            return out

        def _schedule_trial_save(self, trial, result=None):
            return controller._schedule_trial_save(trial, result=result)

    return View()


def resave_trial(controller, trial) -> None:
    """Have Tune write ``trial``'s state again at its next experiment save. Tune re-serialises only the trials it
    marked; stopping a trial that has no actor (one paused: HyperBand's halvings stop trials waiting at a milestone)
    sets it TERMINATED but returns before the mark, so the saved state kept it PAUSED and ``report`` counted it
    pending. ``controller`` is what Tune hands a scheduler (its restricting wrapper) or the controller itself."""
    real = getattr(controller, "_tune_controller", controller)
    real._mark_trial_to_checkpoint(trial)


def pbt_next_sync(pbt, value: float | None = None) -> float:
    """Synchronous PBT's next perturbation time (set it when ``value`` is given); returns it."""
    if value is not None:
        pbt._next_perturbation_sync = value
    return pbt._next_perturbation_sync


def pbt_trial_times(pbt, trial, perturbed: float | None = None, trained: float | None = None) -> tuple | None:
    """A trial's ``(last perturbation time, last train time)`` in PBT (set those given); None if PBT lacks it."""
    state = pbt._trial_state.get(trial)
    if state is None:
        return None
    if perturbed is not None:
        state.last_perturbation_time = perturbed
    if trained is not None:
        state.last_train_time = trained
    return state.last_perturbation_time, state.last_train_time


def pbt_perturbations(pbt, value: int | None = None) -> int:
    if value is not None:
        pbt._num_perturbations = value
    return pbt._num_perturbations


def set_trial_checkpoint(trial, path: str, metrics: dict) -> None:
    """Make the checkpoint folder ``path`` (another trial's) the one ``trial`` resumes from, as PBT's exploit does."""
    from ray.train._internal.session import _TrainingResult
    from ray.tune import Checkpoint

    trial.run_metadata.checkpoint_manager._latest_checkpoint_result = _TrainingResult(
        checkpoint=Checkpoint.from_directory(path), metrics=dict(metrics))


# ------------------------------------------------------------------------ Ray's driver SIGTERM handler (public)
def parser_actions(parser) -> list:
    """An argparse parser's actions (its flags with their types and defaults). argparse keeps them in the private
    ``_actions`` and offers no public accessor (Python 3.11-3.13): the CLI's hint for an unknown flag and the Python
    API's typing of a keyword read them here."""
    return list(parser._actions)


class RayUnreachable(ConfigError):
    """``--address HOST:PORT`` where nothing answers: one line (the CLI prints a ConfigError), not Ray's wait."""


def check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """A cluster ``address`` (HOST:PORT or ray://HOST:PORT) must accept a TCP connection within ``timeout`` s:
    given a port where nothing listens, ``ray.init`` retries for minutes with warnings only. ``auto``, ``local``
    and None are Ray's to resolve (each fails fast by itself)."""
    import socket

    if not address or address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # not HOST:PORT: Ray says what is wrong with it
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise RayUnreachable(f"--address {address}: no Ray cluster answers there ({e.strerror or e}); start one "
                             f"with `ray start --head` (or `ray up cluster.yaml`), or leave --address out to run on "
                             f"this machine") from None


def ray_init(**kwargs) -> None:
    """``ray.init(**kwargs)``, keeping the SIGTERM handler the caller had set in Python, with the Ray processes it
    starts (GCS, raylet, dashboard, ...) in a process group of their own.

    The handler: Ray 2.x replaces the driver's with ``sys.exit(signum)`` (exit 15, no word said; under Ray 2.60 a
    stop during ``ray.wait`` also ended with exit 1 and no line): the CLI's own one line and exit 143
    (``search.tuner.stop_on_sigterm``) would be lost at the first ``ray.init``. A process that set none (SIG_DFL:
    a user's script) keeps Ray's handler, as any Ray program does.

    The process group: Ray starts its node in the driver's group, so a signal to the group (coreutils ``timeout``,
    a batch scheduler's time limit, ``kill -TERM -PGID``) reached the GCS too; the driver's orderly stop then waited
    60 s for a GCS that was gone and ended on Ray's "Failed to connect to GCS" line. In a group of their own they
    hear the signal from the driver, which stops the search and then them; they still end with the driver if it is
    killed (Ray's kernel fate sharing, ``prctl(PR_SET_PDEATHSIG)``). Linux only, where Ray has that fate sharing
    (elsewhere Ray's reaper finds its processes by the driver's group; on Windows Ray makes new groups itself)."""
    import signal
    import threading

    import ray

    check_reachable(kwargs.get("address"))
    main = threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGTERM) if main else None
    with _ray_processes_in_own_group():
        ray.init(**kwargs)
    if callable(before):
        signal.signal(signal.SIGTERM, before)


@contextlib.contextmanager
def _ray_processes_in_own_group():
    """Within it, each process Ray's ``services.start_ray_process`` starts (through its ``ConsolePopen``) makes itself
    the leader of a new process group before Ray's own ``preexec_fn`` runs, on Linux with kernel fate sharing
    (private: test_private_api checks what this relies on)."""
    import os
    import sys

    from ray._private import services, utils

    if not (sys.platform.startswith("linux") and utils.detect_fate_sharing_support()):
        yield
        return

    popen = services.ConsolePopen

    class OwnGroupPopen(popen):
        def __init__(self, *args, **kwargs):
            inner = kwargs.get("preexec_fn")

            def preexec():
                os.setpgid(0, 0)
                if inner is not None:
                    inner()

            kwargs["preexec_fn"] = preexec
            super().__init__(*args, **kwargs)

    services.ConsolePopen = OwnGroupPopen
    try:
        yield
    finally:
        services.ConsolePopen = popen
