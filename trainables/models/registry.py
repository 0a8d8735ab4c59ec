"""Architecture registry (timm style): ``@register`` on a builder, ``create_model`` by name.

A builder is a function ``builder(num_classes, in_channels, dropout, norm) -> nn.Module``.
Its registration carries the report it comes from, the report's own training setting
(``defaults``: plain values a trial config understands) and the number the report published.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn

NORMS = ("none", "batch", "group", "layer")


@dataclass(frozen=True)
class ArchSpec:
    name: str
    builder: Callable[..., nn.Module]
    report: str  # e.g. "003 (Lai), Table III"
    defaults: dict = field(default_factory=dict)  # report's own setting: lr, batch_size, optimizer, epochs, dropout, norm ...
    published: dict = field(default_factory=dict)  # e.g. {"test_accuracy": 0.728, "source": "Table VIII"}
    description: str = ""


_REGISTRY: dict[str, ArchSpec] = {}


def register(name: str, *, report: str, defaults: dict | None = None, published: dict | None = None,
             description: str = ""):
    """Decorator that adds a model builder to the registry under ``name``."""

    def wrap(fn):
        if name in _REGISTRY:
            raise ValueError(f"architecture {name!r} registered twice")
        defaults_ = dict(defaults or {})
        defaults_.setdefault("dropout", 0.0)
        defaults_.setdefault("norm", "none")
        _REGISTRY[name] = ArchSpec(name, fn, report, defaults_, dict(published or {}),
                                   description or (fn.__doc__ or "").strip().splitlines()[0])
        return fn

    return wrap


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def get_arch(name: str) -> ArchSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown arch {name!r}; known: {', '.join(list_models())}") from None


def create_model(name: str, *, num_classes: int = 10, in_channels: int = 3, dropout: float | None = None,
                 norm: str | None = None, **extra) -> nn.Module:
    """Build ``name``; ``dropout``/``norm`` of None take the report's defaults."""
    spec = get_arch(name)
    dropout = spec.defaults["dropout"] if dropout is None else float(dropout)
    norm = spec.defaults["norm"] if norm is None else norm
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; known: {', '.join(NORMS)}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    return spec.builder(num_classes=num_classes, in_channels=in_channels, dropout=dropout, norm=norm, **extra)


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
