"""MO-ASHA's rung decisions on synthetic results: dominated trials stopped, the front kept, records restored."""
from __future__ import annotations

import json
import pickle
from types import SimpleNamespace

import pytest
from ray.tune.schedulers import TrialScheduler

from search.moasha import STATE_FILE, PerArchMOASHA, milestones

OBJ = [("val_accuracy", "max"), ("params", "min")]
CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP


def trial(tid, arch="origin_net"):
    return SimpleNamespace(trial_id=tid, config={"arch": arch})


def result(epoch, acc, params, status="running"):
    return {"epoch": epoch, "val_accuracy": acc, "params": params, "status": status}


def report(sched, tid, epoch, acc, params, arch="origin_net"):
    return sched.on_trial_result(None, trial(tid, arch), result(epoch, acc, params))


def test_milestones_are_the_asha_rungs_below_max_t():
    assert milestones(9, 1, 3) == [1, 3]
    assert milestones(10, 1, 3) == [1, 3, 9]
    assert milestones(4, 1, 2) == [1, 2]
    assert milestones(8, 2, 2.5) == [2, 5]


def test_dominated_trials_stop_and_the_front_goes_on(tmp_path):
    s = PerArchMOASHA(["origin_net"], OBJ, max_t=4, grace_period=1, reduction_factor=2,
                      state_path=tmp_path / STATE_FILE, ranking="crowding")
    assert report(s, "a", 1, 0.50, 100) == CONTINUE  # first at the rung: nothing to compare with
    assert report(s, "b", 1, 0.40, 200) == STOP  # dominated by a; keep 1 of 2
    assert report(s, "c", 1, 0.60, 300) == CONTINUE  # on the front with a (more accurate, larger); keep 2 of 3
    assert report(s, "d", 1, 0.30, 50) == CONTINUE  # on the front (smallest); a boundary point; keep 2 of 4
    assert report(s, "e", 1, 0.45, 150) == STOP  # dominated by a; the front a, c, d fills the 3 kept of 5
    assert report(s, "a", 2, 0.55, 100) == CONTINUE  # rung 2, first there
    assert report(s, "c", 2, 0.50, 300) == STOP  # now dominated by a at rung 2
    assert report(s, "a", 3, 0.60, 100) == CONTINUE  # between rungs: no decision
    assert [x["trial_id"] for x in s.stops] == ["b", "e", "c"]
    assert all(x["kept"] is False and x["place"] > x["keep"] for x in s.stops)
    # A stop the trial makes after its stop (a re-run after a driver kill) is a stop again.
    assert report(s, "b", 1, 0.99, 1) == STOP


@pytest.mark.parametrize("ranking, expected", [("crowding", [CONTINUE, CONTINUE, STOP]),
                                               ("hypervolume", [CONTINUE, STOP, CONTINUE])])
def test_the_order_within_a_front_decides_when_it_is_larger_than_the_share_kept(ranking, expected):
    s = PerArchMOASHA(["origin_net"], OBJ, max_t=9, reduction_factor=3, ranking=ranking)
    # Mutually non-dominated trials; keep ceil(2/3) = 1 when the second arrives, 1 of 3 when the third does.
    # Crowding: the two ends have an infinite distance (a tie the newcomer wins, as in ASHA), the middle a finite
    # one, so the middle newcomer is stopped. Hypervolume (reference: accuracy 0, 1,100 params): "large" adds
    # 0.4 x 100 against "small"'s 0.3 x 990, so it is stopped; "mid" adds 0.35 x 700 against 0.3 x 200 and
    # 0.05 x 100, so it goes on.
    got = [report(s, "small", 1, 0.30, 100), report(s, "large", 1, 0.70, 1000), report(s, "mid", 1, 0.65, 300)]
    assert got == expected


def test_hypervolume_ranking_lets_later_knees_past_the_first_arrivals():
    # The full-scale pattern (docs/results.md): the first three at rung 6 were the ends (the two largest nets, the
    # tiniest), and later, mid-sized trials met them. Crowding kept the ends; the hypervolume ranking keeps the
    # trials that add most to the hypervolume of accuracy against size: the first, the tiny one, and the small and
    # mid-sized ones, not the largest (0.10 more accurate than the first for 53,000 more parameters).
    arrivals = [("big", 0.597, 106_729), ("bigger", 0.701, 159_834), ("tiny", 0.296, 2_454),
                ("mid", 0.568, 51_843), ("upper", 0.657, 90_478), ("small", 0.432, 9_222)]
    kept = {}
    for ranking in ("crowding", "hypervolume"):
        s = PerArchMOASHA(["modified_net"], OBJ, max_t=20, grace_period=2, reduction_factor=3, ranking=ranking)
        kept[ranking] = [t for t, acc, p in arrivals if report(s, t, 6, acc, p, arch="modified_net") == CONTINUE]
    assert kept["crowding"] == ["big", "bigger", "tiny"]  # what the first full-scale run decided at rung 6
    assert kept["hypervolume"] == ["big", "tiny", "mid", "small"]


def test_hypervolume_reference_is_the_nets_worst_at_any_rung_not_the_rungs_own():
    # At a top rung the first arrivals are few and small. With the rung's own reference (its largest net + 10%) the
    # larger of two would always be a thin slab: 6,264 params at 0.48 lost to 2,454 at 0.34. Against the sizes the
    # net has recorded at its first rung (up to 159,834: reference 175,817) it adds 0.15 x 169,553, and goes on.
    s = PerArchMOASHA(["modified_net"], OBJ, max_t=20, grace_period=2, reduction_factor=3)
    for tid, acc, params in (("a", 0.5062, 106_729), ("b", 0.5258, 159_834), ("c", 0.2082, 2_454),
                             ("d", 0.2906, 6_264)):
        report(s, tid, 2, acc, params, arch="modified_net")
    assert report(s, "c", 6, 0.3382, 2_454, arch="modified_net") == CONTINUE  # first at rung 6
    assert report(s, "d", 6, 0.4838, 6_264, arch="modified_net") == CONTINUE
    assert s._reference("modified_net", [], ["val_accuracy", "params"]) == pytest.approx([0.0, 175_817.4])


def test_architectures_are_ranked_separately():
    s = PerArchMOASHA(["origin_net", "modified_net"], OBJ, max_t=4, reduction_factor=2)
    assert report(s, "a", 1, 0.9, 10) == CONTINUE
    assert report(s, "b", 1, 0.1, 10_000, arch="modified_net") == CONTINUE  # first of its own net


@pytest.mark.parametrize("ranking", ["hypervolume", "crowding"])
def test_missing_or_nan_values_rank_last(ranking):
    s = PerArchMOASHA(["origin_net"], OBJ, max_t=4, reduction_factor=2, ranking=ranking)
    assert report(s, "a", 1, 0.2, 500) == CONTINUE
    assert report(s, "b", 1, 0.3, 400) == CONTINUE  # dominates a
    # 2 of 3 go on; the smallest net of all, but without an accuracy it ranks after both complete ones
    assert report(s, "nan", 1, float("nan"), 1) == STOP
    assert s.on_trial_result(None, trial("gone"), {"epoch": 1, "val_accuracy": 0.9, "status": "running"}) == STOP


def test_diverged_and_final_results_are_not_ranked():
    s = PerArchMOASHA(["origin_net"], OBJ, max_t=2, reduction_factor=2)
    assert s.on_trial_result(None, trial("x"), result(1, float("nan"), 5, status="diverged")) == CONTINUE
    assert s.on_trial_result(None, trial("y"), result(2, 0.1, 5, status="completed")) == CONTINUE
    assert s.decisions == []


def test_records_survive_a_restart_and_old_stops_stand(tmp_path):
    path = tmp_path / STATE_FILE
    s = PerArchMOASHA(["origin_net"], OBJ, max_t=4, reduction_factor=2, state_path=path)
    pickled = pickle.dumps(s)  # what Tune saves when fit() begins: no records yet
    report(s, "a", 1, 0.5, 100)
    report(s, "b", 1, 0.4, 200)
    on_disk = json.loads(path.read_text())
    assert on_disk["rungs"]["origin_net"][-1] == [1, {"a": [0.5, 100], "b": [0.4, 200]}]
    assert [x["trial_id"] for x in on_disk["stops"]] == ["b"] and on_disk["num_stopped"] == {"origin_net": 1}

    for restored in (pickle.loads(pickled),  # Tune's resume path: unpickled, then the newer file read back
                     PerArchMOASHA(["origin_net"], OBJ, max_t=4, reduction_factor=2, state_path=path)):
        assert restored.rungs == s.rungs and restored.stops == s.stops
        assert report(restored, "b", 1, 0.4, 200) == STOP  # b's stop stands after the restart
        # Without the records a newcomer would be first at the rung and go on; with them it is dominated by both.
        assert report(restored, "c", 1, 0.3, 300) == STOP
    fresh = PerArchMOASHA(["origin_net"], OBJ, max_t=4, reduction_factor=2)
    assert report(fresh, "c", 1, 0.3, 300) == CONTINUE


def test_records_for_other_objectives_or_another_ranking_are_refused(tmp_path):
    path = tmp_path / STATE_FILE
    s = PerArchMOASHA(["origin_net"], OBJ, max_t=4, reduction_factor=2, state_path=path)
    report(s, "a", 1, 0.5, 100)
    assert json.loads(path.read_text())["ranking"] == "hypervolume"  # the default, on record
    with pytest.raises(ValueError, match="objectives"):
        PerArchMOASHA(["origin_net"], [("val_accuracy", "max"), ("size_mb", "min")], max_t=4, state_path=path)
    with pytest.raises(ValueError, match="ranked by 'hypervolume', not 'crowding'"):
        PerArchMOASHA(["origin_net"], OBJ, max_t=4, reduction_factor=2, state_path=path, ranking="crowding")


def test_records_from_before_the_ranking_option_resume_as_crowding(tmp_path):
    path = tmp_path / STATE_FILE
    s = PerArchMOASHA(["origin_net"], OBJ, max_t=4, reduction_factor=2, state_path=path, ranking="crowding")
    report(s, "a", 1, 0.5, 100)
    old = json.loads(path.read_text())
    del old["ranking"]  # a file written before the option
    path.write_text(json.dumps(old))
    assert PerArchMOASHA(["origin_net"], OBJ, max_t=4, reduction_factor=2, state_path=path,
                         ranking="crowding").rungs == s.rungs
    with pytest.raises(ValueError, match="ranked by 'crowding'"):
        PerArchMOASHA(["origin_net"], OBJ, max_t=4, reduction_factor=2, state_path=path)
    # A scheduler Tune pickled before the option has no ranking attribute: it ranks as it did then.
    legacy = pickle.loads(pickle.dumps(s))
    del legacy.__dict__["ranking"]
    assert legacy.ranking == "crowding"


@pytest.mark.parametrize("kwargs, named", [({"max_t": 0}, "max_t"), ({"grace_period": 5}, "grace_period"),
                                           ({"reduction_factor": 1}, "reduction_factor")])
def test_bad_arguments_are_named(kwargs, named):
    with pytest.raises(ValueError, match=named):
        PerArchMOASHA(["origin_net"], OBJ, **{"max_t": 4, **kwargs})
    with pytest.raises(ValueError, match="unknown objective"):
        PerArchMOASHA(["origin_net"], [("val_accuracy", "max"), ("flops", "min")], max_t=4)
    with pytest.raises(ValueError, match="'knee'"):
        PerArchMOASHA(["origin_net"], OBJ, max_t=4, ranking="knee")


def test_epoch_budget_caps_what_the_rungs_would_promote_and_survives_a_restart(tmp_path):
    """Each trial dominates every earlier one (more accurate and smaller), so the rungs alone promote all of them to
    max_t; with an epoch budget the scheduler stops them where the budget ends ("reason": "budget"), as PerArchASHA
    does, and the reservations come back on restart."""
    def feed(sched, trials=10, epochs=27):
        spent = 0
        for i in range(trials):
            for epoch in range(1, epochs + 1):
                spent += 1
                if report(sched, f"t{i}", epoch, 0.1 + 0.01 * i + 0.001 * epoch, 50_000 - 1000 * i) == STOP:
                    break
        return spent

    assert feed(PerArchMOASHA(["origin_net"], OBJ, max_t=27, grace_period=1)) == 10 * 27
    state = tmp_path / STATE_FILE
    capped = PerArchMOASHA(["origin_net"], OBJ, max_t=27, grace_period=1, state_path=state, epoch_budget=60,
                           num_samples=10)
    assert 10 <= feed(capped) <= 60
    budget_stops = [s for s in capped.stops if s.get("reason") == "budget"]
    assert budget_stops and all(s["kept"] for s in budget_stops)  # the ranking kept them; the budget did not
    restored = PerArchMOASHA(["origin_net"], OBJ, max_t=27, grace_period=1, state_path=state, epoch_budget=60,
                             num_samples=10)
    assert restored.allowed == capped.allowed and restored.stops == capped.stops
    assert restored.reserved("origin_net") == capped.reserved("origin_net") <= 60
    with pytest.raises(ValueError, match="cannot pay every trial's first rung"):
        PerArchMOASHA(["origin_net"], OBJ, max_t=9, grace_period=3, epoch_budget=10, num_samples=4)
