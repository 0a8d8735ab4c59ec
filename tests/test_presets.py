"""Presets: each report's grid expands to valid trial configs, publishes against real grid points, and its tuned
plan spends at most a fifth of the report's tuning epochs per net (enforced by the scheduler's epoch budget)."""
from __future__ import annotations

import json

import pytest

from search.presets import (expand_grid, get_preset, grid_cost, grid_runs, labelled_grid, list_presets,
                            tuned_plan)
from trainables.config import resolve_config
from trainables.models import list_models

PRESETS = list_presets()


def test_one_preset_per_report():
    assert PRESETS == [f"report00{i}" for i in range(5)]


@pytest.mark.parametrize("name", PRESETS)
def test_grid_expands_to_valid_configs(name):
    preset = get_preset(name)
    configs = expand_grid(preset)
    assert configs
    for config in configs:
        resolved = resolve_config(config)
        assert resolved["arch"] in preset.archs and resolved["arch"] in list_models()
        assert resolved["epochs"] >= 1
        assert all(resolved[key] == value for key, value in config.items())  # nothing lost or coerced away
        assert all(config[key] == value for key, value in preset.settings.items())
    assert {c["arch"] for c in configs} == set(preset.archs)
    json.dumps(preset.to_dict())


@pytest.mark.parametrize("name", PRESETS)
def test_published_rows_are_grid_points(name):
    preset = get_preset(name)
    labels = [label for label, _ in labelled_grid(preset)]
    assert len(set(labels)) == len(labels)
    assert preset.published and set(preset.published) <= set(labels)
    for metrics in preset.published.values():
        for metric, value in metrics.items():
            values = value if metric.endswith("_ci95") else [value]
            assert all(0 <= v <= 1 for v in values), (metric, value)


@pytest.mark.parametrize("name", PRESETS)
def test_tuned_plan_spends_at_most_a_fifth_of_the_reports_epochs(name):
    from search.presets import arch_grid_cost
    from search.spec import ExperimentSpec

    preset = get_preset(name)
    plan = tuned_plan(preset)
    assert set(plan["archs"]) == set(preset.archs)
    for arch, epochs in arch_grid_cost(preset).items():
        assert plan["epoch_budget"] <= max(1, epochs // 5), arch
    assert plan["worst_case_epochs"] == plan["epoch_budget"] * len(plan["archs"]) <= max(len(plan["archs"]),
                                                                                      grid_cost(preset) // 5)
    # every trial's first rung fits in the budget, and TPE gets 24 trials wherever the budget pays for them
    assert 1 <= plan["num_samples"] * plan["grace_period"] <= plan["epoch_budget"]
    assert plan["num_samples"] == min(24, plan["epoch_budget"] // plan["grace_period"])
    assert 1 <= plan["grace_period"] <= plan["max_epochs"]
    # a tuned trial may train as long as the report's longest run, and no longer than 50 epochs
    assert plan["max_epochs"] <= min(50, max(c["epochs"] for c in expand_grid(preset)))
    assert plan["reduction_factor"] >= 2
    assert plan["settings"] == preset.settings
    ExperimentSpec(archs=plan["archs"], num_samples=plan["num_samples"], max_epochs=plan["max_epochs"],
                   grace_period=plan["grace_period"], epoch_budget=plan["epoch_budget"])  # the spec accepts it


def test_report000_grid():
    preset = get_preset("report000")
    grid = dict(labelled_grid(preset))
    # Table II's five points, one factor at a time around lr 1e-3 / batch 100 (the text's 3 x 3 lists are not a
    # grid the report shows it ran: the smaller reading, issue 18)
    assert len(grid) == 5
    assert {(c["lr"], c["batch_size"]) for c in grid.values()} == {
        (1e-3, 100), (1e-4, 100), (0.5, 100), (1e-3, 20), (1e-3, 500)}
    assert all(c["epochs"] == 25 and c["optimizer"] == "sgd" and c["momentum"] == 0.9 for c in grid.values())
    # every grid point is a row of Table II, the best being lr 0.001 / batch 20 at 70.89 %
    assert set(grid) == set(preset.published)
    assert preset.published["lr=0.001, batch_size=20"]["test_accuracy"] == 0.7089
    assert grid["lr=0.001, batch_size=20"]["batch_size"] == 20
    assert preset.repeats == 5 and grid_cost(preset) == 5 * 5 * 25
    assert len(grid_runs(preset)) == 25 and {r["seed"] for r in grid_runs(preset)} == set(range(5))
    plan = tuned_plan(preset)
    assert (plan["num_samples"], plan["max_epochs"], plan["grace_period"], plan["epoch_budget"]) == (24, 25, 2, 125)
    assert preset.train_images == 40_000 and "80%" in preset.train_images_why


def test_report002_keeps_its_fifteen_rows():
    preset = get_preset("report002")
    configs = expand_grid(preset)
    assert len(configs) == 15
    assert grid_cost(preset) == sum(c["epochs"] for c in configs) == 341
    best = dict(labelled_grid(preset))["row 15 (report arch 8-3)"]
    assert (best["lr"], best["batch_size"], best["epochs"], best["norm"]) == (5e-4, 60, 20, "batch")


def test_report004_uses_each_models_own_setting():
    configs = {c["arch"]: resolve_config(c) for c in expand_grid(get_preset("report004"))}
    assert configs["lozano_c"]["optimizer"] == "adam" and configs["lozano_c"]["epochs"] == 10
    assert configs["lozano_f"]["optimizer"] == "adamax" and configs["lozano_f"]["epochs"] == 20
    assert all(c["val_size"] == 10_000 for c in configs.values())
    plan = tuned_plan(get_preset("report004"))  # lozano_c's 10 grid epochs pay a fifth: one 2-epoch trial per net
    assert (plan["num_samples"], plan["grace_period"], plan["epoch_budget"], plan["worst_case_epochs"]) == (1, 2, 2, 6)


def test_unknown_preset_lists_known_ones():
    with pytest.raises(ValueError, match=r"unknown preset 'report9'.*report000.*report004"):
        get_preset("report9")


def test_set_overrides_a_grid_presets_settings_but_not_its_dimensions(tmp_path):
    from search.cli import build_parser
    from search.cli.search import spec_from_args
    from search.spec import SpecError

    def spec(*sets):
        args = build_parser().parse_args(["search", "--preset", "report000:grid", "--storage", str(tmp_path),
                                          "--name", "g", *[a for s in sets for a in ("--set", s)]])
        return spec_from_args(args)

    rows = spec("val_size=1000", "subset=2000", "momentum=0.5").grid
    assert len(rows) == 25
    assert all(r["val_size"] == 1000 and r["subset"] == 2000 and r["momentum"] == 0.5 for r in rows)
    assert {(r["lr"], r["batch_size"]) for r in rows} == {(1e-3, 100), (1e-4, 100), (0.5, 100), (1e-3, 20),
                                                        (1e-3, 500)}
    assert all(r["val_size"] == 10_000 for r in spec().grid)  # the report's own setting by default
    with pytest.raises(SpecError, match="'lr' is a dimension"):
        spec("lr=0.01")


def test_report001_has_both_nets_and_resnet18_is_its_one_pretrained_run():
    """Table 2's four keras_cnn rows (50 epochs each) and Table 1's ResNet-18, run once as the report ran it:
    ImageNet-pretrained, early layers frozen, 20 epochs; so what the report spent tuning each net is its own."""
    from search.presets import arch_grid_cost

    preset = get_preset("report001")
    grid = dict(labelled_grid(preset))
    assert set(grid) == set(preset.published) and len(grid) == 5
    resnet = grid["arch=resnet18"]
    assert (resnet["arch"], resnet["pretrained"], resnet["freeze"], resnet["epochs"]) == ("resnet18", True, 2, 20)
    assert resolve_config(resnet)["batch_size"] == 64 and resnet["lr"] == 1e-3  # §2.5
    assert {(c["batch_size"], c["dropout"]) for c in grid.values() if c["arch"] == "keras_cnn"} == {
        (64, 0.3), (64, 0.4), (128, 0.3), (128, 0.4)}
    assert arch_grid_cost(preset) == {"keras_cnn": 4 * 50, "resnet18": 20}
    assert preset.published["arch=resnet18"]["test_accuracy"] == 0.8003
    assert preset.published["batch_size=64, dropout=0.4"]["test_accuracy"] == 0.858
