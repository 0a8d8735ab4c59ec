"""Report 003 (Lai): OriginNet (the course's starter CNN) and the author's slimmer ModifiedNet.

OriginNet, Table III. The parameter column pins down every kernel: 78 = 6 x (3 x 2 x 2) + 6, so the convs are
2x2, and the output sides 33 -> 16 -> 17 -> 8 -> 7 -> 3 need padding 1, 1, 0 (32 + 2 - 2 + 1 = 33 etc.), with
2x2 max pooling. Flatten 32 x 3 x 3 = 288, then 120 - 84 - 10: 48,252 parameters. Activations (ReLU) carry no
parameters and are not in the table.

ModifiedNet, Tables V-VI. The prose of §III-B describes filters 10/12/24 and depthwise separable
convolutions, but the layer table (and its 35,730 total, which is what Tables I and VIII-IX were measured
with) is plain 3x3 "same" convolutions with 8/12/16 filters, each followed by BatchNorm and 2x2 max pooling,
then 256 -> 100 -> 64 -> 10 with dropout after both hidden layers and no BatchNorm on them (their rows have
0 parameters). We build the table, not the prose. The dropout rate is not in the report (§III-B-5 only says
"typically 0.2 to 0.5"); 0.5 is what the author's linked repository (Appendix B) uses.

Training settings the report leaves out (batch size, momentum, epochs, augmentation) are taken from the
author's repository (Appendix B link): batch 64, SGD momentum 0.9, 300 epochs, random horizontal flip and
+-10 degree rotation; we note them as such.

Size knobs (issue 11), all at the table's values by default: ``width`` scales every conv's filters and every
hidden dense layer (rounded half up, at least 1); ``kernel`` is the side of every conv (OriginNet keeps the table's
padding rule, k // 2 on the first two convs and none on the third, which at k=2 is its 1, 1, 0; ModifiedNet pads
k // 2, "same" for odd k); ``pool`` is "max" (both tables) or "avg".
"""
from __future__ import annotations

import torch.nn as nn

from trainables.models.registry import (check_no_extra, default_image_size, flat_features, norm_layer, pool_layer,
                                        register, scaled)

# (out_channels, kernel, padding) of OriginNet's three convs, read off Table III.
ORIGIN_CONVS = ((6, 2, 1), (16, 2, 1), (32, 2, 0))
# Spatial side after each conv and each pool on a 32x32 input, in forward order (Table III).
ORIGIN_SIDES_32 = (33, 16, 17, 8, 7, 3)


def _conv_pool(cin: int, cout: int, kernel: int, padding: int, norm: str, pool: str = "max") -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=padding), norm_layer(norm, cout), nn.ReLU(inplace=True),
                         pool_layer(pool))


def _mlp(flat: int, hidden: tuple[int, ...], num_classes: int, dropout: float) -> nn.Sequential:
    """Flat -> hidden layers with ReLU (each followed by dropout) -> logits."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(flat, width), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        flat = width
    layers.append(nn.Linear(flat, num_classes))
    return nn.Sequential(*layers)


@register(
    "origin_net",
    report="003 (Lai), Table III",
    defaults={
        # Not in the report; the author's repository (ablation_study/baseline.py) trains OriginNet with SGD
        # lr 0.0001, momentum 0.9, batch 64, 300 epochs, flip + rotation augmentation, cross-entropy.
        "optimizer": "sgd", "lr": 1e-4, "momentum": 0.9, "batch_size": 64, "epochs": 300,
        "augment": True, "weight_decay": 0.0, "label_smoothing": 0.0, "schedule": "constant",
        "dropout": 0.0, "norm": "none",
    },
    published={"metric": "weighted_f1", "value": 0.5521, "source": "Table VII (test set, weighted average)"},
)
def build_origin_net(num_classes: int = 10, in_channels: int = 3, dropout: float = 0.0, norm: str = "none",
                     image_size: int | None = None, width: float = 1.0, kernel: int = 2, pool: str = "max",
                     **extra) -> nn.Module:
    """OriginNet of report 003 (Lai), Table III: three 2x2 convs 6/16/32 with max pooling, MLP 120-84.

    48,252 parameters at the defaults; feature map sides 33, 16, 17, 8, 7, 3 on 32x32 input.
    ``dropout`` (0 in the original) follows each hidden dense layer; ``norm`` goes after each conv.
    ``width``, ``kernel``, ``pool``: the size knobs (module docstring).
    """
    check_no_extra("origin_net", extra)
    layers, cin = [], in_channels
    for cout, table_kernel, padding in ORIGIN_CONVS:
        # The table's padding (1, 1, 0 for 2x2 kernels) generalised: k // 2 where it pads at all.
        pad = kernel // 2 if padding else 0
        layers.append(_conv_pool(cin, scaled(cout, width), kernel, pad, norm, pool))
        cin = scaled(cout, width)
    features = nn.Sequential(*layers, nn.Flatten())
    flat = flat_features(features, in_channels, default_image_size(in_channels, image_size))  # 288 at 32x32
    return nn.Sequential(features, _mlp(flat, tuple(scaled(h, width) for h in (120, 84)), num_classes, dropout))


@register(
    "modified_net",
    report="003 (Lai), Tables V-VI",
    defaults={
        # Tables VIII-IX: SGD with lr 0.005 is the best (72.8 %) setting. Momentum, batch, epochs and
        # augmentation from the author's repository (ablation_study/baseline_modifiedNet_lr0.005.py).
        "optimizer": "sgd", "lr": 5e-3, "momentum": 0.9, "batch_size": 64, "epochs": 300,
        "augment": True, "weight_decay": 0.0, "schedule": "constant",
        # §III-C-3 praises label smoothing, but the 72.8 % of Tables VIII-IX is plain cross-entropy.
        "label_smoothing": 0.0,
        "dropout": 0.5, "norm": "batch",
    },
    published={"metric": "test_accuracy", "value": 0.728, "source": "Tables VIII-IX (SGD, lr 0.005)"},
)
def build_modified_net(num_classes: int = 10, in_channels: int = 3, dropout: float = 0.5, norm: str = "batch",
                       image_size: int | None = None, width: float = 1.0, kernel: int = 3, pool: str = "max",
                       **extra) -> nn.Module:
    """ModifiedNet of report 003 (Lai), Tables V-VI: 3x3 convs 8/12/16 + BN + pool, MLP 100-64 with dropout.

    35,730 parameters at the defaults (Table V). ``dropout`` is the rate after both hidden dense layers.
    ``width``, ``kernel``, ``pool``: the size knobs (module docstring).
    """
    check_no_extra("modified_net", extra)
    c1, c2, c3 = (scaled(c, width) for c in (8, 12, 16))
    features = nn.Sequential(
        _conv_pool(in_channels, c1, kernel, kernel // 2, norm, pool),  # 32 -> 16
        _conv_pool(c1, c2, kernel, kernel // 2, norm, pool),  # 16 -> 8
        _conv_pool(c2, c3, kernel, kernel // 2, norm, pool),  # 8 -> 4
        nn.Flatten(),
    )
    flat = flat_features(features, in_channels, default_image_size(in_channels, image_size))  # 256 at 32x32
    return nn.Sequential(features, _mlp(flat, tuple(scaled(h, width) for h in (100, 64)), num_classes, dropout))
