"""Search-space files -> an Optuna define-by-run function.

A space is a small YAML file. ``base.yaml`` is the shared space; each registered architecture has its own
``<arch>.yaml`` that extends it with the ranges its report suggests. The format::

    description: free text                  # optional
    extends: base                           # optional: a shipped space by name, or a path ending in .yaml,
                                            #   relative to this file (./other.yaml)
    remove: [label_smoothing]               # optional: drop params (or fixed values) inherited from `extends`
    params:                                 # ordered: a `when` may only look at params above it
      optimizer: {type: categorical, choices: [sgd, adam]}
      lr:        {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
      momentum:  {type: float, low: 0.8, high: 0.99, when: {optimizer: [sgd, rmsprop]}}
      batch_size: {type: int, low: 16, high: 256, step: 16}
    fixed: {augment: false}                 # optional: constants every trial gets

Types: ``float`` and ``int`` take ``low``, ``high`` (inclusive), ``log`` (default false) and ``step`` (not with
``log``); ``categorical`` takes ``choices``. Any param may have ``when: {key: [values]}``: the param is
suggested only when every named key holds one of the listed values. A key is either a categorical param defined
earlier or a ``fixed`` value. Write floats as ``1.0e-4``: plain YAML reads ``1e-4`` as a string (we coerce it,
but the dot keeps other YAML readers honest).

Merging with ``extends``: ``remove`` is applied first; then a param named in this file replaces the inherited
spec whole (keeping its place in the order; a new param goes to the end), and a ``fixed`` key takes the
dimension out of the search. A parent's param whose ``when`` can no longer hold (because this file fixed or
narrowed the key it looks at: ``fixed: {optimizer: adam}`` leaves no room for ``momentum``) is dropped; the same
contradiction written inside one file is an error.

Every value is checked against the trainable's own config (``trainables.config``), so a space cannot propose
something a trial would reject; each choice of a shape knob or ``image_size`` (and each end of a range of one) is
built once on the meta device. A key written twice in one mapping is an error (plain YAML keeps the last).
Errors are :class:`SpaceError`, one line naming the file and the key.
"""
from __future__ import annotations

import importlib.resources
import math
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trainables.config import (ARCH_KWARGS, FIELDS, INT64_MAX, SHAPE_KWARGS, ConfigError, resolve_config,
                               validate_value)
from trainables.models import NORMS, get_arch

TOP_LEVEL_KEYS = ("description", "extends", "remove", "params", "fixed")
# Fields a param spec may carry, per distribution type.
SPEC_FIELDS = {
    "float": ("type", "low", "high", "log", "step", "when"),
    "int": ("type", "low", "high", "log", "step", "when"),
    "categorical": ("type", "choices", "when"),
}
# Config keys a space may not search, and why. These are run settings: searching them would compare trials
# on different footing (data, budget, validation split) or only change speed, not the model.
NOT_SEARCHABLE = {
    "arch": "the space belongs to one arch; pass it to load_space",
    "data_dir": "a machine setting", "device": "a machine setting",
    "dataset": "trials must see the same data", "subset": "trials must see the same data",
    "val_size": "trials must be scored on the same validation split", "seed": "noise, not a hyperparameter",
    "epochs": "the ASHA budget (--max-epochs), not a hyperparameter",
    "checkpoint_every": "a run setting", "amp": "a speed setting", "channels_last": "a speed setting",
    "compile": "a speed setting", "latency_batch": "a measurement setting",
    "net": "set by --arch (a net of your own)", "net_sha256": "set by --arch (a net of your own)",
}
# Of those, what a `fixed:` mapping may not set either: the first three belong to the caller, epochs to ASHA.
NOT_FIXABLE = ("arch", "data_dir", "device", "epochs", "net", "net_sha256")


class SpaceError(ValueError):
    """A search-space file is malformed; the one-line message names the file and the key."""


def shipped_dir() -> Path:
    """Folder holding the shipped ``*.yaml`` spaces (package data of ``spaces``)."""
    return Path(str(importlib.resources.files("spaces")))


def shipped_spaces() -> list[str]:
    """Names of the shipped spaces: ``base`` and one per architecture that has a file."""
    return sorted(p.stem for p in shipped_dir().glob("*.yaml"))


# ---------------------------------------------------------------------------------------------------------------
# One parameter

@dataclass(frozen=True)
class Param:
    name: str
    type: str  # float | int | categorical
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()
    when: dict = field(default_factory=dict)  # key -> tuple of values; all must hold
    source: str = ""  # file that defined it, for error messages

    def active(self, values: dict) -> bool:
        """Whether this param is suggested, given the values chosen so far (and the fixed ones)."""
        return all(key in values and values[key] in allowed for key, allowed in self.when.items())

    def suggest(self, trial) -> Any:
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(self.name, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"type": self.type}
        if self.type == "categorical":
            out["choices"] = list(self.choices)
        else:
            out.update(low=self.low, high=self.high, log=self.log)
            if self.step is not None:
                out["step"] = self.step
        if self.when:
            out["when"] = {k: list(v) for k, v in self.when.items()}
        return out


# ---------------------------------------------------------------------------------------------------------------
# The merged space

@dataclass
class SearchSpace:
    """One architecture's merged space: ordered params, fixed constants, and where they came from."""

    arch: str
    params: dict[str, Param]
    fixed: dict[str, Any]
    source: str  # the file load_space was pointed at (or the shipped one)
    chain: list[str] = field(default_factory=list)  # source, then what it extends, down to the root
    description: str = ""

    def dimensions(self) -> list[str]:
        return list(self.params)

    def _suggest(self, trial) -> dict:
        values = dict(self.fixed)
        suggested = {}
        for param in self.params.values():
            if param.active(values):
                suggested[param.name] = values[param.name] = param.suggest(trial)
        return suggested

    def define_by_run(self, trial) -> dict:
        """Optuna define-by-run function: suggests every active param and returns the constants.

        The constants are the arch and the ``fixed`` values; Ray's ``OptunaSearch(space=this)`` merges them
        into each trial's config, so a trial config is complete on its own.
        """
        self._suggest(trial)
        return {"arch": self.arch, **self.fixed}

    def sample_config(self, trial) -> dict:
        """The full flat trial config for ``trial``: arch, suggested values and fixed values."""
        return {"arch": self.arch, **self._suggest(trial), **self.fixed}

    def to_dict(self) -> dict:
        """JSON-able description, for an experiment's spec.json."""
        return {"arch": self.arch, "source": self.source, "chain": list(self.chain),
                "description": self.description, "params": {n: p.to_dict() for n, p in self.params.items()},
                "fixed": dict(self.fixed)}


def load_space(arch: str, path: str | Path | None = None) -> SearchSpace:
    """The search space for ``arch``: from ``path``, else the shipped ``<arch>.yaml``, else ``base.yaml`` (the
    generic default of a user's net, less the knobs its builder does not name: e.g. no ``dropout`` or ``norm``).

    >>> space = load_space("simple_cnn")
    >>> "lr" in space.dimensions()
    True
    """
    try:
        spec = get_arch(arch)  # a repo net, or a user's net already resolved in this process
    except ValueError as e:
        raise SpaceError(str(e)) from None
    generic = path is None and not (shipped_dir() / f"{arch}.yaml").exists()
    if path is None:
        own = shipped_dir() / f"{arch}.yaml"
        path = own if own.exists() else shipped_dir() / "base.yaml"
    path = Path(path)
    merged = _load_merged(path, [])
    if generic:  # base.yaml for a net of no shipped space: without the knobs (dropout, norm) its builder lacks
        for key in (set(merged["params"]) & {"dropout", "norm", *ARCH_KWARGS}) - set(spec.options):
            del merged["params"][key]
    params, fixed = _check_conditions(merged)
    _check_arch_options(arch, params, fixed, merged["fixed_source"])
    _check_buildable(arch, params, fixed)
    return SearchSpace(arch=arch, params=params, fixed=fixed, source=str(path), chain=merged["chain"],
                       description=merged["description"])


# ---------------------------------------------------------------------------------------------------------------
# Reading and merging files

class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key written twice in one mapping (plain YAML silently keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: its keys may be overridden
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):  # the base class refuses it
                continue
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    problem=f"duplicate key {key!r} (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep)


def _read(path: Path) -> dict:
    if not path.is_file():
        raise SpaceError(f"{path}: no such search-space file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:  # e.g. a UTF-16 file (starts with \xff\xfe): YAML here is UTF-8 text
        raise SpaceError(f"{path}: not UTF-8 text: {e}") from None
    except OSError as e:
        raise SpaceError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        raise SpaceError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    except RecursionError:
        raise SpaceError(f"{path}: nested too deeply to read (a search space is a few levels deep)") from None
    if not isinstance(data, dict):
        got = "an empty file" if data is None else f"a {type(data).__name__}"
        raise SpaceError(f"{path}: a search space must be a YAML mapping, got {got}")
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise SpaceError(f"{path}: unknown top-level key {key!r}; known: {', '.join(TOP_LEVEL_KEYS)}")
    return data


def _extends_path(path: Path, target: Any) -> Path:
    if not isinstance(target, str) or not target:
        raise SpaceError(f"{path}: extends: expected a space name or a .yaml path, got {target!r}")
    if target.endswith((".yaml", ".yml")) or "/" in target:
        parent = (path.parent / target).resolve()
        if not parent.is_file():
            raise SpaceError(f"{path}: extends: {target!r} -> {parent} does not exist")
        return parent
    shipped = shipped_dir() / f"{target}.yaml"
    if not shipped.exists():
        raise SpaceError(f"{path}: extends: no shipped space {target!r}; shipped: {', '.join(shipped_spaces())}")
    return shipped


def _load_merged(path: Path, seen: list[Path]) -> dict:
    """Params and fixed values of ``path`` with its ``extends`` chain applied (conditions not yet checked)."""
    real = path.resolve()
    if real in seen:
        cycle = " -> ".join(p.name for p in [*seen, real])
        raise SpaceError(f"{seen[-1]}: extends: cycle {cycle}")
    data = _read(path)
    name = str(path)
    if "extends" in data:
        parent = _load_merged(_extends_path(path, data["extends"]), [*seen, real])
    else:
        parent = {"params": {}, "fixed": {}, "fixed_source": {}, "chain": [], "description": ""}
    params, fixed, fixed_source = dict(parent["params"]), dict(parent["fixed"]), dict(parent["fixed_source"])

    # A bare `remove:` (null) is empty; `remove: ""`, `params: []`, `fixed: 0` are mistakes, not empty.
    remove = [] if data.get("remove") is None else data["remove"]
    if not isinstance(remove, list) or not all(isinstance(key, str) for key in remove):
        raise SpaceError(f"{name}: remove: expected a list of names, got {remove!r}")
    for key in remove:
        if key in params:
            del params[key]
        elif key in fixed:
            del fixed[key], fixed_source[key]
        else:
            raise SpaceError(f"{name}: remove: {key!r} is not in the space it extends")

    own_params = {} if data.get("params") is None else data["params"]
    own_fixed = {} if data.get("fixed") is None else data["fixed"]
    for section, value in (("params", own_params), ("fixed", own_fixed)):
        if not isinstance(value, dict):
            raise SpaceError(f"{name}: {section}: expected a mapping, got {value!r}")
    for key in own_params:
        if key in own_fixed:
            raise SpaceError(f"{name}: params.{key} / fixed.{key}: both searched and fixed; pick one")
    for key, spec in own_params.items():
        fixed.pop(key, None)
        fixed_source.pop(key, None)
        params[key] = _parse_param(name, key, spec)
    for key, value in own_fixed.items():
        params.pop(key, None)
        fixed[key] = _parse_fixed(name, key, value)
        fixed_source[key] = name
    return {"params": params, "fixed": fixed, "fixed_source": fixed_source, "chain": [name, *parent["chain"]],
            "description": str(data.get("description") or parent["description"]).strip()}


# ---------------------------------------------------------------------------------------------------------------
# Checking one file's entries

def _known_value(file: str, where: str, key: str, value: Any) -> Any:
    """``value`` coerced to the type ``key`` takes, or SpaceError if the trainable would reject it."""
    try:
        value = validate_value(key, value)  # types, ranges, and the optimizer/schedule/dataset names
    except ConfigError as e:
        raise SpaceError(f"{file}: {where}: {e}") from None
    if key == "norm" and value not in NORMS:
        raise SpaceError(f"{file}: {where}: norm must be one of {', '.join(NORMS)}, got {value!r}")
    if value is None:
        raise SpaceError(f"{file}: {where}: a value is required, got null")
    return value


def _number(file: str, where: str, value: Any, integer: bool) -> float | int:
    if isinstance(value, str):  # YAML 1.1 reads 1e-4 as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            isinstance(value, float) and not math.isfinite(value)):
        raise SpaceError(f"{file}: {where}: expected a number, got {value!r}")
    if integer:
        if isinstance(value, float) and not value.is_integer():
            raise SpaceError(f"{file}: {where}: expected an integer, got {value!r}")
        if not -INT64_MAX - 1 <= value <= INT64_MAX:  # what Optuna, numpy and the trackers can hold
            raise SpaceError(f"{file}: {where}: must fit in a 64-bit integer, got {value!r}")
        return int(value)
    try:
        return float(value)
    except OverflowError:  # an int of hundreds of digits
        raise SpaceError(f"{file}: {where}: expected a finite number, got an int of {len(str(value))} digits") from None


def _parse_param(file: str, name: Any, spec: Any) -> Param:
    where = f"params.{name}"
    if name not in FIELDS:
        searchable = sorted(k for k in FIELDS if k not in NOT_SEARCHABLE)
        raise SpaceError(f"{file}: {where}: unknown param {name!r}; searchable: {', '.join(searchable)}")
    if name in NOT_SEARCHABLE:
        raise SpaceError(f"{file}: {where}: {name} cannot be searched ({NOT_SEARCHABLE[name]})")
    if not isinstance(spec, dict):
        raise SpaceError(f"{file}: {where}: expected a mapping like {{type: float, low: .., high: ..}}, got {spec!r}")
    kind = spec.get("type")
    if kind is None:
        raise SpaceError(f"{file}: {where}.type: missing; one of {', '.join(SPEC_FIELDS)}")
    if kind not in SPEC_FIELDS:
        raise SpaceError(f"{file}: {where}.type: unknown distribution {kind!r}; known: {', '.join(SPEC_FIELDS)}")
    for key in spec:
        if key not in SPEC_FIELDS[kind]:
            raise SpaceError(f"{file}: {where}: unknown field {key!r} for type {kind}; "
                             f"allowed: {', '.join(SPEC_FIELDS[kind])}")
    when = _parse_when(file, where, spec.get("when"))
    field_type = FIELDS[name][0]
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise SpaceError(f"{file}: {where}.choices: expected a non-empty list, got {choices!r}")
        values = tuple(_known_value(file, f"{where}.choices", name, c) for c in choices)
        if len(set(values)) != len(values):
            raise SpaceError(f"{file}: {where}.choices: duplicate values in {choices!r}")
        return Param(name, kind, choices=values, when=when, source=file)

    # float / int: a numeric field only, and an int distribution cannot feed a float-only field the wrong way
    allowed = {"float": (float,), "int": (int, float)}[kind]
    if field_type not in allowed:
        raise SpaceError(f"{file}: {where}.type: {name} takes {field_type.__name__} values; "
                         f"use {'int or ' if field_type is int else ''}categorical")
    for key in ("low", "high"):
        if key not in spec:
            raise SpaceError(f"{file}: {where}.{key}: required for type {kind}")
    integer = kind == "int"
    low = _number(file, f"{where}.low", spec["low"], integer)
    high = _number(file, f"{where}.high", spec["high"], integer)
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise SpaceError(f"{file}: {where}.log: expected true or false, got {log!r}")
    step = spec.get("step")
    if low >= high:
        raise SpaceError(f"{file}: {where}: low ({low!r}) must be below high ({high!r})")
    if log and low <= 0:
        raise SpaceError(f"{file}: {where}: a log range needs low > 0, got low={low!r}")
    if step is not None:
        if log:
            raise SpaceError(f"{file}: {where}.step: cannot be combined with log: true")
        step = _number(file, f"{where}.step", step, integer)
        if step <= 0:
            raise SpaceError(f"{file}: {where}.step: must be > 0, got {step!r}")
        if step > high - low and not math.isclose(step, high - low):  # Optuna would draw low only
            raise SpaceError(f"{file}: {where}.step: {step!r} is larger than the range {low!r}..{high!r}; "
                             f"must be <= high - low")
    # Both ends are values a trial may get, so the trainable must accept them (e.g. dropout < 1, lr > 0).
    _known_value(file, f"{where}.low", name, low)
    _known_value(file, f"{where}.high", name, high)
    return Param(name, kind, low=low, high=high, log=log, step=step, when=when, source=file)


def _parse_when(file: str, where: str, when: Any) -> dict:
    if when is None:
        return {}
    if not isinstance(when, dict) or not when:
        raise SpaceError(f"{file}: {where}.when: expected a mapping like {{optimizer: [sgd]}}, got {when!r}")
    out = {}
    for key, values in when.items():
        if key not in FIELDS:
            raise SpaceError(f"{file}: {where}.when: unknown param {key!r}")
        values = values if isinstance(values, list) else [values]
        if not values:
            raise SpaceError(f"{file}: {where}.when.{key}: empty list of values")
        out[key] = tuple(_known_value(file, f"{where}.when.{key}", key, v) for v in values)
    return out


def _parse_fixed(file: str, key: Any, value: Any) -> Any:
    where = f"fixed.{key}"
    if key not in FIELDS:
        raise SpaceError(f"{file}: {where}: unknown config key {key!r}")
    if key in NOT_FIXABLE:
        raise SpaceError(f"{file}: {where}: {key} cannot be fixed in a space ({NOT_SEARCHABLE[key]})")
    return _known_value(file, where, key, value)


# ---------------------------------------------------------------------------------------------------------------
# Checks on the merged space

def _check_conditions(merged: dict) -> tuple[dict[str, Param], dict]:
    """Every ``when`` looks at an earlier categorical param or a fixed value; drop params that can never be on."""
    params, fixed, fixed_source = merged["params"], merged["fixed"], merged["fixed_source"]
    order = list(params)
    dead: set[str] = set()
    for i, (name, param) in enumerate(params.items()):
        where = f"params.{name}.when.{{key}}"
        for key, allowed in param.when.items():
            if key in fixed:
                can_hold, ref_source, offered = fixed[key] in allowed, fixed_source[key], [fixed[key]]
            elif key in params:
                if order.index(key) >= i:
                    raise SpaceError(f"{param.source}: {where.format(key=key)}: refers to {key!r}, which is not "
                                     f"defined before {name!r} (a condition may only look at earlier params)")
                ref = params[key]
                if ref.type != "categorical":
                    raise SpaceError(f"{param.source}: {where.format(key=key)}: {key!r} is a {ref.type} range; "
                                     "conditions need a categorical param")
                offered = list(ref.choices)
                can_hold, ref_source = key not in dead and any(v in ref.choices for v in allowed), ref.source
            else:
                raise SpaceError(f"{param.source}: {where.format(key=key)}: refers to {key!r}, which is neither "
                                 "a param nor a fixed value of this space")
            if not can_hold:
                if ref_source == param.source and key not in dead:
                    # Written together in one file: a contradiction, not an inherited param being switched off.
                    raise SpaceError(f"{param.source}: {where.format(key=key)}: none of {list(allowed)} is among "
                                     f"the values of {key!r} {offered}, so {name!r} could never be suggested")
                dead.add(name)
    return {n: p for n, p in params.items() if n not in dead}, dict(fixed)


def _check_arch_options(arch: str, params: dict[str, Param], fixed: dict, fixed_source: dict) -> None:
    """Arch-specific keys (resnet18's stem, pretrained, freeze) only where the arch's builder takes them."""
    accepted = get_arch(arch).options
    for key in (*ARCH_KWARGS, "dropout", "norm"):  # a user's net may have neither
        if key in accepted:
            continue
        if key in params:
            raise SpaceError(f"{params[key].source}: params.{key}: arch {arch!r} has no {key} option")
        if key in fixed:
            raise SpaceError(f"{fixed_source[key]}: fixed.{key}: arch {arch!r} has no {key} option")


def _check_buildable(arch: str, params: dict[str, Param], fixed: dict) -> None:
    """Each choice of a shape knob or ``image_size`` (each end of a range of one) builds with the space's fixed
    values (``resolve_config`` builds it on the meta device): refused here, not in every trial that draws it."""
    for key in (*SHAPE_KWARGS, "image_size"):
        param = params.get(key)
        if param is None:
            continue
        values = ([("choices", v) for v in param.choices] if param.type == "categorical"
                  else [("low", param.low), ("high", param.high)])
        for end, value in values:
            try:
                resolve_config({**fixed, "arch": arch, key: value})
            except ConfigError as e:
                raise SpaceError(f"{param.source}: params.{key}.{end}: {' '.join(str(e).split())}") from None
