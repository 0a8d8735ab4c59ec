"""A dataset of the user's own: ``--dataset path/to/data.py:MyData``, ``pkg.module:attr`` or a ``cifar_tune.datasets``
entry point (the same plug-in rule as nets, trainables/plugins.py). The interface and the rules it meets are in
:func:`load_user_dataset` and docs/data.md.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import Counter

import numpy as np
import torch

from trainables.config import DATASETS
from trainables.data import DataError, Dataset

DATASET_GROUP = "cifar_tune.datasets"  # entry-point group through which installed packages offer datasets
USER_FIELDS = ("train_x", "train_y", "test_x", "test_y", "classes")


def resolve_user_dataset(ref: str):
    """The object ``ref`` names: ``path/to/file.py:Name``, ``pkg.module:attr`` or a ``cifar_tune.datasets``
    entry-point name. Raises DataError (one line; an error inside the user's module names its file:line)."""
    from trainables.plugins import PluginError, call, entry_points, load_object

    try:
        if ":" in ref:
            return load_object(ref, "dataset")
        points = entry_points(DATASET_GROUP)
        if ref in points:
            return call(points[ref].value, "dataset", f"loading entry point {ref!r}", points[ref].load)
    except PluginError as e:
        raise DataError(str(e)) from None
    raise DataError(f"unknown dataset {ref!r}; known: {', '.join(DATASETS + tuple(sorted(points)))}, or a class of "
                    f"your own as path/to/data.py:Name or pkg.module:attr")


def load_user_dataset(ref: str, data_dir: str | os.PathLike | None = None) -> Dataset:
    """A dataset of the user's own, validated and given a checksum of its contents (the test-split ledger's key).

    ``ref`` names a class or function (or a ready object). A callable is called with the data dir (``root``, None
    when not given) if it takes an argument, else with none. What it returns (or the object itself) must have, as
    attributes or mapping keys: ``train_x``, ``test_x`` (uint8 images N x H x W x C with C 1 or 3, or N x H x W),
    ``train_y``, ``test_y`` (integer labels in [0, len(classes))) and ``classes`` (class names); ``name`` if it has
    one. The validation split is carved from ``train_*`` like any dataset's; ``test_*`` is only read by
    ``cifar-tune evaluate``, and each scoring of it goes into the ledger under the contents' checksum.
    """
    import inspect

    obj = resolve_user_dataset(ref)
    where = f"dataset {ref!r}"
    if callable(obj):
        try:
            takes_root = bool(inspect.signature(obj).parameters)
        except (TypeError, ValueError):  # a builtin without a signature
            takes_root = True
        obj = _call(ref, "calling it", obj, *([None if data_dir is None else str(data_dir)] if takes_root else []))
    missing = object()
    # A builtin reads each field (a lambda of ours would be the frame named), so a property's error names its line.
    read = dict.get if isinstance(obj, dict) else getattr
    fields = {k: _call(ref, f"reading its {k}", read, obj, k, missing) for k in USER_FIELDS}
    absent = [k for k, v in fields.items() if v is missing]
    if absent:
        got = "None" if obj is None else f"a {type(obj).__name__} object"
        raise DataError(f"{where} gives {got} without {', '.join(absent)} (a dataset has {', '.join(USER_FIELDS)} "
                        f"as attributes or mapping keys; see docs/data.md)")
    classes = fields["classes"]
    if isinstance(classes, (str, bytes, set, frozenset)) or not hasattr(classes, "__iter__"):
        raise DataError(f"{where}: classes must be a list of class names in label order, got "
                        f"{type(classes).__name__} {classes!r:.60}")
    classes = [str(c) for c in _call(ref, "reading its classes", list, classes)]
    if len(classes) < 2:
        raise DataError(f"{where}: classes must name at least 2 classes, got {classes!r:.60}")
    twice = [c for c, n in Counter(classes).items() if n > 1]
    if twice:
        raise DataError(f"{where}: classes names {', '.join(map(repr, twice[:5]))} more than once")
    arrays = {}
    for split in ("train", "test"):
        x, y = (_as_numpy(ref, f"{split}_{k}", fields[f"{split}_{k}"]) for k in "xy")
        if x.dtype != np.uint8:
            raise DataError(f"{where}: {split}_x is {x.dtype}, expected uint8 pixels 0-255 (e.g. "
                            f"(x * 255).round().astype(np.uint8) for floats in [0, 1])")
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4 or x.shape[-1] not in (1, 3) or min(x.shape[:3]) < 1:
            raise DataError(f"{where}: {split}_x has shape {list(x.shape)}, expected N x H x W x C with N, H, W >= 1 "
                            f"and C 1 or 3 (channels last)")
        if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{where}: {split}_y must be {len(x)} integer labels, got {y.dtype} {list(y.shape)}")
        if y.min() < 0 or y.max() >= len(classes):
            raise DataError(f"{where}: {split}_y holds label {int(y.min() if y.min() < 0 else y.max())}, outside "
                            f"[0, {len(classes)}) for {len(classes)} classes")
        arrays[f"{split}_x"], arrays[f"{split}_y"] = np.ascontiguousarray(x), y.astype(np.int64)
    if arrays["train_x"].shape[1:] != arrays["test_x"].shape[1:]:
        raise DataError(f"{where}: train images are {list(arrays['train_x'].shape[1:])} but test images "
                        f"{list(arrays['test_x'].shape[1:])}")
    if len(np.unique(arrays["train_y"])) < 2:
        raise DataError(f"{where}: train_y holds only label {int(arrays['train_y'][0])}; a classifier needs images of "
                        f"at least 2 classes")
    name = _call(ref, "reading its name", read, obj, "name", None)
    name = name if isinstance(name, str) and name else ref.rpartition(":")[2] or ref
    return Dataset(name=name, source=f"plugin:{ref}", checksum=array_checksum(classes, arrays), classes=classes,
                   **arrays)


def _call(ref: str, doing: str, fn, *args):
    """plugins.call for the user's dataset: an exception in its code is one DataError line naming ``ref``."""
    from trainables.plugins import PluginError, call

    try:
        return call(ref, "dataset", doing, fn, *args)
    except PluginError as e:
        raise DataError(str(e)) from None


def _as_numpy(ref: str, key: str, a) -> np.ndarray:
    """``a`` as an array (a ragged list or a bfloat16 tensor is one line naming ``key``)."""
    return _call(ref, f"making an array of its {key}", np.asarray, a.detach().cpu() if isinstance(a, torch.Tensor)
                 else a)


def array_checksum(classes: list[str], arrays: dict) -> str:
    """sha256 of a dataset's contents (class names, then each split's dtype, shape and bytes): the same data gives
    the same digest wherever and however it was made, so the test-split ledger counts its uses across runs."""
    h = hashlib.sha256(json.dumps(classes).encode())
    for key in ("train_x", "train_y", "test_x", "test_y"):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"\0{key}|{a.dtype.str}|{list(a.shape)}\0".encode())
        h.update(a)
    return h.hexdigest()
