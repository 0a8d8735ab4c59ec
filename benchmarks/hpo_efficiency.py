"""HPO efficiency: best validation accuracy against epochs spent, TPE + ASHA vs random + ASHA vs the report's grid.

For each net, the report's own grid (its preset, every row cut to ``--epochs``) sets the budget ``B``: the grid's
total epochs. TPE + ASHA and random + ASHA (same maximum epochs, grace 1, reduction 3) are given more trials than
``B`` can pay for (``--trial-factor`` x the grid's rows) and are scored on the epochs they trained first, in the
order they were trained, up to ``B`` — so all three spend the same epochs. The searches run with ``--seeds`` seeds
each (the grid's rows carry their own seeds and run once). All runs share the training subset and validation split.
Reported per method: the best validation accuracy within ``B`` epochs (mean over seeds, and each seed's), and the
epochs spent until the method first matched the grid's best (per seed; "-" where it did not within ``B``).
Writes the section "HPO efficiency" of docs/benchmarks.md.

    python -m benchmarks.hpo_efficiency                      # simple_cnn and modified_net, 3 seeds; ~30 min on 2 CPUs
    python -m benchmarks.hpo_efficiency --smoke              # one net, grid and TPE, 1 epoch, no doc update
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.common import data_dir, machine, publish, scratch_storage

PRESET_OF = {"simple_cnn": "report000", "modified_net": "report003"}


def grid_rows(arch: str, epochs: int) -> list[dict]:
    from search.presets import expand_grid, get_preset

    rows = [r for r in expand_grid(get_preset(PRESET_OF[arch])) if r["arch"] == arch]
    return [{**{k: v for k, v in r.items() if k not in ("epochs", "val_size")}, "epochs": epochs} for r in rows]


def curve(exp_dir: Path, budget: int | None = None) -> list[tuple[int, float]]:
    """(cumulative epochs, best val accuracy so far) in the order epochs were reported, across all trials, cut at
    ``budget`` epochs. A diverged epoch costs its epoch but never counts as the best."""
    events = []
    for result in exp_dir.glob("*/result.json"):
        for line in result.read_text().splitlines():
            r = json.loads(line)
            events.append((r["timestamp"], r.get("time_total_s", 0),
                           r["val_accuracy"] if r.get("status") != "diverged" else 0.0))
    events.sort()
    out, best = [], 0.0
    for i, (_, _, acc) in enumerate(events[:budget], 1):
        best = max(best, acc)
        out.append((i, best))
    return out


def run(method: str, arch: str, rows: list[dict], fixed: dict, epochs: int, storage: str, seed: int,
        num_samples: int) -> Path:
    from search.spec import ExperimentSpec
    from search.tuner import run_search

    name = f"hpo-{arch}-{method.replace('+', '-')}-{seed}"
    if method == "grid":
        spec = ExperimentSpec(archs=[arch], sampler="grid", scheduler="none", grid=rows, max_epochs=epochs,
                              fixed=fixed, storage=storage, name=name)
    else:
        sampler = method.split("+")[0]
        spec = ExperimentSpec(archs=[arch], num_samples=num_samples, max_epochs=epochs, sampler=sampler,
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
    p.add_argument("--seeds", type=int, default=3, help="seeds per search method")
    p.add_argument("--trial-factor", type=int, default=3, help="search trials = this x the grid's rows")
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    import statistics

    archs = args.archs.split(",")
    epochs, subset, seeds = args.epochs, args.subset, args.seeds
    if args.smoke:
        archs, epochs, subset, seeds = archs[:1], 1, 256, 1
    fixed = {"data_dir": str(Path(data_dir(args.data_dir)).resolve()), "subset": subset, "val_size": args.val_size}
    lines = [f"{machine()}; training subset {subset:,} images, validation {args.val_size:,}; every grid row cut to "
             f"{epochs} epochs; budget = the grid's epochs; TPE/random + ASHA (max {epochs} epochs, grace 1, "
             f"reduction 3) get {args.trial_factor}x the grid's trials and are scored on their first budget-many "
             f"epochs; {seeds} seed(s) per search method", "",
             "| net | method | budget (epochs) | best val acc within budget: mean | per seed | "
             "epochs to match the grid's best, per seed |",
             "|---|---|---:|---:|---|---|"]
    with scratch_storage() as storage:
        for arch in archs:
            rows = grid_rows(arch, epochs)
            if args.smoke:
                rows = rows[:3]
            grid = curve(run("grid", arch, rows, fixed, epochs, storage, 0, len(rows)))
            budget, target = grid[-1][0], grid[-1][1]
            results = {"grid": [grid]}
            for method in ("tpe+asha",) if args.smoke else ("tpe+asha", "random+asha"):  # smoke: one of each path
                results[method] = [curve(run(method, arch, rows, fixed, epochs, storage, seed,
                                             args.trial_factor * len(rows)), budget) for seed in range(seeds)]
            for method, curves in results.items():
                bests = [c[-1][1] for c in curves]
                reach = [next((e for e, best in c if best >= target), None) for c in curves]
                lines.append(f"| {arch} | {method} | {budget} | {statistics.mean(bests):.4f} | "
                             f"{', '.join(f'{b:.4f}' for b in bests)} | "
                             f"{', '.join(str(r) if r is not None else '-' for r in reach)} |")
                print(lines[-1], flush=True)
    publish("HPO efficiency", lines, "hpo_efficiency", args.smoke)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
