"""Shared fixtures: the real offline CIFAR-10 copy (decoded once per session) and small generated datasets."""
from __future__ import annotations

import gzip
import os
import pickle
import tempfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
CIFAR_ARCHIVE = Path(os.environ.get("CIFAR_TUNE_TEST_DATA", REPO.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"))

# One array cache for the whole session (subprocesses inherit it); keep a caller's own cache dir if set.
os.environ.setdefault("CIFAR_TUNE_CACHE_DIR", tempfile.mkdtemp(prefix="cifar-tune-cache-"))
# Tests must never reach for the network: no default data dir that could trigger a download.
os.environ.setdefault("CIFAR_TUNE_DATA_DIR", tempfile.mkdtemp(prefix="cifar-tune-nodata-"))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def _cifar_loaded() -> list:
    """[the dataset], decoded into the session's array cache once for both xdist workers: they inherit the
    controller's CIFAR_TUNE_CACHE_DIR; the first here decodes while the other waits, then reads the cache. Every
    test given ``cifar_path`` finds the cache built, so two searches started at once in subprocesses do not both
    decode the JPEGs."""
    if not CIFAR_ARCHIVE.exists():
        msg = f"offline CIFAR-10 copy not found at {CIFAR_ARCHIVE} (set CIFAR_TUNE_TEST_DATA)"
        if os.environ.get("CI"):
            pytest.fail(msg)  # CI has shared/ beside the clone: a missing copy is a broken set-up, not a skip
        pytest.skip(msg)
    import fcntl

    from trainables.data import default_cache_dir, load_dataset

    cache = default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".tests-decode.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return [load_dataset(CIFAR_ARCHIVE, download=False)]


@pytest.fixture(scope="session")
def cifar_path(_cifar_loaded) -> Path:
    return CIFAR_ARCHIVE


@pytest.fixture(scope="session")
def cifar(_cifar_loaded):
    return _cifar_loaded[0]


def make_cifar_pickles(root: Path, n_train_per_batch: int = 20, n_test: int = 20, seed: int = 0) -> Path:
    """A tiny copy of the official cifar-10-batches-py layout (same pickle keys, random pixels)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, n in [(f"data_batch_{i}", n_train_per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        blob = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                b"labels": [int(v) for v in rng.integers(0, 10, n)]}
        (folder / name).write_bytes(pickle.dumps(blob))
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}))
    return root


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


def make_fashion_idx(root: Path, n_train: int = 30, n_test: int = 10, compress: bool = True, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    write_idx(root / f"train-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n_train, 28, 28)), compress)
    write_idx(root / f"train-labels-idx1-ubyte{suffix}", np.arange(n_train) % 10, compress)
    write_idx(root / f"t10k-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n_test, 28, 28)), compress)
    write_idx(root / f"t10k-labels-idx1-ubyte{suffix}", np.arange(n_test) % 10, compress)
    return root


def make_image_folder(root: Path, classes=("cat", "dog", "frog"), per_class: int = 4, size: int = 8) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")
    return root


# --------------------------------------------------------------------------------------------- order of the files
# The suite runs as `pytest -n 2 --dist loadfile`: whole files go to the two workers, by default the files with the
# most tests first. That puts files of few but long tests (real searches, minutes each) last, where one of them can
# keep a worker busy alone while the other idles. Longest first instead: a file not listed here (it may run
# searches) at once, then the slow ones, longest first (by what each takes on a quiet 2-core machine), then the
# quick ones, so that whatever runs last is short. Only the order changes: a file still runs whole on one worker.
SLOWEST_FIRST = ("test_faults.py", "test_benchmarks.py", "test_analysis.py", "test_reproduce.py",
                 "test_size_search.py", "test_where_it_lies.py", "test_cluster.py", "test_interrupts.py",
                 "test_search.py", "test_trackers.py", "test_train.py", "test_shared_data.py")
QUICK = ("test_models.py", "test_cli.py", "test_inputs.py", "test_data.py", "test_ledger.py", "test_user_data.py",
         "test_user_net.py", "test_dependencies.py", "test_docs.py", "test_spaces.py", "test_private_api.py",
         "test_moasha.py", "test_objectives.py", "test_presets.py", "test_checkpoints.py", "test_history.py",
         "test_layering.py")


def pytest_configure(config):
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist: keep the order below, not most tests first
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        name = item.path.name
        if name in SLOWEST_FIRST:
            return 1 + SLOWEST_FIRST.index(name)
        return 1 + len(SLOWEST_FIRST) + QUICK.index(name) if name in QUICK else 0

    items.sort(key=rank)  # stable: each file's tests keep their order


def stub_experiment(tmp_path, monkeypatch, fixed: dict | None = None) -> Path:
    """An experiment that loads without Ray: spec.json whole (``fixed``: its spec's fixed config, e.g. a data_dir),
    its Optuna study readable, the trials (Tune's part) stubbed: one finished origin_net trial."""
    import json

    import optuna

    import analysis.load
    from trainables.experiment import sqlite_url

    trial = {"trial_id": "a", "arch": "origin_net", "config": {"arch": "origin_net", "lr": 0.01}, "status": "completed",
             "epochs": 1, "max_epochs": 1, "val_accuracy": 0.3, "val_loss": 2.0, "best_val_accuracy": 0.3,
             "best_epoch": 1, "best_val_loss": 2.0, "train_accuracy": 0.3, "train_loss": 2.0, "params": 48252,
             "size_mb": 0.19, "train_time_s": 1.0, "error": None, "path": None,
             "history": [{"epoch": 1, "train_loss": 2.0, "train_accuracy": 0.3, "val_loss": 2.0,
                          "val_accuracy": 0.3, "epoch_seconds": 1.0}]}
    monkeypatch.setattr(analysis.load, "load_trials", lambda exp_dir: [dict(trial)])
    exp = tmp_path / "exp"
    exp.mkdir()
    spec = {"archs": ["origin_net"], "name": "exp", **({"fixed": fixed} if fixed is not None else {})}
    (exp / "spec.json").write_text(json.dumps({"spec": spec}))
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # Optuna's "study created" line is not the command's
    try:
        optuna.create_study(study_name="exp-origin_net", storage=sqlite_url(exp))  # its study, readable
    finally:
        optuna.logging.set_verbosity(verbosity)
    return exp
