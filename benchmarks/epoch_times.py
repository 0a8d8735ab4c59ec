"""Seconds per training epoch of every registered net, through the real training loop.

Runs ``trainables.train.train`` for one epoch on a subset of the training split and scales the measured images/s
to a full 45,000-image epoch. On a GPU (when there is one) the same with bf16 autocast and channels_last.
Writes the section "Epoch time per net" of docs/benchmarks.md.

    python -m benchmarks.epoch_times            # all nine nets, a few minutes on 2 CPU cores
    python -m benchmarks.epoch_times --smoke    # two small nets, tiny subset, no doc update
"""
from __future__ import annotations

import argparse

import torch

from benchmarks.common import data_dir, machine, publish

FULL_EPOCH = 45000


def measure(ds, arch: str, images: int, batch_size: int, device: str, fast: bool) -> dict:
    from trainables.train import train

    rows = []
    config = {"arch": arch, "subset": images, "val_size": 1000, "batch_size": batch_size, "epochs": 1,
              "optimizer": "sgd", "lr": 0.01, "device": device, "amp": fast, "channels_last": fast}
    train(config, report=lambda m, s: rows.append(m), data=ds)
    m = rows[-1]
    return {"arch": arch, "params": m["params"], "images_per_second": m["images_per_second"],
            "epoch_seconds": FULL_EPOCH / m["images_per_second"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--images", type=int, default=2560, help="training images measured per net (CPU)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    from trainables.data import load_dataset
    from trainables.models import list_models

    ds = load_dataset(data_dir(args.data_dir), download=False)
    archs = ["origin_net", "modified_net"] if args.smoke else list_models()
    images = 256 if args.smoke else args.images
    setups = [("cpu", False)] + ([("cuda", True)] if torch.cuda.is_available() and not args.smoke else [])
    lines = [f"{machine()}; batch {args.batch_size}; images/s measured over one epoch of a {images:,}-image subset "
             f"(GPU: 20,000), scaled to a 45,000-image epoch", "",
             "| net | params | device | images/s | s per full epoch |", "|---|---:|---|---:|---:|"]
    for device, fast in setups:
        n = 20000 if device == "cuda" else images
        for arch in archs:
            r = measure(ds, arch, n, args.batch_size, device, fast)
            label = device + (" (bf16, channels_last)" if fast else "")
            lines.append(f"| {arch} | {r['params']:,} | {label} | {r['images_per_second']:,.0f} | "
                         f"{r['epoch_seconds']:.1f} |")
            print(lines[-1], flush=True)
    publish("Epoch time per net", lines, "epoch_times", args.smoke)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
