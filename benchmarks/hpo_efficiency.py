"""HPO efficiency, anytime: best validation accuracy against epochs spent and wall time, every method at one budget.

For each net (simple_cnn: report 000's grid; modified_net: report 003's), the report's own grid, every row cut to
``--max-epochs`` E, sets the budget ``B`` = rows x E epochs. At that budget, with ``--seeds`` seeds each:

* ``tpe+asha`` / ``random+asha``: ``B // 2`` trials of at most E epochs, ASHA (grace 1, eta 3), the epoch budget
  ``B`` enforced by the scheduler (``ExperimentSpec.epoch_budget``);
* ``random``: ``B // E`` random trials, each trained to E (no stopping);
* ``grid``: the report's rows, each trained to E, in the report's order;
* ``hyperband``: synchronous HyperBand (``ExperimentSpec(scheduler="hyperband")``, eta 3), random sampling, as many
  whole bands (every bracket once) as come nearest to ``B``; it takes no epoch budget, so its curve is cut at ``B``
  (what it trains after that is not counted, and the record says "cut");
* ``pbt``: population-based training (``scheduler="pbt"``), a random population of ``B // E`` trained to E,
  perturbed every E // 3 epochs: B epochs by construction.
A method the experiment spec refuses is skipped with the spec's reason (named in the output and the record).

Seed i of every method: sampler seed i and training seed i, on the same data (the first ``--subset`` images of the
seeded training split, the same ``--val-size`` validation split), so seed i of A is paired with seed i of B.
Every search is a *unit* whose per-epoch events (wall second, validation accuracy) are saved as JSON under
``--storage``; then each unit's pick (its best config within ``B``) is retrained for E epochs on the same training
images with a fresh seed (1000 + i) and scored on ``--heldout`` images none of the searches saw: the last images of
the training split, after the subset (not the test split, which this benchmark never reads). Each retrain is a unit
too. Rerun the same command and finished units are kept: a killed run continues. One Ray session serves up to
``UNITS_PER_RAY`` searches.

Size front (``--front-archs``): MO-TPE vs NSGA-II vs random, each with MO-ASHA at the same budget, objectives
``val_accuracy:max,params:min``; the anytime curve is the front's hypervolume (``benchmarks/anytime.py``). The
published record's run also had ``mo-tpe-plain``: MO-TPE as Optuna ships it against ours, which then ranked the
stopped trials by what they reached; no difference over 10 seeds, so ``tpe`` became Optuna's (search/searcher.py).

Statistics (``benchmarks/anytime.py``): median and interquartile band across seeds at every epoch and on a grid of
wall times; Wilcoxon signed-rank tests, paired by seed, of TPE + ASHA (MO-TPE on the front) against each other
method at several budget points and on the held-out retrains; epochs and seconds to reach the report's grid's
median result. Writes ``STORAGE/hpo_efficiency.json`` (+ ``.html``) and, unless ``--smoke``, the record
``docs/results/hpo_efficiency.json``, its figure ``docs/results/hpo_efficiency.html`` and the "HPO efficiency"
section of docs/benchmarks.md.

    python -m benchmarks.hpo_efficiency --storage ~/cifar-tune-results/hpo-efficiency      # hours on 2 CPUs
    python -m benchmarks.hpo_efficiency --smoke --storage /tmp/hpo-smoke                    # ~1 min, no doc update
    python -m benchmarks.hpo_efficiency --storage ... --summary-only   # tables from the finished units, no runs
    python -m benchmarks.hpo_efficiency --storage ... --quiet-load 3   # run again the searches that ran loaded

Wall time is only comparable between searches that had the machine to themselves: every unit records the 1-minute
load average sampled while its search ran (``load_1m_max``; the search itself is about 2 on 2 cores), the tables say
how many ran above 3, and ``--quiet-load L`` runs again each finished search that saw more than L (the old record
and its retrain are kept beside, as ``seedN.loadedK.json``).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.common import REPO, data_dir

PRESET_OF = {"simple_cnn": "report000", "modified_net": "report003"}
RECORD = "hpo_efficiency.json"
RECORD_NAME = RECORD.removesuffix(".json")  # --record's default: the full record's name in docs/results
UNITS_PER_RAY = 10
RETRAIN_SEED = 1000  # retrain of seed i uses training seed RETRAIN_SEED + i: fresh, the same for every method
OBJECTIVES = [["val_accuracy", "max"], ["params", "min"]]


@dataclass(frozen=True)
class Method:
    name: str
    sampler: str
    scheduler: str
    # "stopping": B // 2 trials, the scheduler holds B; "full": B // E trials, each to the end (PBT: its population);
    # "bands": as many whole HyperBand bands (every bracket once) as come nearest to B; "grid": the report's rows
    trials: str
    what: str


METHODS = {m.name: m for m in (
    Method("tpe+asha", "tpe", "asha", "stopping", "Optuna TPE, ASHA early stopping"),
    Method("random+asha", "random", "asha", "stopping", "random sampling, ASHA early stopping"),
    Method("random", "random", "none", "full", "random sampling, every trial trained to the horizon"),
    Method("grid", "grid", "none", "grid", "the report's own grid, every row trained to the horizon"),
    Method("hyperband", "random", "hyperband", "bands", "synchronous HyperBand, random sampling"),
    Method("pbt", "random", "pbt", "full", "population-based training, random initial population"),
)}
FRONT_METHODS = {m.name: m for m in (
    Method("mo-tpe", "tpe", "asha", "stopping", "MO-TPE as Optuna ships it, MO-ASHA"),
    Method("nsga2", "nsga2", "asha", "stopping", "NSGA-II, MO-ASHA"),
    Method("mo-random", "random", "asha", "stopping", "random sampling, MO-ASHA"),
)}
REFERENCE, FRONT_REFERENCE = "tpe+asha", "mo-tpe"  # what every other method is tested against


# --------------------------------------------------------------------------------------------- the budget

def grid_rows(arch: str, epochs: int) -> list[dict]:
    """The report's rows for ``arch`` in the report's order, cut to ``epochs`` (their val_size is ours)."""
    from search.presets import expand_grid, get_preset

    rows = [r for r in expand_grid(get_preset(PRESET_OF[arch])) if r["arch"] == arch]
    return [{**{k: v for k, v in r.items() if k not in ("epochs", "val_size")}, "epochs": epochs} for r in rows]


def hyperband_trials(budget: int, max_epochs: int, eta: int = 3) -> int:
    """Trials for synchronous HyperBand: whole bands (each bracket of ``search.hyperband`` filled once), as many as
    come nearest to ``budget`` epochs, at least one. A band's epochs: each bracket's trials to its first milestone,
    then the top 1/eta of them on to each next one."""
    from search.hyperband import bracket_sizes, brackets

    cost = 0
    for n0, steps in zip(bracket_sizes(max_epochs, eta), brackets(max_epochs, eta)):
        cost += n0 * steps[0] + sum(max(1, n0 // eta ** i) * (steps[i] - steps[i - 1]) for i in range(1, len(steps)))
    return sum(bracket_sizes(max_epochs, eta)) * max(1, round(budget / cost))


class Bench:
    """The run's settings and where its units live; ``data`` (for retrains) is loaded on first use."""

    def __init__(self, args):
        self.args, self.root = args, Path(args.storage).expanduser().resolve()
        self.fixed = {"data_dir": str(Path(data_dir(args.data_dir)).resolve()), "subset": args.subset,
                      "val_size": args.val_size, "latency_batch": 0}
        self._data = None

    def rows(self, arch: str) -> list[dict]:
        rows = grid_rows(arch, self.args.max_epochs)
        return rows[:self.args.grid_rows] if self.args.grid_rows else rows

    def budget(self, arch: str) -> int:
        return len(self.rows(arch)) * self.args.max_epochs

    def unit_path(self, arch: str, method: str, seed: int, kind: str = "search") -> Path:
        return self.root / "units" / arch / method / f"seed{seed}{'' if kind == 'search' else '.' + kind}.json"

    def spec(self, arch: str, method: Method, seed: int, objectives=None):
        """The unit's ExperimentSpec and whether its scheduler holds the budget; SpecError if the spec refuses."""
        from search.spec import ExperimentSpec, SpecError

        budget, epochs = self.budget(arch), self.args.max_epochs
        common = dict(archs=[arch], max_epochs=epochs, fixed={**self.fixed, "seed": seed}, seed=seed,
                      storage=str(self.root / "searches"), name=f"{arch}-{method.name.replace('+', '-')}-s{seed}")
        if method.trials == "grid":
            return ExperimentSpec(sampler="grid", scheduler="none", grid=[{**r, "seed": seed} for r in self.rows(arch)],
                                  **common), True
        if method.trials == "full":  # PBT perturbs every third of the horizon (its grace period is the interval)
            return ExperimentSpec(sampler=method.sampler, scheduler=method.scheduler, reduction_factor=3,
                                  grace_period=max(1, epochs // 3) if method.scheduler == "pbt" else 1,
                                  num_samples=max(1, budget // epochs), **common), True
        trials = hyperband_trials(budget, epochs) if method.trials == "bands" else max(1, budget // 2)
        kw = dict(sampler=method.sampler, scheduler=method.scheduler, num_samples=trials,
                  grace_period=1, reduction_factor=3, objectives=objectives or [], **common)
        try:
            return ExperimentSpec(epoch_budget=budget, **kw), True
        except SpecError as e:  # a scheduler that takes no epoch budget: its curve is cut at B instead
            if "epoch-budget" not in str(e) or method.scheduler == "asha":
                raise
            return ExperimentSpec(**kw), False

    @property
    def data(self):
        if self._data is None:
            from trainables.data import load_dataset
            from trainables.experiment import without_test_split

            self._data = without_test_split(load_dataset(self.fixed["data_dir"]))  # the test split is never read
        return self._data

    def heldout_index(self):
        """The last ``--heldout`` images of the seeded training split: after the searches' subset, not validation."""
        train_idx, _ = self.data.split_indices(self.args.val_size)
        if self.args.subset + self.args.heldout > len(train_idx):
            raise SystemExit(f"hpo_efficiency: --subset {self.args.subset} + --heldout {self.args.heldout} exceed the "
                             f"{len(train_idx):,} training images left after --val-size {self.args.val_size}")
        return train_idx[len(train_idx) - self.args.heldout:]


# --------------------------------------------------------------------------------------------- units

def read_events(exp: Path, segments: list) -> tuple[list[dict], dict, list]:
    """Every reported epoch of every trial, in the order reported, with its wall second since the unit began
    (summed over the invocations that ran it: ``segments``), the configs the events name (a trial's config, and a
    later one under ``trial#epoch`` where the scheduler changed it, as PBT does), and the segments closed
    (:func:`closed_segments`)."""
    rows, configs = [], {}
    for result in sorted(exp.glob("*/result.json")):
        current = None
        for line in result.read_text().splitlines():
            if not line.strip():
                continue
            r = json.loads(line)
            config = {k: v for k, v in r.get("config", {}).items() if k != "epochs"}
            if current is None or configs[current] != config:
                current = r["trial_id"] if r["trial_id"] not in configs else f"{r['trial_id']}#{r.get('epoch')}"
                configs[current] = config
            value = r.get("val_accuracy") if r.get("status") != "diverged" else None
            rows.append({"ts": float(r["timestamp"]), "trial_id": r["trial_id"], "epoch": r.get("epoch"),
                         "value": value, "params": r.get("params"), "config": current})
    rows.sort(key=lambda e: (e["ts"], e["trial_id"], e["epoch"] or 0))
    closed = closed_segments(segments, [e["ts"] for e in rows])
    for e in rows:
        k = max([i for i, (s, _) in enumerate(closed) if s <= e["ts"]], default=0)
        e["t"] = round(sum(end - s for s, end in closed[:k]) + max(0.0, e.pop("ts") - closed[k][0]), 3)
    return rows, configs, closed


def closed_segments(segments: list, timestamps: list[float]) -> list[list[float]]:
    """The invocations' (start, end), an invocation killed hard (its end never written) ending at its last event
    (``timestamps``: the unix second of every reported epoch): it ran at least that long; at its start if none."""
    starts = [s for s, _ in segments] + [float("inf")]
    return [[start, end if end is not None else max([t for t in timestamps if start <= t < starts[k + 1]],
                                                     default=start)]
            for k, (start, end) in enumerate(segments)]


class LoadSampler:
    """The machine's 1-minute load average every ``every`` seconds while a search runs (a daemon thread), so a
    unit's wall times say how much else ran beside them."""

    def __init__(self, every: float = 5.0):
        import threading

        self.values = [os.getloadavg()[0]]
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)
        self._thread.start()

    def _run(self, every: float) -> None:
        while not self._done.wait(every):
            self.values.append(os.getloadavg()[0])

    def stop(self) -> None:
        self._done.set()

    def summary(self) -> dict:
        return {"load_1m_max": round(max(self.values), 2),
                "load_1m_mean": round(sum(self.values) / len(self.values), 2)}


def unit_load(unit: dict) -> float | None:
    """The largest load a unit's search saw (records from before the sampler: the load as it ended)."""
    return unit.get("load_1m_max", unit.get("load_1m_at_end"))


def retire_loaded(path: Path, limit: float) -> bool:
    """With ``--quiet-load``: a finished search that ran at a load above ``limit`` is set aside to be run again (its
    record and its retrain kept as ``seedN.loadedK*.json``, its experiment removed). True if it was."""
    unit = json.loads(path.read_text())
    load = unit_load(unit)
    if load is not None and load <= limit:
        return False
    k = 1 + len([p for p in path.parent.glob(f"{path.stem}.loaded*.json") if p.name.count(".") == 2])
    retrain = path.with_suffix(".retrain.json")
    if retrain.exists():
        retrain.rename(path.with_name(f"{path.stem}.loaded{k}.retrain.json"))
    path.with_suffix(".segments.json").unlink(missing_ok=True)
    shutil.rmtree(unit["experiment"], ignore_errors=True)
    path.rename(path.with_name(f"{path.stem}.loaded{k}.json"))
    print(f"hpo_efficiency: {unit['arch']} {unit['method']} seed {unit['seed']}: ran at load {load}, above "
          f"--quiet-load {limit}: set aside, run again", flush=True)
    return True


def ended_trials(exp: Path) -> int:
    from analysis.load import ExperimentError, load_trials
    from trainables.experiment import OUTCOMES_ENDED

    try:
        return sum(t["status"] in OUTCOMES_ENDED for t in load_trials(exp))
    except ExperimentError:
        return 0


def run_unit(bench: Bench, arch: str, method: Method, seed: int, skipped: dict, objectives=None) -> dict | None:
    """One search (or its record, if finished earlier). None when the spec refuses the method (``skipped``)."""
    from search.spec import SpecError
    from search.tuner import init_ray, run_search
    from trainables.experiment import SPEC_FILE, write_json

    path = bench.unit_path(arch, method.name, seed)
    if path.exists():
        print(f"hpo_efficiency: {arch} {method.name} seed {seed}: finished earlier, kept", flush=True)
        return json.loads(path.read_text())
    try:
        spec, enforced = bench.spec(arch, method, seed, objectives)
    except SpecError as e:
        if method.name not in skipped:
            print(f"hpo_efficiency: {method.name} skipped: the spec refuses it ({e})", flush=True)
        skipped[method.name] = str(e)
        return None
    # The invocations that ran this search (wall start, end): kept beside the record, so the events' wall seconds
    # stay right when the record is rebuilt from a search a killed run had finished.
    exp, partial = Path(spec.experiment_dir), path.with_suffix(".segments.json")
    resume = (exp / SPEC_FILE).exists()
    if exp.exists() and not resume:  # killed before its spec was written: nothing in it to keep
        shutil.rmtree(exp)
    segments = json.loads(partial.read_text())["segments"] if partial.exists() and resume else []
    planned = len(spec.grid) if spec.grid else spec.num_samples
    print(f"hpo_efficiency: {arch} {method.name} seed {seed}: {planned} trials of <= {spec.max_epochs} epochs, budget "
          f"{bench.budget(arch)} epochs{'' if enforced else ' (cut, not enforced)'}{' [resumed]' if resume else ''}",
          flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    init_ray(spec)  # before the clock starts: Ray's start-up is no method's cost
    segments.append([time.time(), None])
    write_json(partial, {"segments": segments})
    loads = LoadSampler()
    try:
        run_search(spec, resume=resume)
    finally:
        segments[-1][1] = time.time()
        write_json(partial, {"segments": segments})
        loads.stop()
    if ended_trials(exp) < planned:
        raise SystemExit(f"hpo_efficiency: the search {spec.name} ended unfinished; run the same command again")
    events, configs, closed = read_events(exp, segments)
    budget = bench.budget(arch)
    scored = [e for e in events[:budget] if e["value"] is not None]
    best = max(scored, key=lambda e: e["value"], default=None)  # the first of equals: reached soonest
    record = {"arch": arch, "method": method.name, "seed": seed, "budget": budget, "budget_enforced": enforced,
              "spec": {k: getattr(spec, k) for k in ("sampler", "scheduler", "num_samples", "max_epochs",
                                                     "grace_period", "reduction_factor", "epoch_budget")},
              "planned_trials": planned, "spent_epochs": len(events), "segments": segments,
              # an invocation killed hard counts up to its last event (closed_segments), as the events' seconds do
              "wall_seconds": round(sum(e - s for s, e in closed), 2), "resumed": len(segments) > 1,
              # what else loaded the machine (the search itself is about 2 on 2 cores): the 1-minute load average
              # as the search ended, and its largest and mean value sampled during the last invocation
              "load_1m_at_end": round(os.getloadavg()[0], 2), **loads.summary(),
              "experiment": str(exp), "events": events, "configs": configs,
              "pick": ({"trial_id": best["trial_id"], "epoch": best["epoch"], "val_accuracy": best["value"],
                        "config": configs[best["config"]]} if best else None)}
    write_json(path, record)
    return record


def retrain_unit(bench: Bench, unit: dict) -> dict | None:
    """The unit's pick trained E epochs on the searches' training images (fresh seed), scored on the held-out
    images; saved, and kept on a rerun."""
    import torch

    from trainables.config import resolve_config
    from trainables.data import DeviceBatches
    from trainables.experiment import write_json
    from trainables.train import EVAL_BATCH, IMAGENET_MEAN, IMAGENET_STD, build_model, evaluate, pick_device, train

    path = bench.unit_path(unit["arch"], unit["method"], unit["seed"], "retrain")
    if path.exists():
        return json.loads(path.read_text())
    if unit["pick"] is None:
        return None
    config = {**unit["pick"]["config"], **bench.fixed, "epochs": bench.args.max_epochs,
              "seed": RETRAIN_SEED + unit["seed"]}
    last: dict = {}
    start = time.monotonic()
    metrics = train(config, report=lambda m, state: last.update(state=state) if state is not None else None,
                    data=bench.data)
    cfg = resolve_config(config)
    device = pick_device(cfg["device"])
    model = build_model(cfg, bench.data).to(device)
    model.load_state_dict(last["state"]["model"])
    if cfg["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if cfg["pretrained"] else bench.data.channel_stats()
    heldout = bench.heldout_index()
    batches = DeviceBatches(bench.data.train_x, bench.data.train_y, EVAL_BATCH, device, index=heldout, mean=mean,
                            std=std, channels_last=cfg["channels_last"], image_size=cfg["image_size"])
    record = {"arch": unit["arch"], "method": unit["method"], "seed": unit["seed"], "config": config,
              "heldout_accuracy": evaluate(model, batches, cfg["amp"])["accuracy"], "heldout_images": len(heldout),
              "val_accuracy": metrics.get("val_accuracy"), "status": metrics.get("status"),
              "train_images": metrics.get("train_images"), "seconds": round(time.monotonic() - start, 2)}
    write_json(path, record)
    print(f"hpo_efficiency: retrain {unit['arch']} {unit['method']} seed {unit['seed']}: held-out accuracy "
          f"{record['heldout_accuracy']:.4f} ({record['seconds']:.0f} s)", flush=True)
    return record


# --------------------------------------------------------------------------------------------- the command

def parse(argv):
    from search.spec import default_storage

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--storage", default=str(Path(default_storage()) / "hpo-efficiency"),
                   help="where the searches and unit records live; the same command there continues a run")
    p.add_argument("--archs", default=None, help="default simple_cnn,modified_net (smoke: modified_net)")
    p.add_argument("--methods", default=None, help=f"default all: {','.join(METHODS)} (smoke: tpe+asha,grid)")
    p.add_argument("--front-archs", default=None, help="size front (MO-TPE, Optuna's MO-TPE, NSGA-II, random) on these nets; "
                   "default modified_net; '' for none (smoke: none)")
    p.add_argument("--seeds", type=int, default=None, help="per method (default 10, smoke 2)")
    p.add_argument("--max-epochs", type=int, default=9, help="E: every grid row and every trial's horizon")
    p.add_argument("--subset", type=int, default=5000, help="training images every search trains on")
    p.add_argument("--val-size", type=int, default=1000, help="the searches' validation split")
    p.add_argument("--heldout", type=int, default=5000, help="images the retrains are scored on (seen by no search)")
    p.add_argument("--grid-rows", type=int, default=0, help="use only the first N rows of the report's grid (0: all)")
    p.add_argument("--record", default=RECORD_NAME,
                   help=f"the published record's name in docs/results (default {RECORD_NAME}); "
                        "another name publishes a run of some methods beside the full one, in its own section "
                        "'HPO efficiency: NAME' of docs/benchmarks.md")
    p.add_argument("--no-retrain", action="store_true", help="skip retraining the picks (the costly stage)")
    p.add_argument("--summary-only", action="store_true", help="run nothing: tables from the finished units")
    p.add_argument("--quiet-load", type=float, default=None,
                   help="run again every finished search whose 1-minute load exceeded this (the search itself is "
                        "about 2 on 2 cores): its wall times measured something else too")
    p.add_argument("--smoke", action="store_true", help="one net, 2 seeds, tpe+asha and grid, 2 epochs, 200 "
                   "images, 2 grid rows; no doc update")
    args = p.parse_args(argv)
    if args.smoke:
        args.max_epochs, args.subset, args.val_size, args.heldout, args.grid_rows = 2, 200, 100, 200, 2
    args.archs = (args.archs or ("modified_net" if args.smoke else "simple_cnn,modified_net")).split(",")
    args.methods = (args.methods or ("tpe+asha,grid" if args.smoke else ",".join(METHODS))).split(",")
    front = args.front_archs if args.front_archs is not None else ("" if args.smoke else "modified_net")
    args.front_archs = [a for a in front.split(",") if a]
    args.seeds = args.seeds or (2 if args.smoke else 10)
    for a in args.archs:
        if a not in PRESET_OF:
            p.error(f"--archs {a}: no report grid for it; known: {', '.join(PRESET_OF)}")
    for a in args.front_archs:
        if a not in PRESET_OF:
            p.error(f"--front-archs {a}: the budget comes from a report grid; known: {', '.join(PRESET_OF)}")
    for m in args.methods:
        if m not in METHODS:
            p.error(f"--methods {m}: unknown; known: {', '.join(METHODS)}")
    if args.quiet_load is not None and not args.quiet_load > 0:
        p.error(f"--quiet-load must be > 0, got {args.quiet_load}")
    if not args.record.replace("_", "").replace("-", "").isalnum():
        p.error(f"--record {args.record}: a name of letters, digits, '-' and '_' (it names files in docs/results)")
    if REFERENCE not in args.methods:
        p.error(f"--methods must include {REFERENCE}: every other method is tested against it")
    return p, args


def settings_of(bench: Bench) -> dict:
    """What every unit in a storage must share (seeds and methods may be added later)."""
    a = bench.args
    return {"max_epochs": a.max_epochs, "subset": a.subset, "val_size": a.val_size, "heldout": a.heldout,
            "grid_rows": a.grid_rows, "fixed": bench.fixed, "objectives": OBJECTIVES}


def main(argv=None) -> int:
    from benchmarks import hpo_efficiency_report as report
    from trainables.experiment import write_json

    p, args = parse(argv)
    bench = Bench(args)
    bench.root.mkdir(parents=True, exist_ok=True)
    settings, saved = settings_of(bench), bench.root / "settings.json"
    if saved.exists() and json.loads(saved.read_text()) != json.loads(json.dumps(settings)):
        p.error(f"--storage {bench.root}: its units were run with other settings ({saved}); use another --storage")
    write_json(saved, settings)
    again = " ".join(shlex.quote(a) for a in ["python", "-m", "benchmarks.hpo_efficiency", *(argv or sys.argv[1:])])
    skipped: dict = {}
    units: dict = {"anytime": {}, "front": {}}
    retrains: dict = {}
    from search.tuner import SearchInterrupted, interrupted_exit

    start = time.monotonic()
    try:
        plan = [("anytime", a, METHODS[m], None) for a in args.archs for m in args.methods]
        plan += [("front", a, m, OBJECTIVES) for a in args.front_archs for m in FRONT_METHODS.values()]
        session = 0  # searches run in this Ray session; a new one every UNITS_PER_RAY bounds what a session piles up
        for part, arch, method, objectives in plan:
            for seed in range(args.seeds):
                path = bench.unit_path(arch, method.name, seed)
                if args.summary_only:
                    unit = json.loads(path.read_text()) if path.exists() else None
                else:
                    if args.quiet_load is not None and path.exists():
                        retire_loaded(path, args.quiet_load)
                    if session >= UNITS_PER_RAY:
                        _shutdown_ray()
                        session = 0
                    session += not path.exists()
                    unit = run_unit(bench, arch, method, seed, skipped, objectives)
                if unit is not None:
                    units[part].setdefault(arch, {}).setdefault(method.name, []).append(unit)
        _shutdown_ray()
        if not args.no_retrain:
            for arch, by_method in units["anytime"].items():
                for name, seeds in by_method.items():
                    for unit in seeds:
                        path = bench.unit_path(arch, name, unit["seed"], "retrain")
                        done = json.loads(path.read_text()) if path.exists() else None
                        done = done or (None if args.summary_only else retrain_unit(bench, unit))
                        if done:
                            retrains.setdefault(arch, {}).setdefault(name, []).append(done)
    except (SearchInterrupted, KeyboardInterrupt) as e:
        _shutdown_ray()
        return interrupted_exit(e, "hpo_efficiency", "finished searches and retrains are saved", again)
    record = report.summarise(bench, units, retrains, skipped, METHODS, FRONT_METHODS)
    from trainables.train import code_version

    record.update(record=args.record, command=again, code=code_version(),
                  wall_seconds_this_invocation=round(time.monotonic() - start, 1),
                  methods_table={k: asdict(m) for k, m in {**METHODS, **FRONT_METHODS}.items()})
    write_json(bench.root / RECORD, record)
    report.figure(record, bench.root / "hpo_efficiency.html")
    lines = report.markdown(record)
    print(lines)
    if not args.smoke:
        own = args.record == RECORD_NAME
        write_json(REPO / "docs" / "results" / f"{args.record}.json", record)
        report.figure(record, REPO / "docs" / "results" / f"{args.record}.html")
        from benchmarks.common import write_section

        write_section("HPO efficiency" if own else f"HPO efficiency: {args.record}", lines)
    print(f"hpo_efficiency: record in {bench.root / RECORD}")
    return 0


def _shutdown_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


if __name__ == "__main__":
    from search.tuner import stop_on_sigterm

    with stop_on_sigterm():  # SIGTERM (benchmarks.long_runs' stop) as Ctrl-C: the work saved, one line, exit 143
        raise SystemExit(main())
