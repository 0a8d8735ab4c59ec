"""User code named by a reference: a net (or a dataset) of the user's own, loaded the same way everywhere.

A reference is one of::

    path/to/file.py:Name     a Python file (relative to the current directory; ``absolute_ref`` pins it at spec time)
    pkg.module:attr          a module importable here (installed, or on PYTHONPATH); ``attr`` may be dotted

and an installed package can name its objects in an entry-point group (``entry_points("cifar_tune.nets")``).

Every failure is a :class:`PluginError` (a ``ConfigError``, so the CLI prints it as one line) that names the
reference and, for an exception raised by the user's code, the ``file:line`` of the user's frame::

    --arch 'nets.py:MyNet': importing it raised ZeroDivisionError: division by zero (at /home/me/nets.py:7)

Reaching Ray workers: :func:`runtime_env` lists what to ship in Ray's ``py_modules`` (a file ref ships that one file;
a module ref ships its top-level package unless it is installed in this environment, where every node is expected
to have it installed too). A worker given the file's ``sha256`` loads the shipped copy found on its ``sys.path``
(Ray puts it there), else the original path if its content still matches; a changed file is refused, so a trial
never runs other code than the search recorded. Paths are absolute, so Tune changing a worker's working directory
(ray#9571) changes nothing.

>>> obj = load_object("math:sqrt", "--arch")
>>> obj(4.0)
2.0
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import re
import sys
import sysconfig
import traceback
from pathlib import Path

from trainables.config import ConfigError

_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
MODULE_PREFIX = "cifar_tune_plugin_"  # sys.modules name of a loaded file: prefix + stem + hash of path and content
OUR_PACKAGES = ("trainables", "search", "spaces", "analysis", "benchmarks")
_ROOT = Path(__file__).resolve().parents[1]
_OURS = tuple(str(_ROOT / p) + os.sep for p in OUR_PACKAGES)


class PluginError(ConfigError):
    """User code named by a reference cannot be loaded or used; one line naming the reference (and file:line)."""


# ---------------------------------------------------------------------------------------------------------------
# References

def is_ref(text: str) -> bool:
    """Whether ``text`` is written as a reference (``file.py:Name`` or ``module:attr``) rather than a plain name."""
    return isinstance(text, str) and ":" in text


def split_ref(ref: str, what: str = "reference") -> tuple[str, str, bool]:
    """``(target, attr, is_file)``; PluginError for a malformed one."""
    target, sep, attr = str(ref).rpartition(":")
    if not sep or not target or not attr:
        raise PluginError(f"{what} {ref!r}: expected path/to/file.py:Name or package.module:name")
    if not _DOTTED.match(attr):
        raise PluginError(f"{what} {ref!r}: {attr!r} is not a Python name")
    is_file = target.endswith(".py") or "/" in target or os.sep in target
    if not is_file and not _DOTTED.match(target):
        raise PluginError(f"{what} {ref!r}: {target!r} is neither a .py file nor a dotted module name")
    return target, attr, is_file


def absolute_ref(ref: str, what: str = "reference", base: str | os.PathLike | None = None) -> str:
    """``ref`` with a file path made absolute (against ``base``, default the current directory); module refs as is."""
    target, attr, is_file = split_ref(ref, what)
    if not is_file:
        return ref
    path = Path(target).expanduser()
    return f"{(Path(base or os.getcwd()) / path).resolve() if not path.is_absolute() else path.resolve()}:{attr}"


def file_sha256(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def source_file(ref: str, what: str = "reference", sha256: str | None = None) -> str:
    """The file a reference's code lives in: the .py file (with ``sha256``, the copy :func:`load_object` loads), or
    the module's file once imported."""
    target, _, is_file = split_ref(ref, what)
    if is_file:
        return str(_locate(target, ref, what, sha256))
    module = _import(target, ref, what)
    return str(Path(getattr(module, "__file__", "") or "").resolve())


def _check_not_shadowing(path: Path, ref: str, what: str) -> None:
    """A file ref reaches Ray's workers as a module named after the file (``py_modules``), ahead of the others on
    their path: ``json.py`` there hides the standard library's json, the worker dies at start-up and the search
    waits for it forever. Refused before Ray instead."""
    stem = path.stem
    if stem in sys.stdlib_module_names:
        other = f"the standard library's module {stem!r}"
    else:
        try:
            found = importlib.util.find_spec(stem)
        except (ImportError, ValueError):
            return
        if found is None or not found.origin or Path(found.origin).resolve() == path.resolve():
            return
        other = f"the module {stem!r} at {found.origin}"
    raise PluginError(f"{what} {ref!r}: the file is named like {other}; Ray's workers import the file under that "
                      f"name and would take one for the other: rename the file")


# ---------------------------------------------------------------------------------------------------------------
# Loading

def load_object(ref: str, what: str, sha256: str | None = None) -> object:
    """The object ``ref`` names; ``what`` ("--arch", "--dataset" ...) starts every error message.

    ``sha256``: the content the caller recorded for the file (a run's record holds it); given, the shipped copy of the
    file on ``sys.path`` is preferred, and a file whose content differs is refused.
    """
    target, attr, is_file = split_ref(ref, what)
    if is_file:
        path = _locate(target, ref, what, sha256)
        _check_not_shadowing(path, ref, what)
        module = _load_file(path, ref, what)
    else:
        module = _import(target, ref, what)
        if sha256 and getattr(module, "__file__", None) and file_sha256(module.__file__) != sha256:
            raise PluginError(f"{what} {ref!r}: {module.__file__} changed since it was recorded (sha256 "
                              f"{sha256[:12]}..., now {file_sha256(module.__file__)[:12]}...)")
    obj = module
    for i, part in enumerate(attr.split(".")):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            where = getattr(module, "__file__", target) if i == 0 else ".".join(attr.split(".")[:i])
            names = sorted(n for n, v in vars(obj).items() if not n.startswith("_") and callable(v)
                           and getattr(v, "__module__", None) == getattr(obj, "__name__", None))
            raise PluginError(f"{what} {ref!r}: {where} has no {part!r}"
                              + (f"; it defines: {', '.join(names)}" if names else "")) from None
        except Exception as e:  # a module-level __getattr__ of the user's
            raise user_error(ref, what, e, f"looking up {part!r}") from None
    return obj


def _locate(target: str, ref: str, what: str, sha256: str | None) -> Path:
    """The file to load for ``target``: a shipped copy with the recorded content, else the path itself."""
    path = Path(target).expanduser()
    if not path.is_absolute():
        path = Path(os.getcwd()) / path
    path = path.resolve()
    if sha256:
        for entry in sys.path:  # Ray's py_modules puts a shipped file's folder on the worker's path
            copy = Path(entry or ".") / path.name
            if copy.is_file() and copy.resolve() != path and file_sha256(copy) == sha256:
                return copy.resolve()
    if not path.is_file():
        # No content recorded and no original on this node: a copy Ray shipped (its py_modules folders) will do.
        shipped = [Path(e) / path.name for e in sys.path if "py_modules_files" in e and (Path(e) / path.name).is_file()]
        if shipped and not sha256:
            return shipped[0].resolve()
        hint = "; the search shipped no copy to this node" if sha256 else ""
        raise PluginError(f"{what} {ref!r}: no such file {str(path)!r}{hint}")
    if sha256 and file_sha256(path) != sha256:
        raise PluginError(f"{what} {ref!r}: {path} changed since it was recorded (sha256 {sha256[:12]}..., now "
                          f"{file_sha256(path)[:12]}...); restore it or start a new run")
    return path


def _load_file(path: Path, ref: str, what: str):
    key = hashlib.sha256(f"{path}\0{file_sha256(path)}".encode()).hexdigest()
    stem = re.sub(r"\W", "_", path.stem)
    name = f"{MODULE_PREFIX}{stem}_{key[:12]}"
    if name in sys.modules:  # this file with this content is loaded already
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"{what} {ref!r}: {path} cannot be loaded as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and typing look the module up while it executes
    try:
        spec.loader.exec_module(module)
    except BaseException as e:  # SyntaxError, an exception at import, even SystemExit: one line
        del sys.modules[name]
        if isinstance(e, KeyboardInterrupt):
            raise
        raise user_error(ref, what, e, "importing it", files=[str(path)]) from None
    return module


def _import(module: str, ref: str, what: str):
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and (module == e.name or module.startswith(e.name + ".")):
            raise PluginError(f"{what} {ref!r}: no module named {e.name!r} (not installed here, nor on PYTHONPATH)"
                              ) from None
        raise user_error(ref, what, e, "importing it") from None
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt):
            raise
        raise user_error(ref, what, e, "importing it") from None


# ---------------------------------------------------------------------------------------------------------------
# Errors that name the user's frame

def user_files(obj_or_ref) -> list[str]:
    """Files whose frames count as the user's: the module file of ``obj_or_ref`` (an object or a loaded ref) and,
    for a module inside a package, everything under the top-level package's folder."""
    module = sys.modules.get(getattr(obj_or_ref, "__module__", "") or "")
    if module is None and isinstance(obj_or_ref, str) and is_ref(obj_or_ref):
        target, _, is_file = split_ref(obj_or_ref)
        if is_file:
            return [str(Path(target).expanduser().resolve())]
        module = sys.modules.get(target)
    if module is None or not getattr(module, "__file__", None):
        return []
    out = [str(Path(module.__file__).resolve())]
    top = sys.modules.get(module.__name__.split(".")[0])
    for folder in getattr(top, "__path__", None) or []:
        out.append(str(Path(folder).resolve()) + os.sep)
    return out


def _not_user(filename: str) -> bool:
    """Frames of the standard library, installed packages, importlib and cifar-tune itself are not the user's."""
    if filename.startswith("<"):
        return True
    path = str(Path(filename).resolve())
    roots = {sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    return path.startswith(_OURS) or any(r and path.startswith(str(Path(r).resolve()) + os.sep) for r in roots)


def user_frame(exc: BaseException, files=()) -> tuple[str, int] | None:
    """``(file, line)`` where the user's code raised ``exc``: a syntax error's own position; else the deepest frame
    in ``files``; else the deepest frame that is not library code; None if every frame is ours or a library's."""
    if isinstance(exc, SyntaxError) and exc.filename and exc.lineno:
        return exc.filename, exc.lineno
    frames = traceback.extract_tb(exc.__traceback__)
    prefixes = [str(f) for f in files]

    def in_files(name: str) -> bool:
        path = str(Path(name).resolve()) if not name.startswith("<") else name
        return any(path == p or (p.endswith(os.sep) and path.startswith(p)) for p in prefixes)

    for pick in (lambda f: in_files(f.filename), lambda f: not _not_user(f.filename)):
        chosen = [f for f in frames if pick(f)]
        if chosen:
            return chosen[-1].filename, chosen[-1].lineno
    return None


def user_error(ref: str, what: str, exc: BaseException, doing: str, files=None) -> PluginError:
    """One line: ``{what} {ref!r}: {doing} raised Type: message (at file:line)``."""
    files = list(files) if files is not None else user_files(ref)
    where = user_frame(exc, files)
    if isinstance(exc, SyntaxError):
        message = f"{type(exc).__name__}: {exc.msg}"
    else:
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    message = " ".join(message.split())
    if len(message) > 300:
        message = message[:297] + "..."
    at = f" (at {where[0]}:{where[1]})" if where else ""
    return PluginError(f"{what} {ref!r}: {doing} raised {message}{at}")


def call(ref: str, what: str, doing: str, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` with any exception turned into :func:`user_error` (frames of ``fn``'s module first)."""
    try:
        return fn(*args, **kwargs)
    except BaseException as e:
        if isinstance(e, (KeyboardInterrupt, PluginError)):
            raise
        raise user_error(ref, what, e, doing, files=user_files(fn) or None) from None


# ---------------------------------------------------------------------------------------------------------------
# Installed packages

def entry_points(group: str) -> dict[str, importlib.metadata.EntryPoint]:
    """name -> entry point of ``group`` over every installed distribution (the first one found wins a name)."""
    out: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in importlib.metadata.entry_points(group=group):
        out.setdefault(ep.name, ep)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Shipping to Ray workers

def _installed(path: str) -> bool:
    real = str(Path(path).resolve())
    roots = {sys.prefix, sys.base_prefix, *(sysconfig.get_paths().get(k) for k in ("purelib", "platlib"))}
    return any(r and real.startswith(str(Path(r).resolve()) + os.sep) for r in roots)


def ship_paths(refs) -> list[str]:
    """Local paths to hand Ray's ``py_modules`` so every node gets the code of ``refs`` (absolute refs): a file
    ref's file; a module ref's top-level package (or single-file module) unless it is installed in this
    environment or is cifar-tune's own code."""
    out: list[str] = []
    for ref in refs:
        target, _, is_file = split_ref(ref)
        if is_file:
            path = str(Path(target).resolve())
        else:
            top = target.split(".")[0]
            spec = importlib.util.find_spec(top)
            if spec is None or top in OUR_PACKAGES:
                continue
            locations = list(spec.submodule_search_locations or [])
            path = locations[0] if len(locations) == 1 else (spec.origin or "")
            if not path or not Path(path).exists() or _installed(path):
                continue
        if path not in out:
            out.append(path)
    return out


def experiment_runtime_env(nets: dict, dataset: str = "") -> dict:
    """The runtime environment of an experiment whose spec holds ``nets`` (arch -> {resolved, ...}) and
    ``dataset``: the users' code it names, shipped to every node (the search and its evaluation ship the same)."""
    refs = [net["resolved"] for net in (nets or {}).values()]
    return runtime_env(refs + ([dataset] if dataset and is_ref(dataset) else []))


def runtime_env(refs) -> dict:
    """Ray runtime-environment entries that ship the code of ``refs`` to every node ({} when nothing needs to)."""
    paths = ship_paths(refs)
    return {"py_modules": paths} if paths else {}
