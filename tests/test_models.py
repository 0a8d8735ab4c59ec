"""Model zoo: exact parameter counts against the reports, shapes, knobs, and that every net can learn."""
from __future__ import annotations

import urllib.error

import pytest
import torch
import torch.nn as nn
import torchvision

from trainables.models import count_params, create_model, get_arch, list_models
from trainables.models import report001
from trainables.models.registry import NORMS

# Trainable parameters at each net's registered defaults (3x32x32 input, 10 classes): the reports' numbers for the
# nine seeds. A net added later declares its own count in its registration (``@register(..., params=N)``), so
# adding a net is one file (docs/add-a-net.md); every test below is parametrized over the registry.
EXPECTED_PARAMS = {
    "simple_cnn": 84_714,  # Table I (84,586) + BatchNorm the replication added (2 x 64); norm="none" below
    "keras_cnn": 160_650,  # derived from report 001 §2.2, valid padding
    "resnet18": 11_181_642,  # torchvision resnet18 with a 10-way head
    "ghasemi_net": 2_753_546,
    "origin_net": 48_252,  # report 003 Table III / IV
    "modified_net": 35_730,  # report 003 Table V
    "lozano_c": 1_182_858,  # report 004 §4.3
    "lozano_e": 1_379_722,  # report 004 §4.5
    "lozano_f": 1_705_610,  # report 004 §4.6, trainable only (Keras total adds 1,664 BN moving stats)
}

# Counts for non-default settings the reports (or the brief) pin down.
EXPECTED_VARIANTS = [
    ("simple_cnn", {"norm": "none"}, 84_586),  # exactly Table I
    ("keras_cnn", {"padding": "same"}, 357_258),
    ("resnet18", {"stem": "cifar"}, 11_173_962),  # 3x3 stem conv: 64*3*9 instead of 64*3*49
    ("resnet18", {"freeze": 5}, 5_130),  # everything but the head frozen
    ("resnet18", {"freeze": 1}, 11_181_642 - 9_408 - 128),  # stem conv + bn1 frozen
]

OPTIMIZERS = {"sgd", "adam", "adamw", "rmsprop", "adagrad", "adamax"}
DEFAULT_KEYS = {"lr", "batch_size", "optimizer", "momentum", "weight_decay", "epochs", "dropout", "norm", "augment",
                "label_smoothing", "schedule"}
MODELS = list_models()


def expected_params(name: str) -> int:
    """The count ``name``'s registration declares, else the reports' table above."""
    declared = get_arch(name).params
    return declared if declared is not None else EXPECTED_PARAMS[name]


def test_every_net_is_expected():
    for name in MODELS:
        declared, listed = get_arch(name).params, EXPECTED_PARAMS.get(name)
        assert declared is not None or listed is not None, f"{name}: declare @register(..., params=N)"
        assert declared is None or listed is None or declared == listed, (name, declared, listed)
    assert set(EXPECTED_PARAMS) <= set(MODELS)  # no row for a net that is gone


def test_every_module_of_the_package_is_registered_by_importing_it():
    """A new module in trainables/models needs no import line: the package imports them all."""
    import pkgutil
    import sys

    import trainables.models as package

    modules = {m.name for m in pkgutil.iter_modules(package.__path__)} - {"registry"}
    assert modules and all(f"trainables.models.{m}" in sys.modules for m in modules)
    assert {get_arch(n).builder.__module__.rsplit(".", 1)[1] for n in MODELS} <= modules


@pytest.mark.parametrize("name", MODELS)
def test_param_count_at_defaults(name):
    assert count_params(create_model(name)) == expected_params(name)


@pytest.mark.parametrize("name,kwargs,expected", EXPECTED_VARIANTS)
def test_param_count_variants(name, kwargs, expected):
    assert count_params(create_model(name, **kwargs)) == expected


@pytest.mark.parametrize("name", MODELS)
def test_output_shape_cifar_and_fashion_mnist(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    model = create_model(name, in_channels=1).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("name", MODELS)
def test_explicit_image_size(name):
    """Every builder takes image_size, so a caller can size any net for any input explicitly."""
    model = create_model(name, image_size=28).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("name", MODELS)
def test_optimisation_step_lowers_loss(name):
    """One Adam step on a fixed batch lowers the training loss (same dropout masks before and after)."""
    torch.manual_seed(0)
    model = create_model(name).train()
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 10
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()

    def loss() -> torch.Tensor:
        torch.manual_seed(1)  # identical dropout masks for every evaluation
        return loss_fn(model(x), y)

    before = loss().item()
    opt.zero_grad()
    loss().backward()
    opt.step()
    after = loss().item()
    assert after < before, (before, after)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("name", MODELS)
def test_norm_knob_builds_and_runs(name, norm):
    model = create_model(name, norm=norm)
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert has_bn == (norm == "batch")
    out = model.train()(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 10) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", MODELS)
def test_dropout_knob(name):
    """dropout=0 leaves no active dropout; a positive override reaches at least one dropout layer."""
    rates = lambda m: [mod.p for mod in m.modules() if isinstance(mod, nn.modules.dropout._DropoutNd)]  # noqa: E731
    assert all(p == 0 for p in rates(create_model(name, dropout=0.0)))
    assert any(p > 0 for p in rates(create_model(name, dropout=0.35)))
    # dropout carries no parameters, so the count must not move
    assert count_params(create_model(name, dropout=0.35)) == expected_params(name)


@pytest.mark.parametrize("name", MODELS)
def test_registration_metadata(name):
    spec = get_arch(name)
    assert set(spec.defaults) <= DEFAULT_KEYS, set(spec.defaults) - DEFAULT_KEYS
    assert spec.defaults["optimizer"] in OPTIMIZERS
    assert spec.defaults["norm"] in NORMS and 0 <= spec.defaults["dropout"] < 1
    assert spec.defaults.get("schedule", "constant") in ("constant", "cosine")
    assert spec.published["metric"] in ("test_accuracy", "val_accuracy", "weighted_f1")
    assert 0 < spec.published["value"] < 1 and spec.published["source"]
    # the builder's docstring names its report
    assert spec.report.split()[0] in spec.builder.__doc__


def test_unknown_name_lists_known():
    with pytest.raises(ValueError) as err:
        create_model("no_such_net")
    for name in MODELS:
        assert name in str(err.value)


def test_unknown_extra_kwarg_is_rejected():
    with pytest.raises(TypeError, match="stme"):
        create_model("resnet18", stme="cifar")


def test_origin_net_feature_shapes():
    """Table III: conv/pool outputs 6x33x33, 6x16x16, 16x17x17, 16x8x8, 32x7x7, 32x3x3 on a 32x32 image."""
    model = create_model("origin_net").eval()
    shapes = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape)))
             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.MaxPool2d))]
    with torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    for h in hooks:
        h.remove()
    assert shapes == [(1, 6, 33, 33), (1, 6, 16, 16), (1, 16, 17, 17), (1, 16, 8, 8), (1, 32, 7, 7), (1, 32, 3, 3)]


def test_keras_cnn_dropout_schedule():
    assert report001.keras_cnn_dropout_schedule(0.3) == pytest.approx([0.3, 0.4, 0.5, 0.5])
    assert report001.keras_cnn_dropout_schedule(0.0) == [0.0] * 4
    assert max(report001.keras_cnn_dropout_schedule(0.9)) == pytest.approx(0.9)  # capped


def test_construction_leaves_batchnorm_stats_alone():
    """The dummy forward that sizes the dense head must not touch BN running statistics."""
    model = create_model("modified_net")
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert bn.num_batches_tracked.item() == 0 and torch.all(bn.running_mean == 0)


def test_resnet18_cifar_stem_keeps_resolution():
    model = create_model("resnet18", stem="cifar")
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)


def test_resnet18_pretrained_download_failure_is_clear(monkeypatch):
    def offline(*_a, **_k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models.ResNet18_Weights, "get_state_dict", offline)
    with pytest.raises(RuntimeError, match="IMAGENET1K_V1"):
        create_model("resnet18", pretrained=True)


def test_resnet18_pretrained_loads_weights(monkeypatch):
    """The loading path (no download): weights of a reference resnet18 end up in ours, grey conv1 adapted."""
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).state_dict()
    monkeypatch.setattr(torchvision.models.ResNet18_Weights, "get_state_dict", lambda *_a, **_k: dict(reference))
    model = create_model("resnet18", pretrained=True, freeze=2)
    assert torch.equal(model.layer3[0].conv1.weight, reference["layer3.0.conv1.weight"])
    assert not model.layer1[0].conv1.weight.requires_grad and model.layer2[0].conv1.weight.requires_grad
    grey = create_model("resnet18", pretrained=True, in_channels=1)
    assert torch.allclose(grey.conv1.weight[:, 0], reference["conv1.weight"].sum(dim=1), atol=1e-6)


@pytest.mark.parametrize("kwargs", [
    {"pretrained": True, "stem": "cifar"},  # ImageNet weights need the ImageNet stem
    {"pretrained": True, "norm": "group"},  # ... and BatchNorm
    {"freeze": 6},  # only five stages
    {"stem": "tiny"},
])
def test_resnet18_rejects_inconsistent_options(kwargs):
    with pytest.raises(ValueError):
        create_model("resnet18", **kwargs)


# --------------------------------------------------------------------------------------------- size knobs (issue 11)

@pytest.mark.parametrize("name", MODELS)
def test_width_one_keeps_the_reports_parameter_counts(name):
    assert count_params(create_model(name, width=1.0)) == expected_params(name)


@pytest.mark.parametrize("name", MODELS)
def test_width_scales_the_net(name):
    half, double = count_params(create_model(name, width=0.5)), count_params(create_model(name, width=2.0))
    # Parameters grow roughly with width squared (conv x conv, dense x dense): a quarter to a half at 0.5.
    assert expected_params(name) * 0.2 < half < expected_params(name) * 0.5
    assert double > expected_params(name) * 3
    model = create_model(name, width=0.5).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_width_rounds_half_up_and_keeps_one_channel():
    from trainables.models.registry import scaled

    assert [scaled(c, 0.5) for c in (6, 16, 32, 5, 1)] == [3, 8, 16, 3, 1]
    assert scaled(3, 0.01) == 1
    with pytest.raises(ValueError, match="width"):
        scaled(8, 0)


# Exact counts of the knobs the reports varied, worked out by hand from the layer shapes.
EXPECTED_KNOBS = [
    # OriginNet at width 0.5: convs 3/8/16, MLP 60-42; 2x2 kernels, padding 1, 1, 0 -> 16 x 3 x 3 = 144 flat.
    ("origin_net", {"width": 0.5},
     (3 * 3 * 4 + 3) + (8 * 3 * 4 + 8) + (16 * 8 * 4 + 16) + (144 * 60 + 60) + (60 * 42 + 42) + (42 * 10 + 10)),
    # 3x3 kernels, padding 1, 1, 0: 32 -> 32 -> 16 -> 16 -> 8 -> 6 -> 3, so again 32 x 3 x 3 = 288 flat.
    ("origin_net", {"kernel": 3}, (6 * 27 + 6) + (16 * 54 + 16) + (32 * 144 + 32) + 48_252 - 78 - 400 - 2_080),
    ("origin_net", {"pool": "avg"}, 48_252),  # pooling has no parameters
    # ModifiedNet, 5x5 "same": 8*75+8, 12*200+12, 16*300+16, + BN 2*(8+12+16), then the unchanged MLP.
    ("modified_net", {"kernel": 5}, 608 + 2_412 + 4_816 + 72 + (256 * 100 + 100) + (100 * 64 + 64) + 650),
    # keras_cnn, 2 blocks of 16/32 filters: conv 448 + 4,640, BN 32 + 64, flatten 32 x 6 x 6, dense 128.
    ("keras_cnn", {"depth": 2, "filters": 16}, 448 + 4_640 + 32 + 64 + (1_152 * 128 + 128) + 1_290),
]


@pytest.mark.parametrize("name,kwargs,expected", EXPECTED_KNOBS)
def test_size_knob_parameter_counts(name, kwargs, expected):
    assert count_params(create_model(name, **kwargs)) == expected


def test_size_knobs_are_validated_config_keys():
    from trainables.config import ConfigError, resolve_config

    assert resolve_config({"arch": "keras_cnn", "depth": "2", "filters": "16"})["depth"] == 2
    assert resolve_config({"arch": "origin_net", "width": "0.5", "kernel": 3, "pool": "avg"})["pool"] == "avg"
    for bad, named in [({"arch": "origin_net", "depth": 2}, "depth"),  # not a knob of this net
                       ({"arch": "simple_cnn", "width": 0}, "width"),
                       ({"arch": "origin_net", "pool": "min"}, "pool"),
                       ({"arch": "modified_net", "kernel": 9}, "kernel"),
                       ({"arch": "keras_cnn", "depth": 4}, "depth=4")]:  # 32 px allow 3 valid-padded blocks
        with pytest.raises(ConfigError, match=named):
            resolve_config(bad)
    assert resolve_config({"arch": "keras_cnn", "depth": 4, "padding": "same"})["depth"] == 4


def test_keras_cnn_dropout_ramp_follows_depth():
    assert report001.keras_cnn_dropout_schedule(0.3, depth=2) == pytest.approx([0.3, 0.5, 0.5])
    assert report001.keras_cnn_dropout_schedule(0.3, depth=5) == pytest.approx([0.3, 0.35, 0.4, 0.45, 0.5, 0.5])


def test_archs_lists_each_nets_options(capsys):
    import json

    from search.cli import main

    assert main(["archs", "--json"]) == 0
    options = {r["name"]: r["options"] for r in json.loads(capsys.readouterr().out)}
    assert options["origin_net"] == ["width", "kernel", "pool"]
    assert options["keras_cnn"] == ["width", "depth", "filters", "padding"]
    assert options["resnet18"] == ["stem", "pretrained", "freeze", "width"]
    assert all("width" in o for o in options.values())
