"""Report 000 (Shin): a PyTorch replication of Sharma & Jadon's "six-layer" Keras CNN on CIFAR-10.

Table I of the report is the Keras summary of the reference model: two 3x3 valid convolutions (32 filters
each), each followed by 2x2 max pooling, then Dense(64) and Dense(10): 84,586 parameters, none of them
non-trainable, i.e. no BatchNorm in the table.

The replication departs from the table in one place: §IV-D says "batch normalization was added after
preliminary experiments showed poor convergence without it", and the 70.89 % of Table II was obtained with
that model. So the registered default is ``norm="batch"`` (a BatchNorm after each convolution, the report does
not say where; we put it between conv and ReLU, the usual place), which adds 2 x 2 x 32 = 128 trainable
parameters (84,714). ``norm="none"`` is the exact Table I net (84,586).
"""
from __future__ import annotations

import torch.nn as nn

from trainables.models.registry import check_no_extra, default_image_size, flat_features, norm_layer, register, scaled


def _conv_block(cin: int, cout: int, norm: str) -> nn.Sequential:
    # Keras Conv2D(3x3) defaults to padding="valid": 32 -> 30 -> pool 15 -> 13 -> pool 6, as in Table I.
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel_size=3),
        norm_layer(norm, cout),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


@register(
    "simple_cnn",
    report="000 (Shin, replicating Sharma & Jadon), Table I",
    defaults={
        # §III-E / Table II: the best run is SGD, lr 0.001, batch 20, 25 epochs; momentum 0.9 is the author's
        # own choice (§IV-D) since the original paper gives none.
        "optimizer": "sgd", "lr": 1e-3, "momentum": 0.9, "batch_size": 20, "epochs": 25,
        # §III: "no dropout regularization"; §IV-D: BatchNorm added (see module docstring).
        "dropout": 0.0, "norm": "batch",
        # Not stated; the report mentions only channel-wise standardisation, no augmentation, no L2,
        # no schedule, plain cross-entropy.
        "weight_decay": 0.0, "augment": False, "label_smoothing": 0.0, "schedule": "constant",
    },
    published={"metric": "test_accuracy", "value": 0.7089, "source": "Table II (lr 0.001, batch 20)"},
)
def build(num_classes: int = 10, in_channels: int = 3, dropout: float = 0.0, norm: str = "batch",
          image_size: int | None = None, width: float = 1.0, **extra) -> nn.Module:
    """Simple CNN of report 000 (Shin), Table I: conv32-pool-conv32-pool-dense64-dense10.

    84,586 parameters with ``norm="none"`` (the table), 84,714 with the default ``norm="batch"``.
    ``dropout`` (0 in the report, which avoided it) is applied before each of the two dense layers.
    ``image_size`` sizes the dense head (default: 32, or 28 for one-channel input).
    ``width`` scales the conv filters (32) and the hidden dense layer (64), rounded half up.
    """
    check_no_extra("simple_cnn", extra)
    size = default_image_size(in_channels, image_size)
    c, hidden = scaled(32, width), scaled(64, width)
    features = nn.Sequential(_conv_block(in_channels, c, norm), _conv_block(c, c, norm), nn.Flatten())
    flat = flat_features(features, in_channels, size)  # 32 * 6 * 6 = 1152 at 32x32
    # The softmax of the Keras model is left to the loss (CrossEntropyLoss takes logits).
    classifier = nn.Sequential(
        nn.Dropout(dropout),
        nn.Linear(flat, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(hidden, num_classes),
    )
    return nn.Sequential(features, classifier)
