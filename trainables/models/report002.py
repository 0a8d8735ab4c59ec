"""Report 002 (Ghasemi): the PyTorch ``Net`` printed in "Step 3: Description of model architecture".

Five 3x3 convolutions 32-64-128-256-512 (only the second has stride 2), each followed by ReLU and then
BatchNorm (that order, as in the listing), a Dropout(0.2) before the last convolution, adaptive average
pooling to 2x2, and a 2048-512-256-10 MLP: 2,753,546 parameters. The adaptive pooling is the report's own,
so the net takes any input size as is (28x28 gives 14x14 maps before the pooling).

The report is inconsistent on training length: the listing loops 30 epochs ("adjust as needed"), the text
and the best row of the results table (row 15, 84 %) say 20. We take 20. The same row says "no"
regularisation, while the listing (and the text: "no explicit regularization ... except some dropouts")
has the Dropout(0.2); we keep the listing, since the architecture comes from it.
"""
from __future__ import annotations

import torch.nn as nn

from trainables.models.registry import check_no_extra, norm_layer, register, scaled


def _conv(cin: int, cout: int, stride: int, norm: str) -> list[nn.Module]:
    # Listing order: Conv -> ReLU -> BatchNorm.
    return [nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1), nn.ReLU(inplace=True),
            norm_layer(norm, cout)]


@register(
    "ghasemi_net",
    report="002 (Ghasemi), Step 3 code",
    defaults={
        # Step 4 and "Results and Discussion": Adam, lr 0.0005, mini-batch 60, 20 epochs (see module docstring).
        "optimizer": "adam", "lr": 5e-4, "batch_size": 60, "epochs": 20,
        "dropout": 0.2, "norm": "batch",
        # Step 2: ToTensor + Normalize only, so no augmentation; plain CrossEntropyLoss, fixed lr, no L2
        # (the weight-decay rows of the table did worse and are not the published setting).
        "augment": False, "weight_decay": 0.0, "label_smoothing": 0.0, "schedule": "constant",
    },
    published={"metric": "test_accuracy", "value": 0.84, "source": "Results and Discussion (table row 15)"},
)
def build(num_classes: int = 10, in_channels: int = 3, dropout: float = 0.2, norm: str = "batch",
          image_size: int | None = None, width: float = 1.0, **extra) -> nn.Module:
    """Ghasemi's Net of report 002, Step 3 code: 5 convs 32..512 with BN, adaptive pool 2x2, MLP 512-256.

    2,753,546 parameters at the defaults. ``dropout`` is the rate of the single Dropout before conv 5.
    ``image_size`` is accepted like everywhere in the zoo but not needed: the adaptive pooling fits any size.
    ``width`` scales every conv (32..512) and both hidden dense layers (512, 256), rounded half up.
    """
    check_no_extra("ghasemi_net", extra)
    c1, c2, c3, c4, c5 = (scaled(c, width) for c in (32, 64, 128, 256, 512))
    h1, h2 = scaled(512, width), scaled(256, width)
    features = nn.Sequential(
        *_conv(in_channels, c1, 1, norm),
        *_conv(c1, c2, 2, norm),  # the only downsampling before the pooling: 32 -> 16
        *_conv(c2, c3, 1, norm),
        *_conv(c3, c4, 1, norm),
        nn.Dropout(dropout),
        *_conv(c4, c5, 1, norm),
    )
    classifier = nn.Sequential(
        nn.AdaptiveAvgPool2d((2, 2)),
        nn.Flatten(),
        nn.Linear(c5 * 2 * 2, h1),
        nn.ReLU(inplace=True),
        nn.Linear(h1, h2),
        nn.ReLU(inplace=True),
        nn.Linear(h2, num_classes),
    )
    return nn.Sequential(features, classifier)
