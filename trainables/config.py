"""The trial config: one flat dict of plain values, validated when built.

``resolve_config`` layers the global defaults, then the architecture's own report setting, then the user's values,
coerces strings (from ``--set k=v``) to the right type and checks every value; a bad one raises :class:`ConfigError`
naming the key and the value. A resolved config re-runs a trial exactly: ``cifar-tune train --config row.json``.
"""
from __future__ import annotations

import math
import numbers
import re
from typing import Any, Callable

METRIC = "val_accuracy"  # the one metric search optimises and reports rank by
MODE = "max"
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad", "adamax")
SCHEDULES = ("constant", "cosine", "step")
DATASETS = ("cifar10", "cifar100", "fashion_mnist", "mnist", "kmnist", "svhn")  # built in: trainables/data.py
DATASET_HELP = (f"one of {', '.join(DATASETS)}, a class of your own as path/to/data.py:Name or pkg.module:attr, "
                f"or an installed cifar_tune.datasets entry point")
STATUSES = ("completed", "stopped", "diverged", "errored")


class ConfigError(ValueError):
    """A config value is unknown, of the wrong type or out of range; the message names it."""


def is_count(value: Any, low: int = 0) -> bool:
    """Whether ``value`` is an integer (numpy's too; a bool is not one) of at least ``low``: the one test behind
    each "must be an integer >= N" refusal of a count (trials, epochs, seeds, images, cores)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= low


def _positive(x):
    return x > 0


def _nonneg(x):
    return x >= 0


def _unit(x):  # [0, 1)
    return 0 <= x < 1


def _between(low, high) -> Callable:
    return lambda x: low <= x <= high


def _device(name: str) -> bool:  # the form only: whether this machine has it is checked where a run starts
    return name in ("auto", "cpu", "cuda", "mps") or re.fullmatch(r"cuda:[0-9]{1,6}", name) is not None


INT64_MAX = 2**63 - 1  # every int value fits a 64-bit integer (numpy, torch and the trackers store it as one)
SEED_LIMIT = 2**32  # numpy seeds lie in [0, 2**32)
MAX_BATCH = 2**20  # images per step or per forward pass
MAX_EPOCHS = 10**6
MAX_IMAGES = 10**9  # a count of images (subset, val_size)


def _dataset(name: str) -> bool:
    if name in DATASETS or ":" in name:  # a reference is checked for form in validate_value, loaded with the data
        return True
    from trainables.plugins import entry_points

    return name in entry_points("cifar_tune.datasets")


# key: (type, default, check, what the check means). Units in the comments, as airbench does.
FIELDS: dict[str, tuple[type, Any, Callable | None, str]] = {
    "arch": (str, "simple_cnn", None, "a registered architecture"),
    # A user's net (``--arch path/to/nets.py:MyNet``): the absolute reference and its file's sha256, set by
    # resolve_config so a trial config says which code it ran (and a worker loads exactly that).
    "net": (str, None, None, "a reference path/to/file.py:Name or package.module:name"),
    "net_sha256": (str, None, lambda v: len(v) == 64, "a sha256 hex digest"),
    "dataset": (str, "cifar10", _dataset, DATASET_HELP),
    # Side of the square the net sees, pixels: shorter side resized to it, then the centre square (train, val and
    # test alike). None: the images as stored.
    "image_size": (int, None, lambda v: 8 <= v <= 1024, "in [8, 1024] (pixels)"),
    "data_dir": (str, None, None, "a path"),  # None: $CIFAR_TUNE_DATA_DIR or ~/.cache/cifar-tune/data
    "lr": (float, 1e-3, _positive, "> 0"),  # peak learning rate
    "batch_size": (int, 128, _between(1, MAX_BATCH), f"in [1, {MAX_BATCH}]"),  # images per step
    "optimizer": (str, "sgd", lambda v: v in OPTIMIZERS, f"one of {', '.join(OPTIMIZERS)}"),
    "momentum": (float, 0.9, _unit, "in [0, 1)"),  # sgd and rmsprop
    "nesterov": (bool, False, None, "true or false"),  # sgd only
    "beta1": (float, 0.9, _unit, "in [0, 1)"),  # adam family
    "beta2": (float, 0.999, _unit, "in [0, 1)"),
    "weight_decay": (float, 0.0, _nonneg, ">= 0"),
    "dropout": (float, None, _unit, "in [0, 1)"),  # None: the report's own
    "norm": (str, None, None, "a normalisation the arch supports"),  # None: the report's own
    "label_smoothing": (float, 0.0, _unit, "in [0, 1)"),
    # true = crop (pad 4) + flip; false = none; or named steps (trainables.augment, docs/data.md).
    "augment": (str, True, None, "true, false or an augmentation name"),
    "epochs": (int, 10, _between(1, MAX_EPOCHS), f"in [1, {MAX_EPOCHS}]"),
    "schedule": (str, "constant", lambda v: v in SCHEDULES, f"one of {', '.join(SCHEDULES)}"),
    "warmup_epochs": (float, 0.0, _nonneg, ">= 0"),  # linear warm-up, epochs
    "seed": (int, 0, lambda v: 0 <= v < SEED_LIMIT, f"in [0, 2**32 - 1] = [0, {SEED_LIMIT - 1}] (numpy's seed range)"),
    # train on the first N training images; 0 = all
    "subset": (int, 0, _between(0, MAX_IMAGES), f"in [0, {MAX_IMAGES}]"),
    # images carved from the training set for validation
    "val_size": (int, 5000, _between(0, MAX_IMAGES), f"in [0, {MAX_IMAGES}]"),
    "device": (str, "auto", _device, "auto, cpu, cuda, cuda:N (N digits) or mps"),
    "amp": (bool, False, None, "true or false"),  # bf16 autocast
    "channels_last": (bool, False, None, "true or false"),
    "compile": (bool, False, None, "true or false"),  # torch.compile the model
    # epochs between checkpoints (the last is always saved)
    "checkpoint_every": (int, 1, _between(1, MAX_EPOCHS), f"in [1, {MAX_EPOCHS}]"),
    # Architecture-specific knobs, passed to the builder only when it accepts them:
    "stem": (str, None, lambda v: v in ("imagenet", "cifar"), "imagenet or cifar"),
    "pretrained": (bool, None, None, "true or false"),
    "freeze": (int, None, _between(0, 1000), "in [0, 1000]"),  # stages or layers of the net
    # Size knobs (issue 11). None: the report's own net. width: every net; kernel, pool: origin_net and
    # modified_net; depth, filters, padding: keras_cnn.
    "width": (float, None, lambda v: 0 < v <= 8, "in (0, 8]"),  # multiplier of channels and dense units
    "kernel": (int, None, lambda v: 1 <= v <= 7, "in [1, 7]"),  # conv kernel side, pixels
    "pool": (str, None, lambda v: v in ("max", "avg"), "max or avg"),
    "depth": (int, None, lambda v: 1 <= v <= 6, "in [1, 6]"),  # conv blocks
    "filters": (int, None, lambda v: 1 <= v <= 512, "in [1, 512]"),  # first block's filters, doubling per block
    "padding": (str, None, lambda v: v in ("valid", "same"), "valid or same"),
    # Inference measurement reported by every trial (objectives for a size-aware search): images per forward
    # pass of the large-batch throughput; 0 skips the measurement.
    "latency_batch": (int, 256, _between(0, MAX_BATCH), f"in [0, {MAX_BATCH}]"),
}
ARCH_KWARGS = ("stem", "pretrained", "freeze", "width", "kernel", "pool", "depth", "filters", "padding")
# Of those, the ones that change the net's shape: a config setting one is built once (on the meta device, no
# memory, no compute) when resolved, so e.g. keras_cnn depth=4 with valid padding fails here, not in a trial.
SHAPE_KWARGS = ("width", "kernel", "pool", "depth", "filters", "padding")
_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


def _coerce(key: str, value: Any) -> Any:
    typ = FIELDS[key][0]
    if value is None:
        return None
    if key == "augment":  # a bool (the old switch) or steps by name, kept in one spelling
        from trainables.augment import canonical_augment

        return canonical_augment(value)
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
    elif typ is int:
        if isinstance(value, bool):
            pass
        elif isinstance(value, int):
            return value
        elif isinstance(value, float) and value.is_integer():
            return int(value)
        elif isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                try:
                    f = float(value)
                    if f.is_integer():
                        return int(f)
                except ValueError:
                    pass
    elif typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif typ is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{key}: expected {typ.__name__}, got {value!r}")


def shown(value: Any) -> str:
    """``repr(value)``, a huge int shortened (``--set seed=1e300`` is an int of 301 digits)."""
    text = repr(value)
    if not isinstance(value, int) or len(text) <= 30:
        return text
    about = f", about {float(value):.3g}" if abs(value) < 1e308 else ""
    return f"{text[:12]}... ({len(text.lstrip('-'))} digits{about})"


def validate_value(key: str, value: Any) -> Any:
    """Coerce and check one value; raises ConfigError naming ``key`` and ``value``."""
    if key not in FIELDS:
        raise ConfigError(f"unknown config key {key!r}; known: {', '.join(sorted(FIELDS))}")
    value = _coerce(key, value)
    if key == "dataset" and value is None:  # no "default" reading: a config always names its data
        raise ConfigError(f"dataset: must be {DATASET_HELP}, got None")
    if key == "dataset" and ":" in value:  # a file reference is pinned to the current directory now (Ray moves it)
        from trainables.plugins import absolute_ref

        value = absolute_ref(value, "dataset")
    _, _, check, meaning = FIELDS[key]
    if value is not None:
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key}: must be finite, got {value!r}")
        if check is not None and not check(value):
            raise ConfigError(f"{key}: must be {meaning}, got {shown(value)}")
        if isinstance(value, int) and not isinstance(value, bool) and not -INT64_MAX - 1 <= value <= INT64_MAX:
            raise ConfigError(f"{key}: must fit in a 64-bit integer, got {shown(value)}")
    return value


def resolve_config(config: dict) -> dict:
    """Defaults < the arch's report setting < ``config``; every value checked. Returns a new flat dict."""
    from trainables.models import NORMS, resolve_arch
    from trainables.plugins import PluginError

    for key, value in config.items():
        validate_value(key, value)
    arch = validate_value("arch", config.get("arch", FIELDS["arch"][1]))
    net = config.get("net")  # a user's net as a trial config records it; or the arch itself is a reference
    try:
        spec = resolve_arch(net or arch, sha256=config.get("net_sha256"), name=arch if net else None)
    except PluginError:
        raise
    except ValueError as e:
        raise ConfigError(f"arch: {e}") from None
    arch = spec.name
    out = {k: FIELDS[k][1] for k in FIELDS}
    for key, value in spec.defaults.items():
        if key in FIELDS:
            out[key] = validate_value(key, value)
    for key, value in config.items():
        if value is not None or key in ("data_dir",):
            out[key] = validate_value(key, value)
    out["arch"] = arch
    if spec.source:
        out["net"], out["net_sha256"] = spec.source["resolved"], spec.source["sha256"]
    if out["norm"] not in NORMS:
        raise ConfigError(f"norm: must be one of {', '.join(NORMS)}, got {out['norm']!r}")
    accepted = spec.options
    for key in (*ARCH_KWARGS, "dropout", "norm"):  # a user's net may have neither (its default is not passed)
        if config.get(key) is not None and key not in accepted and out[key] != spec.defaults.get(key):
            raise ConfigError(f"{key}: arch {arch!r} has no such option (value {config[key]!r})")
    shape = {k: out[k] for k in SHAPE_KWARGS if out[k] is not None}
    if shape or out["image_size"]:
        check_buildable(arch, out, shape)
    return out


def check_buildable(arch: str, cfg: dict, shape: dict) -> None:
    """Build ``arch`` with the ``shape`` knobs on the meta device (no memory, no compute); ConfigError if it
    cannot be built for the config's dataset (e.g. too many valid-padded blocks for the image)."""
    import torch

    from trainables.models import create_model

    channels, side = (1, 28) if cfg["dataset"] in ("fashion_mnist", "mnist", "kmnist") else (3, 32)
    side = cfg.get("image_size") or side  # other datasets' shapes are checked when the net is built for them
    try:
        with torch.device("meta"):
            create_model(arch, in_channels=channels, image_size=side, dropout=cfg["dropout"], norm=cfg["norm"],
                         **shape)
    except (ValueError, RuntimeError) as e:
        knobs = ", ".join(f"{k}={v!r}" for k, v in {**shape, "image_size": cfg.get("image_size")}.items()
                          if v is not None)
        raise ConfigError(f"{knobs}: arch {arch!r} cannot be built with these values: {e}") from None


def parse_assignments(items: list[str]) -> dict:
    """``["lr=0.01", "augment=false"]`` -> ``{"lr": 0.01, "augment": False}``, each key and value validated."""
    out = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        out[key] = validate_value(key, None if raw.strip().lower() in ("none", "null") else raw.strip())
    return out
