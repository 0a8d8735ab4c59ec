"""Architecture registry (timm style): ``@register`` on a builder, ``create_model`` by name.

A builder is a function ``builder(num_classes, in_channels, dropout, norm, image_size, **knobs) -> nn.Module``.
Its registration carries the report it comes from, the report's own training setting
(``defaults``: plain values a trial config understands), the number the report published and, optionally, the
parameter count the tests assert (``params``). Adding a net to the repo is one module in ``trainables/models/``
with one ``@register`` (the package imports every module in it); see docs/add-a-net.md.

A user's net is the same thing from outside the repo: a ``torch.nn.Module`` class or factory named by a reference
(``path/to/nets.py:MyNet``, ``my_pkg.nets:build``) or by an entry point of an installed package in the group
``cifar_tune.nets``. :func:`resolve_arch` loads it, checks it (signature, a build, forward and backward passes on a
dummy batch; any failure is one line naming file:line) and registers it under a short name: the class or function
name, or the entry point's name. Its ``source`` records the reference, the file and its sha256, so results say what
ran.
"""
from __future__ import annotations

import inspect
import math
import re
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn

from trainables import plugins

NORMS = ("none", "batch", "group", "layer")
NET_GROUP = "cifar_tune.nets"  # entry-point group through which installed packages offer nets
# Passed to a builder only when its signature names them (every registry net does; a user's net may not).
KNOBS = ("dropout", "norm", "image_size")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # a net's name becomes part of folder and study names


@dataclass(frozen=True)
class ArchSpec:
    name: str
    builder: Callable[..., nn.Module]
    report: str  # e.g. "003 (Lai), Table III"
    defaults: dict = field(default_factory=dict)  # report's own setting: lr, batch_size, optimizer, epochs, dropout, norm ...
    published: dict = field(default_factory=dict)  # e.g. {"test_accuracy": 0.728, "source": "Table VIII"}
    description: str = ""
    params: int | None = None  # trainable parameters at the defaults (3x32x32, 10 classes), asserted by the tests
    source: dict = field(default_factory=dict)  # a user's net: {ref, resolved, path, sha256[, entry_point]}

    @property
    def options(self) -> tuple[str, ...]:
        """The keyword arguments the builder names (beyond num_classes and in_channels)."""
        return tuple(n for n, p in _signature(self.builder).items()
                     if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n not in ("num_classes", "in_channels"))


_REGISTRY: dict[str, ArchSpec] = {}  # the repo's own nets
_USER: dict[str, ArchSpec] = {}  # users' nets loaded in this process (a file, a module, an entry point)


def register(name: str, *, report: str, defaults: dict | None = None, published: dict | None = None,
             description: str = "", params: int | None = None):
    """Decorator that adds a model builder to the registry under ``name``."""

    def wrap(fn):
        if name in _REGISTRY:
            raise ValueError(f"architecture {name!r} registered twice")
        if not _NAME.match(name):
            raise ValueError(f"architecture name {name!r}: letters, digits, '_', '.', '-' only")
        defaults_ = dict(defaults or {})
        defaults_.setdefault("dropout", 0.0)
        defaults_.setdefault("norm", "none")
        _REGISTRY[name] = ArchSpec(name, fn, report, defaults_, dict(published or {}),
                                   description or (fn.__doc__ or "").strip().splitlines()[0], params)
        return fn

    return wrap


def list_models() -> list[str]:
    """The repo's registered nets (users' nets loaded in this process are not listed: see :func:`list_user_nets`)."""
    return sorted(_REGISTRY)


def list_user_nets() -> list[str]:
    """Users' nets registered in this process, and the names of installed ``cifar_tune.nets`` entry points."""
    return sorted(set(_USER) | set(plugins.entry_points(NET_GROUP)))


def get_arch(name: str) -> ArchSpec:
    """The registration of ``name``: a repo net, a user's net loaded in this process, or an installed entry point."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _USER:
        return _USER[name]
    return resolve_arch(name)


def _unknown(name: str) -> ValueError:
    extra = sorted(set(plugins.entry_points(NET_GROUP)) - set(_REGISTRY))
    return ValueError(f"unknown arch {name!r}; known: {', '.join([*list_models(), *extra])} (or a net of your own: "
                      f"path/to/nets.py:Name or package.module:name)")


def resolve_arch(text: str, *, sha256: str | None = None, name: str | None = None) -> ArchSpec:
    """The net ``text`` names: a registered name, an entry point of ``cifar_tune.nets``, or a reference to a user's
    net (loaded, its signature checked, and registered; :func:`create_model` checks each model it builds of a user's
    net with a forward pass on a dummy batch of the data's shape).

    ``sha256`` and ``name``: what a record says about a user's net (a trial config's ``net_sha256`` and ``arch``);
    the file must still have that content (a shipped copy on a Ray worker is found by it).
    Raises ValueError for an unknown name, :class:`trainables.plugins.PluginError` for a net that does not load.
    """
    entry_point = None
    if not plugins.is_ref(text):
        if text in _REGISTRY:
            return _REGISTRY[text]
        if text in _USER and sha256 in (None, _USER[text].source.get("sha256")):
            return _USER[text]
        points = plugins.entry_points(NET_GROUP)
        if text not in points:
            raise _unknown(text)
        entry_point, ref = f"{NET_GROUP}:{text}", points[text].value
        name = name or text
    else:
        ref = text
    what = f"--arch {text} (an entry point of {NET_GROUP}):" if entry_point else "--arch"
    resolved = plugins.absolute_ref(ref, what)
    name = name or resolved.rpartition(":")[2].split(".")[-1]
    if not _NAME.match(name):
        raise plugins.PluginError(f"{what} {text!r}: {name!r} cannot name a net (letters, digits, '_', '.', '-')")
    if name in _REGISTRY:
        raise plugins.PluginError(f"{what} {text!r}: the name {name!r} is taken by the repo's own net; rename yours")
    known = _USER.get(name)
    if known and known.source["resolved"] == resolved and sha256 in (None, known.source["sha256"]) \
            and plugins.file_sha256(known.source["path"]) == known.source["sha256"]:
        return known
    obj = plugins.load_object(ref, what, sha256)
    path = plugins.source_file(ref, what, sha256)  # the referenced module's file, where the object may be imported
    source = {"ref": text, "resolved": resolved, "path": path, "sha256": plugins.file_sha256(path)}
    if entry_point:
        source["entry_point"] = entry_point
    spec = _user_spec(name, obj, source)
    _USER[name] = spec
    return spec


def _signature(fn) -> dict:
    try:
        return dict(inspect.signature(fn).parameters)
    except (TypeError, ValueError):  # a builtin or C callable: nothing to read, everything passed by name
        return {}


def _where(obj) -> str:
    try:
        return f" (at {inspect.getsourcefile(obj)}:{inspect.getsourcelines(obj)[1]})"
    except (TypeError, OSError):
        return ""


def _user_spec(name: str, obj, source: dict) -> ArchSpec:
    """Check that a user's net can be called the way the trials call it, and describe it as a registry entry."""
    what, ref = "--arch", source["ref"]
    if not callable(obj):
        raise plugins.PluginError(f"{what} {ref!r}: {type(obj).__name__} object is not a class or function")
    params = _signature(obj)
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    shown = getattr(obj, "__name__", name)
    missing = [n for n in ("num_classes", "in_channels") if n not in params and not takes_any]
    if params and missing:
        raise plugins.PluginError(f"{what} {ref!r}: {shown}{inspect.signature(obj)} takes no {' or '.join(missing)};"
                                  f" a net is built as {shown}(num_classes=..., in_channels=..., [dropout=..., "
                                  f"norm=..., width=..., ...]){_where(obj)}")
    from trainables.config import FIELDS

    required = [n for n, p in params.items() if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD,
                p.KEYWORD_ONLY) and n not in ("num_classes", "in_channels")]
    if required:
        unknown = [n for n in required if n not in FIELDS]
        raise plugins.PluginError(f"{what} {ref!r}: {shown}() requires {', '.join(required)} with no default; "
                                  + (f"{', '.join(unknown)} is no config key cifar-tune could pass: " if unknown
                                     else "") + f"give it a default{_where(obj)}")
    defaults = {}
    dropout, norm = params.get("dropout"), params.get("norm")
    defaults["dropout"] = (float(dropout.default) if dropout is not None and isinstance(dropout.default, (int, float))
                           and not isinstance(dropout.default, bool) and 0 <= dropout.default < 1 else 0.0)
    defaults["norm"] = norm.default if norm is not None and norm.default in NORMS else "none"
    doc = (inspect.getdoc(obj) or "").strip().splitlines()
    return ArchSpec(name, obj, "user net", defaults, {}, doc[0] if doc else source["resolved"],
                    None, source)


def create_model(name: str, *, num_classes: int = 10, in_channels: int = 3, dropout: float | None = None,
                 norm: str | None = None, **extra) -> nn.Module:
    """Build ``name``; ``dropout``/``norm`` of None take the report's defaults. A knob of :data:`KNOBS` the builder
    does not name is not passed (a user's net without ``dropout`` gets none); any other keyword is."""
    spec = get_arch(name)
    dropout = spec.defaults["dropout"] if dropout is None else float(dropout)
    norm = spec.defaults["norm"] if norm is None else norm
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; known: {', '.join(NORMS)}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    kwargs = {"dropout": dropout, "norm": norm, **extra}
    named = _signature(spec.builder)
    kwargs = {k: v for k, v in kwargs.items() if k not in KNOBS or k in named or not named}
    if not spec.source:
        return spec.builder(num_classes=num_classes, in_channels=in_channels, **kwargs)
    shown = getattr(spec.builder, "__name__", spec.name)
    model = plugins.call(spec.source["ref"], "--arch", f"building it ({shown}(num_classes={num_classes}, "
                         f"in_channels={in_channels}, ...))", spec.builder, num_classes=num_classes,
                         in_channels=in_channels, **kwargs)
    side = default_image_size(in_channels, extra.get("image_size"))
    check_forward(spec, model, num_classes, in_channels, side)
    return model


def check_forward(spec: ArchSpec, model, num_classes: int, in_channels: int, side: int) -> None:
    """A user's net returned an ``nn.Module`` with trainable parameters that gives float logits of shape
    ``(3, num_classes)`` for a dummy ``3 x C x S x S`` batch in eval mode, and in train mode logits that backpropagate;
    else one line naming the net's file:line. A batch of 3, not 2: a net that hard-codes its batch size fails here.
    The model is left as it was (weights, BatchNorm statistics, gradients, mode; the RNG too, for the trial's seed).
    Skipped for a model built on the meta device (the config check's shape-only build)."""
    what, ref, where = "--arch", spec.source["ref"], _where(spec.builder)
    shown = getattr(spec.builder, "__name__", spec.name)
    if not isinstance(model, nn.Module):
        raise plugins.PluginError(f"{what} {ref!r}: {shown}(...) returned {type(model).__name__} {model!r:.40}, "
                                  f"not a torch.nn.Module{where}")
    if torch.empty(0).is_meta or any(p.is_meta for p in model.parameters()):
        return
    n = 3
    batch = f"{n}x{in_channels}x{side}x{side}"
    params = [p for p in model.parameters() if p.requires_grad]
    saved = [(t, t.detach().clone()) for t in (*model.parameters(), *model.buffers())]
    grads, was_training = [p.grad for p in params], model.training
    try:
        with torch.random.fork_rng(devices=[]):
            for mode in ("eval", "train"):
                if mode == "train" and not params:
                    raise plugins.PluginError(f"{what} {ref!r}: {shown}(...) has no trainable parameters, so there is "
                                              f"nothing to train{where}")
                model.train(mode == "train")
                doing = f"its {mode}-mode forward pass on a dummy {batch} batch"
                with torch.set_grad_enabled(mode == "train"):
                    out = plugins.call(ref, what, doing, model, torch.zeros(n, in_channels, side, side))
                if not isinstance(out, torch.Tensor) or tuple(out.shape) != (n, num_classes) \
                        or not out.is_floating_point():
                    got = f"{out.dtype} of shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) \
                        else type(out).__name__
                    raise plugins.PluginError(f"{what} {ref!r}: {doing} returned {got}; expected logits of shape "
                                              f"({n}, {num_classes}) for num_classes={num_classes}, floating point"
                                              f"{where}")
            if not out.requires_grad:
                raise plugins.PluginError(f"{what} {ref!r}: {doing} returned logits that do not require grad (not "
                                          f"computed from its parameters); training could not update it{where}")
            loss = nn.functional.cross_entropy(out.float(), torch.zeros(n, dtype=torch.long))
            try:  # not plugins.call: it would name torch's frame (fn's module) rather than the user's
                loss.backward()
            except BaseException as e:
                if isinstance(e, KeyboardInterrupt):
                    raise
                raise plugins.user_error(ref, what, e, f"its backward pass on a dummy {batch} batch",
                                         plugins.user_files(spec.builder) or None) from None
    finally:
        with torch.no_grad():
            for t, value in saved:
                t.copy_(value)
        for p, g in zip(params, grads):
            p.grad = g
        model.train(was_training)


def count_params(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def norm_layer(norm: str, channels: int, dims: int = 2) -> nn.Module:
    """The normalisation layer for ``norm`` ("none" gives Identity). dims=2 for conv maps, 1 for dense features."""
    if norm == "none":
        return nn.Identity()
    if norm == "batch":
        return nn.BatchNorm2d(channels) if dims == 2 else nn.BatchNorm1d(channels)
    if norm == "group":
        return nn.GroupNorm(min(8, channels) if channels % min(8, channels) == 0 else 1, channels)
    if norm == "layer":
        return nn.GroupNorm(1, channels) if dims == 2 else nn.LayerNorm(channels)
    raise ValueError(f"unknown norm {norm!r}; known: {', '.join(NORMS)}")


# ---------------------------------------------------------------------------------------------------------------
# Small helpers shared by the report modules (not part of the registry API proper).

def default_image_size(in_channels: int, image_size: int | None = None) -> int:
    """Side length a builder sizes its dense head for.

    Flatten-then-Linear nets need the input size at construction. The project's two datasets are CIFAR-10
    (3x32x32) and Fashion-MNIST (1x28x28), so an unspecified size follows the channel count; pass
    ``image_size`` explicitly for anything else.
    """
    if image_size is not None:
        return int(image_size)
    return 28 if in_channels == 1 else 32


@torch.no_grad()
def flat_features(features: nn.Module, in_channels: int, image_size: int) -> int:
    """Number of features ``features`` yields per image, found by one dummy forward pass.

    Run in eval mode so BatchNorm running statistics are not disturbed by the zero input.
    """
    was_training = features.training
    features.eval()
    try:
        out = features(torch.zeros(1, in_channels, image_size, image_size))
    except RuntimeError as e:  # e.g. a valid-padded conv stack on too small an image
        raise ValueError(f"input {in_channels}x{image_size}x{image_size} is too small for this net: {e}") from e
    finally:
        features.train(was_training)
    return out[0].numel()


def scaled(channels: int, width: float) -> int:
    """``channels`` times the ``width`` multiplier, rounded half up, at least 1 (``width=1`` returns ``channels``)."""
    if not width > 0:
        raise ValueError(f"width must be > 0, got {width!r}")
    return max(1, math.floor(channels * width + 0.5))


POOLS = ("max", "avg")


def pool_layer(pool: str, size: int = 2) -> nn.Module:
    """``size`` x ``size`` max or average pooling."""
    if pool == "max":
        return nn.MaxPool2d(size)
    if pool == "avg":
        return nn.AvgPool2d(size)
    raise ValueError(f"pool must be one of {', '.join(POOLS)}, got {pool!r}")


def check_no_extra(arch: str, extra: dict) -> None:
    """Builders take ``**extra`` for arch-specific knobs; a leftover key is a typo, not something to ignore."""
    if extra:
        raise TypeError(f"{arch}: unexpected keyword argument(s): {', '.join(sorted(extra))}")
