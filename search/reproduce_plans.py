"""The plans ``cifar-tune reproduce`` runs: per report, per net, the search budget with its reasoning, the final runs,
and what they are expected to cost on the measured speed of this project's CPU.

Budget rules (each net states its ``rule``; ``tests/test_reproduce.py`` checks every plan against its own):

* ``search``: TPE + ASHA within a fifth of the epochs the report spent tuning the net (``epoch_budget <=
  report_epochs // 5``, enforced by the scheduler); the first rungs of all trials take at most half of it (the rest
  pays for promotions), and there are as many trials as a third of it pays first rungs for, up to 24 (TPE's random
  start-up is 5).
* ``own+defaults``: where a fifth cannot pay even TPE's five random start-up trials a first rung with half of it
  left for promotions (``epoch_budget < 10``), nothing is searched: the report's own setting and the long-horizon
  default(s) are tried (``num_samples == len(enqueue)``, each first rung paid), and the one better on validation
  goes to the final runs. The plan says so.

Either way the first config tried is the report's own setting exactly as the registry has it (``own_setting``; its
space must contain it, which the tests check). An epoch counts as one epoch whatever its size: a search on a
reduced-fidelity proxy (``search_subset``: the first N training images, allowed for nets above
``PROXY_ABOVE_SECONDS`` per measured full epoch, and said in ``why``) spends its epochs at a fraction of the
cost, never more of them. The final runs are the measurement, counted separately (``final_epochs x repeats``): 5
seeds, or at least 3 where 5 would not fit on two cores (said in ``why``).

Costs: ``measured_speeds`` reads the training speed of every net (images/s, fp32, batch 128, on this project's
2-core CPU) from docs/benchmarks.md, the table ``python -m benchmarks.epoch_times`` writes; ``estimate`` turns a
plan into seconds with it, ``plan_lines`` / ``list_lines`` print them (``reproduce --list`` and the plan a run
shows first), and ``OverallEta`` keeps a running command's overall ETA.
"""
from __future__ import annotations

import functools
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from search.spec import SpecError
from trainables.presets import get_preset

RULE_SEARCH = "search"
RULE_OWN_AND_DEFAULTS = "own+defaults"
RULES = (RULE_SEARCH, RULE_OWN_AND_DEFAULTS)
PROXY_ABOVE_SECONDS = 60.0  # a net slower than this per full epoch may search on a proxy
MIN_SEEDS = 3  # the floor where 5 seeds do not fit (the plan says why)
CIFAR10_TRAIN = 50_000  # training images the estimates assume (train + validation of the official split)
VAL_COST = 1 / 3  # a validation image costs about a third of a training one (forward only): the estimates' guess
ETA_EVERY = 600.0  # seconds between overall-ETA lines while a stage runs (besides one at every stage's start)


@dataclass(frozen=True)
class NetPlan:
    arch: str
    num_samples: int  # trials (TPE needs ~24 where the budget allows)
    max_epochs: int  # a trial's horizon: its cosine schedule anneals over these
    grace_period: int  # ASHA's first rung
    epoch_budget: int  # search epochs for this net, enforced by the scheduler
    report_epochs: int  # what the report spent tuning this net (all its runs x epochs)
    final_epochs: int  # epochs of each final run
    metric: str  # the published metric to beat
    published_row: tuple[str, str]  # (preset, grid label): the cell of trainables.presets that holds the number
    published_note: str
    reduction_factor: float = 3.0
    also_enqueue: tuple = ()  # tried after the report's own setting: each one that setting with these changes
    why: str = ""
    rule: str = RULE_SEARCH  # RULES, see the module docstring
    search_subset: int = 0  # a proxy: the search trains on the first N training images (0: all of them)
    repeats: int | None = None  # seeds per final config (None: the plan's)
    ours_note: str = ""  # said beside our number in every table (e.g. "from scratch")
    final_cpus: int = 1  # cores per final run (analysis.evaluate's cpus_per_run): 2 runs one at a time, each sooner

    @property
    def enqueue(self) -> tuple:
        """The configs tried first: the report's own setting (``own_setting``), then it changed by each of
        ``also_enqueue``."""
        own = own_setting(self.arch)
        return (own, *({**own, **changes} for changes in self.also_enqueue))

    @property
    def published(self) -> float:
        """The number to beat, read from the report's preset (trainables/presets.py owns every published number)."""
        preset, label = self.published_row
        return float(get_preset(preset).published[label][self.metric])

    @property
    def published_test(self) -> float | None:
        """The report's test accuracy for the same row, where it published one beside another metric (004's F)."""
        preset, label = self.published_row
        value = get_preset(preset).published[label].get("test_accuracy")
        return None if self.metric == "test_accuracy" or value is None else float(value)


@dataclass(frozen=True)
class ReproductionPlan:
    report: str
    title: str
    nets: tuple[NetPlan, ...]
    repeats: int = 5
    train_on: str = "trainval"  # the final runs draw their images from train + validation ("train": from train)
    settings: dict = field(default_factory=dict)

    @property
    def train_images(self) -> int:
        """As many as the report's final model trained on (the report's preset owns the number and why)."""
        return int(get_preset(self.report).train_images)

    def seeds(self, net: NetPlan) -> int:
        return net.repeats or self.repeats

    def to_dict(self) -> dict:
        out = asdict(self)
        out["train_images"] = self.train_images
        out["train_images_why"] = get_preset(self.report).train_images_why
        for net, record in zip(self.nets, out["nets"]):
            record["published"] = net.published
            record["enqueue"] = [dict(p) for p in net.enqueue]
            record["repeats"] = self.seeds(net)
        return out


def own_setting(arch: str) -> dict:
    """The report's own setting of ``arch`` (the registry's defaults over the config's) on every key its reproduce
    space searches. Keys the space fixes instead must hold the same value, speed knobs aside (tested)."""
    from spaces import load_space
    from trainables.config import resolve_config

    import inspect

    from trainables.models import get_arch

    own = resolve_config({"arch": arch})
    # a size knob the config leaves unset (keras_cnn's padding) is the net's own builder default
    built = {n: p.default for n, p in inspect.signature(get_arch(arch).builder).parameters.items()
             if p.default is not inspect.Parameter.empty}
    return {k: own[k] if own.get(k) is not None else built.get(k) for k in load_space(arch, space_file(arch)).params}


def space_file(arch: str) -> Path:
    from spaces import shipped_dir

    return shipped_dir() / "reproduce" / f"{arch}.yaml"


_HAND_TUNED = {"lr": 0.05, "batch_size": 128, "weight_decay": 5e-4, "dropout": 0.3, "label_smoothing": 0.1,
               "warmup_epochs": 1.0, "schedule": "cosine", "nesterov": True}  # issue 9: 0.701 val acc after 30 epochs for modified_net, tuned by hand
# The long-horizon default of the Adam-family nets (002, 004): the report's optimizer with flip + crop, a cosine
# schedule over the run, a warm-up epoch, label smoothing 0.1 and batch 64 (faster per image than 16-32 on a CPU).
_LONG_HORIZON = {"augment": True, "schedule": "cosine", "warmup_epochs": 1.0, "label_smoothing": 0.1, "batch_size": 64}
# ResNet-18 from scratch: the usual CIFAR recipe (SGD + Nesterov 0.9, lr 0.05 at batch 128, weight decay 5e-4).
_RESNET_SGD = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "batch_size": 128,
               "weight_decay": 5e-4, "schedule": "cosine", "warmup_epochs": 1.0, "label_smoothing": 0.1}
_FEW = ("A fifth is too few epochs to search (TPE's five random start-up trials could not each get a first rung "
        "with half the budget left), so the search is only the report's own setting and the long-horizon "
        "default, one epoch each (a promotion where the budget pays one); the better on validation goes to the "
        "final runs.")

_PLANS = {p.report: p for p in (
    ReproductionPlan(
        report="report003", title="Report 003 (Lai): OriginNet and ModifiedNet, Tables VII-IX",
        nets=(
            NetPlan("modified_net", num_samples=24, max_epochs=50, grace_period=5, epoch_budget=480,
                    report_epochs=8 * 300, final_epochs=50, metric="test_accuracy",
                    published_row=("report003", "arch=modified_net, optimizer=sgd, lr=0.005"),
                    published_note="test accuracy, SGD lr 0.005, 300 epochs (Table VIII)",
                    also_enqueue=(_HAND_TUNED,),
                    why="Report 003 tuned ModifiedNet with 8 runs of 300 epochs (Tables VIII-IX): 2,400 epochs, "
                        "so the search gets 480. 24 trials x a first rung of 5 epochs cost 120; rungs at 5, 15 and "
                        "45 epochs (eta 3) promote a third each time. 50 epochs: these 36k-parameter nets are "
                        "within a point of their plateau by then under cosine annealing (a 30-epoch hand run "
                        "reached 0.701), not the report's 300."),
            NetPlan("origin_net", num_samples=12, max_epochs=20, grace_period=2, epoch_budget=60,
                    report_epochs=300, final_epochs=50, metric="weighted_f1",
                    published_row=("report003", "arch=origin_net"),
                    published_note="weighted F1, its own setting, 300 epochs (Table VII)",
                    also_enqueue=({**_HAND_TUNED, "norm": "batch"},),
                    why="The report trained OriginNet once (300 epochs), so a fifth is 60 epochs: 12 trials of a "
                        "20-epoch horizon, rungs at 2, 6 and 18. Too few for TPE to learn much; the first config "
                        "is the report's own (SGD lr 1e-4, batch 64, no BatchNorm, constant lr: the author's code), "
                        "the second the hand-tuned one. The final runs get 50 epochs."),
        )),
    ReproductionPlan(
        report="report000", title="Report 000 (Shin): simple CNN, Table II",
        nets=(
            NetPlan("simple_cnn", num_samples=16, max_epochs=30, grace_period=3, epoch_budget=125,
                    report_epochs=5 * 5 * 25, final_epochs=30, metric="test_accuracy",
                    published_row=("report000", "lr=0.001, batch_size=20"),
                    published_note="test accuracy, lr 1e-3, batch 20, 25 epochs (Table II)",
                    also_enqueue=({**_HAND_TUNED, "batch_size": 64, "augment": True},),
                    why="Report 000's Table II shows 5 points x 5 seeds x 25 epochs = 625 epochs (the text's "
                        "3 x 3 lr x batch grid would be 1,125: the smaller reading is the rule), so the search "
                        "gets 125: 16 trials x 3 epochs = 48 for the first rung, rungs at 3, 9 and 27 of a "
                        "30-epoch horizon. bf16 + channels_last halve its epoch time on this CPU at equal "
                        "accuracy."),
        )),
    ReproductionPlan(
        report="report001", title="Report 001 (Dureja): Keras CNN (Table 2) and ResNet-18 (Table 1)",
        nets=(
            NetPlan("keras_cnn", num_samples=8, max_epochs=30, grace_period=2, epoch_budget=40,
                    report_epochs=4 * 50, final_epochs=50, metric="test_accuracy",
                    published_row=("report001", "batch_size=64, dropout=0.4"),
                    published_note="test accuracy, batch 64, dropout 0.4, Adam 1e-3, <= 50 epochs (Table 2)",
                    also_enqueue=({"dropout": 0.4},),  # Table 2's best row (the registry's is §2.2's 0.3)
                    why="Report 001's Table 2 is 4 runs of at most 50 epochs: 200 epochs, so the search gets 40, "
                        "too few for 24 trials: 8 trials x 2 epochs, rungs at 2, 6 and 18. The budget rule, "
                        "not the machine, is what binds here."),
            NetPlan("resnet18", num_samples=2, max_epochs=30, grace_period=1, epoch_budget=4,
                    report_epochs=20, final_epochs=30, metric="test_accuracy",
                    published_row=("report001", "arch=resnet18"),
                    published_note="test accuracy, ImageNet-pretrained, fine-tuned 20 epochs (Table 1)",
                    ours_note="from scratch", rule=RULE_OWN_AND_DEFAULTS, also_enqueue=(_RESNET_SGD,), final_cpus=2,
                    why="Trained from scratch: the report fine-tuned ImageNet weights (§2.4), which cannot be "
                        "downloaded here (--set pretrained=true with $CIFAR_TUNE_RESNET18_WEIGHTS runs the "
                        "transfer setting where the weights are at hand). The report trained ResNet-18 once, 20 "
                        "epochs, so a fifth is 4 epochs. " + _FEW + " The long-horizon default is SGD + Nesterov, "
                        "lr 0.05, batch 128, weight decay 5e-4, cosine, label smoothing 0.1. ImageNet stem (the "
                        "registry's): the CIFAR stem costs about 16x the compute. Final runs: 5 seeds x 30 epochs "
                        "(10 more than the report's fine-tuning, from scratch), about 3 h at 72 s per full "
                        "epoch, each run on both cores, one at a time (about 35 min each), so that a working "
                        "session ends with finished runs rather than a pair in flight."),
        )),
    ReproductionPlan(
        report="report002", title="Report 002 (Ghasemi): the Step 3 net, its 15-run table",
        nets=(
            NetPlan("ghasemi_net", num_samples=12, max_epochs=18, grace_period=2, epoch_budget=68,
                    report_epochs=341, final_epochs=20, metric="test_accuracy",
                    published_row=("report002", "row 15 (report arch 8-3)"),
                    published_note="test accuracy, Adam 5e-4, batch 60, BatchNorm, 20 epochs (its table, row 15)",
                    search_subset=10_000, final_cpus=2,
                    also_enqueue=({**_LONG_HORIZON, "lr": 1e-3, "batch_size": 128},),
                    why="Report 002's table shows 15 runs, 341 epochs (its text says 45 attempts; the smaller "
                        "reading is the rule), so the search gets 68: 12 trials x 2 epochs = 24 for the first "
                        "rung, rungs at 2, 6 and 18. At 677 s per full fp32 epoch the search runs on a proxy: the "
                        "first 10,000 training images (5,000 held out for validation), each proxy epoch counted "
                        "as a full one. bf16 autocast + channels_last, fixed in its space since the A/B found no "
                        "accuracy cost on this net (docs/results/precision_ab.json: 2.1x faster there), bring the "
                        "proxy search to about 1.5 h and the final runs on the report's protocol (all 50,000 "
                        "images, 20 epochs) to about 9 h for 5 seeds (in fp32 5 seeds would have taken about "
                        "21 h: the plan had 3 until 2026-12-02). Whether the proxy ranks like the full data is "
                        "checked before the final runs: benchmarks.proxy_check trains 6 of its trials, spread over "
                        "its ranking at the first rung (epoch 2), on all 45,000 training images to that epoch and "
                        "compares the two rankings (about 1 h; long_runs' step report002-proxy, between "
                        "`reproduce report002 --searches-only` and the finals). On a GPU: --set subset=0 lifts the "
                        "proxy. Each final "
                        "run takes both cores (one at a time, about 2 h each) rather than two at once on one core "
                        "each (about 4 h for a pair): a working session here is 3 h, and a run in flight travels to "
                        "the next machine only when the runner was stopped as asked (benchmarks.carry --in-flight); "
                        "one that goes without warning is lost."),
        )),
    ReproductionPlan(
        report="report004", title="Report 004 (Lozano): models C, E and F, Table 1 (validation accuracy)",
        train_on="train", settings={"val_size": 10_000},
        nets=tuple(
            NetPlan(arch, num_samples=2, max_epochs=20, grace_period=1, epoch_budget=report // 5,
                    report_epochs=report, final_epochs=20, metric="val_accuracy",
                    published_row=("report004", f"arch={arch}"),
                    published_note=f"validation accuracy, Table 1's 'Val. Acc.' ('Val. Set Acc.' {rounded}), "
                                   f"{own}, {report} epochs",
                    rule=RULE_OWN_AND_DEFAULTS, also_enqueue=({**_LONG_HORIZON, "lr": 1e-3},), final_cpus=2,
                    why=f"Report 004 trained model {model} once, {report} epochs, so a fifth is {report // 5}. "
                        + _FEW + " The long-horizon default: the report's optimizer at lr 1e-3 with flip + "
                        "crop, cosine, a warm-up epoch, label smoothing 0.1, batch 64. The report measured "
                        "validation accuracy on 10,000 images held out of the training set (§3): so do the final "
                        "runs (40,000 training images, the same 10,000-image validation split as the search), "
                        "each also scored on the test split, shown beside. Table 1 gives two validation figures; "
                        "we compare with the higher one, 'Val. Acc.' (Keras' last-epoch accuracy), the harder "
                        f"target. Final runs: 5 seeds x 20 epochs{extra}, each on both cores, one at a time "
                        f"(about half an hour each), so a working session ends with finished runs.")
            for arch, model, report, own, rounded, extra in (
                ("lozano_c", "C", 10, "Adam 1e-4, batch 32", "0.66",
                 " (the report's 10 stopped early: 'it would've gone for longer')"),
                ("lozano_e", "E", 20, "Adamax 1e-3, batch 16", "0.73", ""),
                ("lozano_f", "F", 20, "Adamax 1e-3, batch 16, BatchNorm", "0.79; test 0.79", "")))),
)}


def list_plans() -> list[str]:
    return sorted(_PLANS)


def get_plan(report: str) -> ReproductionPlan:
    try:
        return _PLANS[report]
    except KeyError:
        raise SpecError(f"reproduce: unknown report {report!r}; known: {', '.join(list_plans())}") from None


# --------------------------------------------------------------------------------------------- costs

SPEED_DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
SPEED_SECTION = "Epoch time per net"
PRECISION_RECORD = SPEED_DOC.parent / "results" / "precision_ab.json"  # benchmarks/precision_ab.py's record


def measured_speeds(doc: Path = SPEED_DOC) -> tuple[dict[str, float], str]:
    """({net: training images/s}, where the numbers come from): the fp32 CPU rows of docs/benchmarks.md's section
    "Epoch time per net" (``benchmarks/epoch_times.py``, batch 128); ({}, why not) without that table."""
    try:
        text = doc.read_text()
    except OSError:
        return {}, f"no measured speeds ({doc} is missing)"
    section = re.search(rf"^## {re.escape(SPEED_SECTION)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    if not section:
        return {}, f"no measured speeds (no section '{SPEED_SECTION}' in {doc})"
    speeds = {}
    for line in section.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[2] == "cpu":
            try:
                speeds[cells[0]] = float(cells[3].replace(",", ""))
            except ValueError:
                continue
    device = re.search(r"^device: ([^;]*);.*?date ([0-9-]+)", section.group(1), re.M)
    where = f"{device.group(1)}, {device.group(2)}" if device else "device not stated"
    faster = precision_speedups()
    return speeds, (f"speeds: docs/benchmarks.md, '{SPEED_SECTION}' ({where}; fp32, batch 128; a validation image "
                    f"counted as {VAL_COST:.2f} of a training one)"
                    + (f"; a net trained in bf16 + channels_last at its measured speed-up over fp32 "
                       f"(docs/results/{PRECISION_RECORD.name})" if faster else ""))


@functools.lru_cache(maxsize=1)
def precision_speedups() -> dict[str, float]:
    """{net: fp32 epoch time / bf16 + channels_last epoch time} as the bf16 A/B measured it on this kind of machine
    (``benchmarks/precision_ab.py``); {} without its record. Read once per process: every estimate asks."""
    import json

    try:
        nets = json.loads(PRECISION_RECORD.read_text())["nets"]
        return {arch: float(n["judgement"]["speedup"]) for arch, n in nets.items()
                if (n.get("judgement") or {}).get("speedup")}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def trains_in_bf16(arch: str, fixed: dict) -> bool:
    """Whether a net's runs take bf16 autocast + channels_last: its reproduce space fixes them, or ``fixed`` sets
    them (a --set wins)."""
    from spaces import load_space

    knobs = {**load_space(arch, space_file(arch)).fixed, **fixed}
    return bool(knobs.get("amp")) and bool(knobs.get("channels_last"))


def epoch_seconds(speed: float | None, train_images: int, val_images: int) -> float | None:
    return None if not speed else (train_images + VAL_COST * val_images) / speed


def estimate(plan: ReproductionPlan, net: NetPlan, fixed: dict, epoch_budget: int, repeats: int, final_epochs: int,
             train_images: int | None, speeds: dict[str, float]) -> dict:
    """Epochs and seconds (None without a measured speed) of a net's search (``fixed``: its trials' fixed values,
    at its whole ``epoch_budget``, the scheduler's cap) and of its final runs."""
    val = int(fixed.get("val_size", 5000))
    subset = int(fixed.get("subset") or 0)
    search_images = min(subset, CIFAR10_TRAIN - val) if subset else CIFAR10_TRAIN - val
    final_images = train_images or (CIFAR10_TRAIN if plan.train_on == "trainval" else CIFAR10_TRAIN - val)
    final_val = val if plan.train_on == "train" else 0
    speed = speeds.get(net.arch)
    if speed and trains_in_bf16(net.arch, fixed):  # the table is fp32: the A/B's speed-up, where it measured one
        speed *= precision_speedups().get(net.arch, 1.0)
    search_s = epoch_seconds(speed, search_images, val)
    final_s = epoch_seconds(speed, final_images, final_val)
    return {"arch": net.arch, "search_epochs": epoch_budget, "search_images": search_images, "search_subset": subset,
            "final_runs": repeats, "final_epochs": final_epochs, "final_images": final_images,
            "images_per_second": speed,
            "search_seconds": None if search_s is None else search_s * epoch_budget,
            "final_seconds": None if final_s is None else final_s * final_epochs * repeats}


def search_fixed(plan: ReproductionPlan, net: NetPlan, fixed: dict) -> dict:
    """The values every trial of a net's search gets: the plan's settings, its proxy (``search_subset``), then the
    user's ``--set`` (which wins: ``--set subset=0`` searches on all the data)."""
    return {**plan.settings, **({"subset": net.search_subset} if net.search_subset else {}), **fixed}


# --------------------------------------------------------------------------------------------- ETA

class OverallEta:
    """The overall ETA of one reproduce command: each stage's cost at the measured speed (``estimate``), scaled by
    the pace of the stages this command ran so far (actual / estimated seconds; 1 before the first ends). Stages
    kept from an earlier run cost nothing. A stage under way counts its estimate less the time it has run."""

    def __init__(self, stages: dict, log, every: float = ETA_EVERY):
        self.estimates, self.log, self.every = dict(stages), log, every  # (report, arch, stage) -> seconds | None
        self.done: set = set()
        self.actual: dict = {}
        self.current, self.since, self.last_line = None, 0.0, 0.0

    def skip(self, key) -> None:
        self.done.add(key)

    def start(self, key, left: float = 1.0) -> None:
        """``key`` begins, with the fraction ``left`` of its work still to do (a resumed stage did some before)."""
        if self.estimates.get(key) is not None:
            self.estimates[key] *= min(1.0, max(0.0, left))
        self.current, self.since = key, time.monotonic()
        self.say()

    def finish(self, key) -> None:
        if key == self.current:
            self.actual[key] = time.monotonic() - self.since
            self.current = None
        self.done.add(key)

    def pace(self) -> float:
        timed = [k for k in self.actual if self.estimates.get(k)]
        estimated = sum(self.estimates[k] for k in timed)
        return sum(self.actual[k] for k in timed) / estimated if estimated else 1.0

    def seconds_left(self) -> float | None:
        left = [k for k in self.estimates if k not in self.done]
        if any(self.estimates[k] is None for k in left):
            return None
        pace = self.pace()
        total = sum(self.estimates[k] for k in left if k != self.current) * pace
        if self.current in left:
            total += max(0.0, self.estimates[self.current] * pace - (time.monotonic() - self.since))
        return total

    def line(self) -> str:
        pace = f"pace {self.pace():.2f}x the measured speed" if self.actual else "at the measured speed"
        return (f"reproduce: overall {len(self.done)}/{len(self.estimates)} stages done; ETA "
                f"{hms(self.seconds_left())} ({pace})")

    def say(self) -> None:
        self.last_line = time.monotonic()
        self.log(self.line())

    def maybe_say(self) -> None:
        if self.current is not None and time.monotonic() - self.last_line >= self.every:
            self.say()


def plan_lines(plan: ReproductionPlan, nets: list, costs: dict, specs: dict | None = None,
               kept: set = frozenset()) -> list[str]:
    """Per net: its search and its final runs, with epochs and the time they take at the measured speed."""
    lines = []
    for n in nets:
        c = costs[n.arch]
        trials = specs[n.arch].num_samples if specs else n.num_samples
        horizon = specs[n.arch].max_epochs if specs else n.max_epochs
        tried = "only" if trials == 1 else f"+ {trials - 1} default{'s' if trials > 2 else ''}"
        how = (f" (the report's own setting {tried}: too few epochs to search)"
               if n.rule == RULE_OWN_AND_DEFAULTS else "")
        proxy = " (a proxy subset)" if c["search_subset"] else ""
        done = " (done earlier)" if (plan.report, n.arch, "search") in kept else ""
        lines.append(f"  {plan.report} {n.arch:<13} search {trials:>2} trials x <= {horizon:>2} epochs, budget "
                     f"{c['search_epochs']:>3} epochs of {c['search_images']:,} images{proxy} (report tuned "
                     f"{n.report_epochs:,}){how}: ~{hms(c['search_seconds'])}{done}")
        images = f"{c['final_images']:,} images of {plan.train_on}"
        lines.append(f"  {'':<9} {'':<13} final  {c['final_runs']} seeds x {c['final_epochs']} epochs on {images}: "
                     f"~{hms(c['final_seconds'])}; beat {n.metric} {n.published}"
                     + (f" ({n.ours_note})" if n.ours_note else ""))
    return lines


def list_lines(plans: list[tuple], source: str) -> list[str]:
    """``reproduce --list``: each plan's nets (``plans``: (plan, nets, costs, specs), as the command would run them:
    ``search.reproduce.plan_listing``) with their epochs and the time they take at the measured speed (``source``:
    where that speed was read), then every net, cheapest first."""
    lines, totals = [source], []
    for plan, nets, costs, specs in plans:
        for n in nets:
            c = costs[n.arch]
            total = None if c["search_seconds"] is None else c["search_seconds"] + c["final_seconds"]
            totals.append((total, n.arch))
        lines += plan_lines(plan, nets, costs, specs)
    order = sorted(totals, key=lambda t: (t[0] is None, t[0] or 0))
    lines.append("cheapest first: " + ", ".join(f"{a} ~{hms(t)}" for t, a in order))
    return lines


def hms(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(max(0, seconds))
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
