"""Trial packing: 1, 2, 4, 8 identical small-net trials sharing one device, per-trial and total images/s.

Every run goes through the product's own path (``run_search`` with a grid of identical rows, ``--gpus-per-trial
1/n``, ``--max-concurrent n``), so what is measured is what a search gets: data shared through Ray's object store,
uint8 images resident on the trial's device, augmentation there. A trial's throughput is the median of its
per-epoch ``images_per_second`` after the first epoch (the first pays for warm-up and the move to the device);
"total" is the sum over the trials that ran side by side. The issue's target: with 4 trials per GPU each keeps
>= 80% of its solo throughput.

On a machine without a GPU the same runs share the CPUs instead (one CPU per trial, so at most ``os.cpu_count()``
trials at once): that measures CPU contention, not GPU packing, and the table says which it was.
Writes the section "Trial packing" of docs/benchmarks.md.

    python -m benchmarks.packing                          # GPU: 1,2,4,8 trials; CPU: 1..cpu_count
    python -m benchmarks.packing --smoke                  # 1 and 2 trials, 1 epoch, no doc update (CI)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

from benchmarks.common import data_dir, machine, publish, scratch_storage


def trial_throughputs(exp_dir: Path) -> list[float]:
    """Median images/s per trial, over its epochs after the first (all epochs if it ran only one)."""
    out = []
    for result in sorted(exp_dir.glob("*/result.json")):
        rates = [json.loads(line)["images_per_second"] for line in result.read_text().splitlines() if line.strip()]
        out.append(statistics.median(rates[1:] or rates))
    return out


def run_packed(n: int, config: dict, gpu: bool, storage: str) -> list[float]:
    from search.spec import ExperimentSpec
    from search.tuner import run_search

    rows = [{**config, "seed": i} for i in range(n)]
    spec = ExperimentSpec(archs=[config["arch"]], sampler="grid", scheduler="none", grid=rows,
                          max_epochs=config["epochs"], max_concurrent=n, gpus_per_trial=(1.0 / n) if gpu else 0,
                          cpus_per_trial=1, fixed={"data_dir": config["data_dir"]}, storage=storage,
                          name=f"pack-{n}")
    results = run_search(spec)
    errors = [r.error for r in results if r.error]
    if errors:
        raise RuntimeError(f"{len(errors)} packed trial(s) failed: {errors[0]}")
    return trial_throughputs(Path(spec.experiment_dir))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--arch", default="modified_net")
    p.add_argument("--counts", default=None, help="comma-separated trials per device (default: 1,2,4,8 on a GPU)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--subset", type=int, default=0, help="training images per trial (0: all 45,000)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    import torch

    gpu = torch.cuda.is_available()
    cpus = os.cpu_count() or 1
    default_counts = [1, 2, 4, 8] if gpu else [c for c in (1, 2, 4, 8) if c <= cpus]
    counts = [int(c) for c in args.counts.split(",")] if args.counts else default_counts
    epochs, subset = args.epochs, args.subset or (20000 if not gpu else 0)
    if args.smoke:
        counts, epochs, subset = [c for c in (1, 2) if c <= cpus] or [1], 1, 512
    config = {"arch": args.arch, "epochs": epochs, "batch_size": args.batch_size, "val_size": 1000,
              "data_dir": str(Path(data_dir(args.data_dir)).resolve()), "device": "cuda" if gpu else "cpu"}
    if subset:
        config["subset"] = subset
    if gpu:
        config.update(channels_last=True, amp=True)
    shared = "one GPU" if gpu else f"the CPU ({cpus} cores, one per trial: CPU contention, not GPU packing)"
    lines = [f"{machine()}; {args.arch}, batch {args.batch_size}, {epochs} epochs of "
             f"{subset or 45000:,} images per trial, trials sharing {shared}; per-trial images/s = median over "
             f"epochs after the first", "",
             "| trials at once | per-trial images/s (mean) | ÷ solo | total images/s | total ÷ solo |",
             "|---:|---:|---:|---:|---:|"]
    solo = None
    with scratch_storage() as storage:
        for n in counts:
            rates = run_packed(n, config, gpu, storage)
            per_trial, total = statistics.mean(rates), sum(rates)
            solo = solo or per_trial
            lines.append(f"| {n} | {per_trial:,.0f} | {per_trial / solo:.2f} | {total:,.0f} | {total / solo:.2f} |")
            print(lines[-1], flush=True)
    publish("Trial packing", lines, "packing", args.smoke)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
