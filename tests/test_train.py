"""train(config): learning on real images, resume, divergence, repeatability, config validation."""
from __future__ import annotations

import math

import pytest

import trainables.data as data
from trainables.config import ConfigError, METRIC, parse_assignments, resolve_config
from trainables.train import load_state, save_state, train

# Small but real: 3,000 CIFAR-10 training images, 1,000 validation images. No inference timing (latency_batch=0):
# it has its own tests at the end of this file, and every search trial measures it at the default batch.
SMALL = {"arch": "simple_cnn", "subset": 3000, "val_size": 1000, "batch_size": 64, "optimizer": "adam", "lr": 2e-3,
         "augment": False, "epochs": 2, "seed": 0, "latency_batch": 0}


def run(config, data, resume_state=None):
    rows, states = [], []
    final = train(config, report=lambda m, s: (rows.append(m), states.append(s)), resume_state=resume_state, data=data)
    return final, rows, states


def test_two_epochs_on_real_images_beat_chance(cifar):
    final, rows, states = run(SMALL, cifar)
    assert [r["epoch"] for r in rows] == [1, 2] and final["status"] == "completed"
    assert final[METRIC] > 0.25, final  # chance is 0.10
    assert rows[1]["train_loss"] < rows[0]["train_loss"]
    for key in ("train_loss", "train_accuracy", "val_loss", METRIC, "epoch_seconds", "images_per_second"):
        assert math.isfinite(rows[-1][key])
    assert states[-1]["config"] == resolve_config(SMALL) and states[-1]["epoch"] == 2


def test_seeded_cpu_runs_repeat_exactly(cifar):
    cfg = {**SMALL, "subset": 640, "val_size": 200, "epochs": 1, "augment": True, "dropout": 0.2}
    a, _, _ = run(cfg, cifar)
    b, _, _ = run(cfg, cifar)
    assert a["train_loss"] == b["train_loss"] and a[METRIC] == b[METRIC]
    c, _, _ = run({**cfg, "seed": 1}, cifar)
    assert c["train_loss"] != a["train_loss"]


def test_resume_continues_the_epoch_count_and_the_same_trajectory(cifar, tmp_path):
    # Few images (5 steps an epoch) suffice: optimizer, schedule and RNG state all shape the third epoch exactly.
    cfg = {**SMALL, "subset": 320, "val_size": 200, "epochs": 3, "augment": True, "schedule": "cosine"}
    _, straight, _ = run(cfg, cifar)
    # Stop after epoch 2 (a config with epochs=3 whose reporter raises, as a killed trial would), then resume.
    saved = []

    def stop_after_two(metrics, state):
        saved.append(state)
        if metrics["epoch"] == 2:
            save_state(state, tmp_path)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, report=stop_after_two, data=cifar)
    _, resumed, _ = run(cfg, cifar, resume_state=load_state(tmp_path))
    assert [r["epoch"] for r in resumed] == [3]
    assert resumed[0]["train_loss"] == pytest.approx(straight[2]["train_loss"], rel=1e-6)
    assert resumed[0][METRIC] == pytest.approx(straight[2][METRIC], abs=1e-9)


def test_divergence_ends_cleanly_as_diverged(cifar):
    final, rows, states = run({**SMALL, "optimizer": "sgd", "lr": 1e4, "subset": 3200, "val_size": 200, "epochs": 3},
                              cifar)
    assert final["status"] == "diverged" and len(rows) == 1
    assert not math.isfinite(final["train_loss"])
    assert states[-1] is not None  # the last state is still saved: the trial's record is complete


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", "rmsprop", "adagrad", "adamax"])
def test_every_optimizer_trains(cifar, optimizer):
    lr = {"sgd": 0.02, "adagrad": 0.02}.get(optimizer, 1e-3)
    final, _, _ = run({**SMALL, "arch": "origin_net", "optimizer": optimizer, "lr": lr, "subset": 256, "epochs": 1,
                       "val_size": 200, "nesterov": optimizer == "sgd"}, cifar)
    assert math.isfinite(final["train_loss"])


def test_training_never_reads_the_test_split(cifar):
    data._split_access_log.clear()
    run({**SMALL, "subset": 128, "val_size": 200, "epochs": 1}, cifar)
    assert data._split_access_log and "test" not in data._split_access_log


def test_fashion_mnist_trains_with_one_channel(tmp_path):
    from tests.conftest import make_fashion_idx

    ds = data.load_dataset(make_fashion_idx(tmp_path / "fm", n_train=300), dataset="fashion_mnist", download=False)
    final, _, _ = run({**SMALL, "dataset": "fashion_mnist", "subset": 0, "val_size": 100, "epochs": 1}, ds)
    assert math.isfinite(final["train_loss"])


@pytest.mark.parametrize("config, message", [
    ({"arch": "no_such_net"}, "no_such_net"),
    ({"optimizer": "lion"}, "lion"),
    ({"lr": -0.1}, "-0.1"),
    ({"batch_size": "many"}, "many"),
    ({"learning_rate": 0.1}, "learning_rate"),
    ({"dropout": 1.5}, "1.5"),
    ({"norm": "weird"}, "weird"),
    ({"schedule": "linear"}, "linear"),
    ({"stem": "cifar"}, "stem"),  # simple_cnn has no stem option
    ({"lr": float("nan")}, "nan"),
    ({"seed": 2**32}, "4294967296"),  # numpy's seed range is [0, 2**32): refused here, not after the data loads
    ({"seed": 1e300}, "301 digits"),  # a JSON config's float, an int of 301 digits once coerced
    ({"seed": "1e30"}, "31 digits"),  # as --set gives it
    ({"seed": -1}, "-1"),
    ({"batch_size": "1e25"}, "batch_size"),  # too big for the trackers (and any machine)
    ({"epochs": 10**400}, "401 digits"),
    ({"latency_batch": 2**63}, "latency_batch"),
    ({"checkpoint_every": 10**7}, "checkpoint_every"),
    ({"subset": 10**10}, "subset"),
    ({"val_size": 10**10}, "val_size"),
    ({"device": "cuda:abc"}, "cuda:abc"),
    ({"device": "cuda:"}, "cuda:"),
    ({"device": "tpu"}, "tpu"),
])
def test_bad_config_is_refused_naming_the_value(config, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("-", r"\-")):
        resolve_config(config)


def test_the_edges_of_the_int_ranges_are_accepted():
    cfg = resolve_config({"seed": 2**32 - 1, "batch_size": 2**20, "latency_batch": 0, "device": "cuda:12"})
    assert (cfg["seed"], cfg["batch_size"], cfg["device"]) == (2**32 - 1, 2**20, "cuda:12")  # no GPU asked for here
    with pytest.raises(ConfigError, match=r"seed: must be in \[0, 2\*\*32 - 1\]"):
        resolve_config({"seed": 2**32})


@pytest.mark.parametrize("device, cuda, message", [
    ("cuda", 0, "device 'cuda': no CUDA device on this machine (torch.cuda.is_available() is False)"),
    ("cuda:99", 0, "device 'cuda:99': no CUDA device"),
    ("cuda:99", 2, "device 'cuda:99': this machine has 2 CUDA devices (cuda:0 to cuda:1)"),
    ("cuda:1", 1, "device 'cuda:1': this machine has 1 CUDA device (cuda:0 to cuda:0)"),
    ("mps", 0, "device 'mps': no MPS device on this machine"),
])
def test_a_device_this_machine_lacks_is_refused_before_the_data_loads(device, cuda, message, monkeypatch):
    """The config check takes any well-formed device (a search's driver may lack its workers' GPU); train() asks
    this machine, first: one ConfigError, no data loaded. The machine's devices are set here, so it runs anywhere."""
    import torch

    import trainables.train as train_module

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)

    def no_data(*args, **kwargs):
        raise AssertionError("the data was loaded before the device was checked")

    monkeypatch.setattr(train_module, "load_dataset", no_data)
    assert resolve_config({**SMALL, "device": device})["device"] == device
    with pytest.raises(ConfigError) as err:
        train({**SMALL, "device": device}, report=lambda m, s: None)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_set_assignments_are_typed():
    assert parse_assignments(["lr=1e-3", "augment=false", "batch_size=64", "data_dir=none"]) == {
        "lr": 1e-3, "augment": False, "batch_size": 64, "data_dir": None}
    with pytest.raises(ConfigError, match="noequals"):
        parse_assignments(["noequals"])


def test_arch_defaults_are_the_reports_own():
    cfg = resolve_config({"arch": "modified_net"})
    assert cfg["optimizer"] == "sgd" and cfg["lr"] == 0.005
    assert resolve_config({"arch": "modified_net", "lr": 0.1})["lr"] == 0.1


# --------------------------------------------------------------------------------------------- objectives (issue 11)

def test_every_epoch_reports_size_and_inference_speed_measured_once(cifar):
    cfg = {**SMALL, "arch": "origin_net", "subset": 256, "val_size": 128, "epochs": 2, "latency_batch": 32,
           "width": 0.5}
    _, rows, states = run(cfg, cifar)
    from trainables.models import count_params, create_model

    model = create_model("origin_net", width=0.5)
    assert all(r["params"] == count_params(model) for r in rows)
    assert rows[0]["size_mb"] == pytest.approx(count_params(model) * 4 / 1e6)  # no buffers without BatchNorm
    for key in ("inference_latency_ms", "inference_images_per_s_b1", "inference_images_per_s"):
        assert math.isfinite(rows[0][key]) and rows[0][key] > 0
        assert rows[1][key] == rows[0][key]  # measured once per trial, carried in every report
    assert rows[0]["inference_batch"] == 32
    assert states[-1]["inference"]["inference_latency_ms"] == rows[0]["inference_latency_ms"]
    _, rows, _ = run({**cfg, "epochs": 1, "latency_batch": 0}, cifar)
    assert "inference_latency_ms" not in rows[0] and rows[0]["size_mb"] > 0


def test_measuring_inference_leaves_the_training_trajectory_alone(cifar):
    cfg = {**SMALL, "subset": 320, "val_size": 200, "epochs": 2, "augment": True, "dropout": 0.3}
    measured, _, _ = run({**cfg, "latency_batch": 8}, cifar)
    unmeasured, _, _ = run({**cfg, "latency_batch": 0}, cifar)
    assert measured["train_loss"] == unmeasured["train_loss"] and measured[METRIC] == unmeasured[METRIC]
