"""What each device knob buys: channels_last, bf16 autocast (``amp``) and ``torch.compile``, one at a time.

For each net and knob, one real ``train()`` run of a few epochs on the same training subset (seeded, same config
otherwise). Reported: the first epoch's seconds (for ``compile`` this includes compiling), the median seconds of
the later epochs, the speed-up of those against the plain run, and for ``compile`` the break-even point: the number
of epochs after which the compile time is paid back (never, when a compiled epoch is not faster). A trial shorter
than that should leave ``compile`` off, which is why it is off by default.
Writes the section "Device knobs" of docs/benchmarks.md.

    python -m benchmarks.speedups                       # modified_net and simple_cnn, on the GPU if there is one
    python -m benchmarks.speedups --smoke               # one net, tiny subset, no doc update (CI)
"""
from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

from benchmarks.common import data_dir, machine, publish

KNOBS = {"plain": {}, "channels_last": {"channels_last": True}, "amp (bf16)": {"amp": True},
         "compile": {"compile": True}}


def epoch_seconds(config: dict, data) -> list[float]:
    from trainables.train import train

    seconds: list[float] = []
    train(config, report=lambda m, state: seconds.append(m["epoch_seconds"]), data=data)
    return seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--archs", default="modified_net,simple_cnn")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--subset", type=int, default=0, help="training images (default: 10,000 on CPU, all on a GPU)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    import torch

    from trainables.data import load_dataset

    gpu = torch.cuda.is_available()
    archs, epochs = args.archs.split(","), args.epochs
    subset = args.subset or (0 if gpu else 10000)
    knobs = dict(KNOBS)
    if args.smoke:
        archs, epochs, subset = archs[:1], 2, 512
        knobs.pop("compile")  # compiling takes most of a minute on 2 CPU cores; the full run measures it
    data = load_dataset(Path(data_dir(args.data_dir)), download=False)
    base = {"batch_size": args.batch_size, "epochs": epochs, "val_size": 1000, "seed": 0, "device": "auto",
            "checkpoint_every": 10 ** 6}
    if subset:
        base["subset"] = subset
    lines = [f"{machine()}; batch {args.batch_size}, {epochs} epochs of {subset or 45000:,} images; "
             f"'later epochs' = median of epochs 2..{epochs}", "",
             "| net | knob | first epoch s | later epochs s | speed-up (later epochs) | compile pays back after |",
             "|---|---|---:|---:|---:|---|"]
    for arch in archs:
        plain_later = None
        for knob, extra in knobs.items():
            s = epoch_seconds({**base, "arch": arch, **extra}, data)
            later = statistics.median(s[1:] or s)
            plain_later = plain_later or later
            payback = ""
            if knob == "compile":
                overhead, saving = s[0] - later, plain_later - later
                payback = f"{math.ceil(overhead / saving)} epochs" if saving > 0 else "never (not faster)"
            lines.append(f"| {arch} | {knob} | {s[0]:.2f} | {later:.2f} | {plain_later / later:.2f}x | {payback} |")
            print(lines[-1], flush=True)
    publish("Device knobs", lines, "speedups", args.smoke)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
