"""Data layer: every source, the cache (and its rebuild after corruption), splits, device batches."""
from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest
import torch

import trainables.data as data
from tests.conftest import make_cifar_pickles, make_fashion_idx, make_image_folder
from trainables.data import DataError, DeviceBatches, load_dataset


def test_offline_cifar_copy_is_complete(cifar):
    assert cifar.train_x.shape == (50000, 32, 32, 3) and cifar.train_x.dtype == np.uint8
    assert cifar.test_x.shape == (10000, 32, 32, 3)
    assert cifar.classes[:3] == ["airplane", "automobile", "bird"] and cifar.num_classes == 10
    assert np.bincount(cifar.train_y).tolist() == [5000] * 10
    assert np.bincount(cifar.test_y).tolist() == [1000] * 10


def test_second_load_comes_from_the_cache(cifar_path, cifar, monkeypatch):
    def no_decode(*a, **k):
        raise AssertionError("decoded again although the cache is valid")

    monkeypatch.setattr(data, "_decode_folder_archive", no_decode)
    again = load_dataset(cifar_path, download=False)
    assert again.cache_path == cifar.cache_path and again.checksum == cifar.checksum
    assert np.array_equal(again.train_y, cifar.train_y)


def test_folder_holding_one_archive_is_found(cifar_path, cifar):
    assert load_dataset(cifar_path.parent, download=False).checksum == cifar.checksum


def test_torchvision_cifar_pickles(tmp_path):
    root = make_cifar_pickles(tmp_path / "d")
    ds = load_dataset(root, download=False, cache_dir=tmp_path / "c")
    assert ds.name == "cifar10" and ds.train_x.shape == (100, 32, 32, 3) and ds.test_x.shape == (20, 32, 32, 3)
    assert ds.classes[-1] == "truck"
    # Pixel layout: the pickle stores planar RGB rows; pixel (0, 0) of image 0 is data[0], data[1024], data[2048].
    import pickle

    blob = pickle.loads((root / "cifar-10-batches-py" / "data_batch_1").read_bytes())
    assert ds.train_x[0, 0, 0].tolist() == [blob[b"data"][0][0], blob[b"data"][0][1024], blob[b"data"][0][2048]]


def test_torchvision_cifar_tarball(tmp_path):
    src = make_cifar_pickles(tmp_path / "src")
    (tmp_path / "d").mkdir()
    with tarfile.open(tmp_path / "d" / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    ds = load_dataset(tmp_path / "d", download=False, cache_dir=tmp_path / "c")
    assert ds.train_x.shape == (100, 32, 32, 3)


@pytest.mark.parametrize("compress", [True, False])
def test_fashion_mnist_idx(tmp_path, compress):
    root = make_fashion_idx(tmp_path / "fm", compress=compress)
    ds = load_dataset(root, dataset="fashion_mnist", download=False, cache_dir=tmp_path / "c")
    assert ds.name == "fashion_mnist" and ds.train_x.shape == (30, 28, 28, 1) and ds.test_y.tolist() == list(range(10))
    assert ds.classes[0] == "T-shirt/top"


def test_image_folder_tree_and_archive(tmp_path):
    root = make_image_folder(tmp_path / "tree")
    ds = load_dataset(root, download=False, cache_dir=tmp_path / "c")
    assert ds.classes == ["cat", "dog", "frog"] and ds.train_x.shape == (12, 8, 8, 3)
    with tarfile.open(tmp_path / "tree.tar.gz", "w:gz") as tar:
        tar.add(root, arcname="tree")  # a top-level folder inside the archive is accepted too
    packed = load_dataset(tmp_path / "tree.tar.gz", download=False, cache_dir=tmp_path / "c")
    assert np.array_equal(packed.train_x, ds.train_x) and np.array_equal(packed.test_y, ds.test_y)


def test_corrupt_cache_is_detected_and_rebuilt(tmp_path, monkeypatch):
    root = make_fashion_idx(tmp_path / "fm", n_train=2000)
    first = load_dataset(root, dataset="fashion_mnist", download=False, cache_dir=tmp_path / "c")
    path = first.cache_path
    calls = []
    real = data._decode_fashion
    monkeypatch.setattr(data, "_decode_fashion", lambda files: calls.append(1) or real(files))
    with open(path, "r+b") as f:  # flip one byte in the middle of the image array
        f.seek(800_000)
        b = f.read(1)
        f.seek(800_000)
        f.write(bytes([b[0] ^ 0xFF]))
    rebuilt = load_dataset(root, dataset="fashion_mnist", download=False, cache_dir=tmp_path / "c")
    assert calls == [1] and np.array_equal(rebuilt.train_x, first.train_x)
    with open(path, "r+b") as f:  # truncate
        f.truncate(1000)
    again = load_dataset(root, dataset="fashion_mnist", download=False, cache_dir=tmp_path / "c")
    assert calls == [1, 1] and np.array_equal(again.train_x, first.train_x)


def test_changed_source_gets_a_new_cache(tmp_path):
    root = make_fashion_idx(tmp_path / "fm", seed=0)
    a = load_dataset(root, dataset="fashion_mnist", download=False, cache_dir=tmp_path / "c")
    make_fashion_idx(tmp_path / "fm2", seed=1)
    for f in (tmp_path / "fm2").iterdir():
        f.replace(root / f.name)
    b = load_dataset(root, dataset="fashion_mnist", download=False, cache_dir=tmp_path / "c")
    assert a.checksum != b.checksum and not np.array_equal(a.train_x, b.train_x)


def test_no_data_offline_lists_the_layouts(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset(tmp_path, download=False, cache_dir=tmp_path / "c")
    assert str(tmp_path) in str(e.value) and "cifar-10-batches-py" in str(e.value) and "idx3-ubyte" in str(e.value)


def test_truncated_archive_is_a_clear_error(tmp_path, cifar_path):
    bad = tmp_path / "cut.tar.gz"
    bad.write_bytes(cifar_path.read_bytes()[:200_000])
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_dataset(bad, download=False, cache_dir=tmp_path / "c")


def test_validation_split_is_stratified_fixed_and_apart_from_test(cifar):
    train_idx, val_idx = cifar.split_indices(5000, seed=0)
    assert len(val_idx) == 5000 and len(train_idx) == 45000
    assert not set(train_idx) & set(val_idx)
    assert np.bincount(cifar.train_y[val_idx]).tolist() == [500] * 10
    again_train, again_val = cifar.split_indices(5000, seed=0)
    assert np.array_equal(again_val, val_idx) and np.array_equal(again_train, train_idx)
    # The first N training images (config "subset") cover every class, though the source is sorted by class.
    assert len(np.unique(cifar.train_y[train_idx[:500]])) == 10
    val_x, _ = cifar.split("val")
    # No validation image is a test image (the test split is the official one, disjoint by construction).
    test_bytes = {x.tobytes() for x in cifar.test_x[:2000]}
    assert not any(x.tobytes() in test_bytes for x in val_x[:2000])


def test_channel_stats_match_numpy(cifar):
    import dataclasses

    mean, std = dataclasses.replace(cifar, cache_path="", _stats=None).channel_stats()  # computed, not read back
    # The reference from exact integer moments per channel (sums of x and x^2 in int64), not a float copy of the
    # 150 million pixel values.
    x = cifar.train_x.reshape(-1, 3)
    n = len(x)
    ref_mean = x.sum(0, dtype=np.int64) / n / 255.0
    ref_var = np.einsum("ij,ij->j", x, x, dtype=np.int64) / n / 255.0**2 - ref_mean**2
    assert np.allclose(mean, ref_mean, atol=1e-9) and np.allclose(std, np.sqrt(ref_var), atol=1e-9)


def test_channel_stats_are_kept_beside_the_cache_for_the_same_images_only(tmp_path):
    root = make_cifar_pickles(tmp_path / "d")
    first = load_dataset(root, cache_dir=tmp_path / "cache")
    computed = first.channel_stats()
    (kept,) = (tmp_path / "cache").glob("*.stats.json")
    again = load_dataset(root, cache_dir=tmp_path / "cache")
    assert again.channel_stats() == computed  # read back (JSON floats round-trip exactly)
    record = json.loads(kept.read_text())
    kept.write_text(json.dumps({**record, "mean": [0.5] * 3}))  # what is kept is what a later load uses ...
    assert load_dataset(root, cache_dir=tmp_path / "cache").channel_stats()[0] == [0.5] * 3
    kept.write_text(json.dumps({**record, "mean": [0.5] * 3, "checksum": "other images"}))  # ... for its images only
    assert load_dataset(root, cache_dir=tmp_path / "cache").channel_stats() == computed
    kept.write_text("{ torn")
    assert load_dataset(root, cache_dir=tmp_path / "cache").channel_stats() == computed
    assert json.loads(kept.read_text())["mean"] == list(computed[0])  # and written whole again


def test_device_batches_cover_every_image_once_per_epoch():
    x = np.arange(10 * 4 * 4 * 3, dtype=np.uint8).reshape(10, 4, 4, 3)
    y = np.arange(10)
    batches = DeviceBatches(x, y, batch_size=3, shuffle=True, seed=1, mean=(0.0,), std=(1 / 255,))
    seen = torch.cat([yb for _, yb in batches])
    assert len(batches) == 4 and sorted(seen.tolist()) == list(range(10))
    xb, yb = next(iter(batches))
    assert xb.shape == (3, 3, 4, 4) and xb.dtype == torch.float32
    # mean 0, std 1/255: the normalised batch equals the raw pixels
    assert torch.equal(xb, torch.as_tensor(x[yb.numpy()]).permute(0, 3, 1, 2).float())


def test_crop_and_flip_are_translations_of_the_padded_image():
    rng = np.random.default_rng(0)
    x = rng.integers(1, 256, (64, 8, 8, 3), dtype=np.uint8)  # no zeros: padding is recognisable
    batches = DeviceBatches(x, np.zeros(64), batch_size=64, augment=True, pad=2, seed=0, mean=(0.0,), std=(1 / 255,))
    out = next(iter(batches))[0].permute(0, 2, 3, 1).numpy().astype(np.uint8)
    padded = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
    shifted = flipped = 0
    for i in range(64):
        windows = [padded[i, dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)]
        plain = any(np.array_equal(out[i], w) for w in windows)
        mirror = any(np.array_equal(out[i], w[:, ::-1]) for w in windows)
        assert plain or mirror, f"image {i} is not a crop of its padded original"
        shifted += not np.array_equal(out[i], x[i]) and not np.array_equal(out[i], x[i][:, ::-1])
        flipped += mirror and not plain
    assert shifted > 32 and 10 < flipped < 54  # random, not constant


def test_batches_are_normalised(cifar):
    mean, std = cifar.channel_stats()
    idx = np.random.default_rng(0).choice(len(cifar.train_y), 4096, replace=False)  # the source is class-sorted
    batches = DeviceBatches(cifar.train_x[idx], cifar.train_y[idx], 4096, mean=mean, std=std)
    xb, _ = next(iter(batches))
    assert abs(float(xb.mean())) < 0.1 and abs(float(xb.std()) - 1) < 0.1


# --------------------------------------------------------------------------------------------- more torchvision sets

@pytest.mark.parametrize("name,folder,first", [("mnist", "MNIST", "0 - zero"), ("kmnist", "KMNIST", "o")])
def test_mnist_family_in_torchvisions_layout(tmp_path, name, folder, first):
    root = tmp_path / "d"
    make_fashion_idx(root / folder / "raw", compress=False)  # where torchvision's download puts the idx files
    ds = load_dataset(root, dataset=name, download=False, cache_dir=tmp_path / "c")
    assert ds.name == name and ds.classes[0] == first and ds.train_x.shape == (30, 28, 28, 1)
    assert ds.source.startswith(f"{name}_idx:") and ds.test_y.tolist() == list(range(10))
    # Bare idx files are what --dataset says (Debian's Fashion-MNIST copy needs no --dataset).
    bare = make_fashion_idx(tmp_path / "bare")
    assert load_dataset(bare, dataset=name, download=False, cache_dir=tmp_path / "c").classes[0] == first
    assert load_dataset(bare, download=False, cache_dir=tmp_path / "c").name == "fashion_mnist"


def make_svhn(root, n_train=30, n_test=10, seed=0):
    """torchvision's SVHN files: X is 32 x 32 x 3 x N uint8, y is N x 1 with 10 standing for the digit 0."""
    import scipy.io

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    for name, n in (("train_32x32.mat", n_train), ("test_32x32.mat", n_test)):
        scipy.io.savemat(root / name, {"X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8),
                                       "y": (np.arange(n) % 10 + 1).reshape(-1, 1).astype(np.uint8)})
    return root


def test_svhn_mat_files(tmp_path):
    import scipy.io

    root = make_svhn(tmp_path / "svhn")
    ds = load_dataset(root, dataset="svhn", download=False, cache_dir=tmp_path / "c")
    assert ds.name == "svhn" and ds.classes == [str(d) for d in range(10)]
    assert ds.train_x.shape == (30, 32, 32, 3) and ds.test_x.shape == (10, 32, 32, 3)
    assert ds.train_y[:10].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]  # label 10 is the digit 0
    X = scipy.io.loadmat(root / "train_32x32.mat")["X"]
    assert ds.train_x[7, 3, 5].tolist() == X[3, 5, :, 7].tolist()  # pixel (3, 5) of image 7
    with pytest.raises(DataError, match="no dataset found"):  # not guessed from the files without --dataset svhn
        load_dataset(root, download=False, cache_dir=tmp_path / "c")
    (root / "test_32x32.mat").write_bytes(b"MATLAB 5.0 cut short")
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_dataset(root, dataset="svhn", download=False, cache_dir=tmp_path / "c2")


# --------------------------------------------------------------------------------------------- input size, augment

def test_image_size_resizes_the_shorter_side_then_cuts_the_centre_for_every_split():
    from torchvision.transforms import v2

    x = np.random.default_rng(0).integers(0, 256, (5, 20, 30, 3), dtype=np.uint8)
    batches = DeviceBatches(x, np.arange(5), batch_size=5, image_size=16, mean=(0.0,), std=(1 / 255,))
    xb, _ = next(iter(batches))
    assert xb.shape == (5, 3, 16, 16)
    ref = v2.Compose([v2.Resize(16, antialias=True), v2.CenterCrop(16)])(torch.as_tensor(x[2]).permute(2, 0, 1))
    assert torch.equal(xb[2].to(torch.uint8), ref)
    assert data.Dataset("d", "s", "c", ["a"], x, np.zeros(5), x, np.zeros(5)).input_shape(16) == (3, 16, 16)
    with pytest.raises(DataError, match="not square; set image_size"):
        data.Dataset("d", "s", "c", ["a"], x, np.zeros(5), x, np.zeros(5)).input_shape()


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("augment", ["autoaugment", "randaugment", "crop+flip+trivialaugment"])
def test_augmentation_policies_run_per_image_on_the_batch(channels, augment):
    x = np.random.default_rng(0).integers(0, 256, (16, 12, 12, channels), dtype=np.uint8)
    torch.manual_seed(0)
    batches = DeviceBatches(x, np.arange(16), batch_size=16, augment=augment, image_size=24, mean=(0.0,),
                            std=(1 / 255,))
    xb, _ = next(iter(batches))
    assert xb.shape == (16, channels, 24, 24) and float(xb.min()) >= 0 and float(xb.max()) <= 255
    plain = next(iter(DeviceBatches(x, np.arange(16), 16, image_size=24, mean=(0.0,), std=(1 / 255,))))[0]
    assert sum(not torch.equal(a, b) for a, b in zip(xb, plain)) >= 4  # most images changed, each its own way


def test_augment_values_and_their_one_spelling():
    from trainables.augment import augment_steps
    from trainables.config import ConfigError, validate_value

    assert validate_value("augment", "flip-crop") is True and validate_value("augment", "crop+flip") is True
    assert validate_value("augment", "none") is False and validate_value("augment", "false") is False
    assert validate_value("augment", "flip+crop+RandAugment") == "crop+flip+randaugment"
    assert augment_steps("crop") == ("crop",)
    for bad, says in (("bogus", "unknown step 'bogus'"), ("randaugment+autoaugment", "more than one policy"),
                      ("", "must be none, flip-crop"), (2, "must be none, flip-crop")):
        with pytest.raises(ConfigError, match=says):
            validate_value("augment", bad)
    # Crop alone never flips (digits must not be mirrored).
    x = np.random.default_rng(0).integers(1, 256, (32, 8, 8, 1), dtype=np.uint8)
    out = next(iter(DeviceBatches(x, np.zeros(32), 32, augment="crop", pad=0, mean=(0.0,), std=(1 / 255,))))[0]
    assert torch.equal(out.permute(0, 2, 3, 1).to(torch.uint8), torch.as_tensor(x))
