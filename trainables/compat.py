"""Every place cifar-tune reaches past a library's public API, in one module (the design guide's rule).

Ray Tune and Optuna are pinned in pyproject.toml to the versions this was checked on; ``tests/test_private_api.py``
walks the code and fails on a private access anywhere else, and checks that everything listed in ``PRIVATE``
still exists on the installed versions. To add one: a function here, its entries in ``PRIVATE`` (why the public API
does not suffice, what upstream would remove it), and the caller calls the function.

It sits in ``trainables/`` because ``analysis/`` and ``trainables/`` use it too (the layering lets neither import
``search/``). It imports no library at module level: a trial's worker does not pay for Ray's or Optuna's import.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
    # ------------------------------------------------------------------------------- torchvision (not Ray/Optuna)
    Private("torchvision.models.resnet.ResNet", "_make_layer", "resnet_stage",
            "ResNet fixes the stage widths (64..512); a width-scaled ResNet-18 rebuilds its stages with the "
            "constructor's own helper so blocks, downsampling and norm layers are exactly torchvision's",
            "none found"),
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
