"""Bring your own data: a dataset class of the user's own (file, entry point), image-folder trees of any class count
and shape, CIFAR-100-shaped data, input sizes every registry net takes, and bad values as one-line errors."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from search.cli import main
from tests.searchrun import one_line_error
from trainables import ledger
from trainables.config import ConfigError, resolve_config
from trainables.data import DataError, load_dataset
from trainables.models import list_models
from trainables.train import build_model, train

USER_DATA = '''
import numpy as np


class MyData:
    """Three classes of 20x20 grey squares, brighter per class."""
    name = "squares"

    def __init__(self, root):
        rng = np.random.default_rng(0)
        def split(n):
            y = np.arange(n) % 3
            x = (rng.integers(0, 60, (n, 20, 20)) + 80 * y[:, None, None]).astype(np.uint8)
            return x, y
        self.train_x, self.train_y = split(60)
        self.test_x, self.test_y = split(15)
        self.classes = ["dark", "mid", "light"]
        self.root = root
'''


def quiet_train(config, data=None) -> tuple[dict, list]:
    states = []
    final = train(config, report=lambda m, s: states.append(s), data=data)
    return final, states


def test_a_dataset_class_from_a_py_file_trains_and_keeps_one_checksum(tmp_path, monkeypatch, capsys):
    (tmp_path / "mydata.py").write_text(USER_DATA)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CIFAR_TUNE_LEDGER_DIR", str(tmp_path / "ledger"))
    ds = load_dataset(None, "mydata.py:MyData")
    assert ds.name == "squares" and ds.classes == ["dark", "mid", "light"] and ds.shape == (20, 20, 1)
    assert ds.source == "plugin:mydata.py:MyData" and load_dataset(None, "mydata.py:MyData").checksum == ds.checksum
    # The config pins the file to the directory it was given in, so a Ray worker elsewhere finds it.
    cfg = resolve_config({"arch": "simple_cnn", "dataset": "mydata.py:MyData"})
    assert cfg["dataset"] == f"{tmp_path / 'mydata.py'}:MyData"
    # Through the real path: train() loads it itself; validation carved from the training set, stratified.
    final, states = quiet_train({**cfg, "val_size": 15, "epochs": 1, "batch_size": 16, "latency_batch": 0})
    assert final["status"] == "completed" and final["train_images"] == 45
    assert states[-1]["dataset"] == {"name": "squares", "checksum": ds.checksum}
    # The test split's ledger is keyed by that checksum, as for any dataset.
    ledger.record_use(checksum=ds.checksum, dataset=ds.name, arch="simple_cnn", config=cfg, seed=0, train_images=45,
                      experiment=None, command="test", scores={"test_accuracy": 0.5})
    assert main(["ledger", "--dataset", "mydata.py:MyData", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["checksum"] == ds.checksum and [u["runs"] for u in shown["uses"]] == [1]


def test_a_user_dataset_error_is_one_line_naming_file_and_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "broken.py").write_text("def Data(root):\n    return {'train_x': 1 / 0}\n")
    (tmp_path / "floats.py").write_text(USER_DATA.replace(".astype(np.uint8)", " / 255.0"))
    monkeypatch.chdir(tmp_path)
    assert main(["data", "--dataset", "broken.py:Data"]) == 2
    one_line_error(capsys, "ZeroDivisionError", f"{tmp_path / 'broken.py'}:2")
    assert main(["data", "--dataset", "floats.py:MyData"]) == 2
    one_line_error(capsys, "train_x is float64, expected uint8")
    assert main(["data", "--dataset", "floats.py:Nope"]) == 2
    one_line_error(capsys, "has no 'Nope'")


FAULTY_DATA = '''
import numpy as np


class Good:
    def __init__(self, root=None):
        self.train_x, self.train_y = np.zeros((6, 4, 4, 3), np.uint8), np.arange(6) % 3
        self.test_x, self.test_y = np.zeros((3, 4, 4, 3), np.uint8), np.arange(3)
        self.classes = ["a", "b", "c"]


class ClassesInt(Good):
    classes = property(lambda self: 3, lambda self, v: None)


class ClassesNone(Good):
    classes = property(lambda self: None, lambda self, v: None)


class ClassesString(Good):
    classes = property(lambda self: "abc", lambda self, v: None)


class ClassesDup(Good):
    classes = property(lambda self: ["a", "b", "a"], lambda self, v: None)


class SingleClass(Good):
    classes = property(lambda self: ["only"], lambda self, v: None)


class OneLabel(Good):
    train_y = property(lambda self: np.zeros(6, int), lambda self, v: None)


class PropRaises(Good):
    @property
    def train_x(self):
        raise ValueError("lazy load failed")

    @train_x.setter
    def train_x(self, v):
        pass


class Ragged(Good):
    train_x = property(lambda self: [np.zeros((4, 4, 3), np.uint8), np.zeros((2, 2, 3), np.uint8)],
                       lambda self, v: None)


class ZeroSide(Good):
    train_x = property(lambda self: np.zeros((6, 0, 0, 3), np.uint8), lambda self, v: None)


class Returns:
    pass
'''


@pytest.mark.parametrize("name,named", [
    ("ClassesInt", ["classes must be a list of class names", "got int 3"]),
    ("ClassesNone", ["classes must be a list of class names", "got NoneType None"]),
    ("ClassesString", ["classes must be a list of class names", "got str 'abc'"]),
    ("ClassesDup", ["classes names 'a' more than once"]),
    ("SingleClass", ["classes must name at least 2 classes", "['only']"]),
    ("OneLabel", ["train_y holds only label 0", "at least 2 classes"]),
    ("PropRaises", ["reading its train_x raised ValueError: lazy load failed", "faulty_data.py:39)"]),
    ("Ragged", ["making an array of its train_x raised ValueError", "inhomogeneous"]),
    ("ZeroSide", ["train_x has shape [6, 0, 0, 3]", "H, W >= 1"]),
    ("Returns", ["gives a Returns object without train_x, train_y, test_x, test_y, classes (a dataset has"]),
])
def test_a_dataset_of_the_wrong_shape_is_one_line_naming_the_field(name, named, tmp_path, monkeypatch, capsys):
    """Each of these was a traceback (classes not a list, a property raising, a ragged list), taken silently (a str
    of 3 letters as 3 classes, duplicate or single classes, 0x0 images) or a garbled message (no fields)."""
    (tmp_path / "faulty_data.py").write_text(FAULTY_DATA)
    monkeypatch.chdir(tmp_path)
    assert main(["data", "--dataset", "faulty_data.py:Good"]) == 2  # the fault is the default val_size only
    one_line_error(capsys, "val_size 5000 does not fit the data")
    assert main(["data", "--dataset", f"faulty_data.py:{name}"]) == 2
    one_line_error(capsys, f"dataset 'faulty_data.py:{name}'", *named)


def test_a_dataset_from_an_installed_entry_point(tmp_path, monkeypatch):
    # A real (tiny) installed distribution: its dist-info on sys.path is what importlib.metadata scans.
    (tmp_path / "tiny_squares.py").write_text(USER_DATA)
    info = tmp_path / "tiny_squares-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tiny-squares\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[cifar_tune.datasets]\nsquares = tiny_squares:MyData\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert resolve_config({"dataset": "squares"})["dataset"] == "squares"
    ds = load_dataset(None, "squares")
    assert ds.num_classes == 3 and ds.train_x.shape == (60, 20, 20, 1)
    with pytest.raises(DataError, match="unknown dataset 'squarez'; known: .*squares"):
        load_dataset(None, "squarez")


def make_grey_folder(root, classes=("circle", "cross", "dot"), per_class=(16, 4), size=24):
    """A 3-class image-folder tree of grey PNGs whose classes differ in brightness."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in zip(("train", "test"), per_class):
        for k, c in enumerate(classes):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                img = (rng.integers(0, 60, (size, size)) + 90 * k).astype(np.uint8)
                Image.fromarray(img, mode="L").save(root / split / c / f"{i}.png")
    return root


def test_grey_24px_image_folder_trains_one_epoch_natively_and_resized(tmp_path):
    root = make_grey_folder(tmp_path / "tree")
    ds = load_dataset(root, download=False, cache_dir=tmp_path / "c")
    assert ds.classes == ["circle", "cross", "dot"] and ds.shape == (24, 24, 1) and len(ds.test_y) == 12
    base = {"arch": "origin_net", "val_size": 6, "epochs": 1, "batch_size": 8, "latency_batch": 0}
    final, states = quiet_train(base, data=ds)
    assert final["status"] == "completed" and final["train_images"] == 42
    assert [v for k, v in states[-1]["model"].items() if k.endswith("bias")][-1].shape == (3,)
    resized, states = quiet_train({**base, "arch": "simple_cnn", "image_size": 32, "augment": "crop+randaugment"},
                                  data=ds)
    assert resized["status"] == "completed" and np.isfinite(resized["train_loss"])
    assert states[-1]["config"]["image_size"] == 32 and states[-1]["config"]["augment"] == "crop+randaugment"


def make_cifar100_pickles(root, per_class_train=3, per_class_test=1):
    """The official cifar-100-python layout (train, test, meta; fine and coarse labels), 100 classes, tiny."""
    rng = np.random.default_rng(0)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, per in (("train", per_class_train), ("test", per_class_test)):
        fine = np.repeat(np.arange(100), per)
        blob = {b"data": rng.integers(0, 256, (len(fine), 3072), dtype=np.uint8), b"fine_labels": fine.tolist(),
                b"coarse_labels": (fine // 5).tolist()}
        (folder / name).write_bytes(pickle.dumps(blob))
    names = [f"class{i:02d}".encode() for i in range(100)]
    (folder / "meta").write_bytes(pickle.dumps({b"fine_label_names": names, b"coarse_label_names": names[:20]}))
    return root


def test_cifar100_shaped_data_loads_and_trains_a_100_way_head(tmp_path):
    root = make_cifar100_pickles(tmp_path / "c100")
    ds = load_dataset(root, dataset="cifar100", download=False, cache_dir=tmp_path / "c")
    assert ds.name == "cifar100" and ds.num_classes == 100 and ds.train_x.shape == (300, 32, 32, 3)
    final, states = quiet_train({"arch": "simple_cnn", "dataset": "cifar100", "val_size": 100, "epochs": 1,
                                 "batch_size": 50, "latency_batch": 0}, data=ds)
    assert final["status"] == "completed" and final["train_images"] == 200
    last_bias = [v for k, v in states[-1]["model"].items() if k.endswith("bias")][-1]
    assert last_bias.shape == (100,)


def test_every_registry_net_takes_other_sizes_and_channels_or_refuses_in_one_line():
    from trainables.data import Dataset

    def fake(side, channels, classes=3):
        x = np.zeros((2, side, side, channels), np.uint8)
        return Dataset("fake", "test", "0", [str(i) for i in range(classes)], x, np.zeros(2, np.int64), x[:0],
                       np.zeros(0, np.int64))

    for arch in list_models():
        for side, channels in ((24, 1), (40, 3)):
            cfg = resolve_config({"arch": arch})
            with torch.device("meta"):  # shapes only: every layer checks its input, no memory or compute
                out = build_model(cfg, fake(side, channels, classes=7))(torch.zeros(2, channels, side, side))
            assert tuple(out.shape) == (2, 7), (arch, side, channels)
    with torch.device("meta"), pytest.raises(ConfigError) as e:
        build_model(resolve_config({"arch": "keras_cnn"}), fake(8, 1))
    assert "keras_cnn" in str(e.value) and "1x8x8" in str(e.value) and len(str(e.value).splitlines()) == 1


@pytest.mark.parametrize("argv,named", [
    (["train", "--arch", "origin_net", "--dataset", "imagenet"], ["dataset", "'imagenet'", "svhn"]),
    (["train", "--arch", "origin_net", "--set", "image_size=0"], ["image_size", "[8, 1024]", "0"]),
    (["train", "--arch", "origin_net", "--set", "image_size=big"], ["image_size", "'big'"]),
    (["train", "--arch", "keras_cnn", "--set", "image_size=8"], ["keras_cnn", "image_size=8", "too small"]),
    (["train", "--arch", "origin_net", "--set", "augment=mixup"], ["augment", "'mixup'", "randaugment"]),
    (["data", "--dataset", "imagenet"], ["unknown dataset 'imagenet'", "mnist"]),
    (["data", "--dataset", "no_such_file.py:Data"], ["no such file"]),
])
def test_bad_data_values_are_one_line_errors(argv, named, capsys):
    assert main(argv) == 2
    one_line_error(capsys, *named)


def test_the_spec_records_dataset_input_size_and_augmentation(tmp_path, monkeypatch):
    from search.spec import ExperimentSpec

    (tmp_path / "mydata.py").write_text(USER_DATA)
    monkeypatch.chdir(tmp_path)
    spec = ExperimentSpec(archs=["origin_net"], storage=str(tmp_path / "runs"),
                          fixed={"dataset": "mydata.py:MyData", "image_size": "28", "augment": "flip-crop"})
    assert spec.to_dict()["fixed"] == {"dataset": f"{tmp_path / 'mydata.py'}:MyData", "image_size": 28,
                                       "augment": True}
