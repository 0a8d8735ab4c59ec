"""Checkpoint fallback: a corrupt newest checkpoint is skipped for the previous one, and the trial says so."""
from __future__ import annotations

import json
import logging

import pytest
import torch

from trainables.checkpoints import FALLBACK_FILE, candidates, checkpoint_index, load_newest_valid, newest_on_disk
from trainables.train import CHECKPOINT_FILE, load_state, save_state


def state(epoch: int) -> dict:
    return {"model": {"w": torch.full((2,), float(epoch))}, "optimizer": {}, "epoch": epoch,
            "history": [{"epoch": e} for e in range(1, epoch + 1)]}


@pytest.fixture
def trial_dir(tmp_path):
    """A trial directory as Tune leaves it with num_to_keep=3: checkpoints of epochs 3, 4, 5 (indices 2-4)."""
    for index, epoch in ((2, 3), (3, 4), (4, 5)):
        (tmp_path / f"checkpoint_{index:06d}").mkdir()
        save_state(state(epoch), tmp_path / f"checkpoint_{index:06d}")
    (tmp_path / "result.json").write_text("")
    return tmp_path


def records(trial_dir) -> list[dict]:
    return [json.loads(line) for line in (trial_dir / FALLBACK_FILE).read_text().splitlines()]


def ckpt(trial_dir, index: int):
    from ray.tune import Checkpoint

    return Checkpoint.from_directory(str(trial_dir / f"checkpoint_{index:06d}"))


def test_candidates_are_the_checkpoint_then_older_siblings(trial_dir):
    assert checkpoint_index("/x/checkpoint_000012") == 12 and checkpoint_index("/x/other") is None
    assert [checkpoint_index(c.path) for c in candidates(ckpt(trial_dir, 4))] == [4, 3, 2]
    assert [checkpoint_index(c.path) for c in candidates(ckpt(trial_dir, 3))] == [3, 2]  # never a newer one


def test_valid_newest_checkpoint_is_used_silently(trial_dir):
    assert load_newest_valid(ckpt(trial_dir, 4), load_state)["epoch"] == 5
    assert not (trial_dir / FALLBACK_FILE).exists()


@pytest.mark.parametrize("corrupt", ["truncate", "garble", "delete", "wrong_content"])
def test_corrupt_newest_falls_back_to_previous_and_says_so(trial_dir, corrupt, caplog, capfd):
    path = trial_dir / "checkpoint_000004" / CHECKPOINT_FILE
    if corrupt == "truncate":
        path.write_bytes(path.read_bytes()[:100])
    elif corrupt == "garble":
        data = bytearray(path.read_bytes())
        data[len(data) // 3: len(data) // 3 + 64] = b"\xff" * 64
        path.write_bytes(bytes(data))
        try:  # a flip inside the tensor bytes could pass unnoticed by torch; make sure this one does not
            load_state(path)
            pytest.skip("this garbling happens to load")
        except Exception:
            pass
    elif corrupt == "delete":
        path.unlink()
    else:
        torch.save({"not": "a checkpoint"}, path)
    with caplog.at_level(logging.WARNING, logger="trainables.checkpoints"):
        got = load_newest_valid(ckpt(trial_dir, 4), load_state)
    assert got["epoch"] == 4 and float(got["model"]["w"][0]) == 4.0
    assert [h["epoch"] for h in got["history"]] == [1, 2, 3, 4]  # training resumes at epoch 5: no gap, no stale 5
    assert "checkpoint_000004" in caplog.text and "resuming from checkpoint_000003 (epoch 4)" in caplog.text
    assert "checkpoint fallback" in capfd.readouterr().err
    record = records(trial_dir)
    assert len(record) == 1 and record[0]["resumed_from"] == "checkpoint_000003" and record[0]["epoch"] == 4
    assert record[0]["failed"][0]["checkpoint"] == "checkpoint_000004" and record[0]["failed"][0]["error"]


def test_two_corrupt_fall_back_two_and_records_accumulate(trial_dir):
    for index in (3, 4):
        (trial_dir / f"checkpoint_{index:06d}" / CHECKPOINT_FILE).write_bytes(b"")
    assert load_newest_valid(ckpt(trial_dir, 4), load_state)["epoch"] == 3
    assert load_newest_valid(ckpt(trial_dir, 3), load_state)["epoch"] == 3
    assert [len(r["failed"]) for r in records(trial_dir)] == [2, 1]


def test_a_fallback_takes_the_older_sibling_holding_the_latest_epoch_not_the_highest_number(trial_dir):
    """After a PBT exploit a lower-numbered folder can hold a later epoch: the fallback reads them all."""
    save_state(state(5), trial_dir / "checkpoint_000002")  # epoch 5 in folder 2, epoch 4 in folder 3
    (trial_dir / "checkpoint_000004" / CHECKPOINT_FILE).write_bytes(b"")
    got = load_newest_valid(ckpt(trial_dir, 4), load_state)
    assert got["epoch"] == 5 and float(got["model"]["w"][0]) == 5.0
    assert records(trial_dir)[0]["resumed_from"] == "checkpoint_000002"


def test_no_readable_checkpoint_starts_over(trial_dir):
    for index in (2, 3, 4):
        (trial_dir / f"checkpoint_{index:06d}" / CHECKPOINT_FILE).write_bytes(b"junk")
    assert load_newest_valid(ckpt(trial_dir, 4), load_state) is None
    assert records(trial_dir)[0]["resumed_from"] is None


def test_checkpoint_outside_a_trial_dir_has_no_siblings(tmp_path):
    from ray.tune import Checkpoint

    save_state(state(2), tmp_path)
    assert load_newest_valid(Checkpoint.from_directory(str(tmp_path)), load_state)["epoch"] == 2
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"")
    assert load_newest_valid(Checkpoint.from_directory(str(tmp_path)), load_state) is None


def test_a_full_disk_while_saving_leaves_the_previous_checkpoint_and_no_short_file(trial_dir, monkeypatch):
    """ENOSPC mid-write (injected after half the bytes): raised to the trial, the old checkpoint whole, no tmp."""
    import errno

    import trainables.train as tt

    folder = trial_dir / "checkpoint_000004"
    before = (folder / CHECKPOINT_FILE).read_bytes()
    real_save = torch.save

    def save_until_full(obj, f):
        real_save(obj, f)
        f.truncate(len(before) // 2)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tt.torch, "save", save_until_full)
    with pytest.raises(OSError, match="No space left"):
        save_state(state(6), folder)
    assert (folder / CHECKPOINT_FILE).read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == [CHECKPOINT_FILE]


def test_an_empty_checkpoint_is_never_resumed_from(trial_dir):
    (trial_dir / "checkpoint_000004" / CHECKPOINT_FILE).write_bytes(b"")  # as a copy onto a full disk leaves it
    resumed = load_newest_valid(ckpt(trial_dir, 4), load_state)
    assert resumed["epoch"] == 4
    assert "empty (0 bytes)" in records(trial_dir)[-1]["failed"][0]["error"]


def test_the_newest_on_disk_is_the_latest_epoch_not_the_highest_number(trial_dir):
    """After a PBT exploit Tune numbered a trial's epoch-3 checkpoint 0 beside its epoch-2 one numbered 1 (seen in
    tests/test_schedulers.py's PBT run): the order is the epoch each state holds. An unreadable one is passed over;
    none readable is a ValueError naming the folder (evaluate prints it as one line)."""
    assert newest_on_disk(trial_dir, load_state)[0].name == "checkpoint_000004"
    (trial_dir / "checkpoint_000000").mkdir()
    save_state(state(7), trial_dir / "checkpoint_000000")
    folder, newest = newest_on_disk(trial_dir, load_state)
    assert (folder.name, newest["epoch"]) == ("checkpoint_000000", 7)
    (trial_dir / "checkpoint_000000" / CHECKPOINT_FILE).write_bytes(b"garbled")
    assert newest_on_disk(trial_dir, load_state)[1]["epoch"] == 5
    assert newest_on_disk(trial_dir / "gone", load_state) is None
    (trial_dir / FALLBACK_FILE).write_text("{}\n")  # "checkpoint_..." but no checkpoint folder
    for index in (2, 3, 4):
        (trial_dir / f"checkpoint_{index:06d}" / CHECKPOINT_FILE).write_bytes(b"")
    with pytest.raises(ValueError, match="no checkpoint in .* can be read: checkpoint_0000"):
        newest_on_disk(trial_dir, load_state)
