"""The shared-data path (one read-only copy, splits by index) is the plain path, batch for batch and trial for trial."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from trainables.data import DeviceBatches


def test_indexed_batches_equal_copied_batches(cifar):
    x, y, idx = cifar.split_index("train", 5000)
    idx = idx[:700]
    shared = x.copy()
    shared.setflags(write=False)  # what Ray's object store hands a trial
    kw = dict(shuffle=True, augment=True, seed=5, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    a = DeviceBatches(shared, y, 64, index=idx, **kw)
    b = DeviceBatches(x[idx], y[idx], 64, **kw)
    for _ in range(2):  # two epochs: reshuffling stays in step too
        for (xa, ya), (xb, yb) in zip(a, b, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert a.images.data_ptr() == torch.from_numpy(shared).data_ptr()  # no copy was made


@pytest.mark.slow
def test_packed_trials_train_like_a_solo_trial(cifar_path, tmp_path):
    """Three identical trials run side by side (two at once on this machine) and one alone: same accuracy."""
    import ray

    from search.spec import ExperimentSpec
    from search.tuner import run_search

    config = {"arch": "origin_net", "subset": 512, "val_size": 300, "optimizer": "adam", "lr": 3e-3, "seed": 7,
              "epochs": 2}
    common = dict(archs=["origin_net"], sampler="grid", scheduler="none", max_epochs=2, storage=str(tmp_path),
                  fixed={"data_dir": str(cifar_path)})
    try:
        packed = run_search(ExperimentSpec(name="packed", grid=[config] * 3, max_concurrent=2, **common))
        solo = run_search(ExperimentSpec(name="solo", grid=[config], max_concurrent=1, **common))
    finally:
        ray.shutdown()
    values = [r.metrics["val_accuracy"] for r in packed] + [r.metrics["val_accuracy"] for r in solo]
    assert len(values) == 4 and len(set(values)) == 1, values
    assert np.isfinite(values[0]) and values[0] > 0.1
