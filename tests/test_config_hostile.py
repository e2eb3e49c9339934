"""Hostile YAML given where a config file is not: `--set` values and sweep axes are held to the
file's rules (no alias bomb, no alias that contains itself, no key given twice), and a merge key
overridden by an explicit key is plain YAML, accepted (issue: runs that survive their users)."""

from __future__ import annotations

import time

import pytest
import yaml

from helpers import assert_user_error, digits_config, invoke, line_of, write_config
from netcli.config import load_config, parse_value
from netcli.errors import ConfigError


def bomb_value(levels: int) -> str:
    """`[&a0 [x, ...], &a1 [*a0, ...], ...]`: nine aliases a level, 9**levels values in the last."""
    items = ["&a0 [" + ", ".join(["x"] * 9) + "]"]
    items += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "[" + ", ".join(items) + "]"


def digits_yaml(tmp_path, layers: str | None = None, name: str = "config"):
    """The small digits config as a file; layers: YAML text for model.layers (indented 2)."""
    data = digits_config()
    if layers is None:
        return write_config(tmp_path, data, name)
    text = yaml.safe_dump({k: v for k, v in data.items() if k != "model"}, sort_keys=False)
    return write_config(tmp_path, text + "model:\n  input: 64\n  layers:\n" + layers, name)


# -- alias bombs and self-referring aliases in --set and --grid ------------------------------

@pytest.mark.parametrize("levels", [6, 9])
def test_an_alias_bomb_given_with_set_is_refused_at_once(tmp_path, levels):
    path = digits_yaml(tmp_path)
    start = time.perf_counter()
    result = invoke("validate", path, "--static", "--set",
                    f"model.layers.0.activation={{type: relu, z: {bomb_value(levels)}}}")
    err = assert_user_error(result, 2, "--set model.layers[0].activation: z: the YAML aliases", "alias bomb")
    assert time.perf_counter() - start < 2, err


def test_an_alias_bomb_in_a_sweep_grid_is_refused_before_anything_starts(tmp_path, monkeypatch):
    path = digits_yaml(tmp_path)
    monkeypatch.chdir(tmp_path)
    start = time.perf_counter()
    result = invoke("sweep", path, "--grid", f"model.layers.0.activation={{type: relu, z: {bomb_value(6)}}},tanh")
    err = assert_user_error(result, 2, "--grid model.layers.0.activation=", "alias bomb")
    assert time.perf_counter() - start < 5, err
    assert not (tmp_path / "runs").exists()


def test_an_alias_that_contains_itself_given_with_set_is_refused(tmp_path):
    result = invoke("validate", digits_yaml(tmp_path), "--static", "--set", "model.layers.0.activation=&a [*a]")
    assert_user_error(result, 2, "--set model.layers[0].activation: a YAML alias refers to itself")


def test_a_value_with_no_place_named_is_named_by_its_text():
    with pytest.raises(ConfigError, match=r"^value '\{a: 1, a: 2\}': a: key given twice"):
        parse_value("{a: 1, a: 2}")


# -- merge keys and keys given twice ---------------------------------------------------------

MERGED = ("  - &hidden {type: dense, units: 16, activation: relu}\n"
          "  - {<<: *hidden, units: UNITS}\n"
          "  - {type: dense, units: 10, activation: softmax}\n")


def test_an_explicit_key_overrides_a_merged_one(tmp_path):
    path = digits_yaml(tmp_path, MERGED.replace("UNITS", "32"))
    assert invoke("validate", path, "--static").exit_code == 0
    layers = load_config(path).spec.model.layers
    assert layers[0].args["units"] == 16 and layers[1].args["units"] == 32
    assert layers[1].type == "dense" and layers[1].args["activation"] == "relu"


def test_a_mistake_in_a_key_that_overrides_a_merged_one_names_its_own_line(tmp_path):
    path = digits_yaml(tmp_path, MERGED.replace("UNITS", "-3"))
    line = line_of(path.read_text(), "<<: *hidden")
    assert_user_error(invoke("validate", path, "--static"), 2,
                      f"config.yaml:{line}: model.layers[1].units: must be > 0, got -3")


def test_a_key_given_twice_beside_a_merge_key_is_still_refused(tmp_path):
    path = digits_yaml(tmp_path, MERGED.replace("UNITS", "32, units: 64"))
    line = line_of(path.read_text(), "<<: *hidden")
    assert_user_error(invoke("validate", path, "--static"), 2,
                      f"config.yaml:{line}: model.layers[1].units: key given twice (first on line {line})")


def test_keys_merged_from_two_anchors_may_overlap(tmp_path):
    layers = ("  - &a {type: dense, units: 16, activation: relu}\n"
              "  - &b {type: dense, units: 12, activation: tanh}\n"
              "  - {<<: [*b, *a]}\n"
              "  - {type: dense, units: 10, activation: softmax}\n")
    layers_spec = load_config(digits_yaml(tmp_path, layers)).spec.model.layers
    assert layers_spec[2].args["units"] == 12 and layers_spec[2].args["activation"] == "tanh"   # the first wins


def test_a_key_given_twice_in_a_set_value_is_refused(tmp_path):
    result = invoke("validate", digits_yaml(tmp_path), "--static", "--set", "optimizer={type: sgd, lr: 0.1, lr: 0.2}")
    assert_user_error(result, 2, "--set optimizer: lr: key given twice; YAML would keep only the last")


def test_a_key_given_twice_in_a_grid_value_is_refused(tmp_path, monkeypatch):
    path = digits_yaml(tmp_path)
    monkeypatch.chdir(tmp_path)
    result = invoke("sweep", path, "--grid", "optimizer={type: sgd, lr: 0.1, lr: 0.2},adam")
    assert_user_error(result, 2, "--grid optimizer={type: sgd, lr: 0.1, lr: 0.2}", "lr: key given twice")
    assert not (tmp_path / "runs").exists()


def test_a_merge_key_in_a_set_value_is_plain_yaml(tmp_path):
    path = digits_yaml(tmp_path)
    config = load_config(path, ["optimizer={<<: {type: momentum, lr: 0.1, momentum: 0.5}, lr: 0.2}"])
    assert config.spec.optimizer.type == "momentum"
    assert config.spec.optimizer.args["lr"] == 0.2 and config.spec.optimizer.args["momentum"] == 0.5
