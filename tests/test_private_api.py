"""Every reach past Ray's, Optuna's (or any library's) public API sits in ``trainables/compat.py``; found, not listed.

The walk below reads every module of the packages with ``ast`` and fails on a private access outside the compat
module, so a new one cannot slip in: an attribute ``x._name`` (or ``getattr(x, "_name")``) that is not our own, and
an import of a library module or name whose dotted path has a ``_`` component (``ray.train._internal``). What is
"our own" (see ``test_no_private_access_outside_compat``) is found from the code too, not from a hand-kept list.

The compat module's own table (``trainables.compat.PRIVATE``) then drives the checks that every attribute it uses
exists on the installed (pinned) Ray, Optuna and torchvision, and the compat functions are run on real objects.
"""
from __future__ import annotations

import ast
import importlib
import inspect
import re
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

import pytest

from tests.conftest import REPO
from trainables.compat import PRIVATE

PACKAGES = ("search", "trainables", "analysis", "benchmarks", "spaces")
COMPAT = REPO / "trainables" / "compat.py"
# namedtuple's public API is spelled with a leading underscore (to keep clear of field names)
PUBLIC_UNDERSCORED = {"_asdict", "_replace", "_fields", "_make", "_field_defaults"}


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__")) \
        and name not in PUBLIC_UNDERSCORED


OWN = set(PACKAGES)  # top-level module names that are ours (a test adds its fixture's)


def our_files(root: Path = REPO, packages=PACKAGES) -> dict[Path, str]:
    """path -> module name of every module of the packages."""
    out = {}
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            out[path] = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    return out


def ours(module: str) -> bool:
    return module.split(".")[0] in OWN


class Accesses(ast.NodeVisitor):
    """The private attribute accesses and imports of one module, and the private names it defines."""

    def __init__(self, path: Path, module: str = ""):
        self.path, self.module, self.classes = path, module, []  # the enclosing class defs, innermost last
        self.functions = 0  # depth of enclosing function defs (a class inside a function cannot be imported)
        self.on_self: list[tuple[str | None, list[str], str, int]] = []  # (class qualname, its bases, attr, line)
        self.on_other: list[tuple[str, int]] = []  # (attr, line)
        self.imports: list[tuple[str, int]] = []  # (what, line)
        self.defined: set[str] = set()  # private names this module defines (defs, classes, assignments, aliases)
        self.self_assigned: list[tuple[str | None, list[str], str]] = []  # self._x = ... (class, bases, attr)

    # -- definitions
    def visit_ClassDef(self, node):
        self.defined.add(node.name)
        qualname = None if self.functions else ".".join([c.name for c in self.classes] + [node.name])
        self.classes.append(node)
        node._qualname = qualname
        for stmt in node.body:  # class attributes, dataclass fields
            for target in (stmt.targets if isinstance(stmt, ast.Assign) else
                           [stmt.target] if isinstance(stmt, ast.AnnAssign) else []):
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        self.defined.add(name.id)
        self.generic_visit(node)
        self.classes.pop()

    def visit_FunctionDef(self, node):
        self.defined.add(node.name)
        self.functions += 1
        self.generic_visit(node)
        self.functions -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Module(self, node):
        for stmt in node.body:  # module-level names
            targets = stmt.targets if isinstance(stmt, ast.Assign) else \
                [stmt.target] if isinstance(stmt, (ast.AnnAssign, ast.AugAssign)) else []
            for target in targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        self.defined.add(name.id)
        self.generic_visit(node)

    # -- imports
    def visit_Import(self, node):
        for alias in node.names:
            if alias.asname:
                self.defined.add(alias.asname)
            if not ours(alias.name) and any(is_private(p) for p in alias.name.split(".")):
                self.imports.append((f"import {alias.name}", node.lineno))

    def visit_ImportFrom(self, node):
        for alias in node.names:
            if alias.asname:
                self.defined.add(alias.asname)
        if node.level or not node.module or ours(node.module):
            return
        if any(is_private(p) for p in node.module.split(".")):
            self.imports.append((f"from {node.module} import ...", node.lineno))
        for alias in node.names:
            if is_private(alias.name):
                self.imports.append((f"from {node.module} import {alias.name}", node.lineno))

    # -- accesses
    def _access(self, base: ast.expr, attr: str, line: int, store: bool) -> None:
        if not is_private(attr):
            return
        if isinstance(base, ast.Name) and base.id in ("self", "cls") and self.classes:
            cls = self.classes[-1]
            bases = [ast.unparse(b) for b in cls.bases]
            self.on_self.append((cls._qualname, bases, attr, line))
            if store:
                self.self_assigned.append((cls._qualname, bases, attr))
        else:
            self.on_other.append((attr, line))

    def visit_Attribute(self, node):
        self._access(node.value, node.attr, node.lineno, isinstance(node.ctx, ast.Store))
        self.generic_visit(node)

    def visit_Call(self, node):
        if (isinstance(node.func, ast.Name) and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)):
            self._access(node.args[0], node.args[1].value, node.lineno, node.func.id == "setattr")
        self.generic_visit(node)


def scan(files: dict[Path, str]) -> dict[Path, Accesses]:
    out = {}
    for path, module in files.items():
        out[path] = Accesses(path, module)
        out[path].visit(ast.parse(path.read_text(), filename=str(path)))
    return out


def foreign_owner(module: str, qualname: str | None, bases: list[str], attr: str, own_classes: set[str]):
    """The library class whose private ``attr`` a ``self.attr`` in our class reaches, or None if it is ours.

    An importable class: its MRO outside our packages is searched (the attribute in a class ``__dict__``, or
    ``self.attr`` / ``cls.attr`` in a class's source). A class defined inside a function: if every base is one of
    our classes (or ``object``) the attribute is ours, else it counts as foreign (unknown base)."""
    if qualname is None:
        return None if all(b.split(".")[-1] in own_classes | {"object"} for b in bases) else "<a library base>"
    cls = importlib.import_module(module)
    for part in qualname.split("."):
        cls = getattr(cls, part)
    for base in cls.__mro__:
        if ours(base.__module__) or base is object:
            continue
        if attr in vars(base):
            return f"{base.__module__}.{base.__qualname__}"
        try:
            text = inspect.getsource(base)
        except (OSError, TypeError):
            continue
        if re.search(rf"\b(self|cls)\.{re.escape(attr)}\b", text):
            return f"{base.__module__}.{base.__qualname__}"
    return None


def shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name


def private_uses(found: dict[Path, Accesses]) -> list[str]:
    """Every private access outside trainables/compat.py, as 'file:line what'."""
    own_classes = {name for acc in found.values() for name in acc.defined}
    bad, foreign_self = [], defaultdict(set)
    # self._x in our classes: ours unless a library class in its MRO has _x
    for path, acc in found.items():
        if path == COMPAT:
            continue
        for qualname, bases, attr, line in acc.on_self:
            owner = foreign_owner(acc.module, qualname, bases, attr, own_classes)
            if owner:
                foreign_self[attr].add(owner)
                bad.append(f"{shown(path)}:{line} self.{attr} (private to {owner})")
    # names we define: defs, classes, module/class attributes, import aliases, self._x of our own
    defined = set()
    for path, acc in found.items():
        defined |= {n for n in acc.defined if is_private(n)}
        defined |= {attr for _, _, attr in acc.self_assigned if attr not in foreign_self}
    # a name the compat module reaches into a library for is a library's, whoever else spells it
    defined -= compat_private_names(found[COMPAT])
    for path, acc in found.items():
        if path == COMPAT:
            continue
        rel = shown(path)
        bad += [f"{rel}:{line} ._{attr[1:]} (not defined in {', '.join(PACKAGES)})"
                for attr, line in acc.on_other if attr not in defined]
        bad += [f"{rel}:{line} {what}" for what, line in acc.imports]
    return bad


def compat_private_names(acc: Accesses) -> set[str]:
    return {attr for attr, _ in acc.on_other}


def test_no_private_access_outside_compat():
    """The rule: outside trainables/compat.py, ``x._name`` is an error unless ``_name`` is ours, i.e.

    - ``self._name`` / ``cls._name`` in one of our classes, unless a library class in its MRO has ``_name``
      (``self._ot_trials`` in an OptunaSearch subclass is OptunaSearch's, not ours);
    - any other ``x._name``: ``_name`` is defined somewhere in our packages (a function, class, module or class
      attribute, import alias, or ``self._name = ...`` of our own) and is not a name the compat module reaches
      into a library for;
    - ``getattr``/``setattr``/``hasattr``/``delattr`` with a constant name count the same;
    - a library module or name imported with a private component (``ray.train._internal``, ``from x import _y``)
      is always an error.
    Tests are not walked (they may poke at internals to inject faults)."""
    found = scan(our_files())
    assert COMPAT in found, "trainables/compat.py is gone"
    bad = private_uses(found)
    assert not bad, ("private library access outside trainables/compat.py (move it there, with why and the upstream "
                     "issue): " + "; ".join(bad))


def test_the_walk_catches_what_it_should(tmp_path, monkeypatch):
    """The detector on a fixture module: each kind of private access is caught, our own names are not."""
    fixture = textwrap.dedent('''
        from ray.train._internal.storage import StorageContext
        from ray.tune.search.optuna import OptunaSearch
        from optuna.trial import _trial

        def _helper():
            return 1

        class Mine:
            def __init__(self):
                self._count = 0

        class Sub(OptunaSearch):
            def peek(self, mine):
                self._own = mine._count           # ours both
                _helper()
                return self._ot_trials, mine.study._ot_study, getattr(mine, "_trial_info"), self._own
    ''')
    (tmp_path / "walkfixture").mkdir()
    (tmp_path / "walkfixture" / "__init__.py").write_text("")
    (tmp_path / "walkfixture" / "mod.py").write_text(fixture)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys.modules[__name__], "OWN", OWN | {"walkfixture"})
    try:
        found = scan({**our_files(), **our_files(tmp_path, ("walkfixture",))})
        bad = [b for b in private_uses(found) if b.startswith("mod.py")]
    finally:
        for name in ("walkfixture.mod", "walkfixture"):
            sys.modules.pop(name, None)
    text = "\n".join(bad)
    for expected in ("from ray.train._internal.storage import ...", "from optuna.trial import _trial",
                     "self._ot_trials (private to ray.tune.search.optuna", "._ot_study", "._trial_info"):
        assert expected in text, (expected, bad)
    for ours_ in ("._count", "self._own", "._helper"):
        assert ours_ not in text, (ours_, bad)


# ---------------------------------------------------------------------------------------------- the compat table
def resolve(dotted: str):
    """The object a dotted path names (module, then attributes)."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for part in parts[i:]:
            obj = getattr(obj, part)
        return obj
    raise ImportError(dotted)


def has(cls: type, attr: str) -> bool:
    """A class attribute / method / property of the class, or ``self.attr`` assigned in one of its methods."""
    if hasattr(cls, attr):
        return True
    for klass in cls.__mro__:
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        if any(isinstance(n, ast.Attribute) and n.attr == attr and isinstance(n.ctx, ast.Store)
               and isinstance(n.value, ast.Name) and n.value.id == "self" for n in ast.walk(tree)):
            return True
    return False


def test_the_compat_table_lists_every_private_name_the_module_uses():
    from trainables import compat

    acc = Accesses(COMPAT)
    acc.visit(ast.parse(COMPAT.read_text()))
    listed = {p.attr for p in compat.PRIVATE}
    assert compat_private_names(acc) <= listed, f"add to compat.PRIVATE: {compat_private_names(acc) - listed}"
    functions = {n.name for n in ast.parse(COMPAT.read_text()).body if isinstance(n, ast.FunctionDef)}
    for p in compat.PRIVATE:
        assert p.used_by in functions, f"{p.owner}.{p.attr}: used_by {p.used_by!r} is not a compat function"
        assert p.why.strip() and p.upstream.strip(), f"{p.owner}.{p.attr}: say why, and the upstream issue"


@pytest.mark.parametrize("entry", PRIVATE,
                         ids=lambda p: f"{p.owner.rsplit('.', 1)[-1]}.{p.attr}")
def test_every_private_attribute_we_use_exists(entry):
    cls = resolve(entry.owner)
    assert has(cls, entry.attr), (f"{entry.owner}.{entry.attr} is gone from the installed version "
                                  f"(used by trainables.compat.{entry.used_by}: {entry.why})")


def test_the_compat_functions_work_on_real_objects(tmp_path):
    """The same objects Tune and Optuna make in a search, through every compat function."""
    import optuna
    from ray.train._internal.storage import StorageContext
    from ray.tune.schedulers import AsyncHyperBandScheduler
    from ray.tune.search.optuna import OptunaSearch
    from torchvision.models.resnet import BasicBlock, resnet18

    from trainables import compat

    search = OptunaSearch(space=lambda t: t.suggest_float("lr", 1e-4, 1e-1, log=True) and None,
                          metric="val_accuracy", mode="max", seed=0)
    search.suggest("t1")
    trials = compat.searcher_trials(search)
    assert set(trials) == {"t1"} and isinstance(trials["t1"], optuna.trial.Trial)
    study = compat.searcher_study(search)
    assert isinstance(study, optuna.Study) and isinstance(compat.searcher_told(search), set)
    frozen = study.get_trials(deepcopy=False)[0]
    assert compat.optuna_trial_id(trials["t1"]) == compat.optuna_trial_id(frozen)
    trials["t1"].report(0.5, 1)
    assert compat.reported_steps(trials["t1"]) == {1: 0.5}
    again = compat.optuna_trial(study, compat.optuna_trial_id(frozen))
    assert again.number == frozen.number

    sched = AsyncHyperBandScheduler(time_attr="epoch", metric="val_accuracy", mode="max", max_t=9, grace_period=1,
                                    reduction_factor=3, brackets=1)
    bracket = compat.asha_bracket(sched)
    assert [m for m, _ in compat.bracket_rungs(bracket)] == [9, 3, 1]
    assert compat.rung_cutoff(sched, {}) is None
    compat.set_bracket_rungs(bracket, [(9, {}), (3, {}), (1, {"a": 0.1, "b": 0.9})])
    assert compat.rung_cutoff(sched, {"a": 0.1, "b": 0.9}) is not None
    assert compat.asha_num_stopped(sched) == 0
    compat.set_asha_num_stopped(sched, 2)
    assert compat.asha_num_stopped(sched) == 2 and compat.asha_trial_brackets(sched) == {}

    storage = StorageContext(storage_path=str(tmp_path), experiment_dir_name="exp", trial_dir_name="origin_net_t1")

    class TrialLike:  # what compat reads of ray.tune.experiment.Trial
        def __init__(self, storage):
            self.storage = storage

    fs, path = compat.trial_storage(TrialLike(storage))
    assert path == f"{tmp_path}/exp/origin_net_t1" and fs.type_name == "local"
    assert compat.trial_dir_name(TrialLike(storage)) == "origin_net_t1"
    assert compat.trial_dir_name(object()) is None and compat.driver_staging_dir(object()) is None

    model = resnet18(num_classes=10)
    model.inplanes = 64
    stage = compat.resnet_stage(model, BasicBlock, 32, 2, stride=2)
    assert len(stage) == 2 and model.inplanes == 32


def test_a_checkpoint_deleted_before_a_kill_is_forgotten_on_resume(tmp_path):
    """Ray's own checkpoint bookkeeping, restored listing a checkpoint already gone from disk (the driver was killed
    between Ray's deletion and its next state snapshot): registering the next one raises FileNotFoundError inside
    Tune (seen on a real resume, 2026-12-01); after forget_missing_checkpoints it does not, and Ray's num_to_keep
    rule goes on deleting on disk."""
    import shutil

    import pyarrow.fs
    from ray.train import Checkpoint, CheckpointConfig
    from ray.train._internal.checkpoint_manager import _CheckpointManager
    from ray.train._internal.session import _TrainingResult

    from trainables import compat

    def result(root, i: int):
        (root / f"checkpoint_{i}").mkdir(parents=True)
        return _TrainingResult(checkpoint=Checkpoint(str(root / f"checkpoint_{i}"),
                                                     filesystem=pyarrow.fs.LocalFileSystem()), metrics={"epoch": i})

    class TrialLike:  # what compat reads of ray.tune.experiment.Trial
        def __init__(self, manager):
            self.run_metadata = type("RunMetadata", (), {"checkpoint_manager": manager})()

    for root, forget in ((tmp_path / "as_ray_does", False), (tmp_path / "ours", True)):
        manager = _CheckpointManager(CheckpointConfig(num_to_keep=2))
        for i in (0, 1):
            manager.register_checkpoint(result(root, i))
        shutil.rmtree(root / "checkpoint_0")  # gone from disk, still listed: the state a resume read
        if not forget:
            with pytest.raises(FileNotFoundError):
                manager.register_checkpoint(result(root, 2))
            continue
        assert compat.forget_missing_checkpoints(TrialLike(manager)) == [str(root / "checkpoint_0")]
        assert compat.forget_missing_checkpoints(TrialLike(manager)) == []
        for i in (2, 3):
            manager.register_checkpoint(result(root, i))
        assert sorted(p.name for p in root.iterdir()) == ["checkpoint_2", "checkpoint_3"]
        assert manager.latest_checkpoint_result.metrics == {"epoch": 3}


class Untouchable:
    """A tune controller that fails on any use: Ray's restricted wrapper warns the user on some."""

    def __getattr__(self, name):
        raise AssertionError(f"the scheduler read tune_controller.{name}")


@pytest.mark.parametrize("make", ["asha", "moasha"])
def test_our_schedulers_never_read_the_tune_controller(make, tmp_path):
    """Reading ``tune_controller._storage`` made Ray print 'You are trying to access _storage interface of
    TrialRunner in TrialScheduler, which is being restricted' at every search's start."""
    from types import SimpleNamespace

    from search.moasha import PerArchMOASHA
    from search.scheduler import PerArchASHA

    state = tmp_path / "state.json"
    sched = (PerArchASHA(["origin_net"], max_t=3, state_path=state) if make == "asha" else
             PerArchMOASHA(["origin_net"], [("val_accuracy", "max"), ("params", "min")], max_t=3, state_path=state))
    staging = tmp_path / "staging"
    (staging / "origin_net_t1").mkdir(parents=True)
    (staging / state.name).write_text("{}")  # Tune's restore copy of the state file: must go
    trial = SimpleNamespace(trial_id="t1", config={"arch": "origin_net"}, local_path=str(staging / "origin_net_t1"))
    sched.on_trial_add(Untouchable(), trial)
    sched.on_trial_result(Untouchable(), trial, {"epoch": 1, "val_accuracy": 0.5, "params": 10, "status": "running"})
    assert not (staging / state.name).exists() and state.exists()
    assert sched.metric == "val_accuracy"  # what Tune reads of a scheduler (set by the public set_search_properties)


# ------------------------------------------------------------------------------- Ray behaviour we rely on (source)
@pytest.mark.parametrize("module, function, needle, why", [
    ("ray.tune.experiment.trial", "Trial.local_path", "trial_driver_staging_path",
     "trainables/compat.py driver_staging_dir: a trial's local_path is its driver staging folder"),
    ("ray.train._internal.storage", "StorageContext.trial_driver_staging_path", "self.experiment_driver_staging_path",
     "trainables/compat.py driver_staging_dir: that folder sits in the experiment's driver staging dir"),
    ("ray.tune.execution.tune_controller", "TuneController.resume", "sync_down_experiment_state",
     "search/scheduler.py _drop_staged_copy: Tune's restore copies the experiment's files into the staging dir"),
    ("ray.tune.execution.tune_controller", "TuneController._process_trial_save", "on_checkpoint",
     "search/history.py writes an epoch when Tune records its checkpoint (on_checkpoint)"),
    ("ray.tune.execution.tune_controller", "TuneController._process_trial_result", "on_trial_result",
     "search/history.py holds the result Tune logs before the checkpoint is recorded"),
    ("ray.tune.logger.json", "JsonLoggerCallback.log_trial_result", "self.log_trial_start",
     "search/history.py tracks open result files through log_trial_start/log_trial_end"),
    ("ray.tune.tune", "_setup_signal_catching", "SIGUSR1",
     "search/tuner.py hands SIGINT/SIGTERM to Tune's SIGUSR1 handler"),
    ("ray.tune.tune", "_setup_signal_catching", "TUNE_DISABLE_SIGINT_HANDLER",
     "search/tuner.py keeps Tune's SIGINT handler off to catch SIGINT itself"),
    ("ray.tune.utils.callback", "_create_default_callbacks", "isinstance(callback, JsonLoggerCallback)",
     "search/history.py replaces Ray's JSON logger by passing a subclass"),
    ("ray.tune.utils.callback", "_create_default_callbacks", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS",
     "search/trackers.py switches Ray's default loggers (its TensorBoard one) off while a search runs"),
    ("ray.tune.tune", "run", "isinstance(cb, TBXLoggerCallback)",
     "Ray prints its temp-dir TensorBoard path only for a TBXLoggerCallback, which search/trackers.py's is not"),
    ("ray.tune.execution.tune_controller", "TuneController.stop_trial", "on_trial_complete",
     "search/trackers.py reads a trial's outcome (completed / stopped) in on_trial_complete"),
    ("ray.tune.execution.tune_controller", "TuneController.stop_trial",
     "self._search_alg.on_trial_complete(trial.trial_id)",
     "search/hyperband.py tells the searcher first: Tune tells it of a paused trial it stops with no result"),
    ("ray.tune.schedulers.pbt", "PopulationBasedTraining.on_trial_add", "SearchGenerator",
     "search/pbt.py asks the population of our searcher up front: Ray's PBT refuses a searcher"),
    ("ray.tune.execution.tune_controller", "_get_max_pending_trials", "TUNE_MAX_PENDING_TRIALS_PG",
     "search/tuner.py lets a hyperband search create a bracket's trials together through this variable"),
    ("ray._private.worker", "init", "set_sigterm_handler",
     "trainables/compat.py ray_init puts back the CLI's SIGTERM handler, which ray.init replaces with sys.exit"),
    ("ray._private.services", "start_ray_process", "process = ConsolePopen(",
     "trainables/compat.py ray_init starts Ray's processes in a group of their own through services.ConsolePopen"),
    ("ray._private.services", "start_ray_process", "preexec_fn=preexec_fn",
     "trainables/compat.py ray_init runs its setpgid before the preexec_fn Ray passes"),
    ("ray._private.services", "start_ray_process", "set_kill_on_parent_death_linux",
     "trainables/compat.py ray_init: a Ray process in its own group still ends with the driver (fate sharing)"),
    ("ray._private.utils", "detect_fate_sharing_support", "detect_fate_sharing_support_linux",
     "trainables/compat.py ray_init moves Ray's processes to their own group only where fate sharing ends them"),
    ("ray.tune.execution.tune_controller", "TuneController._wrapped", "_schedule_trial_save",
     "trainables/compat.py controller_view passes PBT's save request on; Tune whitelists it for schedulers"),
])
def test_the_ray_behaviour_we_rely_on_is_still_there(module, function, needle, why):
    obj = importlib.import_module(module)
    for part in function.split("."):
        obj = getattr(obj, part, None)
        assert obj is not None, f"{module}.{function} is gone ({why})"
    if isinstance(obj, property):
        obj = obj.fget
    assert needle in inspect.getsource(obj), f"{module}.{function} no longer has {needle!r} ({why})"


def test_pyproject_bounds_ray_and_optuna_to_the_tested_versions():
    from importlib.metadata import version

    text = (REPO / "pyproject.toml").read_text()
    for name, dist in (("ray[tune]", "ray"), ("optuna", "optuna")):
        spec = re.search(rf'"{re.escape(name)}>=([\d.]+),<([\d.]+)"', text)
        assert spec, f"{name} has no upper bound in pyproject.toml"
        low, high = (tuple(int(x) for x in v.split(".")) for v in spec.groups())
        installed = tuple(int(x) for x in version(dist).split(".")[:len(low)])
        assert low <= installed < high + (0,) * (len(installed) - len(high)), (name, version(dist), spec.groups())
