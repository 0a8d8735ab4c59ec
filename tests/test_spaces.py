"""Search spaces: every shipped file samples valid trial configs; user files extend; each malformed file fails
with a message naming the file and the key; the define-by-run function works inside Ray's OptunaSearch."""
from __future__ import annotations

import json
import textwrap

import optuna
import pytest

from spaces import SearchSpace, SpaceError, load_space, shipped_dir, shipped_spaces
from trainables.config import resolve_config
from trainables.models import create_model, list_models

optuna.logging.set_verbosity(optuna.logging.WARNING)
N_SAMPLES = 25


def sampled_configs(space: SearchSpace, n: int = N_SAMPLES) -> list[dict]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    return [space.sample_config(study.ask()) for _ in range(n)]


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


# ---------------------------------------------------------------------------------------------------------------
# Shipped spaces

def test_every_shipped_space_belongs_to_a_net():
    # a net without its own file searches base.yaml (checked against every net below); no file for a gone net
    assert {"base", *REPORT_NETS} <= set(shipped_spaces()) <= {"base", *list_models()}


REPORT_NETS = ["simple_cnn", "keras_cnn", "resnet18", "ghasemi_net", "origin_net", "modified_net", "lozano_c",
               "lozano_e", "lozano_f"]


# base.yaml is checked against every arch (it is the fallback for an arch without a file).
SHIPPED_CASES = [(arch, None) for arch in list_models()] + [(arch, "base") for arch in list_models()]


@pytest.mark.parametrize("arch,file", SHIPPED_CASES, ids=[f"{a}-{f or 'own'}" for a, f in SHIPPED_CASES])
def test_shipped_space_samples_valid_configs(arch, file):
    space = load_space(arch, None if file is None else shipped_dir() / f"{file}.yaml")
    assert space.arch == arch
    assert space.source.endswith(f"{file or arch}.yaml")
    for config in sampled_configs(space):
        resolved = resolve_config(config)
        assert resolved["arch"] == arch
        for name, param in space.params.items():
            # A conditional param is present exactly when its condition holds.
            holds = all(config.get(k) in allowed for k, allowed in param.when.items())
            assert (name in config) == holds, (name, config)
        for key, value in space.fixed.items():
            assert config[key] == value
    json.dumps(space.to_dict())  # goes into spec.json as is


def test_conditional_params_follow_the_optimizer():
    configs = sampled_configs(load_space("origin_net"), 60)
    for c in configs:
        assert ("momentum" in c) == (c["optimizer"] in ("sgd", "rmsprop"))
        assert ("nesterov" in c) == (c["optimizer"] == "sgd")
        assert ("beta1" in c) == ("beta2" in c) == (c["optimizer"] in ("adam", "adamw", "adamax"))
    assert {c["optimizer"] for c in configs} >= {"sgd", "adam", "rmsprop", "adagrad"}


@pytest.mark.parametrize("arch", list_models())
def test_sampled_configs_build(arch):
    # resolve_config does not build the net; a couple of samples per arch catch norm/stem combinations that fail.
    for config in sampled_configs(load_space(arch), 2):
        cfg = resolve_config(config)
        extra = {k: cfg[k] for k in ("stem", "pretrained", "freeze") if cfg[k] is not None}
        create_model(arch, dropout=cfg["dropout"], norm=cfg["norm"], **extra)


def test_report_ranges_are_shipped():
    simple = load_space("simple_cnn").params
    assert simple["batch_size"].choices == (20, 100, 500)  # report 000, §III-E
    assert (simple["lr"].low, simple["lr"].high, simple["lr"].log) == (1e-4, 0.5, True)
    lai = load_space("modified_net").params
    assert (lai["lr"].low, lai["lr"].high) == (1e-4, 1e-2)  # report 003, Table VIII
    assert set(lai["optimizer"].choices) >= {"sgd", "adam", "rmsprop", "adagrad"}  # Table IX
    assert load_space("resnet18").fixed == {"pretrained": False, "augment": True}


def test_define_by_run_returns_constants():
    space = load_space("resnet18")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    assert space.define_by_run(trial) == {"arch": "resnet18", "pretrained": False, "augment": True}
    assert set(trial.params) <= set(space.dimensions())
    assert "stem" in trial.params


def test_unknown_arch():
    with pytest.raises(SpaceError, match="unknown arch 'nope'.*simple_cnn"):
        load_space("nope")


# ---------------------------------------------------------------------------------------------------------------
# User files

def test_user_file_extends_shipped_base(tmp_path):
    path = write(tmp_path, "mine.yaml", """\
        extends: base
        params:
          lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
          warmup_epochs: {type: int, low: 0, high: 3}
        remove: [label_smoothing]
        fixed: {augment: false}
    """)
    space = load_space("simple_cnn", path)
    assert space.source == str(path)
    assert space.chain[1].endswith("base.yaml")
    dims = space.dimensions()
    assert dims.index("lr") == 1  # an overridden param keeps its place
    assert dims[-1] == "warmup_epochs"  # a new one goes last
    assert "label_smoothing" not in dims and "augment" not in dims
    assert space.fixed == {"augment": False}
    for c in sampled_configs(space):
        assert 1e-3 <= c["lr"] <= 1e-2 and c["augment"] is False and "label_smoothing" not in c
        resolve_config(c)


def test_user_file_extends_relative_path(tmp_path):
    write(tmp_path, "parent.yaml", """\
        params:
          optimizer: {type: categorical, choices: [sgd, adam]}
          momentum: {type: float, low: 0.5, high: 0.9, when: {optimizer: [sgd]}}
        fixed: {schedule: cosine}
    """)
    (tmp_path / "sub").mkdir()
    child = write(tmp_path, "sub/child.yaml", """\
        extends: ../parent.yaml
        params:
          batch_size: {type: categorical, choices: [32, 64]}
    """)
    space = load_space("keras_cnn", child)
    assert space.dimensions() == ["optimizer", "momentum", "batch_size"]
    assert space.fixed == {"schedule": "cosine"}
    for c in sampled_configs(space):
        assert ("momentum" in c) == (c["optimizer"] == "sgd")
        resolve_config(c)


def test_fixing_an_inherited_condition_drops_its_params(tmp_path):
    # base conditions momentum/nesterov on sgd/rmsprop; fixing adam leaves them no way to be suggested.
    path = write(tmp_path, "adam.yaml", "extends: base\nfixed: {optimizer: adam}\n")
    space = load_space("simple_cnn", path)
    assert "momentum" not in space.params and "nesterov" not in space.params
    assert "beta1" in space.params
    for c in sampled_configs(space, 5):
        assert c["optimizer"] == "adam" and "beta1" in c and "momentum" not in c


def test_user_file_may_extend_a_shipped_arch_file(tmp_path):
    path = write(tmp_path, "transfer.yaml", """\
        extends: resnet18
        remove: [norm, stem]
        fixed: {stem: cifar, norm: batch, freeze: 0}
    """)
    space = load_space("resnet18", path)
    assert space.fixed == {"pretrained": False, "augment": True, "stem": "cifar", "norm": "batch", "freeze": 0}


# ---------------------------------------------------------------------------------------------------------------
# Validation: one malformed file each; the message names the file and the key

BAD_FILES = {
    "unknown_top_level": ("paramz: {}\n", "paramz"),
    "unknown_param": ("params:\n  lrr: {type: float, low: 0.1, high: 0.2}\n", "lrr"),
    "unsearchable_data_dir": ("params:\n  data_dir: {type: categorical, choices: [a, b]}\n", "data_dir"),
    "unsearchable_device": ("params:\n  device: {type: categorical, choices: [cpu, cuda]}\n", "device"),
    "unsearchable_arch": ("params:\n  arch: {type: categorical, choices: [simple_cnn]}\n", "arch"),
    "unknown_spec_field": ("params:\n  lr: {type: float, low: 0.1, high: 0.2, lo: 3}\n", "lo"),
    "unknown_type": ("params:\n  lr: {type: uniform, low: 0.1, high: 0.2}\n", "lr"),
    "missing_type": ("params:\n  lr: {low: 0.1, high: 0.2}\n", "lr"),
    "float_for_int_key": ("params:\n  batch_size: {type: float, low: 16, high: 64}\n", "batch_size"),
    "low_not_below_high": ("params:\n  lr: {type: float, low: 0.1, high: 0.01}\n", "lr"),
    "log_low_not_positive": ("params:\n  weight_decay: {type: float, low: 0.0, high: 0.1, log: true}\n",
                             "weight_decay"),
    "step_with_log": ("params:\n  batch_size: {type: int, low: 16, high: 256, log: true, step: 16}\n", "batch_size"),
    "no_choices": ("params:\n  batch_size: {type: categorical, choices: []}\n", "batch_size"),
    "choice_unknown_optimizer": ("params:\n  optimizer: {type: categorical, choices: [sgd, lion]}\n", "optimizer"),
    "choice_unknown_norm": ("params:\n  norm: {type: categorical, choices: [batch, instance]}\n", "norm"),
    "choice_bad_type": ("params:\n  batch_size: {type: categorical, choices: [32, big]}\n", "batch_size"),
    "range_outside_trainable": ("params:\n  dropout: {type: float, low: 0.0, high: 1.0}\n", "dropout"),
    "fixed_unknown_value": ("fixed: {schedule: linear}\n", "schedule"),
    "fixed_unknown_key": ("fixed: {colour: red}\n", "colour"),
    "fixed_epochs": ("fixed: {epochs: 10}\n", "epochs"),
    "when_unknown_param": ("params:\n  momentum: {type: float, low: 0.5, high: 0.9, when: {optimizr: [sgd]}}\n",
                           "optimizr"),
    "when_not_in_space": ("params:\n  momentum: {type: float, low: 0.5, high: 0.9, when: {optimizer: [sgd]}}\n",
                          "optimizer"),
    "when_later_param": ("params:\n  momentum: {type: float, low: 0.5, high: 0.9, when: {optimizer: [sgd]}}\n"
                         "  optimizer: {type: categorical, choices: [sgd, adam]}\n", "optimizer"),
    "when_unknown_value": ("params:\n  optimizer: {type: categorical, choices: [sgd, adam]}\n"
                           "  momentum: {type: float, low: 0.5, high: 0.9, when: {optimizer: [sgdd]}}\n", "sgdd"),
    "when_value_not_a_choice": ("params:\n  optimizer: {type: categorical, choices: [sgd, adam]}\n"
                                "  momentum: {type: float, low: 0.5, high: 0.9, when: {optimizer: [rmsprop]}}\n",
                                "momentum"),
    "when_on_a_range": ("params:\n  lr: {type: float, low: 0.01, high: 0.1}\n"
                        "  momentum: {type: float, low: 0.5, high: 0.9, when: {lr: [0.01]}}\n", "lr"),
    "searched_and_fixed": ("params:\n  lr: {type: float, low: 0.01, high: 0.1}\nfixed: {lr: 0.01}\n", "lr"),
    "remove_missing": ("extends: base\nremove: [colour]\n", "colour"),
    "arch_option_elsewhere": ("fixed: {stem: cifar}\n", "stem"),  # keras_cnn has no stem
    "extends_missing": ("extends: ./nowhere.yaml\n", "extends"),
    "extends_unknown_name": ("extends: nowhere\n", "extends"),
    "not_a_mapping": ("- lr\n- batch_size\n", None),
    "not_yaml": ("params: {lr: [1, 2\n", None),
    "int_high_past_int64": ("params:\n  batch_size: {type: int, low: 16, high: 1e23}\n", "batch_size.high"),
    "int_high_past_the_trainable": ("params:\n  batch_size: {type: int, low: 16, high: 2097152}\n", "batch_size"),
    "int_of_400_digits": (f"params:\n  weight_decay: {{type: float, low: 0.0, high: {10**400}}}\n", "weight_decay"),
    "int_range_of_a_float_past_int64": (f"params:\n  weight_decay: {{type: int, low: 0, high: {10**25}}}\n",
                                        "weight_decay.high"),
    "remove_not_names": ("extends: base\nremove: [[lr]]\n", "remove"),  # a TypeError (unhashable list)
    "params_a_list": ("params: []\n", "params"),  # these three read as empty
    "params_a_number": ("params: 0\n", "params"),
    "fixed_a_string": ('fixed: ""\n', "fixed"),
    "duplicate_param": ("params:\n  lr: {type: float, low: 0.1, high: 0.2}\n  lr: {type: float, low: 0.5, high: 0.9}\n",
                        "duplicate key 'lr' (line 3)"),  # YAML keeps the last
    "duplicate_top_level": ("params: {}\nfixed: {}\nparams: {}\n", "duplicate key 'params'"),
    "nested_too_deeply": ("params: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),  # a RecursionError
    "float_step_past_range": ("params:\n  dropout: {type: float, low: 0.0, high: 0.1, step: 1.0}\n",
                              "dropout.step"),  # Optuna would draw 0.0 only
    "int_step_past_range": ("params:\n  batch_size: {type: int, low: 16, high: 20, step: 64}\n", "batch_size.step"),
    # Shape knobs are built (meta device) per choice and range end: these failed in every trial drawing them.
    "shape_choice_not_buildable": ("extends: keras_cnn\nparams:\n  depth: {type: categorical, choices: [2, 5]}\n",
                                   "params.depth.choices: depth=5: arch 'keras_cnn' cannot be built"),
    "image_size_end_not_buildable": ("params:\n  image_size: {type: int, low: 8, high: 64}\n",
                                     "params.image_size.low: image_size=8"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_malformed_file_is_rejected(tmp_path, case):
    text, key = BAD_FILES[case]
    path = write(tmp_path, f"{case}.yaml", text)
    with pytest.raises(SpaceError) as err:
        load_space("keras_cnn", path)
    message = str(err.value)
    assert "\n" not in message
    assert f"{case}.yaml" in message
    if key is not None:
        assert key in message


@pytest.mark.parametrize("head", [b"\xff\xfe", b"params: {lr: \xe9}\n"])
def test_a_file_that_is_not_utf8_is_rejected_in_one_line(tmp_path, head):
    """A UTF-16 file (it starts with \\xff\\xfe) or a Latin-1 byte: the file named, not a UnicodeDecodeError."""
    path = tmp_path / "bin.yaml"
    path.write_bytes(head + "params: {}\n".encode("utf-16-le"))
    with pytest.raises(SpaceError) as err:
        load_space("simple_cnn", path)
    assert "bin.yaml: not UTF-8 text" in str(err.value) and "\n" not in str(err.value)


def test_a_step_as_wide_as_the_range_and_an_overridden_merge_key_load(tmp_path):
    """0.3 - 0.1 < 0.2 in floats, yet the step spans the range; a key over a `<<: *anchor` one is no duplicate."""
    path = write(tmp_path, "ok.yaml", """\
        params:
          lr: &range {type: float, low: 0.1, high: 0.3, step: 0.2}
          weight_decay: {<<: *range, low: 0.0}
    """)
    params = load_space("keras_cnn", path).params
    assert (params["lr"].step, params["weight_decay"].low, params["weight_decay"].high) == (0.2, 0.0, 0.3)


def test_missing_file_is_rejected(tmp_path):
    with pytest.raises(SpaceError, match="absent.yaml"):
        load_space("simple_cnn", tmp_path / "absent.yaml")


def test_extends_cycle_is_rejected(tmp_path):
    write(tmp_path, "a.yaml", "extends: ./b.yaml\n")
    write(tmp_path, "b.yaml", "extends: ./a.yaml\n")
    with pytest.raises(SpaceError, match=r"\.yaml: extends: cycle a\.yaml -> b\.yaml -> a\.yaml"):
        load_space("simple_cnn", tmp_path / "a.yaml")


def test_error_names_the_file_that_holds_the_fault(tmp_path):
    # The bad condition lives in the parent; a child that is fine must not be blamed.
    write(tmp_path, "parent.yaml", "params:\n  momentum: {type: float, low: 0.5, high: 0.9, when: {optimizer: [sgd]}}\n")
    child = write(tmp_path, "child.yaml", "extends: ./parent.yaml\n")
    with pytest.raises(SpaceError, match=r"parent\.yaml: params\.momentum\.when\.optimizer"):
        load_space("simple_cnn", child)


# ---------------------------------------------------------------------------------------------------------------
# Inside Ray Tune's OptunaSearch (no cluster needed: suggest() only asks the Optuna study)

def test_define_by_run_inside_ray_optuna_search():
    from ray.tune.search.optuna import OptunaSearch

    space = load_space("resnet18")
    searcher = OptunaSearch(space=space.define_by_run, metric="val_accuracy", mode="max", seed=0)
    configs = [searcher.suggest("t1"), searcher.suggest("t2")]
    for config in configs:
        # Ray merges the returned constants into the suggested values, so the config is complete.
        assert config["arch"] == "resnet18" and config["pretrained"] is False
        assert {"optimizer", "lr", "batch_size", "stem"} <= set(config)
        resolve_config(config)
    assert configs[0] != configs[1]
    assert searcher.suggest("t1") == configs[0]  # same trial id, same Optuna trial
