"""Objective parsing and the Pareto arithmetic (fronts, crowding, hypervolume), checked against hand-worked cases and
against Optuna's own hypervolume."""
from __future__ import annotations

import math

import numpy as np
import pytest

from trainables.objectives import (ObjectiveError, crowding_distances, hypervolume, hypervolume_contributions,
                                   nondominated_fronts, parse_objectives, rank_order, reference_point, to_loss)


def test_parse_objectives_takes_directions_and_defaults():
    assert parse_objectives("val_accuracy:max,params:min") == [("val_accuracy", "max"), ("params", "min")]
    assert parse_objectives("val_accuracy, inference_latency_ms") == [("val_accuracy", "max"),
                                                                       ("inference_latency_ms", "min")]
    assert parse_objectives([["val_accuracy", "max"], ["size_mb", "min"]]) == [("val_accuracy", "max"),
                                                                               ("size_mb", "min")]


@pytest.mark.parametrize("text, named", [("val_accuracy:max,flops:min", "'flops'"),
                                         ("val_accuracy:max,params:smallest", "'smallest'"),
                                         ("val_accuracy:max", "at least two"),
                                         ("params:min,params:max", "twice")])
def test_parse_objectives_names_the_bad_part(text, named):
    with pytest.raises(ObjectiveError, match=named):
        parse_objectives(text)


def test_fronts_and_crowding():
    losses = [to_loss(v, ["max", "min"]) for v in [(0.5, 100), (0.4, 200), (0.6, 300), (0.3, 50), (0.45, 150)]]
    assert nondominated_fronts(losses) == [[0, 2, 3], [4], [1]]
    crowd = crowding_distances(losses, [0, 2, 3])
    assert math.isinf(crowd[2]) and math.isinf(crowd[3]) and math.isfinite(crowd[0])
    assert rank_order(losses)[:3] == [2, 3, 0]


def test_hypervolume_contributions_by_hand_and_the_reference_point():
    names = ["val_accuracy", "params"]
    losses = [to_loss(v, ["max", "min"]) for v in [(0.5, 100), (0.4, 200), (0.6, 300), (0.3, 50), (0.45, 150)]]
    assert reference_point(losses, names) == pytest.approx([0.0, 330.0])  # accuracy 0; largest + 10%
    contrib = hypervolume_contributions(losses, [0, 2, 3], [0.0, 330.0])  # a (0.5, 100), c (0.6, 300), d (0.3, 50)
    assert contrib[2] == pytest.approx(0.1 * 30)  # c: 0.1 more accurate than a, 30 params to the reference
    assert contrib[0] == pytest.approx(0.2 * 200)  # a: 0.2 over d, 200 params below c
    assert contrib[3] == pytest.approx(0.3 * 50)  # d: down to accuracy 0, 50 params below a
    assert rank_order(losses, by="hypervolume", names=names)[:3] == [0, 3, 2]  # crowding: [2, 3, 0]
    # More objectives go through hypervolume differences; a duplicate adds nothing, so both copies score 0.
    three = [[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [0.5, 0.5, 0.0], [0.5, 0.5, 0.0]]
    c3 = hypervolume_contributions(three, [0, 1, 2, 3], [1.1] * 3)
    assert c3[2] == c3[3] == 0.0 and c3[0] > 0 and c3[1] > 0
    assert c3[0] == pytest.approx(hypervolume(three, [1.1] * 3) - hypervolume(three[1:], [1.1] * 3))
    # Missing values still rank last under either rule; an unknown rule is named.
    assert rank_order([[math.inf, 1.0], [-0.2, 5.0]], by="hypervolume") == [1, 0]
    with pytest.raises(ValueError, match="'volume'"):
        rank_order(losses, by="volume")


@pytest.mark.parametrize("seed", range(4))
def test_two_objective_contributions_match_the_general_formula(seed):
    rng = np.random.default_rng(seed)
    pts = rng.random((12, 2)).tolist()
    front = nondominated_fronts(pts)[0]
    ref = [1.05, 0.9]  # a point beyond the reference in one objective adds only what is inside the box
    fast = hypervolume_contributions(pts, front, ref)
    whole = hypervolume([pts[i] for i in front], ref)
    for i in front:
        assert fast[i] == pytest.approx(whole - hypervolume([pts[j] for j in front if j != i], ref))


@pytest.mark.parametrize("seed, dims", [(0, 2), (1, 2), (2, 3), (3, 4)])
def test_hypervolume_matches_optuna(seed, dims):
    from optuna._hypervolume import compute_hypervolume  # private, used here only as an independent check

    rng = np.random.default_rng(seed)
    points = rng.random((25, dims))
    ref = np.full(dims, 1.1)
    assert hypervolume(points.tolist(), ref.tolist()) == pytest.approx(compute_hypervolume(points, ref))


def test_hypervolume_by_hand():
    assert hypervolume([[1, 2], [2, 1]], [3, 3]) == 3.0
    assert hypervolume([[1, 2], [2, 1], [2.5, 2.5]], [3, 3]) == 3.0  # a dominated point adds nothing
    assert hypervolume([[4, 0]], [3, 3]) == 0.0  # outside the reference box
    assert hypervolume([], [1, 1]) == 0.0


def _trial(tid, acc, params, status="completed", finished=0.0):
    return {"trial_id": tid, "arch": "origin_net", "status": status, "epochs": 2, "config": {},
            "val_accuracy": acc, "params": params, "finished_at": finished}


def test_front_hypervolume_history_and_a_common_reference():
    from analysis.pareto import common_reference, front, hypervolume_history, reference_point

    objectives = [("val_accuracy", "max"), ("params", "min")]
    trials = [_trial("a", 0.5, 100, finished=3), _trial("b", 0.4, 200, finished=1), _trial("c", 0.6, 300, finished=2),
              _trial("s", 0.9, 10, status="stopped", finished=0)]  # stopped early: never on the front
    assert [t["trial_id"] for t in front(trials, objectives)] == ["c", "a"]
    assert reference_point(trials, objectives) == pytest.approx([0.0, 330.0])
    history = hypervolume_history(trials, objectives)
    assert [h["trial_id"] for h in history] == ["b", "c", "a"]  # completion order
    # b alone: 0.4 x (330 - 200); with c: c's box + the part of b's outside it; a then dominates b
    assert [h["hypervolume"] for h in history] == pytest.approx([0.4 * 130, 0.6 * 30 + 0.4 * 100,
                                                                 0.6 * 30 + 0.5 * 200])
    other = [_trial("x", 0.3, 1000)]
    assert common_reference([trials, other], objectives) == pytest.approx([0.0, 1100.0])


def test_hypervolume_at_an_epoch_counts_stopped_trials_at_that_epoch():
    from analysis.pareto import hypervolume_at_epoch

    objectives = [("val_accuracy", "max"), ("params", "min")]
    trials = [{**_trial("a", 0.7, 100), "history": [{"epoch": 1, "val_accuracy": 0.3}, {"epoch": 2, "val_accuracy": 0.5}]},
              {**_trial("s", 0.4, 50, status="stopped"), "history": [{"epoch": 1, "val_accuracy": 0.2},
                                                                     {"epoch": 2, "val_accuracy": 0.4}]},
              {**_trial("e", 0.1, 10, status="stopped"), "history": [{"epoch": 1, "val_accuracy": 0.1}]},
              {**_trial("n", 0.9, 20), "history": [{"epoch": 2, "val_accuracy": float("nan")}]}]
    at2 = hypervolume_at_epoch(trials, objectives, 2, [0.0, 200.0])
    # a at its epoch-2 accuracy (0.5, not its final 0.7) and the stopped s; e never reached epoch 2, n's value is NaN
    assert at2["trials"] == 2 and at2["hypervolume"] == pytest.approx(0.4 * 150 + 0.1 * 100)
    at1 = hypervolume_at_epoch(trials, objectives, 1, [0.0, 200.0])
    assert at1["trials"] == 3 and at1["hypervolume"] == pytest.approx(0.3 * 100 + 0.2 * 50 + 0.1 * 40)
    assert hypervolume_at_epoch(trials, objectives, 3, [0.0, 200.0]) == {"epoch": 3, "trials": 0, "hypervolume": 0.0}
