"""Report 001 (Dureja): a custom Keras CNN and a transfer-learned ResNet-18 on CIFAR-10.

keras_cnn (§2.2): three blocks Conv2D(3x3, ReLU) -> BatchNorm -> MaxPool(2) -> Dropout with 32/64/128
filters, Flatten, Dense(128, ReLU), Dropout, Dense(10, softmax). The report gives no padding, so we keep the
Keras default ``padding="valid"``: 32 -> 30 -> 15 -> 13 -> 6 -> 4 -> 2, a 2x2x128 = 512 flatten, and

    conv 896 + 18,496 + 73,856, BN 64 + 128 + 256 (trainable gamma/beta), dense 65,664 + 1,290 = 160,650

trainable parameters (Keras would list 448 more, the BN moving statistics). ``padding="same"`` is available
as an extra knob (357,258 parameters: a 4x4x128 flatten) since "same" is the other common choice.

resnet18 (§2.1, §2.4): torchvision's ResNet-18 with a 10-way head, ImageNet weights, early layers frozen,
fine-tuned on CIFAR-10. The report never mentions resizing the 32x32 images to 224, so the ImageNet stem
(7x7/2 conv + 3x3/2 max pool) sees 32x32 images and the last stage works on 1x1 maps; that is the setting
the published 80.03 % comes from as far as the report tells. ``stem="cifar"`` swaps in the usual 3x3/1 conv
without max pooling for training from scratch.
"""
from __future__ import annotations

import functools
import os

import torch.nn as nn

from trainables.compat import resnet_stage
from trainables.models.registry import check_no_extra, default_image_size, flat_features, norm_layer, register, scaled

# ---------------------------------------------------------------------------------------------------------------
# keras_cnn

# §2.2 / §3.4: "0.3 in the first convolutional block, up to 0.5 in deeper layers". We read that as a linear
# ramp over the three conv blocks and 0.5 again after the dense layer.
KERAS_CNN_DROPOUT = (0.3, 0.4, 0.5, 0.5)
# Highest rate an overridden schedule may reach (the registry only checks the base rate is < 1).
_MAX_RATE = 0.9


def keras_cnn_dropout_schedule(dropout: float, depth: int = 3) -> list[float]:
    """Per-layer rates for base rate ``dropout`` (the first block's rate, the "D/O Rate" of Table 2).

    The report's ramp is scaled proportionally: 0.3 gives (0.3, 0.4, 0.5, 0.5), 0.4 gives
    (0.4, 0.533, 0.667, 0.667), 0 turns all dropout off. Each rate is capped at 0.9. One rate per conv block,
    then the dense one; with ``depth`` blocks other than 3 the ramp runs from 0.3 to 0.5 over those blocks.
    """
    if depth == 3:
        ramp = KERAS_CNN_DROPOUT
    else:
        first, last = KERAS_CNN_DROPOUT[0], KERAS_CNN_DROPOUT[-1]
        ramp = tuple(first + (last - first) * i / max(1, depth - 1) for i in range(depth)) + (last,)
    return [min(dropout * r / KERAS_CNN_DROPOUT[0], _MAX_RATE) for r in ramp]


@register(
    "keras_cnn",
    report="001 (Dureja), §2.2",
    defaults={
        # §2.5: Adam, lr 0.001 halved on a 5-epoch validation plateau, batch 64, at most 50 epochs with early
        # stopping. ReduceLROnPlateau/early stopping have no key here; "constant" is the closest setting.
        "optimizer": "adam", "lr": 1e-3, "batch_size": 64, "epochs": 50, "schedule": "constant",
        "dropout": 0.3, "norm": "batch",
        # §3.1: random horizontal flip + random crop for both models. No weight decay for the Keras model
        # (§2.3 lists it only for the PyTorch one); no label smoothing mentioned.
        "augment": True, "weight_decay": 0.0, "label_smoothing": 0.0,
    },
    published={"metric": "test_accuracy", "value": 0.8075, "source": "Table 1"},
)
def build_keras_cnn(num_classes: int = 10, in_channels: int = 3, dropout: float = 0.3, norm: str = "batch",
                    padding: str = "valid", image_size: int | None = None, width: float = 1.0, depth: int = 3,
                    filters: int = 32, **extra) -> nn.Module:
    """Keras custom CNN of report 001 (Dureja), §2.2: 3 conv blocks 32/64/128, BN, dropout 0.3->0.5, dense 128.

    160,650 trainable parameters at the defaults (valid padding, see module docstring).
    ``dropout`` is the first block's rate; the deeper rates scale with it (``keras_cnn_dropout_schedule``).
    ``padding``: "valid" (Keras default, used here) or "same".
    Size knobs (report 001 varied filters and depth): ``depth`` conv blocks (3) with ``filters`` (32) doubling
    from block to block, so 32/64/128; ``width`` scales those filters and the dense 128, rounded half up. With
    valid padding a 32x32 image allows at most 3 blocks, with "same" padding 5.
    """
    check_no_extra("keras_cnn", extra)
    if padding not in ("valid", "same"):
        raise ValueError(f"keras_cnn: padding must be 'valid' or 'same', got {padding!r}")
    if int(depth) < 1 or int(filters) < 1:
        raise ValueError(f"keras_cnn: depth and filters must be >= 1, got depth={depth!r}, filters={filters!r}")
    *p_blocks, p_dense = keras_cnn_dropout_schedule(dropout, int(depth))
    pad = 0 if padding == "valid" else 1

    def block(cin: int, cout: int, p: float) -> nn.Sequential:
        # Keras order as listed in §2.2: conv with ReLU, then BatchNorm, then pooling, then dropout.
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=pad), nn.ReLU(inplace=True), norm_layer(norm, cout),
                             nn.MaxPool2d(2), nn.Dropout(p))

    blocks, cin = [], in_channels
    for i, p in enumerate(p_blocks):
        cout = scaled(int(filters) * 2 ** i, width)
        blocks.append(block(cin, cout, p))
        cin = cout
    features = nn.Sequential(*blocks, nn.Flatten())
    flat = flat_features(features, in_channels, default_image_size(in_channels, image_size))
    hidden = scaled(128, width)
    classifier = nn.Sequential(nn.Linear(flat, hidden), nn.ReLU(inplace=True), nn.Dropout(p_dense),
                               nn.Linear(hidden, num_classes))
    return nn.Sequential(features, classifier)


# ---------------------------------------------------------------------------------------------------------------
# resnet18

STEMS = ("imagenet", "cifar")


# A state dict of torchvision's ResNet-18 saved on a connected machine, e.g.
#   torch.save(torchvision.models.resnet18(weights="IMAGENET1K_V1").state_dict(), "resnet18-imagenet.pt")
# and named here, is loaded instead of the download: "pretrained" works where there is no network (as on the
# machines this project trains on). Every Ray node must see the file at that path.
WEIGHTS_ENV = "CIFAR_TUNE_RESNET18_WEIGHTS"


def _load_imagenet_weights():
    """torchvision's ImageNet-1k weights for ResNet-18: the file ``$CIFAR_TUNE_RESNET18_WEIGHTS`` names, else
    torchvision's download (or its hub cache), or a clear error when they cannot be had."""
    path = os.environ.get(WEIGHTS_ENV, "").strip()
    if path:
        return _load_local_weights(path)
    import torchvision

    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    try:
        return weights.get_state_dict(progress=False)
    except Exception as e:  # URLError, HTTP errors, a truncated file ... all mean the same thing to the caller
        raise RuntimeError(
            "resnet18(pretrained=True): could not load torchvision's ResNet18_Weights.IMAGENET1K_V1 "
            f"(download from {weights.url} failed: {type(e).__name__}: {e}). Without network access save its "
            f"state dict on a connected machine and name the file in ${WEIGHTS_ENV}, or put the file into the torch "
            "hub cache ($TORCH_HOME/hub/checkpoints/), or build with pretrained=False."
        ) from e


def _load_local_weights(path: str) -> dict:
    """A saved state dict of torchvision's ResNet-18 (any head: ours replaces it), checked key by key and shape by
    shape against the architecture, so a wrong file is one error naming it, not a half-loaded model."""
    import torch
    import torchvision

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # missing file, not a torch file, a pickle of arbitrary objects ...
        raise RuntimeError(f"resnet18(pretrained=True): ${WEIGHTS_ENV}={path!r} cannot be read as a state dict "
                           f"({type(e).__name__}: {e})") from None
    with torch.device("meta"):
        expected = {k: v.shape for k, v in torchvision.models.resnet18(weights=None).state_dict().items()
                    if not k.startswith("fc.")}
    if not isinstance(state, dict):
        raise RuntimeError(f"resnet18(pretrained=True): ${WEIGHTS_ENV}={path!r} holds a {type(state).__name__}, "
                           "not a state dict")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    wrong = sorted(set(expected) ^ set(state)) or sorted(k for k in expected if tuple(state[k].shape) != expected[k])
    if wrong:
        raise RuntimeError(f"resnet18(pretrained=True): ${WEIGHTS_ENV}={path!r} is not a torchvision ResNet-18 "
                           f"state dict ({len(wrong)} keys missing, unexpected or of another shape, e.g. {wrong[0]!r})")
    return state


def _stem_conv(in_channels: int, kernel_size: int, stride: int, channels: int = 64) -> nn.Conv2d:
    """A replacement first conv, initialised the way torchvision initialises ResNet convs."""
    conv = nn.Conv2d(in_channels, channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


def _rescale_resnet(model, width: float, in_channels: int, norm: str) -> None:
    """Rebuild ResNet-18's stem and four stages with ``width`` x (64, 128, 256, 512) channels, in place.

    torchvision's ResNet fixes those widths (its ``width_per_group`` only reaches Bottleneck blocks), so the
    stages are made again with its own ``_make_layer`` and BasicBlock and initialised as its constructor does.
    """
    from torchvision.models.resnet import BasicBlock

    widths = [scaled(c, width) for c in (64, 128, 256, 512)]
    model.inplanes = widths[0]
    model.conv1 = nn.Conv2d(in_channels, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
    model.bn1 = norm_layer(norm, widths[0])
    for i, (name, c) in enumerate(zip(("layer1", "layer2", "layer3", "layer4"), widths)):
        setattr(model, name, resnet_stage(model, BasicBlock, c, 2, stride=1 if i == 0 else 2))
    model.fc = nn.Linear(widths[-1], model.fc.out_features)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


def _adapt_first_conv(weight, in_channels: int):
    """Pretrained RGB filters for ``in_channels`` inputs: average over RGB and spread the sum evenly.

    For grey input (in_channels=1) this responds exactly as the RGB filter would to the grey image
    replicated on three channels.
    """
    if in_channels == weight.shape[1]:
        return weight
    return weight.mean(dim=1, keepdim=True).repeat(1, in_channels, 1, 1) * (weight.shape[1] / in_channels)


@register(
    "resnet18",
    report="001 (Dureja), §2.1-2.5",
    defaults={
        # §2.5: Adam, lr 0.001, batch 64, 20 epochs. §2.3: weight decay "in the Adam optimizer" without a
        # value; 1e-4 is our pick. §2.3/§3.1: random flip + crop.
        "optimizer": "adam", "lr": 1e-3, "batch_size": 64, "epochs": 20, "weight_decay": 1e-4,
        "augment": True, "schedule": "constant", "label_smoothing": 0.0,
        # torchvision's ResNet-18 has BatchNorm and no dropout.
        "dropout": 0.0, "norm": "batch",
    },
    published={"metric": "test_accuracy", "value": 0.8003,
               "source": "Table 1 (ImageNet-pretrained, fine-tuned: pretrained=True)"},
)
def build_resnet18(num_classes: int = 10, in_channels: int = 3, dropout: float = 0.0, norm: str = "batch",
                   stem: str = "imagenet", pretrained: bool = False, freeze: int = 0, image_size: int | None = None,
                   width: float = 1.0, **extra) -> nn.Module:
    """torchvision ResNet-18 of report 001 (Dureja), §2.1-2.4, with a ``num_classes`` head.

    11,181,642 parameters with the ImageNet stem, 11,173,962 with ``stem="cifar"`` (3x3/1 conv, no max pool).
    ``pretrained`` loads ``ResNet18_Weights.IMAGENET1K_V1`` (report's transfer setup; needs stem="imagenet"
    and norm="batch"), from the file ``$CIFAR_TUNE_RESNET18_WEIGHTS`` where set (no network needed);
    ``freeze`` = N freezes the first N of the five stages (stem, layer1 .. layer4).
    Frozen BatchNorm layers keep updating their running statistics in train mode; only the weights are fixed.
    ``dropout`` > 0 puts a dropout layer before the classifier (the report has none).
    ``image_size`` is accepted like everywhere in the zoo but not needed (global average pooling).
    ``width`` scales the four stages' channels (64/128/256/512) and with them the head's input; not with
    ``pretrained`` (the ImageNet weights have the original widths).
    """
    check_no_extra("resnet18", extra)
    if stem not in STEMS:
        raise ValueError(f"resnet18: stem must be one of {STEMS}, got {stem!r}")
    if not 0 <= int(freeze) <= 5:
        raise ValueError(f"resnet18: freeze counts stages (stem, layer1..layer4): 0..5, got {freeze!r}")
    if pretrained and stem != "imagenet":
        raise ValueError("resnet18: ImageNet weights fit only stem='imagenet' (the cifar stem is a different conv)")
    if pretrained and norm != "batch":
        raise ValueError(f"resnet18: ImageNet weights come with BatchNorm; norm={norm!r} cannot load them")
    if pretrained and width != 1:
        raise ValueError(f"resnet18: ImageNet weights fit only width=1, got width={width!r}")

    import torchvision  # here, not at the top: torchvision's import (with torch._dynamo) costs seconds per process

    # torchvision takes the norm as a factory of the channel count, which is what norm_layer gives; a partial
    # (not a lambda) because the ResNet keeps it as an attribute and the model should stay picklable.
    model = torchvision.models.resnet18(weights=None, norm_layer=functools.partial(norm_layer, norm))
    if width != 1:
        _rescale_resnet(model, width, in_channels, norm)
    elif in_channels != 3:
        model.conv1 = _stem_conv(in_channels, kernel_size=7, stride=2)
    if pretrained:
        state = _load_imagenet_weights()
        state["conv1.weight"] = _adapt_first_conv(state["conv1.weight"], in_channels)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}  # the 1000-way head is replaced
        missing, _ = model.load_state_dict(state, strict=False)
        assert set(missing) == {"fc.weight", "fc.bias"}, missing
    if stem == "cifar":
        # 32x32 images keep their resolution into layer1 (32 -> 32 -> 16 -> 8 -> 4).
        model.conv1 = _stem_conv(in_channels, kernel_size=3, stride=1, channels=model.inplanes if width != 1 else 64)
        model.maxpool = nn.Identity()

    # §2.1: replace the final fully connected layer (512 -> num_classes) after global average pooling.
    # A plain Linear when dropout is 0 keeps torchvision's state-dict keys (fc.weight, fc.bias).
    head = nn.Linear(model.fc.in_features, num_classes)
    model.fc = nn.Sequential(nn.Dropout(dropout), head) if dropout > 0 else head

    stages = [(model.conv1, model.bn1), model.layer1, model.layer2, model.layer3, model.layer4]
    for stage in stages[:int(freeze)]:
        for module in (stage if isinstance(stage, tuple) else (stage,)):
            for p in module.parameters():
                p.requires_grad_(False)
    return model
