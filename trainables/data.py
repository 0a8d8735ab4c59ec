"""Data: sources -> one cached uint8 array file -> batches that live on the trial's device.

Every source ends in the same in-memory form, a :class:`Dataset`: uint8 images ``N x H x W x C``, int64 labels and
class names, for the official train and test splits. Sources:

* torchvision CIFAR-10 / CIFAR-100 / MNIST / Fashion-MNIST / KMNIST / SVHN files in ``data_dir``, in torchvision's own
  layouts (downloaded through torchvision when absent and ``download=True``);
* an image-folder tree ``train/<class>/*`` + ``test/<class>/*``, or a ``.tar.gz`` of one;
* (Fashion-)MNIST raw idx files (``train-images-idx3-ubyte[.gz]`` ...), e.g. Debian's
  ``/usr/share/datasets/fashion-mnist``;
* a dataset class of the user's own, ``dataset="path/to/data.py:MyData"`` or ``"pkg.module:attr"`` or the name of a
  ``cifar_tune.datasets`` entry point (:mod:`trainables.user_data`, docs/data.md).

Decoding happens once: the arrays are cached in a single ``.npz`` keyed by the sha256 of the source files. The zip
container's CRC-32 catches a corrupt or truncated cache, which is then rebuilt.

The validation split is carved from the training set (stratified, fixed seed); the test split is only handed out by
:meth:`Dataset.split` ``("test")``, which evaluation calls and search never does.

:class:`DeviceBatches` resizes (config ``image_size``: shorter side, then the centre square) and augments (config
``augment``: see :mod:`trainables.augment`) each batch on the device, the same way for the train, val and test splits.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from trainables.augment import AUGMENT_POLICIES, augment_steps, policy, resize_center
from trainables.config import DATASETS
from trainables.experiment import write_json

DEFAULT_VAL_SIZE = 5000
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp")
CACHE_FORMAT = 1  # bump when the cache layout changes

LAYOUTS = """accepted data layouts for --data-dir:
  1. torchvision CIFAR-10: DIR/cifar-10-batches-py/ or DIR/cifar-10-python.tar.gz (downloaded when online);
     CIFAR-100 (dataset cifar100): DIR/cifar-100-python/ or DIR/cifar-100-python.tar.gz
  2. an image-folder tree DIR/train/<class>/*.jpg + DIR/test/<class>/*.jpg, or a .tar.gz holding one
     (e.g. the offline copy cifar10-jpeg.tar.gz; DIR may be the archive itself or a folder holding only it)
  3. (Fashion-/K)MNIST raw files DIR/train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz],
     t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz], or torchvision's DIR/MNIST/raw/, DIR/FashionMNIST/raw/,
     DIR/KMNIST/raw/ (Debian: /usr/share/datasets/fashion-mnist)
  4. SVHN (dataset svhn): DIR/train_32x32.mat + DIR/test_32x32.mat, as torchvision downloads them
  5. a dataset class of your own: --dataset path/to/data.py:MyData or pkg.module:attr (see docs/data.md)"""


class DataError(RuntimeError):
    """No usable data: the message names what was looked for and the accepted layouts."""


# Hooks for tests that must prove a code path never reads the test split (see tests/test_data.py).
_split_access_log: list[str] = []


@dataclass
class Dataset:
    name: str
    source: str
    checksum: str
    classes: list[str]
    train_x: np.ndarray  # uint8 N x H x W x C
    train_y: np.ndarray  # int64 N
    test_x: np.ndarray
    test_y: np.ndarray
    cache_path: str = ""
    _stats: tuple | None = field(default=None, repr=False, compare=False)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # H, W, C

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def input_shape(self, image_size: int | None = None) -> tuple[int, int, int]:
        """(C, H, W) the net sees: the stored images, or ``image_size`` squares (config ``image_size``)."""
        h, w, c = self.shape
        if image_size:
            return c, int(image_size), int(image_size)
        if h != w:  # the registry's dense heads are sized for squares
            raise DataError(f"{self.name}: images are {h}x{w}, not square; set image_size (e.g. --set image_size="
                            f"{min(h, w)}: shorter side resized to it, then the centre square cut)")
        return c, h, w

    def split_indices(self, val_size: int = DEFAULT_VAL_SIZE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Stratified train/val indices into the official training set; the same for the same (val_size, seed)."""
        from sklearn.model_selection import train_test_split

        n = len(self.train_y)
        if val_size == 0:
            return np.random.default_rng(seed).permutation(n), np.arange(0)
        if not 0 < val_size < n:
            raise DataError(f"val_size {val_size!r} does not fit the data: {self.source} has {n:,} training images "
                            f"(val_size must be in [0, {n:,}); set a smaller one, e.g. --set val_size={n // 5})")
        try:
            train_idx, val_idx = train_test_split(np.arange(n), test_size=val_size, random_state=seed,
                                                  stratify=self.train_y)
        except ValueError as e:  # a class with one image, or fewer validation images than classes
            raise DataError(f"val_size {val_size!r}: cannot split {n:,} images of {self.num_classes} classes "
                            f"stratified ({e})") from None
        # Training indices stay in train_test_split's seeded random order, so "the first N" (config ``subset``) is a
        # random sample of every class rather than the first class of a class-sorted source.
        return train_idx, np.sort(val_idx)

    def split_index(self, which: str, val_size: int = DEFAULT_VAL_SIZE,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(images, labels, index) of ``train`` (minus validation), ``val``, ``trainval`` or ``test``, without
        copying: the split is ``images[index]``. Trials use this to share one read-only copy of the arrays."""
        _split_access_log.append(which)
        if which == "test":
            return self.test_x, self.test_y, np.arange(len(self.test_y))
        if which == "trainval":
            return self.train_x, self.train_y, np.arange(len(self.train_y))
        if which not in ("train", "val"):
            raise ValueError(f"unknown split {which!r}; known: train, val, trainval, test")
        train_idx, val_idx = self.split_indices(val_size, seed)
        return self.train_x, self.train_y, train_idx if which == "train" else val_idx

    def split(self, which: str, val_size: int = DEFAULT_VAL_SIZE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Images and labels of ``train`` (minus validation), ``val``, ``trainval`` or ``test`` (copies)."""
        x, y, idx = self.split_index(which, val_size, seed)
        return x[idx], y[idx]

    def channel_stats(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of the training images, in [0, 1] units. Kept beside the array cache (keyed
        by the source's checksum): the pass over the images costs about 1.3 s for CIFAR-10 on a 2-core CPU, which
        every search and every evaluation would otherwise pay again."""
        kept = Path(self.cache_path).with_suffix(".stats.json") if self.cache_path else None
        if self._stats is None and kept is not None:
            try:
                saved = json.loads(kept.read_text())
                if saved.get("checksum") == self.checksum and saved.get("train") == len(self.train_y):
                    self._stats = (saved["mean"], saved["std"])
            except (OSError, ValueError, KeyError, AttributeError):
                pass  # none kept yet, or unreadable: computed below (and kept again)
        if self._stats is None:
            # A 256-bin histogram per channel gives exact moments without a float copy of the images.
            levels = np.arange(256, dtype=np.float64) / 255.0
            mean, std = [], []
            for c in range(self.train_x.shape[-1]):
                hist = np.bincount(self.train_x[..., c].ravel(), minlength=256).astype(np.float64)
                m = float((hist * levels).sum() / hist.sum())
                mean.append(m)
                std.append(float(np.sqrt((hist * (levels - m) ** 2).sum() / hist.sum())))
            self._stats = (mean, std)
            if kept is not None:
                try:
                    write_json(kept, {"checksum": self.checksum, "train": len(self.train_y), "mean": mean, "std": std})
                except OSError:
                    pass  # a read-only cache: the stats are computed again next time
        return self._stats

    def summary(self, val_size: int = DEFAULT_VAL_SIZE) -> dict:
        train_idx, val_idx = self.split_indices(val_size)
        counts = np.bincount(self.train_y, minlength=self.num_classes)
        test_counts = np.bincount(self.test_y, minlength=self.num_classes)
        return {"name": self.name, "source": self.source, "checksum": self.checksum, "cache": self.cache_path,
                "image_shape": list(self.shape), "classes": self.classes,
                "train": int(len(train_idx)), "val": int(len(val_idx)), "test": int(len(self.test_y)),
                "class_counts": {"trainval": dict(zip(self.classes, counts.tolist())),
                                 "test": dict(zip(self.classes, test_counts.tolist()))}}


# --------------------------------------------------------------------------------------------- locating a source

def default_data_dir() -> Path:
    return Path(os.environ.get("CIFAR_TUNE_DATA_DIR", Path.home() / ".cache" / "cifar-tune" / "data"))


def default_cache_dir() -> Path:
    return Path(os.environ.get("CIFAR_TUNE_CACHE_DIR", Path.home() / ".cache" / "cifar-tune" / "arrays"))


def _find(d: Path, *names: str) -> Path | None:
    for name in names:
        if (d / name).exists():
            return d / name
    return None


def _idx_files(d: Path) -> dict[str, Path] | None:
    stems = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
             "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}
    files = {k: _find(d, s, s + ".gz") for k, s in stems.items()}
    return files if all(files.values()) else None


FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]
# The idx-file family: dataset -> (kind, torchvision's folder under the root, torchvision class, class names).
IDX_DATASETS = {
    "fashion_mnist": ("fashion_idx", "FashionMNIST", "FashionMNIST", FASHION_CLASSES),
    "mnist": ("mnist_idx", "MNIST", "MNIST", ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five",
                                              "6 - six", "7 - seven", "8 - eight", "9 - nine"]),
    "kmnist": ("kmnist_idx", "KMNIST", "KMNIST", ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]),
}
SVHN_FILES = ("train_32x32.mat", "test_32x32.mat")  # torchvision's names; "extra_32x32.mat" is not used


def locate(data_dir: str | os.PathLike | None, dataset: str = "cifar10") -> tuple[str, list[Path]]:
    """Work out which source ``data_dir`` holds: returns (kind, files). Raises DataError when none fits."""
    d = Path(data_dir) if data_dir is not None else default_data_dir()
    if d.is_file() and d.name.endswith((".tar.gz", ".tgz", ".tar")):
        return "folder_archive", [d]
    if d.is_dir():
        if (d / "train").is_dir() and (d / "test").is_dir():
            return "folder", [d]
        if (d / "train").is_dir() != (d / "test").is_dir():
            have, lack = ("train", "test") if (d / "train").is_dir() else ("test", "train")
            raise DataError(f"{str(d)!r} has a {have}/ folder but no {lack}/ folder: an image-folder tree needs both "
                            f"train/<class>/* and test/<class>/*")
        if dataset == "cifar10" and _find(d, "cifar-10-batches-py", "cifar-10-python.tar.gz"):
            return "torchvision_cifar10", sorted(p for p in [d / "cifar-10-batches-py", d / "cifar-10-python.tar.gz"]
                                                 if p.exists())
        if dataset == "cifar100" and _find(d, "cifar-100-python", "cifar-100-python.tar.gz"):
            return "torchvision_cifar100", sorted(p for p in [d / "cifar-100-python", d / "cifar-100-python.tar.gz"]
                                                  if p.exists())
        if dataset == "svhn" and all((d / f).is_file() for f in SVHN_FILES):
            return "svhn_mat", [d / f for f in SVHN_FILES]
        # Bare idx files are read as the dataset asked for (Fashion-MNIST unless mnist/kmnist: Debian's copy is
        # found without --dataset); torchvision's own layout names the dataset by its folder.
        kind, folder = IDX_DATASETS.get(dataset, IDX_DATASETS["fashion_mnist"])[:2]
        idx = _idx_files(d) or _idx_files(d / folder / "raw")
        if idx:
            return kind, [idx[k] for k in ("train_x", "train_y", "test_x", "test_y")]
        archives = [p for p in d.iterdir() if p.name.endswith((".tar.gz", ".tgz"))
                    and not p.name.startswith(("cifar-10-python", "cifar-100-python"))]
        if len(archives) == 1:
            return "folder_archive", archives
    raise DataError(f"no dataset found in {str(d)!r} (dataset={dataset!r})\n{LAYOUTS}")


# --------------------------------------------------------------------------------------------- decoding sources

def _decode_image(data: bytes, where: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            arr = np.asarray(im.convert("L" if im.mode in ("L", "1", "I;16") else "RGB"))
    except Exception as e:  # PIL raises many types for a broken file
        raise DataError(f"cannot decode image {where!r}: {e}") from e
    return arr[..., None] if arr.ndim == 2 else arr


def _stack(images: list[np.ndarray], labels: list[int], where: str) -> tuple[np.ndarray, np.ndarray]:
    if not images:
        raise DataError(f"no images found under {where!r}\n{LAYOUTS}")
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise DataError(f"images under {where!r} differ in size {sorted(shapes)[:4]}; resize them to one size first")
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def _read_folder_entries(entries, where: str) -> dict:
    """entries: iterable of (split, class, name, bytes-getter). Classes sorted alphabetically, as ImageFolder does."""
    by_split: dict[str, list] = {"train": [], "test": []}
    for split, cls, name, get in entries:
        if split in by_split and name.lower().endswith(IMAGE_SUFFIXES):
            by_split[split].append((cls, name, get))
    classes = sorted({cls for cls, _, _ in by_split["train"]})
    missing = sorted({cls for cls, _, _ in by_split["test"]} - set(classes))
    if missing:
        raise DataError(f"test classes {missing} of {where!r} have no training images")
    index = {c: i for i, c in enumerate(classes)}
    out = {"classes": classes}
    for split, items in by_split.items():
        items.sort(key=lambda t: (t[0], t[1]))
        images = [_decode_image(get(), f"{where}:{split}/{cls}/{name}") for cls, name, get in items]
        out[f"{split}_x"], out[f"{split}_y"] = _stack(images, [index[c] for c, _, _ in items], f"{where}/{split}")
    return out


def _decode_folder(root: Path) -> dict:
    def entries():
        for split in ("train", "test"):
            for cls_dir in sorted(p for p in (root / split).iterdir() if p.is_dir()):
                for f in cls_dir.iterdir():
                    yield split, cls_dir.name, f.name, f.read_bytes
    return _read_folder_entries(entries(), str(root))


def _decode_folder_archive(path: Path) -> dict:
    try:
        with tarfile.open(path) as tar:
            entries = []
            for m in tar:
                parts = Path(m.name).parts
                # Accept both train/<class>/x.jpg and <top>/train/<class>/x.jpg.
                if m.isfile() and len(parts) >= 3 and parts[-3] in ("train", "test"):
                    data = tar.extractfile(m).read()
                    entries.append((parts[-3], parts[-2], parts[-1], lambda data=data: data))
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise DataError(f"archive {str(path)!r} is truncated or corrupt: {e}") from e
    return _read_folder_entries(entries, str(path))


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"idx file {str(path)!r} is truncated or corrupt: {e}") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{str(path)!r} is not an unsigned-byte idx file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"idx file {str(path)!r} holds {body.size} bytes, expected {int(np.prod(dims))} for {dims}")
    return body.reshape(dims)


def _decode_idx(files: list[Path], classes: list[str]) -> dict:
    tx, ty, vx, vy = (_read_idx(p) for p in files)
    for x, y, path in ((tx, ty, files[0]), (vx, vy, files[2])):
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"idx files {str(path)!r}: images {list(x.shape)} and labels {list(y.shape)} do not match "
                            f"(expected N x H x W images and N labels)")
    return {"classes": classes, "train_x": tx[..., None], "train_y": ty.astype(np.int64),
            "test_x": vx[..., None], "test_y": vy.astype(np.int64)}


def _decode_fashion(files: list[Path]) -> dict:
    return _decode_idx(files, FASHION_CLASSES)


def _decode_svhn(files: list[Path]) -> dict:
    """torchvision's SVHN .mat files: X is H x W x C x N, y is N x 1 with 10 standing for the digit 0."""
    import scipy.io

    out: dict = {"classes": [str(i) for i in range(10)]}
    for split, path in zip(("train", "test"), files):
        try:
            mat = scipy.io.loadmat(str(path))
            x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1)
        except Exception as e:  # scipy raises ValueError, OSError, KeyError... for a broken file
            raise DataError(f"SVHN file {str(path)!r} is truncated or corrupt: {type(e).__name__}: {e}") from e
        if x.ndim != 4 or x.shape[2] != 3 or x.shape[3] != len(y):
            raise DataError(f"SVHN file {str(path)!r}: X {list(x.shape)} and y {len(y)} do not match "
                            f"(expected X of 32 x 32 x 3 x N and N labels)")
        y = y.astype(np.int64)
        y[y == 10] = 0
        out[f"{split}_x"] = np.ascontiguousarray(x.transpose(3, 0, 1, 2).astype(np.uint8))
        out[f"{split}_y"] = y
    return out


# The official python-pickle layouts, read here rather than through torchvision.datasets: torchvision checks the
# files against the md5 sums of the official release, which would reject any re-packed or test-made copy.
_CIFAR = {
    "torchvision_cifar10": {"folder": "cifar-10-batches-py", "archive": "cifar-10-python.tar.gz",
                            "train": [f"data_batch_{i}" for i in range(1, 6)],
                            "test": ["test_batch"], "meta": "batches.meta", "names": b"label_names",
                            "labels": b"labels"},
    "torchvision_cifar100": {"folder": "cifar-100-python", "archive": "cifar-100-python.tar.gz",
                             "train": ["train"], "test": ["test"], "meta": "meta",
                             "names": b"fine_label_names", "labels": b"fine_labels"},
}


def _decode_cifar(root: Path, kind: str) -> dict:
    import pickle

    layout = _CIFAR[kind]
    folder = root / layout["folder"]
    archive = root / layout["archive"]
    blobs: dict[str, bytes] = {}
    try:
        if folder.is_dir():
            for name in layout["train"] + layout["test"] + [layout["meta"]]:
                blobs[name] = (folder / name).read_bytes()
        else:
            with tarfile.open(archive) as tar:
                for m in tar:
                    if m.isfile() and Path(m.name).name in layout["train"] + layout["test"] + [layout["meta"]]:
                        blobs[Path(m.name).name] = tar.extractfile(m).read()
        decoded = {k: pickle.loads(v, encoding="bytes") for k, v in blobs.items()}
    except (OSError, EOFError, tarfile.TarError, zlib.error, pickle.UnpicklingError, ValueError) as e:
        raise DataError(f"{kind[len('torchvision_'):]} files in {str(root)!r} are missing, truncated or corrupt: {e}")
    missing = [n for n in layout["train"] + layout["test"] + [layout["meta"]] if n not in decoded]
    if missing:
        raise DataError(f"{kind[len('torchvision_'):]} files in {str(root)!r} lack {missing}\n{LAYOUTS}")

    def stack(names):
        x = np.concatenate([np.asarray(decoded[n][b"data"], dtype=np.uint8) for n in names])
        y = np.concatenate([np.asarray(decoded[n][layout["labels"]], dtype=np.int64) for n in names])
        return x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), y

    out = {"classes": [c.decode() for c in decoded[layout["meta"]][layout["names"]]]}
    out["train_x"], out["train_y"] = stack(layout["train"])
    out["test_x"], out["test_y"] = stack(layout["test"])
    return out


def _download(root: Path, dataset: str) -> None:
    """Fetch the official files through torchvision (it verifies their md5)."""
    import torchvision

    tv = torchvision.datasets
    cls = {"cifar10": tv.CIFAR10, "cifar100": tv.CIFAR100, "svhn": tv.SVHN,
           **{name: getattr(tv, spec[2]) for name, spec in IDX_DATASETS.items()}}[dataset]
    try:
        root.mkdir(parents=True, exist_ok=True)
        for split in (("train", "test") if dataset == "svhn" else (True, False)):
            cls(str(root), **({"split": split} if dataset == "svhn" else {"train": split}), download=True)
    except Exception as e:  # URLError offline, RuntimeError on a bad checksum
        raise DataError(f"no {dataset} data in {str(root)!r} and the download through torchvision failed: {e}\n"
                        f"{LAYOUTS}") from e


# --------------------------------------------------------------------------------------------- checksums and cache

def _files_of(paths: list[Path]) -> list[Path]:
    out = []
    for p in paths:
        out.extend(sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p])
    return out


def source_checksum(paths: list[Path]) -> str:
    """sha256 over the source files' relative names and bytes.

    Hashing ~180 MB takes a few tenths of a second, so the digest is memoised per file (size, mtime) in a sidecar
    under the cache dir; any change to a file's size or mtime forces a re-hash.
    """
    memo_path = default_cache_dir() / "checksums.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    h = hashlib.sha256()
    changed = False
    for f in _files_of(paths):
        st = f.stat()
        key = f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        digest = memo.get(key)
        if digest is None:
            fh = hashlib.sha256()
            with open(f, "rb") as fp:
                for chunk in iter(lambda: fp.read(1 << 20), b""):
                    fh.update(chunk)
            digest = memo[key] = fh.hexdigest()
            changed = True
        h.update(f.name.encode() + b"\0" + digest.encode())
    if changed:
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        write_json(memo_path, memo, indent=None)
    return h.hexdigest()


def _load_cache(path: Path) -> dict | None:
    """The cached arrays, or None when the file is missing, truncated or fails its CRC."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {k: z[k] for k in ("train_x", "train_y", "test_x", "test_y", "classes", "format")}
        if int(out.pop("format")) != CACHE_FORMAT:
            return None
        out["classes"] = [str(c) for c in out["classes"]]
        return out
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error):
        return None


def _write_cache(path: Path, arrays: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:  # atomic: readers see the old file or the whole new one, never half of it
        np.savez(f, format=np.int64(CACHE_FORMAT), classes=np.asarray(arrays["classes"]),
                 **{k: arrays[k] for k in ("train_x", "train_y", "test_x", "test_y")})
    os.replace(tmp, path)


def load_dataset(data_dir: str | os.PathLike | None = None, dataset: str = "cifar10", download: bool = True,
                 cache_dir: str | os.PathLike | None = None, any_name: bool = False) -> Dataset:
    """Find, decode (once) and return the dataset in ``data_dir``; see the module docstring for the layouts.

    ``dataset`` is a built-in name (``DATASETS``), or a dataset of the user's own: ``path/to/data.py:Name``,
    ``pkg.module:attr`` or a ``cifar_tune.datasets`` entry-point name (:func:`load_user_dataset`).
    An image-folder tree (or its archive) is read as itself, so a built-in name other than cifar10 with one is a
    DataError (``cifar-tune ledger --dataset cifar100`` showed the folder's ledger, ``train`` trained on it labelled
    cifar100); ``any_name``: read it whatever the name (evaluate, for an experiment recorded so before this check).
    """
    if dataset not in DATASETS:
        from trainables.user_data import load_user_dataset

        return load_user_dataset(dataset, data_dir)
    d = Path(data_dir) if data_dir is not None else default_data_dir()
    if data_dir is not None and not d.exists():
        # Not created (and downloaded into) silently: a typo in --data-dir would download 170 MB beside it.
        raise DataError(f"data dir {str(d)!r} does not exist (to download {dataset} there, create it first; "
                        f"without --data-dir it goes to {default_data_dir()})")
    try:
        kind, files = locate(d, dataset)
    except DataError:
        if not download or (d.exists() and d.is_file()):
            raise
        _download(d, dataset)
        kind, files = locate(d, dataset)
    if kind in ("folder", "folder_archive") and dataset != "cifar10" and not any_name:  # cifar10: its layout too
        raise DataError(f"--dataset {dataset}: {str(files[0])!r} is an image-folder tree, read as itself whatever "
                        f"--dataset names, not {dataset}'s files: leave --dataset out for it, or give --data-dir "
                        f"the folder with {dataset}'s files")
    checksum = source_checksum(files)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache_path = cache / f"{kind}-{checksum[:20]}.npz"
    arrays = _load_cache(cache_path)
    idx_kinds = {spec[0]: (name, spec[3]) for name, spec in IDX_DATASETS.items()}
    if arrays is None:  # first load, or the cache is truncated/corrupt: decode the source again
        if kind == "folder":
            arrays = _decode_folder(files[0])
        elif kind == "folder_archive":
            arrays = _decode_folder_archive(files[0])
        elif kind == "fashion_idx":
            arrays = _decode_fashion(files)
        elif kind in idx_kinds:
            arrays = _decode_idx(files, idx_kinds[kind][1])
        elif kind == "svhn_mat":
            arrays = _decode_svhn(files)
        else:
            arrays = _decode_cifar(d, kind)
        _write_cache(cache_path, arrays)
    name = {"torchvision_cifar10": "cifar10", "torchvision_cifar100": "cifar100", "svhn_mat": "svhn",
            **{k: v[0] for k, v in idx_kinds.items()}}.get(
        kind, Path(str(files[0]).removesuffix(".tar.gz").removesuffix(".tgz")).name)
    return Dataset(name=name, source=f"{kind}:{files[0]}", checksum=checksum, cache_path=str(cache_path),
                   **{k: arrays[k] for k in ("classes", "train_x", "train_y", "test_x", "test_y")})


# --------------------------------------------------------------------------------------------- device batches

def as_shared_tensor(array) -> torch.Tensor:
    """A tensor sharing ``array``'s memory. Arrays from Ray's object store are read-only; we never write to them."""
    if isinstance(array, np.ndarray) and not array.flags.writeable:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(array)
    return torch.as_tensor(array)


class DeviceBatches:
    """Shuffled mini-batches from uint8 images that already sit on ``device``.

    Each batch is resized (``image_size``: shorter side, then the centre square; the same for every split), then
    augmented (``augment``, see :mod:`trainables.augment`: random crop with zero padding and horizontal flip on the
    whole batch, a torchvision policy per image) on the device, then scaled and normalised. No PIL, no worker
    processes. Iterating again reshuffles (seeded; the policies draw from torch's global RNG, seeded by the trial).
    """

    def __init__(self, images, labels, batch_size: int, device="cpu", *, index=None, shuffle: bool = False,
                 augment: bool | str = False, mean=(0.5,), std=(0.5,), pad: int | None = None, seed: int = 0,
                 drop_last: bool = False, channels_last: bool = False, dtype=torch.float32,
                 image_size: int | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        if image_size is not None and not (isinstance(image_size, int) and image_size >= 1):
            raise ValueError(f"image_size must be a positive int, got {image_size!r}")
        self.device = torch.device(device)
        self.images = as_shared_tensor(images).to(self.device)  # N H W C uint8; a no-op when already there
        labels = as_shared_tensor(labels).to(self.device, torch.int64)
        # ``index`` selects the split from shared arrays without copying them (see Dataset.split_index).
        self.index = None if index is None else torch.as_tensor(np.asarray(index), dtype=torch.int64).to(self.device)
        self.labels = labels if self.index is None else labels[self.index]
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 N x H x W x C, got {self.images.dtype} {tuple(self.images.shape)}")
        self.steps = augment_steps(augment)
        self.augment = bool(self.steps)
        self.image_size = image_size
        side = image_size or min(self.images.shape[1:3])
        # 4 pixels as on CIFAR (and 28-pixel Fashion-MNIST); an eighth of the side for larger inputs.
        self.pad = max(4, side // 8) if pad is None else pad
        self.policy = next((policy(p) for p in self.steps if p in AUGMENT_POLICIES), None)
        self.batch_size, self.shuffle = batch_size, shuffle
        self.drop_last, self.channels_last, self.dtype = drop_last, channels_last, dtype
        c = self.images.shape[-1]
        self.mean = torch.tensor(mean, dtype=dtype, device=self.device).expand(c).view(1, c, 1, 1) * 255
        self.std = torch.tensor(std, dtype=dtype, device=self.device).expand(c).view(1, c, 1, 1) * 255
        self.generator = torch.Generator(device=self.device).manual_seed(seed)

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _crop_flip(self, x: torch.Tensor) -> torch.Tensor:
        """x: B H W C uint8 -> randomly translated by up to ``pad`` pixels (zeros enter) and/or flipped."""
        b, h, w, _ = x.shape
        p = self.pad
        if p and "crop" in self.steps:
            padded = torch.nn.functional.pad(x, (0, 0, p, p, p, p))
            dy = torch.randint(0, 2 * p + 1, (b, 1), device=self.device, generator=self.generator)
            dx = torch.randint(0, 2 * p + 1, (b, 1), device=self.device, generator=self.generator)
            rows = (torch.arange(h, device=self.device) + dy)[:, :, None]
            cols = (torch.arange(w, device=self.device) + dx)[:, None, :]
            x = padded[torch.arange(b, device=self.device)[:, None, None], rows, cols]
        if "flip" in self.steps:
            flip = torch.rand(b, device=self.device, generator=self.generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(2), x)
        return x

    def __iter__(self):
        n = len(self.labels)
        order = (torch.randperm(n, device=self.device, generator=self.generator) if self.shuffle
                 else torch.arange(n, device=self.device))
        stop = n - n % self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            idx = order[start:start + self.batch_size]
            x = self.images[idx if self.index is None else self.index[idx]]
            if self.image_size:
                x = resize_center(x.permute(0, 3, 1, 2), self.image_size).permute(0, 2, 3, 1)
            if self.augment:
                x = self._crop_flip(x)
            # NHWC -> NCHW view: this is channels_last memory already; copy to contiguous NCHW unless asked not to.
            x = x.permute(0, 3, 1, 2)
            if self.policy is not None:  # one random op per image, as torchvision applies it per sample
                x = torch.stack([self.policy(im) for im in x])
            x = x.to(self.dtype)
            x = (x - self.mean) / self.std
            yield (x if self.channels_last else x.contiguous()), self.labels[idx]
