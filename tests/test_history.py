"""A trial's history never holds an epoch twice: results reach result.json only with their checkpoint on record.

The sequence below is what Tune's driver does when a node is lost between logging epoch 7 and recording its
checkpoint (the race test_fault3 hit under load): result 7 arrives, the trial fails before its save returns, Tune
restores the checkpoint of epoch 6, and epoch 7 is trained and reported again. Driven through the callback API
directly, so it does not depend on timing.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from ray.tune.logger import JsonLoggerCallback

from search.history import CheckpointedResults


class FakeTrial:
    """What a logger callback touches of ray.tune.experiment.Trial."""

    checkpoint = None  # no remote result.json to copy back
    last_result = None  # Tune's record of the trial's newest result (restored by --resume from its saved state)

    def __init__(self, path: Path):
        self.trial_id, self.config, self.local_path = "t1", {"arch": "origin_net"}, str(path)

    def init_local_path(self):
        Path(self.local_path).mkdir(parents=True, exist_ok=True)


def node_lost_after_result_7(callback, trial) -> None:
    for epoch in range(1, 7):
        callback.on_trial_result(0, [trial], trial, {"epoch": epoch})
        callback.on_checkpoint(0, [trial], trial, checkpoint=object())
    callback.on_trial_result(0, [trial], trial, {"epoch": 7})
    callback.on_trial_recover(0, [trial], trial)  # its save never came back: retried from epoch 6's checkpoint
    for epoch in (7, 8):
        callback.on_trial_result(0, [trial], trial, {"epoch": epoch})
        callback.on_checkpoint(0, [trial], trial, checkpoint=object())
    callback.on_trial_complete(0, [trial], trial)


def epochs(trial) -> list[int]:
    return [json.loads(line)["epoch"] for line in (Path(trial.local_path) / "result.json").read_text().splitlines()]


def test_rays_own_json_logger_writes_the_retrained_epoch_twice(tmp_path):
    """The cause, kept as a test: if Ray's logger ever stops doing this, CheckpointedResults may be unneeded."""
    trial = FakeTrial(tmp_path)
    node_lost_after_result_7(JsonLoggerCallback(), trial)
    assert epochs(trial) == [1, 2, 3, 4, 5, 6, 7, 7, 8]


def test_history_has_every_epoch_once_when_a_node_is_lost_before_the_checkpoint_is_recorded(tmp_path):
    trial = FakeTrial(tmp_path)
    node_lost_after_result_7(CheckpointedResults(), trial)
    assert epochs(trial) == [1, 2, 3, 4, 5, 6, 7, 8]


@pytest.mark.parametrize("end", ["on_trial_complete", "on_trial_error"])
def test_results_without_their_own_checkpoint_are_written_when_the_trial_ends(tmp_path, end):
    """checkpoint_every=2, ASHA stops (or a last failure ends) the trial at epoch 3: epoch 3 is final, kept."""
    trial = FakeTrial(tmp_path)
    cb = CheckpointedResults()
    for epoch in (1, 2):
        cb.on_trial_result(0, [trial], trial, {"epoch": epoch})
    cb.on_checkpoint(0, [trial], trial, checkpoint=object())
    cb.on_trial_result(0, [trial], trial, {"epoch": 3})
    assert epochs(trial) == [1, 2]
    getattr(cb, end)(0, [trial], trial)
    assert epochs(trial) == [1, 2, 3]


def test_a_last_result_held_by_a_killed_driver_is_written_when_the_resumed_trial_ends_without_training(tmp_path):
    """HyperBand paused the trial at its milestone (epoch 2) and the driver was killed before the checkpoint was
    recorded: epoch 2 was held, never written, but Tune's saved state has it as the trial's last result. After
    --resume a new callback sees the trial stopped at that milestone without a result: epoch 2 is written then, once;
    a trial whose file already has its last result gets nothing twice."""
    trial = FakeTrial(tmp_path)
    killed = CheckpointedResults()
    killed.on_trial_result(0, [trial], trial, {"epoch": 1})
    killed.on_checkpoint(0, [trial], trial, checkpoint=object())
    killed.on_trial_result(0, [trial], trial, {"epoch": 2})  # held; the driver dies here
    assert epochs(trial) == [1]
    trial.last_result = {"epoch": 2, "val_accuracy": 0.5}
    resumed = CheckpointedResults()
    resumed.on_trial_complete(0, [trial], trial)
    assert epochs(trial) == [1, 2]
    again = CheckpointedResults()
    again.on_trial_complete(0, [trial], trial)
    assert epochs(trial) == [1, 2]


def test_an_epoch_trained_again_after_a_resume_replaces_the_lines_from_it_on(tmp_path):
    """The driver wrote epochs 1-3 (and half a line of 4) and was killed before Tune saved its state past epoch 2's
    checkpoint: --resume restores that checkpoint and the trial trains epoch 3 again. The history keeps 1 and 2 and
    the new 3 (the run that went on), not the old 3, the cut line or epoch 3 twice."""
    trial = FakeTrial(tmp_path)
    killed = CheckpointedResults()
    for epoch in (1, 2, 3):
        killed.on_trial_result(0, [trial], trial, {"epoch": epoch, "run": "before"})
        killed.on_checkpoint(0, [trial], trial, checkpoint=object())
    with open(Path(trial.local_path) / "result.json", "a") as f:
        f.write('{"epoch": 4, "ru')  # cut short by the kill
    resumed = CheckpointedResults()
    for epoch in (3, 4):
        resumed.on_trial_result(0, [trial], trial, {"epoch": epoch, "run": "after"})
        resumed.on_checkpoint(0, [trial], trial, checkpoint=object())
    resumed.on_trial_complete(0, [trial], trial)
    lines = [json.loads(line) for line in (Path(trial.local_path) / "result.json").read_text().splitlines()]
    assert [(r["epoch"], r["run"]) for r in lines] == [(1, "before"), (2, "before"), (3, "after"), (4, "after")]
    replaced = (Path(trial.local_path) / "results_superseded.jsonl").read_text().splitlines()
    assert [(r["epoch"], r["run"]) for r in map(json.loads, replaced)] == [(3, "before")]  # still on record


def test_search_uses_it_in_place_of_rays_logger():
    """Ray adds its own JsonLoggerCallback unless one (a subclass) is given: then only ours writes result.json."""
    assert issubclass(CheckpointedResults, JsonLoggerCallback)
    import inspect

    import search.tuner

    assert "CheckpointedResults()" in inspect.getsource(search.tuner.build_tuner)
