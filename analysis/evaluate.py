"""Final evaluation: the only code that reads the test split, and it reads it once.

``cifar-tune evaluate EXP`` retrains each net's top-k configs (ranked by validation accuracy) from scratch with
``repeats`` seeds for their full epochs, on ``train`` or ``trainval``, then scores every run on the test split:
accuracy (mean with a 95% t-interval over seeds), weighted F1, per-class precision / recall / F1 and the confusion
matrix (scikit-learn), test loss; and a paired t-test between the two best nets. For a preset run in ``grid`` mode
the grid already trained every point with the report's seeds, so their final checkpoints are scored instead.

Retrains (and the SVM) are Ray tasks (1 CPU each; embedded Ray unless ``address`` names a cluster); scoring grid
checkpoints is inference only and runs in this process. The driver reads the test split once and hands it to the
tasks; the training data they get has no test images in it. Results go to
``EXP/evaluation.json`` and ``EXP/evaluation.csv``, which ``cifar-tune report`` picks up.

``train_images``: train each final run on exactly that many images (the report's training-set size, for a fair
comparison): the first N of the training split's seeded order (with ``trainval``: a seeded permutation of all
train + validation images, the same draw for every seed and config; its sha256 is recorded).

Every run scored on the test split is appended to the test-split ledger (``trainables.ledger``); the record says
which use of the test split on this data each config is, and lists the earlier ones.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from analysis.load import EVALUATION_FILE, load
from analysis.stats import mean_ci, paired_comparison
from analysis.tables import fmt_ci, grid_points, ranked
from trainables import ledger
from trainables.config import METRIC, is_count
from trainables.experiment import data_change, without_test_split, write_json

TRAIN_ON = ("train", "trainval")
SVM_ARCH = "svm_pca"  # the SVM baseline's name in the ledger and the record (not a net of the registry)


# --------------------------------------------------------------------------------------------- inside a Ray task

def _test_model(state: dict, data, test) -> dict:
    """Rebuild the model of a final training ``state`` and score it on ``test`` = (images, labels)."""
    import torch

    from trainables.data import DeviceBatches
    from trainables.train import EVAL_BATCH, IMAGENET_MEAN, IMAGENET_STD, build_model, evaluate, pick_device

    cfg = state["config"]
    device = pick_device(cfg["device"])
    # The weights come from the state: no download of pretrained ones. Same input size as in training.
    model = build_model({**cfg, "pretrained": False if cfg.get("pretrained") else cfg.get("pretrained")}, data)
    model.load_state_dict(state["model"])
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if cfg.get("pretrained") else data.channel_stats()
    batches = DeviceBatches(test[0], test[1], EVAL_BATCH, device, mean=mean, std=std,
                            channels_last=cfg["channels_last"], image_size=cfg.get("image_size"))
    model = model.to(device)
    if cfg["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    out = evaluate(model, batches, cfg["amp"])
    return {"test_loss": out["loss"], "predictions": out["predictions"].tolist()}


def _retrain(config: dict, data, test, threads: int = 1, resume_dir: str | None = None) -> dict:
    """Train one final run and score it. With ``resume_dir`` (``_in_flight_dir``), the run saves its state there
    after every epoch and, started again after a kill, continues from it: same seed, same trajectory, the test split
    still scored once, at the end. Its ``train_seconds`` add up the parts; ``resumed_at_epoch`` says where it went on
    (0: in one go). Skipped where the folder's experiment is not on this node (a cluster without shared storage)."""
    import torch

    from trainables.train import resume_point, save_state, train

    # A reused Ray worker keeps the thread count torch took at its first import; a run given more cores uses them.
    torch.set_num_threads(threads)
    directory = Path(resume_dir) if resume_dir and Path(resume_dir).parent.parent.is_dir() else None
    resume_state = resume_point(directory, config)
    earlier = float(resume_state.get("retrain_seconds", 0.0)) if resume_state else 0.0
    final: dict = {}
    t0 = time.perf_counter()

    def keep_last(metrics, state):
        if state is not None:
            final["state"] = state
            if directory is not None and metrics.get("status") == "running":
                directory.mkdir(parents=True, exist_ok=True)
                save_state({**state, "retrain_seconds": earlier + time.perf_counter() - t0}, directory)

    metrics = train(config, report=keep_last, resume_state=resume_state, data=data)
    seconds = earlier + time.perf_counter() - t0
    val = {METRIC: metrics.get(METRIC)} if config.get("val_size", 1) else {}
    return {**_test_model(final["state"], data, test), "status": metrics.get("status"), **val,
            "train_seconds": seconds, "epochs": metrics.get("epoch"), "train_images": metrics.get("train_images"),
            "threads": torch.get_num_threads(), "resumed_at_epoch": resume_state["epoch"] if resume_state else 0}


def _from_checkpoint(state: dict, data, test) -> dict:
    return {**_test_model(state, data, test), "status": "checkpoint"}


def _svm(data, test, options: dict) -> dict:
    from trainables.svm import fit_svm

    return fit_svm(data, test=test, **options)


# --------------------------------------------------------------------------------------------- finished runs

RUNS_DIR = "eval-runs"


def _run_path(exp_dir: Path, config: dict) -> Path:
    import hashlib

    key = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return Path(exp_dir) / RUNS_DIR / f"{config.get('arch', 'run')}-s{config.get('seed', 0)}-{key}.json"


def _in_flight_dir(exp_dir: Path, config: dict) -> Path:
    """Where a final run keeps its latest state while it trains (``_retrain``), beside its result file. Named like
    Tune's ``checkpoint_*`` folders, which ``benchmarks.carry`` leaves behind: a checkpoint stays on its machine."""
    path = _run_path(exp_dir, config)
    return path.parent / f"checkpoint_{path.stem}"


def saved_runs(exp_dir: str | Path, arch: str) -> list[Path]:
    """The result files of ``arch``'s finished final runs (``_run_path``), sorted."""
    return sorted((Path(exp_dir) / RUNS_DIR).glob(f"{arch}-s*.json"))


def in_flight_epochs(exp_dir: str | Path, arch: str) -> list[int]:
    """The epoch each of ``arch``'s final runs stopped mid-way has reached (its ``_in_flight_dir``; one it cannot
    read counts 0): what a rerun will not train again, for an ETA that does not count it."""
    from trainables.train import load_state

    epochs = []
    for folder in sorted((Path(exp_dir) / RUNS_DIR).glob(f"checkpoint_{arch}-s*")):
        try:
            epochs.append(int(load_state(folder, mmap=True)["epoch"]))
        except Exception:  # torn, foreign or empty: the run starts over (resume_point), so nothing is done
            epochs.append(0)
    return epochs


def _save_run(exp_dir: Path, config: dict, result: dict) -> None:
    path = _run_path(exp_dir, config)
    path.parent.mkdir(exist_ok=True)
    write_json(path, {"config": config, "result": result}, indent=None)
    shutil.rmtree(_in_flight_dir(exp_dir, config), ignore_errors=True)  # the result is kept: never resumed again


def _load_run(exp_dir: Path, config: dict) -> dict | None:
    """The saved result of a run with exactly this config, or None (also for an unreadable file: it reruns)."""
    path = _run_path(exp_dir, config)
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    same = json.dumps(saved.get("config"), sort_keys=True, default=str) == json.dumps(config, sort_keys=True,
                                                                                       default=str)
    return saved.get("result") if same else None


# --------------------------------------------------------------------------------------------- scoring

def score(labels: np.ndarray, predictions, classes: list[str]) -> dict:
    """accuracy, weighted F1, per-class precision/recall/F1/support and the confusion matrix (scikit-learn)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    pred = np.asarray(predictions)
    idx = list(range(len(classes)))
    p, r, f, s = precision_recall_fscore_support(labels, pred, labels=idx, zero_division=0)
    return {"test_accuracy": float(accuracy_score(labels, pred)),
            "weighted_f1": float(f1_score(labels, pred, labels=idx, average="weighted", zero_division=0)),
            "per_class": [{"class": c, "precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                           "support": int(s[i])} for i, c in enumerate(classes)],
            "confusion_matrix": confusion_matrix(labels, pred, labels=idx).tolist()}


def _group(runs: list[dict], classes: list[str], **info) -> dict:
    """Aggregate the runs of one config: means with 95% CIs, per-class means, summed confusion matrix."""
    per_class = [{"class": c, **{m: float(np.mean([r["per_class"][i][m] for r in runs]))
                                 for m in ("precision", "recall", "f1")}, "support": runs[0]["per_class"][i]["support"]}
                 for i, c in enumerate(classes)]
    out = {**info, "seeds": [r["seed"] for r in runs],
           **{m: mean_ci([r.get(m) for r in runs]) for m in ("test_accuracy", "weighted_f1", "test_loss")},
           "per_class": per_class, "confusion_matrix": np.sum([r["confusion_matrix"] for r in runs], axis=0).tolist(),
           "runs": [{k: v for k, v in r.items() if k not in ("per_class", "confusion_matrix", "predictions")}
                    for r in runs]}
    vals = [r.get(METRIC) for r in runs if r.get(METRIC) is not None]
    if vals:
        out[METRIC] = mean_ci(vals)
    return out


# --------------------------------------------------------------------------------------------- the driver

def _init_ray(address: str | None, spec: dict | None = None) -> bool:
    import ray

    if ray.is_initialized():
        return False
    kwargs = dict(include_dashboard=False, configure_logging=True, logging_level="WARNING", log_to_driver=False)
    from trainables.plugins import experiment_runtime_env

    # the experiment's own nets and dataset class, if a user's code: shipped to every node as the search shipped them
    shipped = experiment_runtime_env((spec or {}).get("nets", {}), (spec or {}).get("fixed", {}).get("dataset") or "")
    if shipped:
        kwargs["runtime_env"] = shipped
    # "local": a Ray of our own, as search does; a bare ray.init() would join any cluster `ray start` left here.
    from trainables.compat import ray_init

    ray_init(address=address or "local", **kwargs)  # keeps the CLI's stop on SIGTERM (one line, exit 143)
    return True


def evaluate_experiment(exp_dir: str | Path, top_k: int | None = None, repeats: int = 5, train_on: str = "train",
                        epochs: int | None = None, archs: list[str] | None = None, svm_subset: int = 0,
                        svm_k: int | None = None, address: str | None = None, progress=None, pareto: bool = False,
                        trials: list[str] | None = None, train_images: int | None = None,
                        command: str | None = None, cpus_per_run: int = 1) -> dict:
    """Run the final evaluation of an experiment (see the module docstring); returns and saves the results.

    Every retrained run is saved in ``EXP/eval-runs/`` as it ends, keyed by its full config (seed and epochs
    included); a later evaluation of the same config takes the saved run instead of training and testing it again,
    so an interrupted evaluation continues where it stopped and each run meets the test split once. A run killed
    while it trains continues from its last finished epoch (``_retrain``; the state stays on this machine).
    ``top_k``: configs per net, ranked by validation accuracy (None: 3); not with ``pareto`` or ``trials``, which
    choose the configs themselves.
    ``svm_subset``: also fit report 000's SVM on that many training images (0: no SVM); ``svm_k``: its PCA
    components (None: 448, the report's), only with ``svm_subset``.
    ``progress``: called with a line of text as runs end (None: nothing said).
    ``pareto``: retrain the members of the experiment's Pareto front (``analysis.pareto``) instead of each net's
    top-k; each keeps its per-net validation rank as its label.
    ``trials``: retrain exactly these trials (ids as in ``report``), e.g. the front members a user picked.
    ``train_images``: train every final run on exactly this many images (module docstring); None: all of the split.
    ``command``: what the ledger records as the command (default: this process's command line).
    ``cpus_per_run``: CPU cores (and torch threads) per final run. 1 runs as many at once as there are cores; more
    runs fewer at once, each sooner: a slow net's run then ends within a working session instead of all of them
    ending together hours later. A speed setting, not the model's: it is not in the run's config or its key.
    """
    if train_on not in TRAIN_ON:
        raise ValueError(f"--train-on must be one of {', '.join(TRAIN_ON)}, got {train_on!r}")
    for name, value, low in (("--top-k", 3 if top_k is None else top_k, 1), ("--repeats", repeats, 1),
                             ("--svm-subset", svm_subset, 0), ("--svm-k", 1 if svm_k is None else svm_k, 1)):
        if not is_count(value, low):
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if svm_k is not None and not svm_subset:  # no SVM is fitted without a subset: the k would be dropped unsaid
        raise ValueError(f"--svm-k {svm_k} is the SVM's PCA components, and there is no SVM without --svm-subset N: "
                         f"give --svm-subset too, or leave --svm-k out")
    if progress is not None and not callable(progress):
        raise ValueError(f"progress must be a function called with each line of text, or None, got {progress!r}")
    if epochs is not None and not is_count(epochs, 1):
        raise ValueError(f"--epochs must be an integer >= 1, got {epochs!r}")
    if train_images is not None and not is_count(train_images, 1):
        raise ValueError(f"--train-images must be an integer >= 1, got {train_images!r}")
    if not is_count(cpus_per_run, 1):
        raise ValueError(f"--cpus-per-run must be an integer >= 1, got {cpus_per_run!r}")
    if (address in (None, "local")) and cpus_per_run > (os.cpu_count() or 1):
        raise ValueError(f"--cpus-per-run {cpus_per_run}: this machine has {os.cpu_count()} cores, so no run could "
                         f"ever start")
    for flag, names in (("--archs", archs), ("--trials", trials)):  # [] is not "all" (all would spend test uses)
        if names is not None and (isinstance(names, str) or not names or not all(isinstance(n, str) for n in names)):
            raise ValueError(f"{flag}: a list of names, got {names!r}")
    if not isinstance(pareto, bool):
        raise ValueError(f"--pareto is true or false, got {pareto!r}")
    if trials is not None and pareto:
        raise ValueError("--trials and --pareto choose the configs two ways: give one of them")
    if top_k is not None and (trials is not None or pareto):  # it would be ignored: they choose the configs
        raise ValueError(f"--top-k {top_k} and {'--trials' if trials is not None else '--pareto'} choose the configs "
                         f"two ways: give one of them")
    for flag, names in (("--archs", archs), ("--trials", trials)):
        twice = sorted({n for n in names or [] if names.count(n) > 1})
        if twice:  # a typo, or a paste: once each is what runs
            raise ValueError(f"{flag} {','.join(names)}: {', '.join(twice)} named twice")
    ledger.check_writable()  # every scoring below is recorded: a ledger that cannot be written is said before them
    top_k = 3 if top_k is None else top_k
    if svm_k is None:
        from trainables.svm import DEFAULTS as SVM_DEFAULTS

        svm_k = SVM_DEFAULTS["k"]
    exp = load(exp_dir)
    unknown = sorted(set(archs or []) - set(exp.spec["archs"]))
    if unknown:
        raise ValueError(f"--archs {','.join(unknown)} not in the experiment (it has {','.join(exp.spec['archs'])})")
    wanted = archs or exp.spec["archs"]
    fixed = exp.spec.get("fixed", {})
    points = grid_points(exp)
    grid_mode = bool(points)
    if grid_mode and (trials is not None or pareto):
        raise ValueError("a grid experiment is scored from every grid point's checkpoints: --trials and --pareto "
                         "do not apply to it")
    top = None if grid_mode else ranked(exp)
    if trials is not None:
        missing = [t for t in trials if t not in set(top["trial_id"])]
        if missing or not trials:
            raise ValueError(f"--trials {','.join(missing) or '(empty)'}: not a trial of {str(exp_dir)!r} with a "
                             f"validation score (see: cifar-tune report {shlex.quote(str(exp_dir))})")

    from trainables.data import load_dataset

    data = load_dataset(fixed.get("data_dir"), fixed.get("dataset", "cifar10"), any_name=True)  # as it was searched
    changed = data_change(exp.record, data)
    if changed:  # its test split would be another's, and its ledger too
        raise ValueError(f"the data changed since the search ({changed}): restore the original files; a search is "
                         f"scored on the data it ran on")
    if svm_subset:  # before the final runs: a bad --svm-k found after them costs their hours
        from trainables.svm import check_svm

        check_svm(data, svm_subset, svm_k, val_size=fixed.get("val_size", 5000))
    draw = None
    if train_images is not None and not grid_mode:
        draw = _train_draw(data, train_on, fixed.get("val_size", 5000), train_images)
    test = data.split("test")  # the one read of the test split
    train_only = without_test_split(data)
    command = command or " ".join(shlex.quote(a) for a in ["cifar-tune", *sys.argv[1:]])

    def ledgered(info: dict, config: dict, result: dict, train_n) -> None:
        """One scoring of the test split: into the dataset's and the experiment's ledger."""
        scores = score(test[1], result["predictions"], data.classes)
        ledger.record_use(checksum=data.checksum, dataset=data.name, arch=info["arch"], config=config,
                          seed=info["seed"], train_images=train_n, experiment=exp.path, command=command,
                          scores={k: scores[k] for k in ("test_accuracy", "weighted_f1")})

    jobs, results = [], []
    if grid_mode:  # scoring finished checkpoints is inference only: it runs here, no retraining
        from trainables.checkpoints import newest_on_disk
        from trainables.train import load_state

        for label, _, point_trials in points:
            for t in point_trials:
                newest = newest_on_disk(t["path"], load_state) if t["path"] and t["arch"] in wanted else None
                if newest is None:
                    continue
                jobs.append(({"label": label, "arch": t["arch"], "trial_id": t["trial_id"],
                              "seed": t["config"].get("seed", 0), METRIC: t[METRIC],
                              "config_hash": ledger.config_hash(t["config"])}, None))
                results.append(_from_checkpoint(newest[1], train_only, test))
                ledgered(jobs[-1][0], t["config"], results[-1], None)
    else:
        chosen = top["rank"] <= top_k
        if pareto:
            from analysis.pareto import front, objectives_of

            chosen = top["trial_id"].isin([t["trial_id"] for t in front(exp.trials, objectives_of(exp.record))])
        if trials is not None:
            chosen = top["trial_id"].isin(trials)
        for _, row in top[chosen & top["arch"].isin(wanted)].iterrows():
            trial = next(t for t in exp.trials if t["trial_id"] == row["trial_id"])
            config = {**trial["config"], **({"epochs": epochs} if epochs else {})}
            if train_on == "trainval":
                config["val_size"] = 0  # train on all of train + val; there is no validation score then
            if train_images is not None:
                config["subset"] = train_images  # the first N of the split's seeded order (module docstring)
            for seed in range(repeats):
                jobs.append(({"arch": row["arch"], "rank": int(row["rank"]), "trial_id": row["trial_id"],
                              "seed": seed, "config_hash": ledger.config_hash(config)}, {**config, "seed": seed}))
    if not jobs and not svm_subset:
        counts = exp.frame["status"].value_counts().to_dict()
        raise ValueError(f"nothing to evaluate in {str(exp_dir)!r}: no trial of {', '.join(wanted)} has a validation "
                         f"score{' and a checkpoint' if grid_mode else ''} (statuses: {counts})")
    svm = None
    if any(config is not None for _, config in jobs) or svm_subset:
        import ray

        retrains = [(info, config) for info, config in jobs if config is not None]
        done = {i: _load_run(exp.path, config) for i, (_, config) in enumerate(retrains)}
        done = {i: r for i, r in done.items() if r is not None}
        todo = [i for i in range(len(retrains)) if i not in done]
        from trainables.config import resolve_config

        for i in todo:  # a user's net changed or gone since the search: one line here, not a traceback from Ray
            resolve_config(retrains[i][1])
        if done and progress:
            progress(f"evaluate: {len(done)} of {len(retrains)} runs finished earlier, kept (not retrained)")
        for i in done:  # a state left by a kill between saving a run and removing its folder
            shutil.rmtree(_in_flight_dir(exp.path, retrains[i][1]), ignore_errors=True)
        started = _init_ray(address, exp.spec) if todo or svm_subset else False
        try:
            if todo or svm_subset:
                data_ref, test_ref = ray.put(train_only), ray.put(test)
            # a quarter GPU per run where there are GPUs (the small nets pack four to a GPU), else one CPU
            gpus = 0.25 if ray.is_initialized() and ray.cluster_resources().get("GPU") else 0
            retrain = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus)(_retrain)
            pending = {retrain.remote(retrains[i][1], data_ref, test_ref, cpus_per_run,
                                      str(_in_flight_dir(exp.path, retrains[i][1]))): i for i in todo}
            svm_ref = ray.remote(num_cpus=1)(_svm).remote(
                data_ref, test_ref, {"subset": svm_subset, "k": svm_k,
                                     "val_size": fixed.get("val_size", 5000)}) if svm_subset else None
            started_at, trained = time.monotonic(), 0  # epochs this command trained (not a resumed run's earlier)
            while pending:  # each run is saved the moment it ends: a killed evaluation loses only running ones
                ready, _ = ray.wait(list(pending), num_returns=1)
                i = pending.pop(ready[0])
                done[i] = ray.get(ready[0])
                # ledger first: a run saved (and so never scored again) always has its record
                ledgered(retrains[i][0], retrains[i][1], done[i], done[i].get("train_images"))
                _save_run(exp.path, retrains[i][1], done[i])
                trained += max(1, (done[i].get("epochs") or 0) - (done[i].get("resumed_at_epoch") or 0))
                if progress:
                    info = retrains[i][0]
                    # wall time per epoch trained so far (runs in parallel share it) x the epochs the runs left train
                    left = sum(retrains[j][1].get("epochs") or 0 for j in pending.values())
                    eta = (time.monotonic() - started_at) / trained * left
                    resumed = done[i].get("resumed_at_epoch")
                    progress(f"evaluate: run {len(done)}/{len(retrains)} done ({info['arch']} #{info['rank']} seed "
                             f"{info['seed']}, {done[i].get('epochs')} epochs, {done[i]['train_seconds']:.0f} s"
                             + (f", continued from epoch {resumed} after a stop" if resumed else "") + ")"
                             + (f"; ETA {_dt.timedelta(seconds=round(eta))}" if pending else ""))
            results += [done[i] for i in range(len(retrains))]
            svm = ray.get(svm_ref) if svm_ref is not None else None
            if svm is not None:
                ledgered({"arch": SVM_ARCH, "seed": 0}, {"arch": SVM_ARCH, "subset": svm_subset, "k": svm_k}, svm,
                         svm.get("train_images", svm_subset))
        finally:
            if started:
                ray.shutdown()

    runs = [{**info, **{k: v for k, v in res.items()}, **score(test[1], res["predictions"], data.classes)}
            for (info, _), res in zip(jobs, results)]
    key = (lambda r: r["label"]) if grid_mode else (lambda r: (r["arch"], r["rank"]))
    groups: dict = {}
    for r in runs:
        groups.setdefault(key(r), []).append(r)
    trial_configs = {t["trial_id"]: t["config"] for t in exp.trials}
    summaries = []
    for k, g in groups.items():
        seen = sorted({r.get("train_images") for r in g if r.get("train_images") is not None})
        info = {"arch": g[0]["arch"], "trial_id": g[0]["trial_id"], "train_on": "train" if grid_mode else train_on,
                "train_images": seen[0] if len(seen) == 1 else (seen or None)}
        if grid_mode:
            info.update(label=k, config=trial_configs[g[0]["trial_id"]])
        else:
            final = {**({"epochs": epochs} if epochs else {}), **({"val_size": 0} if train_on == "trainval" else {}),
                     **({"subset": train_images} if train_images is not None else {})}
            info.update(rank=k[1], config={**trial_configs[g[0]["trial_id"]], **final})  # as the final runs trained
        summaries.append(_group(g, data.classes, **info))

    record = {"experiment": str(Path(exp_dir).resolve()), "created": _dt.datetime.now().isoformat(timespec="seconds"),
              "mode": "grid checkpoints" if grid_mode else "retrain", "train_on": "train" if grid_mode else train_on,
              "top_k": None if pareto or trials is not None else top_k, "pareto": pareto, "trials": trials,
              "repeats": repeats, "epochs": epochs,
              "classes": list(data.classes),
              "test_images": int(len(test[1])), "results": [] if grid_mode else summaries,
              "grid": summaries if grid_mode else [], "train_images": train_images, "train_draw": draw}
    if grid_mode:  # the comparison table's row per net: the grid point with the best validation accuracy
        for arch in wanted:
            mine = [s for s in summaries if s["arch"] == arch and s.get(METRIC, {}).get("mean") is not None]
            if mine:
                best = max(mine, key=lambda s: s[METRIC]["mean"])
                record["results"].append({**best, "rank": 1})
    firsts = sorted([s for s in record["results"] if s.get("rank") == 1],
                    key=lambda s: -s["test_accuracy"]["mean"])
    if len(firsts) >= 2:
        a, b = firsts[:2]
        acc = [{r["seed"]: r["test_accuracy"] for r in s["runs"]} for s in (a, b)]
        record["paired"] = paired_comparison(acc[0], acc[1], (a["arch"], b["arch"]))
    if svm is not None:
        pred = svm.pop("predictions")
        record["svm"] = {**svm, "confusion_matrix": score(test[1], pred, data.classes)["confusion_matrix"]}
    record["test_split"] = _ledger_summary(data.checksum, [(g["arch"], g["runs"][0].get("config_hash"))
                                                           for g in summaries])
    save(record, exp_dir)
    return record


def _train_draw(data, train_on: str, val_size: int, n: int) -> dict:
    """Check that ``n`` training images exist in the split and describe the draw, before anything is trained."""
    import hashlib

    order = data.split_indices(0 if train_on == "trainval" else val_size)[0]
    if n > len(order):
        raise ValueError(f"--train-images {n:,}: the {train_on} split of {data.source} has {len(order):,} images")
    chosen = np.sort(order[:n])
    return {"images": n, "of": int(len(order)), "split": train_on,
            "rule": "the first N of the split's seeded order (trainables.data.Dataset.split_indices, seed 0)",
            "indices_sha256": hashlib.sha256(chosen.astype(np.int64).tobytes()).hexdigest()}


def _ledger_summary(checksum: str, evaluated: list[tuple]) -> dict:
    """Per net evaluated here: which use of this data's test split each config is, and every use so far."""
    records = ledger.read_dataset(checksum)
    out = {"checksum": checksum, "ledger": str(ledger.ledger_path(checksum)), "nets": {}}
    for arch in dict.fromkeys(a for a, _ in evaluated):
        mine = ledger.uses(records, arch)
        hashes = [h for a, h in evaluated if a == arch]
        out["nets"][arch] = {"uses": len(mine), "this_evaluation": [u["use"] for u in mine
                                                                     if u["config_hash"] in hashes],
                             "all": mine}
    return out


def save(record: dict, exp_dir: str | Path) -> None:
    import pandas as pd

    exp = Path(exp_dir)
    previous = exp / EVALUATION_FILE
    if previous.exists():  # an earlier evaluation is kept beside the new one, never overwritten
        try:
            stamp = json.loads(previous.read_text()).get("created", "")
        except (OSError, ValueError):
            stamp = ""
        stamp = "".join(c for c in str(stamp) if c.isalnum()) or f"{previous.stat().st_mtime:.0f}"
        for name in (EVALUATION_FILE, "evaluation.csv"):
            if (exp / name).exists():
                os.replace(exp / name, exp / name.replace("evaluation.", f"evaluation-{stamp}."))
    write_json(exp / EVALUATION_FILE, record)
    rows = [{"arch": g["arch"], "rank": g.get("rank"), "label": g.get("label"), "trial_id": g["trial_id"],
             "train_on": g["train_on"], **{k: v for k, v in run.items() if k not in ("arch", "rank", "label",
                                                                                   "trial_id")}}
            for g in (record["grid"] or record["results"]) for run in g["runs"]]
    pd.DataFrame(rows).to_csv(exp / "evaluation.csv", index=False)


def ledger_lines(record: dict) -> list[str]:
    """'test split: use N for <net> on this data', then the earlier uses (from the record's ledger summary)."""
    lines = []
    for arch, net in (record.get("test_split") or {}).get("nets", {}).items():
        now = ", ".join(str(n) for n in net["this_evaluation"]) or "?"
        lines.append(f"test split: use {now} for {arch} on this data ({net['uses']} in all, ledger "
                     f"{record['test_split']['ledger']})")
        for u in net["all"]:
            if u["use"] not in net["this_evaluation"]:
                acc = f", test_accuracy {np.mean(u['test_accuracy']):.4f}" if u["test_accuracy"] else ""
                lines.append(f"  earlier use {u['use']}: {u['first']}, config {u['config_hash']}, {u['runs']} runs, "
                             f"trained on {u['train_images'] or 'all'} images{acc} ({u['experiment']})")
    return lines


def summary_lines(record: dict) -> list[str]:
    size = f" ({record['train_images']:,} images)" if record.get("train_images") else ""
    lines = [f"test split: {record['test_images']:,} images; {record['mode']}, trained on {record['train_on']}{size}"]
    for g in record["grid"] or record["results"]:
        name = g.get("label") or f"{g['arch']} #{g['rank']} ({g['trial_id']})"
        lines.append(f"  {name:<44} test_accuracy {fmt_ci(g['test_accuracy']):<18} weighted_f1 "
                     f"{g['weighted_f1']['mean']:.4f}  test_loss {g['test_loss']['mean']:.4f}  seeds {g['seeds']}")
    p = record.get("paired")
    if p and p.get("t") is not None:
        lines.append(f"  paired t-test {p['a']} - {p['b']}: {p['mean_difference']:+.4f} over {p['n']} seeds, "
                     f"t = {p['t']:.3f}, p = {p['p_value']:.4g}")
    elif p:
        lines.append(f"  paired comparison {p['a']} vs {p['b']}: {p['note']}")
    if record.get("svm"):
        s = record["svm"]
        lines.append(f"  svm_pca (subset {s['subset']:,}, k={s['k']})  test_accuracy {s['test_accuracy']:.4f} "
                     f"weighted_f1 {s['weighted_f1']:.4f}")
    return lines + ledger_lines(record)
