"""Augmentation a user picks (config ``augment``) and the input resize (config ``image_size``), for
:class:`trainables.data.DeviceBatches`, which runs them on whole batches on the trial's device.

No torch import at module level: the config layer validates ``augment`` values through this module.

>>> canonical_augment("flip+crop"), canonical_augment("none"), canonical_augment("crop+randaugment")
(True, False, 'crop+randaugment')
"""
from __future__ import annotations

from trainables.config import ConfigError

AUGMENT_STEPS = ("crop", "flip")  # translate by up to ``pad`` pixels (zeros enter); horizontal flip, p=0.5
AUGMENT_POLICIES = ("autoaugment", "randaugment", "trivialaugment")  # torchvision.transforms.v2, per image
AUGMENT_HELP = ("none, flip-crop (= true: crop + flip, the default), crop, flip, autoaugment, randaugment, "
                "trivialaugment, or steps joined by '+' (e.g. crop+randaugment, at most one policy)")


def augment_steps(value) -> tuple[str, ...]:
    """Config ``augment`` -> the steps run on every training batch, in order (crop, flip, then the policy).

    ``True`` / ``"flip-crop"`` is crop + flip (what ``augment=true`` always meant); ``False`` / ``"none"`` is none.
    Raises ConfigError (one line, quoting the value) for anything else.
    """
    if isinstance(value, (bool, int)) and value in (0, 1):
        return AUGMENT_STEPS if value else ()
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"augment: must be {AUGMENT_HELP}; got {value!r}")
    text = value.strip().lower()
    if text in ("none", "false", "no", "off", "0"):
        return ()
    if text in ("true", "yes", "on", "1"):
        return AUGMENT_STEPS
    steps: list[str] = []
    for part in text.replace("flip-crop", "crop+flip").split("+"):
        part = part.strip()
        if part not in AUGMENT_STEPS + AUGMENT_POLICIES:
            raise ConfigError(f"augment: unknown step {part!r} in {value!r}; must be {AUGMENT_HELP}")
        if part in steps:
            raise ConfigError(f"augment: {part!r} twice in {value!r}")
        steps.append(part)
    if sum(p in AUGMENT_POLICIES for p in steps) > 1:
        raise ConfigError(f"augment: {value!r} names more than one policy; pick one of {', '.join(AUGMENT_POLICIES)}")
    return tuple(p for p in AUGMENT_STEPS + AUGMENT_POLICIES if p in steps)


def canonical_augment(value) -> bool | str:
    """The one spelling a config keeps: True (crop+flip), False (none) or the '+'-joined steps, so that equal
    settings hash equal in the ledger and in a resumed search's spec."""
    steps = augment_steps(value)
    return True if steps == AUGMENT_STEPS else False if not steps else "+".join(steps)


def policy(name: str):
    """A fresh torchvision.transforms.v2 policy; it takes one C x H x W uint8 image (or a batch sharing one op)."""
    from torchvision.transforms import v2

    return {"autoaugment": lambda: v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10), "randaugment": v2.RandAugment,
            "trivialaugment": v2.TrivialAugmentWide}[name]()


def resize_center(x, size: int):
    """B x C x H x W uint8 -> shorter side resized to ``size`` (antialiased bilinear), then the centre square:
    torchvision's Resize(size) + CenterCrop(size), on the whole batch."""
    from torchvision.transforms.v2 import functional as F

    if x.shape[-2:] == (size, size):
        return x
    if min(x.shape[-2:]) != size:
        x = F.resize(x, [size], antialias=True)
    return F.center_crop(x, [size, size])
