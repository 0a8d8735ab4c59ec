"""One training run: ``train(config)``; works on its own, and as a Ray Tune trainable via :func:`tune_trainable`.

Each epoch reports train/val loss and accuracy, epoch seconds and images/s through ``report(metrics, state)``,
where ``state`` (model + optimizer + scheduler + RNG + epoch + config) is the checkpoint to keep, or None.
A run that meets a NaN/inf loss stops and reports ``status="diverged"`` instead of raising.
Search never sees the test split: this module only asks the data layer for ``train`` and ``val``.
"""
from __future__ import annotations

import math
import os
import platform
import random
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from trainables.config import ARCH_KWARGS, METRIC, ConfigError, resolve_config
from trainables.data import Dataset, DeviceBatches, as_shared_tensor, load_dataset
from trainables.models import count_params, create_model, get_arch

CHECKPOINT_FILE = "checkpoint.pt"
EVAL_BATCH = 1024  # images per forward pass when evaluating
# Inference measurement, once per trial (after its first epoch): warm-up passes, then timed passes until at least
# MIN and at most MAX are done or BUDGET seconds have passed; the median pass time is reported.
LATENCY_WARMUP, LATENCY_MIN_PASSES, LATENCY_MAX_PASSES, LATENCY_BUDGET_S = 2, 3, 30, 0.25
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    """The torch device for the config value ``name`` on this machine; ConfigError in one line when this machine
    has no such device. (The config check accepts any well-formed name: a search's driver may lack the GPU its
    workers have, so whether the device exists is asked here, where a run starts, before any data is loaded.)"""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r}: no CUDA device on this machine (torch.cuda.is_available() is False)")
        count = torch.cuda.device_count()
        index = int(name.partition(":")[2] or 0)
        if index >= count:
            raise ConfigError(f"device {name!r}: this machine has {count} CUDA device{'s' * (count != 1)} "
                              f"(cuda:0 to cuda:{count - 1})")
    elif name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {name!r}: no MPS device on this machine (torch.backends.mps.is_available() is "
                          f"False)")
    try:
        return torch.device(name)
    except (RuntimeError, ValueError) as e:  # a name the config check let through but torch does not know
        raise ConfigError(f"device {name!r}: {str(e).splitlines()[0] if str(e) else 'unknown to torch'}") from None


def environment() -> dict:
    """Versions and hardware, stored beside every result."""
    from importlib.metadata import version

    env = {"python": platform.python_version(), "torch": torch.__version__, "torchvision": version("torchvision"),
           "numpy": np.__version__, "platform": platform.platform(), "cpus": os.cpu_count(),
           "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    env["cifar_tune"] = code_version()
    return env


def code_version() -> str:
    """This code's version: the package version, and where it runs from a git checkout its commit (``+dirty`` when
    tracked files differ from it), e.g. ``0.1.0 (git 4cd9f51)``: what made a record, beside the libraries'."""
    import subprocess
    from importlib.metadata import PackageNotFoundError, version

    try:
        out = version("cifar-tune")
    except PackageNotFoundError:
        out = "not installed"
    root = Path(__file__).resolve().parents[1]
    try:
        git = ["git", "-C", str(root)]
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return out
    return f"{out} (git {commit}{'+dirty' if dirty else ''})" if commit else out


def build_optimizer(cfg: dict, params) -> torch.optim.Optimizer:
    name, lr, wd = cfg["optimizer"], cfg["lr"], cfg["weight_decay"]
    betas = (cfg["beta1"], cfg["beta2"])
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg["momentum"], nesterov=cfg["nesterov"] and cfg["momentum"] > 0,
                               weight_decay=wd)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=wd)
    if name == "adamax":
        return torch.optim.Adamax(params, lr=lr, betas=betas, weight_decay=wd)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=cfg["momentum"], weight_decay=wd)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, weight_decay=wd)
    raise ValueError(f"unknown optimizer {name!r}")


def build_schedule(cfg: dict, optimizer, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step multiplier: linear warm-up, then constant, cosine to zero, or step (x0.1 at 50% and 75%)."""
    total = cfg["epochs"] * steps_per_epoch
    warmup = int(cfg["warmup_epochs"] * steps_per_epoch)
    kind = cfg["schedule"]

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        if kind == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        if kind == "step":
            return 0.1 ** ((progress >= 0.5) + (progress >= 0.75))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def apply_hyperparameters(cfg: dict, optimizer: torch.optim.Optimizer, schedule) -> None:
    """Put ``cfg``'s lr and weight decay into an optimizer and schedule just loaded from a checkpoint.

    Loading a state dict brings back the values the checkpoint was trained with. A trial resumed from its own
    checkpoint has the same ones; one that PBT made copy another trial's checkpoint (search/pbt.py) has new ones,
    which must win: the schedule's base rate is the new lr, the current rate its multiplier at the step reached.
    Dropout and label smoothing need nothing here: the model and the loss are built from ``cfg``."""
    schedule.base_lrs = [cfg["lr"] for _ in optimizer.param_groups]
    for group, factor in zip(optimizer.param_groups, schedule.lr_lambdas):
        group["initial_lr"] = cfg["lr"]
        group["lr"] = cfg["lr"] * factor(schedule.last_epoch)
        group["weight_decay"] = cfg["weight_decay"]


@torch.inference_mode()
def evaluate(model: nn.Module, batches: DeviceBatches, amp: bool = False) -> dict:
    """Mean cross-entropy, accuracy and the predictions over ``batches``."""
    model.eval()
    loss_sum = torch.zeros((), device=batches.device, dtype=torch.float64)
    preds = []
    for x, y in batches:
        with torch.autocast(batches.device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        loss_sum += nn.functional.cross_entropy(logits.float(), y, reduction="sum").double()
        preds.append(logits.argmax(1))
    pred = torch.cat(preds) if preds else torch.zeros(0, dtype=torch.int64)
    n = max(1, len(batches.labels))
    return {"loss": float(loss_sum) / n, "accuracy": float((pred == batches.labels).sum()) / n,
            "predictions": pred.cpu().numpy()}


def model_size_mb(model: nn.Module) -> float:
    """MB of the weights and buffers (BatchNorm statistics) as stored, i.e. what a saved state_dict holds."""
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors) / 1e6


@torch.inference_mode()
def measure_inference(model: nn.Module, device: torch.device, image_shape: tuple[int, int, int], batch: int,
                      amp: bool = False, channels_last: bool = False) -> dict:
    """Inference speed of ``model`` on ``device`` the same way for every trial: random images of ``image_shape``
    (C, H, W), eval mode, the trial's autocast and memory format; median over timed passes (see LATENCY_*).

    Returns ``inference_latency_ms`` and ``inference_images_per_s_b1`` (batch 1) and, for ``batch`` > 1,
    ``inference_images_per_s`` at ``inference_batch`` = ``batch``. These are measurements, not guarantees: they
    depend on the device, the threads the trial was given and whatever else runs beside it.
    """
    was_training = model.training
    model.eval()

    def median_seconds(n: int) -> float:
        # Own generator: the measurement must not move the training RNG (a resumed trial does not measure again).
        x = torch.randn(n, *image_shape, device=device, generator=torch.Generator(device).manual_seed(0))
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)

        def one_pass():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                model(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        for _ in range(LATENCY_WARMUP):
            one_pass()
        times, start = [], time.perf_counter()
        while len(times) < LATENCY_MIN_PASSES or (len(times) < LATENCY_MAX_PASSES
                                                   and time.perf_counter() - start < LATENCY_BUDGET_S):
            t0 = time.perf_counter()
            one_pass()
            times.append(time.perf_counter() - t0)
        return float(np.median(times))

    try:
        single = median_seconds(1)
        out = {"inference_latency_ms": single * 1e3, "inference_images_per_s_b1": 1.0 / single}
        if batch > 1:
            out.update(inference_images_per_s=batch / median_seconds(batch), inference_batch=batch)
        return out
    finally:
        model.train(was_training)


def build_model(cfg: dict, ds: Dataset) -> nn.Module:
    """The config's net for ``ds``'s class count and input shape (``image_size`` applied); a net that cannot take
    that input is refused in one line naming it and the shape."""
    c, h, w = ds.input_shape(cfg.get("image_size"))
    extra = {k: cfg[k] for k in ARCH_KWARGS if cfg.get(k) is not None}
    try:
        return create_model(cfg["arch"], num_classes=ds.num_classes, in_channels=c, image_size=h,
                            dropout=cfg["dropout"], norm=cfg["norm"], **extra)
    except ConfigError:  # a user's net that does not load says so itself (trainables.plugins)
        raise
    except (ValueError, RuntimeError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"arch {cfg['arch']!r} cannot take {c}x{h}x{w} input ({ds.name}): {why}"
                          + ("; set a larger image_size" if "small" in why else "")) from None


def print_report(metrics: dict, state: dict | None = None) -> None:
    keys = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "epoch_seconds", "images_per_second")
    print(f"epoch {metrics['epoch']:>3}/{metrics['epochs']}  " + "  ".join(
        f"{k} {metrics[k]:.4g}" for k in keys) + f"  [{metrics['status']}]", flush=True)


def train(config: dict, *, report: Callable[[dict, dict | None], None] = print_report, resume_state: dict | None = None,
          data: Dataset | None = None) -> dict:
    """Train one config; returns the last metrics. ``data`` skips loading (search hands over a shared copy)."""
    cfg = resolve_config(config)
    device = pick_device(cfg["device"])  # a device this machine lacks: refused before anything is loaded
    seed_everything(cfg["seed"])
    ds = data if data is not None else load_dataset(cfg["data_dir"], cfg["dataset"])
    # One copy of the training arrays serves both splits (selected by index); on a GPU it is moved there once.
    images, labels, train_idx = ds.split_index("train", cfg["val_size"])
    _, _, val_idx = ds.split_index("val", cfg["val_size"])
    if cfg["subset"]:
        train_idx = train_idx[:cfg["subset"]]
    images = as_shared_tensor(images).to(device)
    mean, std = ds.channel_stats()
    if cfg["pretrained"]:  # torchvision's ImageNet weights expect ImageNet's normalisation
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    loader = dict(device=device, mean=mean, std=std, channels_last=cfg["channels_last"],
                  image_size=cfg["image_size"])
    train_batches = DeviceBatches(images, labels, cfg["batch_size"], index=train_idx, shuffle=True,
                                  augment=cfg["augment"], seed=cfg["seed"], **loader)
    val_batches = DeviceBatches(images, labels, EVAL_BATCH, index=val_idx, **loader)

    spec = get_arch(cfg["arch"])
    model = build_model(cfg, ds).to(device)
    if cfg["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    params, size_mb = count_params(model), model_size_mb(model)
    optimizer = build_optimizer(cfg, [p for p in model.parameters() if p.requires_grad])
    schedule = build_schedule(cfg, optimizer, len(train_batches))
    start_epoch, history, inference = 0, [], None
    if resume_state is not None:
        model.load_state_dict(resume_state["model"])
        optimizer.load_state_dict(resume_state["optimizer"])
        schedule.load_state_dict(resume_state["schedule"])
        apply_hyperparameters(cfg, optimizer, schedule)
        train_batches.generator.set_state(resume_state["batch_rng"])
        torch.set_rng_state(resume_state["torch_rng"])
        start_epoch, history = resume_state["epoch"], list(resume_state.get("history", []))
        inference = resume_state.get("inference")  # measured once per trial: a resumed trial reports the same
    step_model = torch.compile(model) if cfg["compile"] else model
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg["label_smoothing"])

    metrics: dict = {}
    for epoch in range(start_epoch + 1, cfg["epochs"] + 1):
        model.train()
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        diverged = False
        for step, (x, y) in enumerate(train_batches):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg["amp"]):
                logits = step_model(x)
                loss = loss_fn(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += loss.detach().double() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()
            # Checking every 50 steps costs one sync; a diverged run stops within 50 steps.
            if step % 50 == 49 and not torch.isfinite(loss_sum):
                diverged = True
                break
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
        seen = min(len(train_batches.labels), (step + 1) * cfg["batch_size"])
        train_loss = float(loss_sum) / seen
        diverged = diverged or not math.isfinite(train_loss)
        val = evaluate(model, val_batches, cfg["amp"]) if len(val_idx) else {"loss": float("nan"), "accuracy": 0.0}
        status = "diverged" if diverged else ("completed" if epoch == cfg["epochs"] else "running")
        if inference is None and cfg["latency_batch"] and not diverged:
            image_shape = ds.input_shape(cfg["image_size"])
            inference = measure_inference(model, device, image_shape, cfg["latency_batch"], cfg["amp"],
                                          cfg["channels_last"])
        metrics = {"epoch": epoch, "epochs": cfg["epochs"], "arch": cfg["arch"], "train_loss": train_loss,
                   "train_accuracy": float(correct) / seen, "val_loss": val["loss"], METRIC: val["accuracy"],
                   "epoch_seconds": seconds, "images_per_second": seen / seconds, "lr": schedule.get_last_lr()[0],
                   "params": params, "size_mb": size_mb, "train_images": int(len(train_idx)), **(inference or {}),
                   "status": status}
        history.append({k: metrics[k] for k in ("epoch", "train_loss", "train_accuracy", "val_loss", METRIC)})
        last = status != "running"
        state = None
        if last or epoch % cfg["checkpoint_every"] == 0:
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "schedule": schedule.state_dict(), "batch_rng": train_batches.generator.get_state(),
                     "torch_rng": torch.get_rng_state(), "epoch": epoch, "config": cfg, "history": history,
                     "dataset": {"name": ds.name, "checksum": ds.checksum}, "report": spec.report,
                     "inference": inference}
        report(metrics, state)
        if last:
            break
    return metrics


# --------------------------------------------------------------------------------------------- checkpoints on disk

def save_state(state: dict, directory: str | os.PathLike) -> Path:
    """Write atomically: to a temporary file, fsync'ed, then renamed. A crash or a full disk mid-write (ENOSPC is
    raised, never swallowed) leaves the previous checkpoint whole and no short file under the real name."""
    path = Path(directory) / CHECKPOINT_FILE
    tmp = path.with_suffix(".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return path


def load_state(path: str | os.PathLike, mmap: bool = False) -> dict:
    """A state ``save_state`` wrote (its folder or file). ``mmap``: the tensors stay on disk until read (a look at
    the epoch of a 30 MB checkpoint reads a few KB)."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if path.stat().st_size == 0:  # e.g. copied while the disk was full: never a checkpoint to resume from
        raise ValueError(f"checkpoint {str(path)!r} is empty (0 bytes)")
    return torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)


def resume_point(directory: str | os.PathLike | None, config: dict) -> dict | None:
    """The state a killed run of exactly ``config`` left in ``directory`` (``save_state``), or None: none there, an
    unreadable file, or another config's. The run then starts from scratch."""
    from trainables.config import resolve_config

    if directory is None or not (Path(directory) / CHECKPOINT_FILE).is_file():
        return None
    try:
        state = load_state(directory)
    except Exception:  # a torn or foreign file is no reason to fail a run that can start over
        return None
    return state if state.get("config") == resolve_config(config) else None


# --------------------------------------------------------------------------------------------- Ray Tune

def tune_trainable(config: dict, data: Dataset | None = None) -> None:
    """Function trainable for ``ray.tune.Tuner``: resumes from Tune's checkpoint, reports every epoch."""
    from ray import tune

    def report(metrics: dict, state: dict | None) -> None:
        if state is None:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as d:
            save_state(state, d)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))

    resume_state = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # an unreadable newest checkpoint falls back to an older one (and says so)
        from trainables.checkpoints import load_newest_valid

        resume_state = load_newest_valid(checkpoint, load_state)
    train(config, report=report, resume_state=resume_state, data=data)
