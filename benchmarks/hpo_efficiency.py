"""HPO efficiency: best validation accuracy against epochs spent, TPE + ASHA vs random + ASHA vs the report's grid.

For each net, the report's own grid (its preset, every row cut to ``--epochs``) sets the budget: the grid's total
epochs. TPE + ASHA and random + ASHA get as many trials as the grid has rows, with the same maximum epochs, so
their worst case equals the grid's cost and ASHA's stops make them cheaper. All three run on the same training
subset and validation split. We report, per method: epochs spent, best validation accuracy, and the epochs spent
until the method first matched the grid's best accuracy.
Writes the section "HPO efficiency" of docs/benchmarks.md.

    python -m benchmarks.hpo_efficiency                      # simple_cnn and modified_net; ~15 minutes on 2 CPUs
    python -m benchmarks.hpo_efficiency --smoke              # one net, 3 trials of 1 epoch, no doc update
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from benchmarks.common import data_dir, machine, write_section

PRESET_OF = {"simple_cnn": "report000", "modified_net": "report003"}


def grid_rows(arch: str, epochs: int) -> list[dict]:
    from search.presets import expand_grid, get_preset

    rows = [r for r in expand_grid(get_preset(PRESET_OF[arch])) if r["arch"] == arch]
    return [{**{k: v for k, v in r.items() if k not in ("epochs", "val_size")}, "epochs": epochs} for r in rows]


def curve(exp_dir: Path) -> list[tuple[int, float]]:
    """(cumulative epochs, best val accuracy so far) in the order epochs were reported, across all trials."""
    events = []
    for result in exp_dir.glob("*/result.json"):
        for line in result.read_text().splitlines():
            r = json.loads(line)
            if r.get("status") != "diverged":
                events.append((r["timestamp"], r.get("time_total_s", 0), r["val_accuracy"]))
    events.sort()
    out, best = [], 0.0
    for i, (_, _, acc) in enumerate(events, 1):
        best = max(best, acc)
        out.append((i, best))
    return out


def run(method: str, arch: str, rows: list[dict], fixed: dict, epochs: int, storage: str, seed: int) -> Path:
    from search.spec import ExperimentSpec
    from search.tuner import run_search

    name = f"hpo-{arch}-{method.replace('+', '-')}"
    if method == "grid":
        spec = ExperimentSpec(archs=[arch], sampler="grid", scheduler="none", grid=rows, max_epochs=epochs,
                              fixed=fixed, storage=storage, name=name)
    else:
        sampler = method.split("+")[0]
        spec = ExperimentSpec(archs=[arch], num_samples=len(rows), max_epochs=epochs, sampler=sampler,
                              grace_period=1, reduction_factor=3, fixed=fixed, storage=storage, name=name, seed=seed)
    run_search(spec)
    return Path(spec.experiment_dir)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--archs", default="simple_cnn,modified_net")
    p.add_argument("--epochs", type=int, default=4, help="epochs per grid row (and ASHA's max)")
    p.add_argument("--subset", type=int, default=5000)
    p.add_argument("--val-size", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    import ray

    archs = args.archs.split(",")
    epochs, subset = args.epochs, args.subset
    if args.smoke:
        archs, epochs, subset = archs[:1], 1, 256
    fixed = {"data_dir": str(Path(data_dir(args.data_dir)).resolve()), "subset": subset, "val_size": args.val_size}
    lines = [f"{machine()}; training subset {subset:,} images, validation {args.val_size:,}; every grid row cut to "
             f"{epochs} epochs; TPE/random get as many trials as the grid has rows, ASHA max {epochs} epochs, "
             f"grace 1, reduction 3", "",
             "| net | method | trials | epochs spent | best val acc | epochs to match the grid's best |",
             "|---|---|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as storage:
        try:
            for arch in archs:
                rows = grid_rows(arch, epochs)
                if args.smoke:
                    rows = rows[:3]
                curves = {m: curve(run(m, arch, rows, fixed, epochs, storage, args.seed))
                          for m in ("grid", "tpe+asha", "random+asha")}
                target = curves["grid"][-1][1]
                for method, c in curves.items():
                    reach = next((e for e, best in c if best >= target), None)
                    lines.append(f"| {arch} | {method} | {len(rows)} | {c[-1][0]} | {c[-1][1]:.4f} | "
                                 f"{reach if reach is not None else 'not reached'} |")
                    print(lines[-1], flush=True)
        finally:
            ray.shutdown()
    table = "\n".join(lines)
    print(table)
    if not args.smoke:
        write_section("HPO efficiency", table + "\n\nCommand: `python -m benchmarks.hpo_efficiency`.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
