"""Config: YAML -> validated spec. Every error names file, line and key path; --set overrides;
defaults filled in; a JSON Schema that editors can use."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from netcli.config import dump_config, json_schema, load_config, parse_config
from netcli.errors import ConfigError
from netcli.nn import ACTIVATIONS, LAYERS, LOSSES
from netcli.optim import OPTIMIZERS, SCHEDULES

from helpers import ROOT, digits_config, line_of, regression_config, write_config

# Block style, so that every key sits on a line of its own.
BASE = """\
seed: 0
dtype: float32
data:
  train: train.csv
  target: label
  validation_split: 0.1
  normalize: standard
  shuffle: true
model:
  input: 4
  layers:
    - type: dense
      units: 8
      activation: relu
    - type: dense
      units: 3
      activation: softmax
loss: cross_entropy
regularization:
  l2: 0.0001
optimizer:
  type: adam
  lr: 0.01
training:
  epochs: 2
  batch_size: 16
  schedule:
    type: step
    step_size: 2
    gamma: 0.5
"""


def config_error(tmp_path, text: str, overrides=()) -> tuple[str, str]:
    """Load text as x.yaml; -> (the error message, the file's path)."""
    path = write_config(tmp_path, text, "x")
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    return str(info.value), str(path)


def test_base_config_is_valid(tmp_path):
    config = load_config(write_config(tmp_path, BASE, "x"))
    assert config.spec.model.layers[1].args["units"] == 3
    assert config.name == "x"


def test_error_names_file_line_and_key_path_as_in_the_design(tmp_path):
    text = """\
# a three-layer net
seed: 0
data:
  train: train.csv
model:
  input: 4
  layers:
    - {type: dense, units: 8, activation: relu}
    - {type: dense, units: 8, activation: relu}
    - type: dense
      activation: softmax
      units: -3
loss: cross_entropy
"""
    message, path = config_error(tmp_path, text)
    assert message.startswith(f"{path}:12: model.layers[2].units: ")
    assert "-3" in message


# (replace this, with this, key path, the needle that finds the line, what the message says)
WRONG_VALUES = [
    ("units: 8", "units: -3", "model.layers[0].units", "units: -3", "-3"),
    ("units: 3", "units: many", "model.layers[1].units", "units: many", "integer"),
    ("seed: 0", "seed: abc", "seed", "seed: abc", "integer"),
    ("epochs: 2", "epochs: 2.5", "training.epochs", "epochs: 2.5", "integer"),
    ("epochs: 2", "epochs: -1", "training.epochs", "epochs: -1", "-1"),
    ("lr: 0.01", "lr: fast", "optimizer.lr", "lr: fast", "number"),
    ("lr: 0.01", "lr: -0.01", "optimizer.lr", "lr: -0.01", "-0.01"),
    ("shuffle: true", "shuffle: maybe", "data.shuffle", "shuffle: maybe", "true or false"),
    ("validation_split: 0.1", "validation_split: -0.1", "data.validation_split", "validation_split", "-0.1"),
    ("validation_split: 0.1", "validation_split: 1.5", "data.validation_split", "validation_split", "1.5"),
    ("l2: 0.0001", "l2: -1", "regularization.l2", "l2: -1", "-1"),
    ("batch_size: 16", "batch_size: 0", "training.batch_size", "batch_size: 0", "full"),
    ("batch_size: 16", "batch_size: half", "training.batch_size", "batch_size: half", "half"),
    ("normalize: standard", "normalize: zscore", "data.normalize", "normalize: zscore", "minmax"),
    ("input: 4", "input: [0, 8]", "model.input", "input: [0, 8]", "[0, 8]"),
    ("dtype: float32", "dtype: float16", "dtype", "dtype: float16", "float64"),
    ("gamma: 0.5", "gamma: 1.5", "training.schedule.gamma", "gamma: 1.5", "1.5"),
    ("step_size: 2", "step_size: 0", "training.schedule.step_size", "step_size: 0", "0"),
]


@pytest.mark.parametrize("old,new,key,needle,says", WRONG_VALUES, ids=[c[1] for c in WRONG_VALUES])
def test_wrong_type_or_range_names_file_line_and_key(tmp_path, old, new, key, needle, says):
    text = BASE.replace(old, new, 1)
    message, path = config_error(tmp_path, text)
    assert message.startswith(f"{path}:{line_of(text, needle)}: {key}: "), message
    assert says in message


UNKNOWN_KEYS = [
    ("  epochs: 2", "  epoch: 2", "training.epoch", "'epochs'"),
    ("  normalize: standard", "  normalise: standard", "data.normalise", "'normalize'"),
    ("      units: 8", "      unit: 8", "model.layers[0].unit", "'units'"),
    ("  lr: 0.01", "  lr: 0.01\n  betas1: 0.9", "optimizer.betas1", "'beta1'"),
    ("    gamma: 0.5", "    gama: 0.5", "training.schedule.gama", "'gamma'"),
    ("dtype: float32", "dtype: float32\nseeds: 1", "seeds", "'seed'"),
    ("  l2: 0.0001", "  l2: 0.0001\n  sparsty: {layer: 0}", "regularization.sparsty", "'sparsity'"),
]


@pytest.mark.parametrize("old,new,key,suggestion", UNKNOWN_KEYS, ids=[c[2] for c in UNKNOWN_KEYS])
def test_unknown_key_is_refused_with_the_closest_valid_key(tmp_path, old, new, key, suggestion):
    text = BASE.replace(old, new, 1)
    message, path = config_error(tmp_path, text)
    bad = key.rsplit(".", 1)[-1].split("]")[-1]
    line = line_of(text, f"{bad}:")
    found = [m for m in message.splitlines() if f": {key}: " in m]
    assert found, message
    assert found[0].startswith(f"{path}:{line}: {key}: unknown key"), found[0]
    assert f"did you mean {suggestion}?" in found[0]


@pytest.mark.parametrize("old,wrong,key,registry", [
    ("- type: dense", "dence", "model.layers[0].type", LAYERS),
    ("activation: relu", "relux", "model.layers[0].activation.type", ACTIVATIONS),
    ("loss: cross_entropy", "crossentropy", "loss", LOSSES),
    ("  type: adam", "adamw", "optimizer.type", OPTIMIZERS),
    ("    type: step", "stepp", "training.schedule.type", SCHEDULES),
], ids=["layer", "activation", "loss", "optimizer", "schedule"])
def test_unknown_component_name_lists_the_registered_ones(tmp_path, old, wrong, key, registry):
    text = BASE.replace(old, old.rsplit(" ", 1)[0] + " " + wrong, 1)
    message, path = config_error(tmp_path, text)
    assert message.startswith(f"{path}:{line_of(text, wrong)}: {key}: unknown {registry.kind} {wrong!r}")
    for name in registry.names():
        assert name in message
    assert "did you mean" in message


def test_every_mistake_is_reported_at_once(tmp_path):
    text = BASE.replace("units: 8", "units: -3").replace("loss: cross_entropy", "loss: crossentropy")
    message, path = config_error(tmp_path, text)
    lines = message.splitlines()
    assert any(m.startswith(f"{path}:{line_of(text, 'units: -3')}: model.layers[0].units:") for m in lines)
    assert any(m.startswith(f"{path}:{line_of(text, 'crossentropy')}: loss:") for m in lines)


@pytest.mark.parametrize("old,new,needle", [
    ("  lr: 0.01", "  lr: [0.01", "lr: [0.01"),
    ("  target: label", "   target: label", None),
    ("loss: cross_entropy", "loss: cross_entropy: 3", "loss:"),
])
def test_malformed_yaml_names_file_and_line(tmp_path, old, new, needle):
    text = BASE.replace(old, new, 1)
    message, path = config_error(tmp_path, text)
    match = re.match(rf"{re.escape(path)}:(\d+): malformed YAML", message)
    assert match, message
    if needle is not None:
        assert abs(int(match.group(1)) - line_of(text, needle)) <= 1


def test_python_tags_are_refused_and_never_run(tmp_path):
    victim = tmp_path / "created-by-yaml"
    text = BASE.replace("seed: 0", f"seed: !!python/object/apply:builtins.open ['{victim}', 'w']")
    message, path = config_error(tmp_path, text)
    assert message.startswith(f"{path}:1: ")
    assert "python" in message
    assert not victim.exists()


def test_not_a_mapping(tmp_path):
    message, path = config_error(tmp_path, "- seed\n- model\n")
    assert message.startswith(f"{path}:1: ")
    assert "mapping" in message


def test_missing_model_is_required(tmp_path):
    message, path = config_error(tmp_path, "seed: 0\n")
    assert "model" in message and "required" in message


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_early_stopping_without_validation_data_is_a_config_error(tmp_path):
    text = BASE.replace("  validation_split: 0.1\n", "") + "  early_stopping:\n    patience: 3\n"
    message, path = config_error(tmp_path, text)
    assert message.startswith(f"{path}:{line_of(text, 'early_stopping')}: training.early_stopping: ")
    assert "validation" in message


def test_early_stopping_with_validation_data_is_fine(tmp_path):
    ok = BASE + "  early_stopping:\n    patience: 3\n"
    assert load_config(write_config(tmp_path, ok, "a")).spec.training.early_stopping.patience == 3
    with_val = ok.replace("  validation_split: 0.1\n", "  val: val.csv\n")
    assert load_config(write_config(tmp_path, with_val, "b")).spec.data.val == str(tmp_path / "val.csv")  # from the file


def test_output_units_mismatch_is_named_by_layer_key(tmp_path):
    from netcli.prepare import prepare

    cfg = digits_config(model={"layers": [{"type": "dense", "units": 16, "activation": "relu"},
                                          {"type": "dense", "units": 8, "activation": "softmax"}]})
    path = write_config(tmp_path, cfg)
    with pytest.raises(ConfigError) as info:
        prepare(load_config(path))
    message = str(info.value)
    assert message.startswith(f"{path}:")
    assert "model.layers[1].units" in message and "10 classes" in message and "units: 10" in message


# -- overrides -------------------------------------------------------------------

@pytest.mark.parametrize("override,check", [
    ("optimizer.lr=0.05", lambda r: r["optimizer"]["lr"] == 0.05),
    ("optimizer.lr=1.0e-3", lambda r: r["optimizer"]["lr"] == 1e-3),
    ("training.epochs=7", lambda r: r["training"]["epochs"] == 7 and type(r["training"]["epochs"]) is int),
    ("training.batch_size=full", lambda r: r["training"]["batch_size"] == "full"),
    ("data.shuffle=false", lambda r: r["data"]["shuffle"] is False),
    ("data.normalize=minmax", lambda r: r["data"]["normalize"] == "minmax"),
    ("seed=7", lambda r: r["seed"] == 7),
    ("data.target=2", lambda r: r["data"]["target"] == 2),
    ("model.layers.0.units=32", lambda r: r["model"]["layers"][0]["units"] == 32),
    ("model.layers[1].activation=sigmoid", lambda r: r["model"]["layers"][1]["activation"] == "sigmoid"),
    ("optimizer.type=sgd", lambda r: r["optimizer"] == {"type": "sgd", "lr": 0.01}),
    ("training.clip_grad_norm=5", lambda r: r["training"]["clip_grad_norm"] == 5.0),
    ("regularization.l1=0.001", lambda r: r["regularization"]["l1"] == 0.001),
])
def test_set_overrides_any_key(tmp_path, override, check):
    config = load_config(write_config(tmp_path, BASE, "x"), [override])
    assert check(config.as_dict()), config.as_dict()


def test_set_can_switch_a_string_shorthand_to_a_mapping(tmp_path):
    text = BASE.replace("optimizer:\n  type: adam\n  lr: 0.01\n", "optimizer: sgd\n")
    config = load_config(write_config(tmp_path, text, "x"), ["optimizer.lr=0.5"])
    assert config.as_dict()["optimizer"] == {"type": "sgd", "lr": 0.5}


def test_several_overrides_apply_in_order(tmp_path):
    config = load_config(write_config(tmp_path, BASE, "x"),
                         ["optimizer.lr=0.1", "optimizer.lr=0.2", "model.layers.0.units=5"])
    assert config.as_dict()["optimizer"]["lr"] == 0.2
    assert config.as_dict()["model"]["layers"][0]["units"] == 5


@pytest.mark.parametrize("override,says", [
    ("model.layers.0.units=-3", ["--set model.layers[0].units: ", "-3"]),
    ("optimizer.lr=fast", ["--set optimizer.lr: ", "number"]),
    ("training.epochz=3", ["--set training.epochz: ", "did you mean 'epochs'?"]),
    ("model.layers.7.units=3", ["--set model.layers", "list of 2"]),
    ("loss=crossentropy", ["--set loss: ", "unknown loss", "cross_entropy"]),
    ("optimizer.type=adamw", ["--set optimizer.type: ", "unknown optimizer"]),
    ("noequals", ["--set", "KEY.PATH=VALUE"]),
])
def test_errors_in_overridden_keys_say_set(tmp_path, override, says):
    message, path = config_error(tmp_path, BASE, [override])
    assert message.startswith("--set"), message
    assert f"{path}:" not in message.splitlines()[0]
    for fragment in says:
        assert fragment in message


def test_error_in_a_section_created_by_set_says_set(tmp_path):
    """The file has no early_stopping at all; only --set made one, so the error must not point
    into the file (it used to read 'x.yaml: training.early_stopping: ...')."""
    text = BASE.replace("  validation_split: 0.1\n", "")
    message, _ = config_error(tmp_path, text, ["training.early_stopping.patience=2"])
    assert "validation" in message
    assert message.startswith("--set training.early_stopping"), message


def test_python_values_become_the_yaml_values_they_stand_for():
    """One rule (files.plain) for dict configs, the sklearn wrapper and the sweep's axes."""
    from pathlib import Path

    import numpy as np

    from netcli.files import plain
    value = {"a": (np.int64(3), [np.float32(0.5)]), "b": np.arange(2), "c": Path("x/y.csv"), "d": None}
    assert plain(value) == {"a": [3, [0.5]], "b": [0, 1], "c": "x/y.csv", "d": None}
    assert type(plain(value)["a"][0]) is int and type(plain(np.bool_(True))) is bool


# -- the resolved config ---------------------------------------------------------

MINIMAL = """\
model:
  input: 4
  layers:
    - {type: dense, units: 3}
"""


def test_resolved_config_has_every_default_filled_in():
    r = parse_config(MINIMAL, "min.yaml").as_dict()
    assert r["seed"] == 0 and r["dtype"] == "float32"
    assert r["data"]["normalize"] == "none"
    assert r["data"]["validation_split"] == 0
    assert r["data"]["shuffle"] is True
    assert r["data"]["target"] is None          # CSV: the last column
    assert r["loss"] == "mse"
    assert r["regularization"]["l2"] == 0 and r["regularization"]["l1"] == 0
    assert r["optimizer"]["type"] == "adam" and r["optimizer"]["lr"] > 0
    assert {"beta1", "beta2", "eps"} <= set(r["optimizer"])
    assert r["training"]["epochs"] > 0 and r["training"]["batch_size"] == 32
    assert r["training"]["schedule"] == {"type": "constant"}
    assert r["training"]["early_stopping"] is None
    assert r["model"]["layers"] == [{"type": "dense", "units": 3, "activation": "linear"}]
    assert r["model"]["init"]


def test_resolved_component_defaults_and_shorthands():
    text = MINIMAL + "optimizer: momentum\ntraining: {schedule: cosine, early_stopping: {patience: 2}}\n" \
                     "data: {validation_split: 0.2}\n"
    r = parse_config(text).as_dict()
    assert r["optimizer"] == {"type": "momentum", "lr": 0.01, "momentum": 0.9}
    assert r["training"]["schedule"] == {"type": "cosine", "min_lr": 0.0}
    es = r["training"]["early_stopping"]
    assert es["patience"] == 2 and es["monitor"] == "val_loss" and es["restore_best"] is True


def test_resolved_config_round_trips(tmp_path):
    config = load_config(write_config(tmp_path, BASE, "x"), ["optimizer.lr=0.5"])
    dumped = dump_config(config)
    again = parse_config(dumped, "again.yaml")
    assert again.as_dict() == config.as_dict()
    assert dump_config(again) == dumped


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_bundled_configs_are_valid(path):
    load_config(path)


# -- JSON Schema -----------------------------------------------------------------

def test_json_schema_structure():
    schema = json.loads(json.dumps(json_schema()))   # plain JSON
    assert schema["type"] == "object"
    assert "model" in schema["required"]
    assert {"seed", "dtype", "data", "model", "loss", "regularization", "optimizer", "training"} \
        <= set(schema["properties"])
    assert schema["properties"]["loss"]["enum"] == LOSSES.names()
    optimizer_names = [b["properties"]["type"]["const"] for b in schema["properties"]["optimizer"]["anyOf"]
                       if "properties" in b]
    assert sorted(optimizer_names) == OPTIMIZERS.names()
    layers = schema["$defs"]["ModelSection"]["properties"]["layers"]["items"]["anyOf"]
    assert sorted(b["properties"]["type"]["const"] for b in layers) == LAYERS.names()
    dense = next(b for b in layers if b["properties"]["type"]["const"] == "dense")
    assert dense["additionalProperties"] is False and "units" in dense["required"]


@pytest.fixture
def validator():
    import jsonschema
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_bundled_config_validates_against_the_schema(validator, path):
    errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
    assert errors == []


def test_test_configs_validate_against_the_schema(validator):
    for cfg in (digits_config(), regression_config(), yaml.safe_load(BASE)):
        assert [e.message for e in validator.iter_errors(cfg)] == []


@pytest.mark.parametrize("mistake", [
    {"model": {"input": 64, "layers": [{"type": "dense", "units": -3}]}},
    {"epochz": 3},
    {"optimizer": {"type": "adamw"}},
    {"loss": "crossentropy"},
    {"data": {"normalize": "zscore"}},
])
def test_schema_refuses_what_the_loader_refuses(validator, mistake):
    assert list(validator.iter_errors({**digits_config(), **mistake}))


@pytest.mark.parametrize("shorthand", [
    {"optimizer": "sgd"},
    {"training": {"epochs": 2, "schedule": "cosine"}},
], ids=["optimizer: sgd", "schedule: cosine"])
def test_schema_accepts_the_string_shorthands_the_loader_accepts(validator, shorthand):
    cfg = {**digits_config(), **shorthand}
    parse_config(yaml.safe_dump(cfg))                      # the loader takes it
    assert [e.message for e in validator.iter_errors(cfg)] == []
