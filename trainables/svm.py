"""The SVM baseline of report 000 (Shin), §III-F: StandardScaler -> PCA(k=448) -> SVC(RBF, C=1, gamma="scale").

Pixels are flattened to 3,072 floats in [0, 1]. The report fit it on the full training set (over four hours);
``subset`` fits on the first N training images instead, and every result carries the subset it used so a table
can say so. The test split is never read here: a caller that may touch it (``cifar-tune evaluate``) passes it in.

    >>> pipe = build_svm(k=16, C=2.0)
    >>> [name for name, _ in pipe.steps], pipe.named_steps["pca"].n_components, pipe.named_steps["svc"].C
    (['scale', 'pca', 'svc'], 16, 2.0)
"""
from __future__ import annotations

import time

import numpy as np

from trainables.config import METRIC, is_count

DEFAULTS = {"k": 448, "C": 1.0, "gamma": "scale"}  # report 000 §III-F
PUBLISHED = {"metric": "test_accuracy", "value": 0.5127, "source": "report 000 §III-F (SVM, PCA k=448)"}


def _check(k: int, C: float, gamma, subset: int) -> None:
    if not is_count(k, 1):
        raise ValueError(f"svm: k (PCA components) must be an integer >= 1, got {k!r}")
    if not isinstance(C, (int, float)) or isinstance(C, bool) or not C > 0:
        raise ValueError(f"svm: C must be > 0, got {C!r}")
    if not (gamma in ("scale", "auto") or (isinstance(gamma, (int, float)) and not isinstance(gamma, bool)
                                          and gamma > 0)):
        raise ValueError(f"svm: gamma must be 'scale', 'auto' or a number > 0, got {gamma!r}")
    if not is_count(subset):
        raise ValueError(f"svm: subset must be an integer >= 0 (0 = all training images), got {subset!r}")


def check_svm(data, subset: int = 5000, k: int = DEFAULTS["k"], C: float = DEFAULTS["C"], gamma="scale",
              val_size: int = 5000, seed: int = 0) -> None:
    """What ``fit_svm`` would refuse, said without fitting (ValueError): a caller checks before its other work
    (``evaluate`` before its final runs, which would otherwise train for hours and then fail here)."""
    _check(k, C, gamma, subset)
    n = len(data.split_indices(val_size, seed)[0])
    n, features = min(n, subset) if subset else n, int(np.prod(data.shape))
    if k > min(n, features):
        raise ValueError(f"svm: k={k} PCA components need at least {k} training images and features; "
                         f"the subset has {n} images of {features} values")


def build_svm(k: int = DEFAULTS["k"], C: float = DEFAULTS["C"], gamma="scale", seed: int = 0):
    """The sklearn Pipeline: standardise every pixel, project on ``k`` principal components, RBF SVC."""
    from sklearn.decomposition import PCA
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    _check(k, C, gamma, 0)
    return Pipeline([("scale", StandardScaler()), ("pca", PCA(n_components=k, random_state=seed)),
                     ("svc", SVC(kernel="rbf", C=C, gamma=gamma))])


def _flat(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1).astype(np.float32) / 255.0


def _scores(pipe, x, y) -> tuple[float, float, np.ndarray]:
    from sklearn.metrics import accuracy_score, f1_score

    pred = pipe.predict(_flat(x))
    return float(accuracy_score(y, pred)), float(f1_score(y, pred, average="weighted")), pred


def fit_svm(data, subset: int = 5000, k: int = DEFAULTS["k"], C: float = DEFAULTS["C"], gamma="scale",
            val_size: int = 5000, seed: int = 0, test: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """Fit on the first ``subset`` training images of ``data`` (a :class:`trainables.data.Dataset`; 0 = all),
    score on the validation split and, when ``test`` = (images, labels) is given, on it.

    Returns ``{subset, k, C, gamma, val_accuracy, val_weighted_f1, test_accuracy, weighted_f1, fit_seconds,
    n_support, published}`` (the test keys only with ``test``).
    """
    check_svm(data, subset, k, C, gamma, val_size, seed)
    train_x, train_y = data.split("train", val_size, seed)
    if subset:
        train_x, train_y = train_x[:subset], train_y[:subset]
    n = len(train_y)
    pipe = build_svm(k, C, gamma, seed)
    t0 = time.perf_counter()
    pipe.fit(_flat(train_x), train_y)
    out = {"subset": int(n), "k": int(k), "C": float(C), "gamma": gamma, "fit_seconds": time.perf_counter() - t0,
           "n_support": int(pipe.named_steps["svc"].n_support_.sum()), "published": dict(PUBLISHED)}
    if val_size:
        val_x, val_y = data.split("val", val_size, seed)
        out[METRIC], out["val_weighted_f1"], _ = _scores(pipe, val_x, val_y)
    if test is not None:
        out["test_accuracy"], out["weighted_f1"], pred = _scores(pipe, *test)
        out["predictions"] = pred.tolist()
    return out
