"""Default space vs reproduce space (issue 22, build 3): does the search a new user runs pick what wins at the horizon?

1. **The default search**, as the README's main command runs it: ``cifar-tune search --arch
   origin_net,modified_net,simple_cnn --num-samples 16 --max-epochs 8`` (the default spaces and sampler, ASHA,
   full data), here with ``--seed 0`` under ``--storage``. Skipped with ``--experiment`` (an existing search instead).
2. **The two picks per net** (simple_cnn and modified_net, the nets whose reproduce runs chose a config under the
   fair protocol): the default search's best trial (the rank-1 config ``cifar-tune report`` / ``evaluate`` take) and
   the reproduce search's pick, read from its committed record (``docs/results/report000-fair.json``,
   ``report003-fair.json``).
3. **Both retrained alike**: ``--epochs`` (50) epochs, ``--seeds`` (3) seeds, on the same training images (all of
   the training split but the validation split) and scored on the same ``--val-size`` (5,000) validation images:
   the split the searches chose on. Never the test split (not loaded). Each pick keeps its own knobs (optimizer,
   schedule, augmentation, amp, ...); only epochs, seed, subset and val_size are set here.
4. **Verdict per net**, paired by seed: the default pick's validation accuracy minus the reproduce pick's, mean and
   95% t-interval. *within 1 point* if the interval's lower end is at or above -0.01; *more than 1 point below* if
   its upper end is below -0.01; *undecided* otherwise; one seed: *single run*.

Every retrain is a unit saved as JSON under ``--storage`` the moment it ends, with its per-epoch validation curve; the
same command continues a killed run (the search resumes with ``--resume``, finished units are kept). Writes
``STORAGE/default_space.json`` and, at the full settings, ``docs/results/default_space.json`` and the section
"Default space vs reproduce space" of docs/benchmarks.md.

    python -m benchmarks.default_space --data-dir ../shared/datasets/cifar10-jpeg.tar.gz --storage /work/results/default-space
"""
from __future__ import annotations

import argparse
import ast
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import REPO, data_dir, machine, save_record

README_SEARCH = ["--arch", "origin_net,modified_net,simple_cnn", "--num-samples", "16", "--max-epochs", "8"]
REPRODUCE_RECORD = {"simple_cnn": "report000-fair.json", "modified_net": "report003-fair.json"}
NAME = "default-space"
RECORD = "default_space.json"
POINT = 0.01  # "within 1 validation point"
FULL = {"epochs": 50, "seeds": 3, "subset": 0, "val_size": 5000}  # the settings that publish
# What the retrain sets; everything else is the pick's own. data_dir: this machine's copy, whichever the search had.
SET_HERE = ("epochs", "seed", "subset", "val_size", "data_dir")


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--storage", required=True, help="the search and the retrain units; the same command continues")
    p.add_argument("--experiment", default=None, help="take the default picks from this search instead of running one")
    p.add_argument("--archs", default=",".join(REPRODUCE_RECORD), help="nets compared (each needs a reproduce record)")
    p.add_argument("--epochs", type=int, default=FULL["epochs"])
    p.add_argument("--seeds", type=int, default=FULL["seeds"])
    p.add_argument("--subset", type=int, default=FULL["subset"], help="training images (0: every one)")
    p.add_argument("--val-size", type=int, default=FULL["val_size"])
    args = p.parse_args(argv)
    args.archs = [a for a in args.archs.split(",") if a]
    for a in args.archs:
        if a not in REPRODUCE_RECORD:
            p.error(f"--archs {a}: no reproduce record to compare with; known: {', '.join(REPRODUCE_RECORD)}")
    for flag, value, low in (("--epochs", args.epochs, 1), ("--seeds", args.seeds, 1), ("--subset", args.subset, 0),
                             ("--val-size", args.val_size, 1)):
        if value < low:
            p.error(f"{flag} must be >= {low}, got {value}")
    if args.experiment and not (Path(args.experiment) / "spec.json").exists():
        p.error(f"--experiment {args.experiment}: not an experiment folder (no spec.json)")
    return p, args


def run_default_search(args, storage: Path) -> Path:
    """The README's main search under ``storage`` (resumed if a killed run left it), as the CLI runs it."""
    exp = storage / NAME
    from benchmarks.carry import finished_search

    if finished_search(exp):  # finished (perhaps carried here without its checkpoints): nothing to resume
        print(f"default_space: the default search in {exp} has finished, kept", flush=True)
        return exp
    cmd = [sys.executable, "-m", "search.cli", "search", *README_SEARCH, "--data-dir", data_dir(args.data_dir),
           "--storage", str(storage), "--name", NAME, "--seed", "0"]
    if (exp / "spec.json").exists():
        cmd.append("--resume")
    print("default_space: " + " ".join(shlex.quote(c) for c in cmd[2:]), flush=True)
    done = subprocess.run(cmd).returncode
    if done != 0:
        raise SystemExit(f"default_space: the default search ended with exit {done}; run the same command again")
    return exp


def default_pick(exp: Path, arch: str) -> dict:
    """The search's rank-1 config of ``arch`` (analysis.tables.ranked: what report and evaluate take)."""
    from analysis.load import load
    from analysis.tables import ranked

    experiment = load(exp)
    top = ranked(experiment)
    row = top[(top["arch"] == arch) & (top["rank"] == 1)]
    if row.empty:
        raise SystemExit(f"default_space: {exp} has no scored trial of {arch}")
    trial = next(t for t in experiment.trials if t["trial_id"] == row.iloc[0]["trial_id"])
    return {"trial_id": trial["trial_id"], "val_accuracy_search": trial["best_val_accuracy"],
            "epochs_search": trial["epochs"], "config": dict(trial["config"]), "from": str(exp)}


def reproduce_pick(arch: str) -> dict:
    """The config the reproduce run of ``arch`` picked, from its committed record."""
    path = REPO / "docs" / "results" / REPRODUCE_RECORD[arch]
    net = next(n for n in json.loads(path.read_text())["result"]["nets"] if n["arch"] == arch)
    config = net["config"] if isinstance(net["config"], dict) else ast.literal_eval(net["config"])
    return {"val_accuracy_search": net.get("val_accuracy_search"), "config": config,
            "from": str(path.relative_to(REPO))}


def retrain(args, data, pick: dict, seed: int, path: Path) -> dict:
    """One retrain of a pick (kept if saved earlier): its validation accuracy after ``--epochs`` epochs."""
    import torch

    from trainables.train import train

    if path.exists():
        return json.loads(path.read_text())
    config = {**{k: v for k, v in pick["config"].items() if k not in SET_HERE}, "epochs": args.epochs, "seed": seed,
              "subset": args.subset or None, "val_size": args.val_size, "data_dir": data_dir(args.data_dir)}
    curve: list[float] = []
    start = time.monotonic()
    metrics = train(config, report=lambda m, state: curve.append(m.get("val_accuracy")), data=data)
    record = {"config": config, "seed": seed, "val_accuracy": metrics.get("val_accuracy"),
              "status": metrics.get("status"), "val_curve": curve, "train_images": metrics.get("train_images"),
              "seconds": round(time.monotonic() - start, 1), "torch_threads": torch.get_num_threads()}
    from trainables.experiment import write_json

    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, record)
    print(f"default_space: {path.parent.name} {path.stem}: val accuracy {record['val_accuracy']:.4f} after "
          f"{args.epochs} epochs ({record['seconds']:.0f} s)", flush=True)
    return record


def judge(default: dict[int, float], reproduce: dict[int, float]) -> dict:
    """The paired difference (default - reproduce) and its verdict against -1 point (module docstring)."""
    from analysis.stats import paired_comparison

    cmp = paired_comparison(default, reproduce, ("default", "reproduce"))
    ci = cmp.get("difference_ci95")
    if ci is None:
        word = "single run"
    elif ci[0] >= -POINT:
        word = "within 1 point"
    elif ci[1] < -POINT:
        word = "more than 1 point below"
    else:
        word = "undecided"
    return {**cmp, "verdict": word}


def markdown(record: dict) -> str:
    from benchmarks.publish import table

    s = record["settings"]
    images = "all" if not s["subset"] else f"the first {s['subset']:,}"
    rows = []
    for arch, r in record["nets"].items():
        def cell(which):
            m = r[which]["summary"]
            ci = m["ci95"]
            return f"{m['mean']:.4f}" + (f" ± {(ci[1] - ci[0]) / 2:.4f}" if ci else "") + f" ({m['n']})"
        diff, ci = r["comparison"].get("mean_difference"), r["comparison"].get("difference_ci95")
        rows.append([arch, cell("default"), cell("reproduce"),
                     "—" if diff is None else f"{diff:+.4f}" + (f" [{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else ""),
                     f"**{r['comparison']['verdict']}**", _knobs(r["default"]["pick"]["config"]),
                     _knobs(r["reproduce"]["pick"]["config"])])
    head = ["net", "default-space pick: val acc, mean ± 95% CI (seeds)", "reproduce-space pick", "difference [95% CI]",
            "verdict (1 point)", "default pick", "reproduce pick"]
    return "\n".join([
        f"{record['machine']}; written {record['written']}.", "",
        f"Both picks retrained alike: {s['epochs']} epochs, seeds {', '.join(map(str, range(s['seeds'])))}, "
        f"{images} training images but the {s['val_size']:,}-image validation split they are scored on (the split the "
        f"searches chose on; the test split is not read). Default pick: the rank-1 config of the README's main "
        f"search (`{record['default_search']}`); reproduce pick: the config `cifar-tune reproduce` chose under the "
        f"fair protocol (its record named per net). Verdict from the paired 95% interval of the difference: within "
        f"1 point if its lower end is at or above -0.01.", "",
        table(head, rows, "l" + "r" * 4 + "l" * 2), "",
        f"Record: [results/{RECORD}](results/{RECORD}). Command: `{record['command']}`."])


def _knobs(config: dict) -> str:
    keys = ("optimizer", "lr", "batch_size", "schedule", "augment", "dropout", "weight_decay", "label_smoothing", "norm")
    out = []
    for k in keys:
        v = config.get(k)
        if v is not None:
            out.append(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}")
    return ", ".join(out)


def main(argv=None) -> int:
    import datetime as dt

    from analysis.stats import mean_ci
    from trainables.data import load_dataset
    from trainables.experiment import without_test_split

    p, args = parse(argv)
    storage = Path(args.storage).expanduser().resolve()
    storage.mkdir(parents=True, exist_ok=True)
    again = " ".join(shlex.quote(a) for a in ["python", "-m", "benchmarks.default_space", *(argv or sys.argv[1:])])
    try:
        exp = Path(args.experiment).resolve() if args.experiment else run_default_search(args, storage)
        data = without_test_split(load_dataset(data_dir(args.data_dir)))  # the test split is never read here
        nets = {}
        for arch in args.archs:
            picks = {"default": default_pick(exp, arch), "reproduce": reproduce_pick(arch)}
            runs = {which: [retrain(args, data, pick, seed, storage / "units" / arch / f"{which}-seed{seed}.json")
                            for seed in range(args.seeds)] for which, pick in picks.items()}
            values = {w: {i: r["val_accuracy"] for i, r in enumerate(rs)} for w, rs in runs.items()}
            nets[arch] = {**{w: {"pick": picks[w], "runs": runs[w], "summary": mean_ci(list(values[w].values()))}
                             for w in picks},
                          "comparison": judge(values["default"], values["reproduce"])}
    except KeyboardInterrupt as e:
        from search.tuner import interrupted_exit

        return interrupted_exit(e, "default_space", "finished retrains are saved", again)
    full = {"epochs": args.epochs, "seeds": args.seeds, "subset": args.subset, "val_size": args.val_size}
    record = {"what": "default-space pick vs reproduce-space pick, both retrained alike, validation accuracy",
              "machine": machine(), "written": dt.datetime.now().isoformat(timespec="seconds"), "command": again,
              "settings": full, "default_search": "cifar-tune search " + " ".join(README_SEARCH) + " --seed 0",
              "experiment": str(exp), "nets": nets}
    save_record(storage, RECORD, record, markdown(record), "Default space vs reproduce space",
                publish=full == FULL and not args.experiment)
    print(f"default_space: record in {storage / RECORD}")
    return 0


if __name__ == "__main__":
    from search.tuner import stop_on_sigterm

    with stop_on_sigterm():  # SIGTERM (benchmarks.long_runs' stop) as Ctrl-C: the work saved, one line, exit 143
        raise SystemExit(main())
