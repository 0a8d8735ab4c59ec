"""Every private attribute of Ray and Optuna that cifar-tune reaches into, checked on the installed versions.

pyproject.toml bounds ray and optuna to the versions tested; an upgrade that drops or renames one of these fails
here, naming it, instead of deep inside a search. When you add a ``._x`` access into a Ray or Optuna object, add
it here (grep: ``grep -rnE "\\._[a-z]" search analysis trainables``).
"""
from __future__ import annotations

import inspect

import optuna
import pytest
from ray.tune.schedulers import AsyncHyperBandScheduler
from ray.tune.search.optuna import OptunaSearch


def optuna_search():
    return OptunaSearch(space=lambda t: t.suggest_float("lr", 1e-4, 1e-1, log=True) and None,
                        metric="val_accuracy", mode="max", seed=0)


def asha():
    return AsyncHyperBandScheduler(time_attr="epoch", metric="val_accuracy", mode="max", max_t=4, grace_period=1,
                                   reduction_factor=3, brackets=1)


def uses() -> list[tuple[str, object, str]]:
    """(where we use it, the object, the attribute)."""
    from ray.train._internal.storage import StorageContext
    from ray.tune.logger import JsonLoggerCallback

    import tempfile

    storage = StorageContext(storage_path=tempfile.mkdtemp(prefix="cifar-tune-api-"), experiment_dir_name="exp",
                             trial_dir_name="origin_net_t1")
    search = optuna_search()
    search.suggest("t1")
    sched = asha()
    study = optuna.create_study()
    ot_trial = study.ask()
    return [
        ("search/searcher.py StatusAwareOptunaSearch", search, "_ot_trials"),
        ("search/searcher.py StatusAwareOptunaSearch", search, "_ot_study"),
        ("search/searcher.py StatusAwareOptunaSearch", search, "_completed_trials"),
        ("search/searcher.py (Optuna trial id)", ot_trial, "_trial_id"),
        ("search/searcher.py (Optuna frozen trial id)", study.trials[0], "_trial_id"),
        ("search/searcher.py (storage.get_trial)", ot_trial.storage, "get_trial"),
        ("search/scheduler.py PerArchASHA", sched, "_brackets"),
        ("search/scheduler.py PerArchASHA", sched, "_trial_info"),
        ("search/scheduler.py PerArchASHA", sched, "_num_stopped"),
        ("search/scheduler.py PerArchASHA", sched, "_metric"),
        ("search/scheduler.py PerArchASHA", sched, "_mode"),
        ("search/scheduler.py PerArchASHA (bracket)", sched._brackets[0] if hasattr(sched, "_brackets") else None,
         "_rungs"),
        ("search/scheduler.py PerArchASHA (bracket)", sched._brackets[0] if hasattr(sched, "_brackets") else None,
         "cutoff"),
        # a property of the class (evaluating it needs a Ray session)
        ("search/scheduler.py _drop_staged_copy", StorageContext, "experiment_driver_staging_path"),
        ("search/tuner.py keep_results_on_retry", storage, "trial_fs_path"),
        ("search/tuner.py keep_results_on_retry", storage, "storage_filesystem"),
        ("analysis/load.py (trial folder name)", storage, "trial_dir_name"),
        ("search/history.py CheckpointedResults", JsonLoggerCallback(), "_trial_files"),
        ("search/history.py CheckpointedResults", JsonLoggerCallback, "log_trial_result"),
        ("search/history.py CheckpointedResults", JsonLoggerCallback, "log_trial_end"),
    ]


def has(obj, attr: str) -> bool:
    """An attribute of the object; of a class also one its methods set (``self.attr = ...``)."""
    if obj is None:
        return False
    if hasattr(obj, attr):
        return True
    return isinstance(obj, type) and f"self.{attr} =" in inspect.getsource(obj)


def test_every_private_attribute_we_use_exists():
    missing = [f"{obj.__name__ if isinstance(obj, type) else type(obj).__name__}.{attr} (used in {where})"
               for where, obj, attr in uses() if not has(obj, attr)]
    assert not missing, "gone from the installed Ray/Optuna: " + "; ".join(missing)


@pytest.mark.parametrize("module, function, needle, why", [
    ("ray.tune.execution.tune_controller", "TuneController.__init__", "self._storage",
     "search/scheduler.py reads tune_controller._storage"),
    ("ray.tune.execution.tune_controller", "TuneController._process_trial_save", "on_checkpoint",
     "search/history.py writes an epoch when Tune records its checkpoint (on_checkpoint)"),
    ("ray.tune.execution.tune_controller", "TuneController._process_trial_result", "on_trial_result",
     "search/history.py holds the result Tune logs before the checkpoint is recorded"),
    ("ray.tune.tune", "_setup_signal_catching", "SIGUSR1",
     "search/tuner.py hands SIGINT/SIGTERM to Tune's SIGUSR1 handler"),
    ("ray.tune.tune", "_setup_signal_catching", "TUNE_DISABLE_SIGINT_HANDLER",
     "search/tuner.py keeps Tune's SIGINT handler off to catch SIGINT itself"),
    ("ray.tune.utils.callback", "_create_default_callbacks", "isinstance(callback, JsonLoggerCallback)",
     "search/history.py replaces Ray's JSON logger by passing a subclass"),
])
def test_the_ray_behaviour_we_rely_on_is_still_there(module, function, needle, why):
    import importlib

    obj = importlib.import_module(module)
    for part in function.split("."):
        obj = getattr(obj, part, None)
        assert obj is not None, f"{module}.{function} is gone ({why})"
    assert needle in inspect.getsource(obj), f"{module}.{function} no longer has {needle!r} ({why})"


def test_pyproject_bounds_ray_and_optuna_to_the_tested_versions():
    import re
    from importlib.metadata import version

    from tests.conftest import REPO

    text = (REPO / "pyproject.toml").read_text()
    for name, dist in (("ray[tune]", "ray"), ("optuna", "optuna")):
        spec = re.search(rf'"{re.escape(name)}>=([\d.]+),<([\d.]+)"', text)
        assert spec, f"{name} has no upper bound in pyproject.toml"
        low, high = (tuple(int(x) for x in v.split(".")) for v in spec.groups())
        installed = tuple(int(x) for x in version(dist).split(".")[:len(low)])
        assert low <= installed < high + (0,) * (len(installed) - len(high)), (name, version(dist), spec.groups())
