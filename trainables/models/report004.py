"""Report 004 (Lozano): Keras CNNs C, E and F, grown step by step towards 0.75+ accuracy.

All three follow the course recipe quoted in §4.3: a large-kernel conv, pooling, then pairs of smaller convs
and pooling, flatten, dense, output. Kernel sizes are not written down but the parameter column fixes them
(9,472 = 64 x (3 x 7 x 7) + 64, 204,928 = 128 x (64 x 5 x 5) + 128, ...), and the unchanged spatial sizes
mean Keras ``padding="same"``. Keras keeps conv biases even before BatchNorm, and so do we.

* C (§4.3): 7x7/64, pool, 5x5/128, 3x3/128, pool, 3x3/256, pool, dense 128, dropout, 10: 1,182,858.
* E (§4.5): C plus a 3x3/256 conv and pool (down to 2x2), dropout after the second and last pooling and after
  the dense layer: 1,379,722.
* F (§4.6): C with a 5x5 first conv, BatchNorm + ReLU after every conv and after a dense 256, a spatial
  dropout after the second pooling: 1,705,610 trainable (Keras lists 1,664 more: the BN moving statistics).

Dropout rates: C inherits model A/B's 0.5 (§4.5 says E's rates are "0.25 or 0.15 instead of 0.5"). Which of
E's three dropouts gets which rate is not said; we give the dense one 0.25 and the two on conv maps 0.15
(the usual pattern of lighter dropout on conv features). F gives no rates; it "kept" E's setup, so we reuse
0.25 for the dense dropout and 0.15 for the spatial dropout. For E and F, ``dropout`` is the dense rate and
the conv-map rates are 0.6 x ``dropout`` (0.15 at the default 0.25).

``width`` (all three nets) scales every conv's filters and the hidden dense layer, rounded half up, at least 1.
"""
from __future__ import annotations

import functools

import torch.nn as nn

from trainables.models.registry import check_no_extra, default_image_size, flat_features, norm_layer, register, scaled

# Conv-map dropout relative to the dense dropout for E and F (0.15 / 0.25, see module docstring).
CONV_DROPOUT_RATIO = 0.6


def _conv(cin: int, cout: int, kernel: int, norm: str) -> nn.Sequential:
    """Keras Conv2D(kernel, padding="same", activation="relu"), optionally with a norm before the ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=kernel // 2), norm_layer(norm, cout),
                         nn.ReLU(inplace=True))


def _assemble(features: nn.Sequential, in_channels: int, image_size: int | None, hidden: int, num_classes: int,
              dropout: float, norm: str) -> nn.Sequential:
    """features -> flatten -> dense(hidden) [-> norm] -> ReLU -> dropout -> dense(num_classes)."""
    features.append(nn.Flatten())
    flat = flat_features(features, in_channels, default_image_size(in_channels, image_size))
    classifier = nn.Sequential(nn.Linear(flat, hidden), norm_layer(norm, hidden, dims=1), nn.ReLU(inplace=True),
                               nn.Dropout(dropout), nn.Linear(hidden, num_classes))
    return nn.Sequential(features, classifier)


# Report's training settings. Models A-D were trained by the starter script in 10k-image chunks, 10 epochs per
# chunk (§4.2-4.3); E and F on the full 40k training split at once. The report uses no augmentation, no label
# smoothing and no schedule anywhere.
_COMMON = {"augment": False, "label_smoothing": 0.0, "schedule": "constant"}


@register(
    "lozano_c",
    report="004 (Lozano), §4.3",
    defaults={
        # §4.3: Adam(learning_rate=0.0001), batch 32, still 10 epochs ("I hadn't changed the epochs from 10").
        "optimizer": "adam", "lr": 1e-4, "batch_size": 32, "epochs": 10, "weight_decay": 0.0,
        "dropout": 0.5, "norm": "none", **_COMMON,
    },
    published={"metric": "val_accuracy", "value": 0.66, "source": "§4.3 / Table 1 (Val. Set Acc.)"},
)
def build_lozano_c(num_classes: int = 10, in_channels: int = 3, dropout: float = 0.5, norm: str = "none",
                   image_size: int | None = None, width: float = 1.0, **extra) -> nn.Module:
    """Model C of report 004 (Lozano), §4.3: convs 7x7/64, 5x5/128, 3x3/128, 3x3/256 with 3 pools, dense 128.

    1,182,858 parameters at the defaults. ``dropout`` is the rate before the output layer; ``norm`` (none in
    the report) goes after each conv and after the dense layer.
    """
    check_no_extra("lozano_c", extra)
    w = functools.partial(scaled, width=width)
    features = nn.Sequential(
        _conv(in_channels, w(64), 7, norm), nn.MaxPool2d(2),  # 32 -> 16
        _conv(w(64), w(128), 5, norm), _conv(w(128), w(128), 3, norm), nn.MaxPool2d(2),  # 16 -> 8
        _conv(w(128), w(256), 3, norm), nn.MaxPool2d(2),  # 8 -> 4
    )
    return _assemble(features, in_channels, image_size, w(128), num_classes, dropout, norm)


@register(
    "lozano_e",
    report="004 (Lozano), §4.5",
    defaults={
        # §4.5: Adamax(learning_rate=0.001, weight_decay=1e-4), batch 16, 20 epochs. Keras applies that weight
        # decay decoupled (AdamW style); a trainer using torch's coupled Adamax L2 will differ slightly.
        "optimizer": "adamax", "lr": 1e-3, "weight_decay": 1e-4, "batch_size": 16, "epochs": 20,
        "dropout": 0.25, "norm": "none", **_COMMON,
    },
    published={"metric": "val_accuracy", "value": 0.73, "source": "§4.5 / Table 1 (Val. Set Acc.)"},
)
def build_lozano_e(num_classes: int = 10, in_channels: int = 3, dropout: float = 0.25, norm: str = "none",
                   image_size: int | None = None, width: float = 1.0, **extra) -> nn.Module:
    """Model E of report 004 (Lozano), §4.5: model C + a 3x3/256 conv and pool, three dropouts (0.15/0.25).

    1,379,722 parameters at the defaults. ``dropout`` is the dense rate; the two dropouts on conv maps use
    0.6 x ``dropout``.
    """
    check_no_extra("lozano_e", extra)
    w = functools.partial(scaled, width=width)
    p_conv = dropout * CONV_DROPOUT_RATIO
    features = nn.Sequential(
        _conv(in_channels, w(64), 7, norm), nn.MaxPool2d(2),  # 32 -> 16
        _conv(w(64), w(128), 5, norm), _conv(w(128), w(128), 3, norm), nn.MaxPool2d(2),  # 16 -> 8
        nn.Dropout(p_conv),  # Keras Dropout on a feature map: element-wise, as nn.Dropout
        _conv(w(128), w(256), 3, norm), nn.MaxPool2d(2),  # 8 -> 4
        _conv(w(256), w(256), 3, norm), nn.MaxPool2d(2),  # 4 -> 2
        nn.Dropout(p_conv),
    )
    return _assemble(features, in_channels, image_size, w(128), num_classes, dropout, norm)


@register(
    "lozano_f",
    report="004 (Lozano), §4.6",
    defaults={
        # §4.6 keeps E's Adamax(0.001, weight_decay=1e-4); batch size and epochs are not restated, so E's
        # 16 and 20 are assumed.
        "optimizer": "adamax", "lr": 1e-3, "weight_decay": 1e-4, "batch_size": 16, "epochs": 20,
        "dropout": 0.25, "norm": "batch", **_COMMON,
    },
    published={"metric": "val_accuracy", "value": 0.79,
               "source": "§4.6 / Table 1 (Val. Set Acc.; test accuracy also 0.79)"},
)
def build_lozano_f(num_classes: int = 10, in_channels: int = 3, dropout: float = 0.25, norm: str = "batch",
                   image_size: int | None = None, width: float = 1.0, **extra) -> nn.Module:
    """Model F of report 004 (Lozano), §4.6: model C with a 5x5 stem, BatchNorm everywhere, spatial dropout, dense 256.

    1,705,610 trainable parameters at the defaults. ``dropout`` is the dense rate; the spatial (channel)
    dropout after the second pooling uses 0.6 x ``dropout``.
    """
    check_no_extra("lozano_f", extra)
    w = functools.partial(scaled, width=width)
    features = nn.Sequential(
        _conv(in_channels, w(64), 5, norm), nn.MaxPool2d(2),  # 32 -> 16
        _conv(w(64), w(128), 5, norm), _conv(w(128), w(128), 3, norm), nn.MaxPool2d(2),  # 16 -> 8
        nn.Dropout2d(dropout * CONV_DROPOUT_RATIO),  # Keras SpatialDropout2D drops whole channels
        _conv(w(128), w(256), 3, norm), nn.MaxPool2d(2),  # 8 -> 4
    )
    return _assemble(features, in_channels, image_size, w(256), num_classes, dropout, norm)
