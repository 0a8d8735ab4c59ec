"""The seed reports' presets as data: the grid each report tried, the settings it held, its published numbers.

Moved here verbatim from ``search/presets.py`` (class ``Preset``, ``point_label``, ``labelled_grid``,
``expand_grid``, ``grid_runs``, the registry ``list_presets`` / ``get_preset`` and the five presets) so that
``analysis/`` can print the reports' numbers beside ours without importing ``search/`` (the design guide: what both
need lives below both). ``search/presets.py`` keeps the search budget (``grid_cost``, ``tuned_plan``) and
re-exports everything here, so ``from search.presets import get_preset`` still works.
"""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field

from trainables.models import get_arch


@dataclass(frozen=True)
class Preset:
    name: str
    report: str  # citation, with the table the grid comes from
    archs: tuple[str, ...]
    description: str
    grid: dict = field(default_factory=dict)  # key -> list of values; points = the product
    rows: tuple = ()  # explicit points instead of a product; a row may name its own "arch" and "epochs"
    fixed: dict = field(default_factory=dict)  # hyperparameters the grid holds constant (searched when tuning)
    settings: dict = field(default_factory=dict)  # run settings the grid and the tuned search share (val_size)
    epochs: int | None = None  # None: each arch's own (its report's) epochs
    repeats: int = 1  # seeds per grid point in the report
    # point label (see point_label) -> {metric: value}; a *_ci95 metric is a [low, high] pair.
    published: dict = field(default_factory=dict)
    row_labels: tuple = ()  # labels for rows, when "k=v" would not say which report row it is
    # The report's protocol for its final model: how many images it trained on and what it measured. The fair
    # comparison trains our final runs on exactly that many (search/reproduce.py); ``train_images_why`` quotes
    # the report (or says which reading we took where it is silent: the smaller count, the harder rule for us).
    train_images: int | None = None
    train_images_why: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def point_label(point: dict) -> str:
    """How a grid point is named in ``published``: ``"lr=0.001, batch_size=20"`` (keys in the point's order)."""
    return ", ".join(f"{k}={v}" for k, v in point.items())


def _points(preset: Preset) -> list[tuple[str, dict]]:
    if preset.rows:
        labels = preset.row_labels or [point_label(r) for r in preset.rows]
        return list(zip(labels, (dict(r) for r in preset.rows)))
    keys = list(preset.grid)
    points = [dict(zip(keys, values)) for values in itertools.product(*(preset.grid[k] for k in keys))]
    return [(point_label(p), p) for p in points]


def labelled_grid(preset: Preset) -> list[tuple[str, dict]]:
    """(label, config) for every grid point x arch; the label is the key into ``preset.published``.

    A point without an "arch" is run on every arch of the preset (the label then starts with ``arch=``
    when the preset has several); a point naming an arch only on that one.
    """
    out = []
    for label, point in _points(preset):
        archs = [point.pop("arch")] if "arch" in point else list(preset.archs)
        for arch in archs:
            epochs = point.get("epochs", preset.epochs or get_arch(arch).defaults.get("epochs"))
            config = {"arch": arch, **preset.settings, **preset.fixed, **point, "epochs": epochs}
            name = f"arch={arch}, {label}" if len(archs) > 1 and label else (label or f"arch={arch}")
            out.append((name, config))
    return out


def expand_grid(preset: Preset) -> list[dict]:
    """One flat trial config per grid point x arch (epochs and fixed values filled in; seed left default)."""
    return [config for _, config in labelled_grid(preset)]


def grid_runs(preset: Preset) -> list[dict]:
    """Every run the report's protocol implies: each grid config once per seed 0 .. repeats-1."""
    return [{**config, "seed": seed} for config in expand_grid(preset) for seed in range(preset.repeats)]


# ---------------------------------------------------------------------------------------------------------------
# The presets

_PRESETS: dict[str, Preset] = {}


def _add(preset: Preset) -> None:
    _PRESETS[preset.name] = preset


def list_presets() -> list[str]:
    return sorted(_PRESETS)


def get_preset(name: str) -> Preset:
    try:
        return _PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(list_presets())}") from None


# Report 000 (Shin): §III-E trains 25 epochs, SGD momentum 0.9; §III-E lists lr {1e-4, 1e-3, 0.5} and batch
# {20, 100, 500}, but Table II, the only runs the report shows, varies one factor at a time around lr 1e-3 /
# batch 100: five points, each run five times (95 % CIs). Reading the text as the full 3 x 3 product would credit
# the report with 1,125 tuning epochs; the rule takes the reading that gives the report the smaller budget, so
# the grid is Table II's five rows (5 x 5 x 25 = 625 epochs). §III-B: an 80/20 train/val split.
_add(Preset(
    name="report000",
    report="000 (Shin, replicating Sharma & Jadon), §III-E and Table II",
    archs=("simple_cnn",),
    description="simple_cnn, SGD (momentum 0.9), 25 epochs: Table II's five points (lr {1e-4, 1e-3, 0.5} at batch "
                "100, batch {20, 500} at lr 1e-3), 5 seeds each.",
    rows=({"lr": 1e-3, "batch_size": 100}, {"lr": 1e-4, "batch_size": 100}, {"lr": 0.5, "batch_size": 100},
          {"lr": 1e-3, "batch_size": 20}, {"lr": 1e-3, "batch_size": 500}),
    fixed={"optimizer": "sgd", "momentum": 0.9},
    settings={"val_size": 10_000},
    epochs=25,
    repeats=5,
    train_images=40_000,
    train_images_why="§III-B: 'randomly splitting the original training data into 80% training and 20% "
                     "validation subsets'; the final models trained on the 80%.",
    published={
        "lr=0.001, batch_size=100": {"test_accuracy": 0.7018, "test_accuracy_ci95": [0.6929, 0.7108],
                                     "weighted_f1": 0.7061},
        "lr=0.0001, batch_size=100": {"test_accuracy": 0.6069, "test_accuracy_ci95": [0.5950, 0.6187],
                                      "weighted_f1": 0.6110},
        "lr=0.5, batch_size=100": {"test_accuracy": 0.1862, "test_accuracy_ci95": [0.1748, 0.1977],
                                   "weighted_f1": 0.0943},
        "lr=0.001, batch_size=20": {"test_accuracy": 0.7089, "test_accuracy_ci95": [0.7048, 0.7129],
                                    "weighted_f1": 0.7036},
        "lr=0.001, batch_size=500": {"test_accuracy": 0.6497, "test_accuracy_ci95": [0.6399, 0.6595],
                                     "weighted_f1": 0.6411},
    },
))

# Report 001 (Dureja): Table 2 varies batch {64, 128} x dropout {0.3, 0.4} of the Keras CNN; §2.5 trains with
# Adam 1e-3 for at most 50 epochs (the registered defaults). Its ResNet-18 (Table 1) was trained once, 20 epochs of
# Adam 1e-3 / batch 64 from ImageNet weights with "the initial layers" frozen (§2.4-2.5: how many is not said; we
# read the stem and layer1). Rows, not a product, so that ResNet-18's one run counts as what it cost: 20 epochs.
_DUREJA_TABLE2 = [(64, 0.3, 0.852, 0.477), (64, 0.4, 0.858, 0.467), (128, 0.3, 0.845, 0.493), (128, 0.4, 0.851, 0.482)]
_add(Preset(
    name="report001",
    report="001 (Dureja), §3.5 and Tables 1-2",
    archs=("keras_cnn", "resnet18"),
    description="keras_cnn, Adam 1e-3, 50 epochs: batch {64, 128} x dropout {0.3, 0.4} (Table 2). The report's "
                "plateau-halving of the lr and early stopping have no counterpart here. resnet18: its one run "
                "(Table 1), ImageNet-pretrained (needs the weights: torchvision's download or the file "
                "$CIFAR_TUNE_RESNET18_WEIGHTS names), stem and layer1 frozen, Adam 1e-3, batch 64, 20 epochs.",
    rows=tuple([{"arch": "keras_cnn", "batch_size": b, "dropout": d} for b, d, _, _ in _DUREJA_TABLE2]
               + [{"arch": "resnet18", "pretrained": True, "freeze": 2, "epochs": 20}]),
    row_labels=tuple([f"batch_size={b}, dropout={d}" for b, d, _, _ in _DUREJA_TABLE2] + ["arch=resnet18"]),
    fixed={"optimizer": "adam", "lr": 1e-3},
    epochs=50,
    train_images=40_000,
    train_images_why="Introduction: 'The dataset is split into training and validation sets', sizes not given; we take "
                     "the common 80/20 split (40,000), the smaller count and so the harder rule for us.",
    published={
        **{f"batch_size={b}, dropout={d}": {"test_accuracy": acc, "test_loss": loss}
           for b, d, acc, loss in _DUREJA_TABLE2},
        "arch=resnet18": {"test_accuracy": 0.8003, "test_loss": 0.449},
    },
))

# Report 002 (Ghasemi): the results table, 15 runs that change several things at once (not a product). Its
# "architecture" column (12-4, 7-3, ...) names nets the report never shows; only 8-3 (rows 13-15) is the
# Step 3 net we have, so the other rows run their training setting on ghasemi_net. Mapping of the other
# columns: Regularization "dropout" -> the code's Dropout(0.2), "weight_decay" -> 1e-4 (value not given),
# "no" -> neither; normalization "yes" -> BatchNorm. SGD (row 3) with momentum 0.9 (not given).
_GHASEMI_ROWS = [
    # (row, lr, batch, epochs, report arch, optimizer, regularization, normalization, accuracy %)
    (1, 1e-3, 64, 25, "12-4", "adam", "no", False, 69),
    (2, 5e-4, 99, 30, "12-1", "adam", "no", False, 73),
    (3, 5e-4, 99, 30, "12-1", "sgd", "no", False, 67),
    (4, 5e-4, 99, 30, "12-3", "adam", "no", False, 73),
    (5, 5e-4, 60, 18, "12-3", "adam", "no", False, 74),
    (6, 5e-4, 60, 18, "7-3", "adam", "no", False, 79),
    (7, 5e-4, 60, 30, "6-3", "adam", "no", False, 80),
    (8, 1e-4, 60, 20, "6-3", "adam", "no", False, 66),
    (9, 5e-4, 60, 20, "6-3", "adam", "weight_decay", False, 69),
    (10, 5e-4, 60, 20, "5-3", "adam", "weight_decay", False, 66),
    (11, 5e-4, 60, 20, "5-3", "adam", "dropout", False, 80),
    (12, 5e-4, 60, 20, "7-3", "adam", "dropout", False, 81),
    (13, 5e-4, 60, 20, "8-3", "adam", "dropout", False, 81),
    (14, 5e-4, 60, 20, "8-3", "adam", "dropout", True, 83),
    (15, 5e-4, 60, 20, "8-3", "adam", "no", True, 84),
]


def _ghasemi_row(row, lr, batch, epochs, arch, optimizer, regularization, normalization, accuracy) -> dict:
    return {"lr": lr, "batch_size": batch, "epochs": epochs, "optimizer": optimizer,
            "weight_decay": 1e-4 if regularization == "weight_decay" else 0.0,
            "dropout": 0.2 if regularization == "dropout" else 0.0,
            "norm": "batch" if normalization else "none"}


_GHASEMI_LABELS = tuple(f"row {row[0]} (report arch {row[4]})" for row in _GHASEMI_ROWS)


_add(Preset(
    name="report002",
    report="002 (Ghasemi), Results and Discussion table (15 rows)",
    archs=("ghasemi_net",),
    description="ghasemi_net, the report's 15 logged runs (lr, batch, epochs, optimizer, weight decay / dropout, "
                "BatchNorm). Rows that differ only in the report's architecture column become the same config "
                "here (2 = 4, 5 = 6, 9 = 10, 11 = 12 = 13), so they measure seed-to-seed spread.",
    rows=tuple(_ghasemi_row(*row) for row in _GHASEMI_ROWS),
    row_labels=_GHASEMI_LABELS,
    train_images=50_000,
    train_images_why="Steps 2 and 4: the trainloader is torchvision's whole CIFAR-10 training set (50,000); no "
                     "validation split.",
    published={label: {"test_accuracy": row[-1] / 100} for label, row in zip(_GHASEMI_LABELS, _GHASEMI_ROWS)},
))

# Report 003 (Lai): two one-at-a-time ablations on ModifiedNet (Table VIII: lr with SGD; Table IX: optimizer at
# lr 0.005), plus OriginNet at its own setting for Table VII's weighted F1. 300 epochs and momentum 0.9 come
# from the author's repository (the registered defaults). RMSprop runs with torch's default momentum 0, as a
# plain swap of the optimizer class would (the report does not say).
_LAI_SGD = [(1e-4, 0.6521), (5e-4, 0.6962), (1e-3, 0.712), (5e-3, 0.728), (1e-2, 0.7149)]
_LAI_OPT = [("adam", 0.7043), ("rmsprop", 0.4864), ("adagrad", 0.5348)]
_add(Preset(
    name="report003",
    report="003 (Lai), Tables VII-IX",
    archs=("modified_net", "origin_net"),
    train_images=40_000,
    train_images_why="the author's public code (valid_size 0.2): 40,000 training images, 10,000 for validation.",
    description="modified_net: lr {1e-4, 5e-4, 1e-3, 5e-3, 1e-2} with SGD (Table VIII; 1e-3 is the 'baseline'), "
                "then Adam/RMSprop/Adagrad at lr 5e-3 (Table IX); origin_net at its own setting (Table VII).",
    rows=tuple([{"arch": "modified_net", "optimizer": "sgd", "lr": lr} for lr, _ in _LAI_SGD]
               + [{"arch": "modified_net", "optimizer": opt, "lr": 5e-3, **({"momentum": 0.0} if opt == "rmsprop"
                                                                          else {})} for opt, _ in _LAI_OPT]
               + [{"arch": "origin_net"}]),
    row_labels=tuple([f"arch=modified_net, optimizer=sgd, lr={lr}" for lr, _ in _LAI_SGD]
                     + [f"arch=modified_net, optimizer={opt}, lr=0.005" for opt, _ in _LAI_OPT]
                     + ["arch=origin_net"]),
    published={**{f"arch=modified_net, optimizer=sgd, lr={lr}": {"test_accuracy": acc} for lr, acc in _LAI_SGD},
               **{f"arch=modified_net, optimizer={opt}, lr=0.005": {"test_accuracy": acc} for opt, acc in _LAI_OPT},
               "arch=origin_net": {"weighted_f1": 0.5521, "precision": 0.5525, "recall": 0.5573}},
))

# Report 004 (Lozano): models C, E and F, each at its own setting (Adam 1e-4 / batch 32 / 10 epochs for C;
# Adamax 1e-3, weight decay 1e-4, batch 16, 20 epochs for E and F: the registered defaults). 10,000 of the
# training images are held out for validation (§3).
_add(Preset(
    name="report004",
    report="004 (Lozano), §4.3-4.6 and Table 1",
    archs=("lozano_c", "lozano_e", "lozano_f"),
    description="lozano_c / lozano_e / lozano_f at the report's own settings, one run each; its published "
                "numbers are validation accuracies (and F's test accuracy). One run per arch leaves the "
                "equal-budget tuned search one trial per arch, capped at 16 epochs.",
    settings={"val_size": 10_000},
    train_images=40_000,
    train_images_why="data section: 'inside the training we also separated 10,000 images from the training data as "
                     "validation data'.",
    published={
        "arch=lozano_c": {"train_accuracy": 0.8036, "val_accuracy": 0.6620, "val_set_accuracy": 0.66},
        "arch=lozano_e": {"train_accuracy": 0.7707, "val_accuracy": 0.7402, "val_set_accuracy": 0.73},
        "arch=lozano_f": {"train_accuracy": 0.9138, "val_accuracy": 0.7979, "val_set_accuracy": 0.79,
                          "test_accuracy": 0.79},
    },
))
