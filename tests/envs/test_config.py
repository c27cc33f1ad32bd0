"""The frozen, validated config pattern (qdrl_envs.config)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from qdrl_envs.config import (
    EnvConfig,
    check_bool,
    check_choice,
    check_int,
    check_real,
    check_reals,
    resolve_config,
)


@dataclass(frozen=True)
class ToyConfig(EnvConfig):
    n_users: int = 2
    area_m: float = 100.0
    mode: str = "a"
    weights: tuple[float, ...] = (1.0, 2.0)

    def validate(self) -> None:
        check_int("n_users", self.n_users, low=1, high=8)
        check_real("area_m", self.area_m, 0.0, low_inclusive=False)
        check_choice("mode", self.mode, ("a", "b"))
        check_reals("weights", self.weights, length=2, low=0.0)


def test_defaults_overrides_and_instances():
    assert resolve_config(ToyConfig, None, {}) == ToyConfig()
    cfg = resolve_config(ToyConfig, None, {"n_users": 3})
    assert cfg.n_users == 3 and cfg.area_m == 100.0
    from_mapping = resolve_config(ToyConfig, {"n_users": 4, "mode": "b"}, {"n_users": 5})
    assert from_mapping == ToyConfig(n_users=5, mode="b")  # keyword overrides win
    from_instance = resolve_config(ToyConfig, cfg, {"area_m": 5.0})
    assert from_instance == ToyConfig(n_users=3, area_m=5.0)
    assert cfg.replace(mode="b") == ToyConfig(n_users=3, mode="b")
    assert cfg.to_dict() == {"n_users": 3, "area_m": 100.0, "mode": "a", "weights": (1.0, 2.0)}
    assert ToyConfig.field_names() == ("n_users", "area_m", "mode", "weights")


def test_unknown_keys_are_rejected_listing_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown ToyConfig field\(s\) \['n_user'\]") as err:
        resolve_config(ToyConfig, None, {"n_user": 3})
    assert "valid fields are ['area_m', 'mode', 'n_users', 'weights']" in str(err.value)
    with pytest.raises(ValueError, match="unknown"):
        resolve_config(ToyConfig, {"typo": 1}, {})
    with pytest.raises(ValueError, match="unknown"):
        ToyConfig().replace(nope=1)


def test_bad_config_type_is_a_type_error():
    with pytest.raises(TypeError, match="config must be a ToyConfig, a mapping or None"):
        resolve_config(ToyConfig, ["n_users", 2], {})


def test_validation_runs_at_construction_and_configs_are_frozen():
    with pytest.raises(ValueError, match="n_users"):
        ToyConfig(n_users=0)
    with pytest.raises(ValueError, match="weights"):
        resolve_config(ToyConfig, None, {"weights": (1.0,)})
    cfg = ToyConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.n_users = 5  # type: ignore[misc]


@pytest.mark.parametrize("value, kwargs, message", [
    (float("nan"), {}, "x must be a finite real number in [-inf, inf], got nan"),
    (float("inf"), {"low": 0.0}, "x must be a finite real number in [0.0, inf], got inf"),
    (True, {}, "x must be a finite real number in [-inf, inf], got True"),
    ("1.0", {}, "x must be a finite real number in [-inf, inf], got '1.0'"),
    (-1.0, {"low": 0.0}, "x must be in [0.0, inf], got -1.0"),
    (0.0, {"low": 0.0, "low_inclusive": False}, "x must be in (0.0, inf], got 0.0"),
    (2.0, {"high": 1.0}, "x must be in [-inf, 1.0], got 2.0"),
    (1.0, {"low": 0.0, "high": 1.0, "high_inclusive": False}, "x must be in [0.0, 1.0), got 1.0"),
], ids=["nan", "inf", "bool", "str", "below", "open-low", "above", "open-high"])
def test_check_real_messages(value, kwargs, message):
    with pytest.raises(ValueError) as err:
        check_real("x", value, **kwargs)
    assert str(err.value) == message


def test_check_real_accepts_bounds_and_numpy_scalars():
    import numpy as np

    check_real("x", 0.0, 0.0, 1.0)
    check_real("x", 1, 0.0, 1.0)
    check_real("x", np.float32(0.5), 0.0, 1.0)


@pytest.mark.parametrize("value, message", [
    (True, "n must be an integer in [1, 4], got True"),
    (2.0, "n must be an integer in [1, 4], got 2.0"),
    (0, "n must be an integer in [1, 4], got 0"),
    (5, "n must be an integer in [1, 4], got 5"),
], ids=["bool", "float", "below", "above"])
def test_check_int_messages(value, message):
    with pytest.raises(ValueError) as err:
        check_int("n", value, low=1, high=4)
    assert str(err.value) == message
    check_int("n", 4, low=1, high=4)


def test_check_choice_and_bool():
    check_choice("mode", "a", ("a", "b"))
    with pytest.raises(ValueError, match=r"mode must be one of \['a', 'b'\], got 'c'"):
        check_choice("mode", "c", ("a", "b"))
    with pytest.raises(ValueError, match="got True"):
        check_choice("k", True, (1, 2))  # True == 1, but a bool is not a choice
    check_bool("flag", False)
    with pytest.raises(ValueError, match="flag must be True or False, got 1"):
        check_bool("flag", 1)


def test_check_reals_messages():
    check_reals("w", (0.5, 1.0), length=2, low=0.0, high=1.0)
    with pytest.raises(ValueError, match="w must be a tuple of numbers"):
        check_reals("w", 0.5)
    with pytest.raises(ValueError, match="w must have 2 entries, got 3"):
        check_reals("w", [1.0, 2.0, 3.0], length=2)
    with pytest.raises(ValueError, match=r"w\[1\] must be in \[0.0, 1.0\], got 2.0"):
        check_reals("w", (0.5, 2.0), low=0.0, high=1.0)


def test_check_order_names_both_fields() -> None:
    from qdrl_envs.config import check_order

    check_order("lo", 1.0, "hi", 1.0)
    with pytest.raises(ValueError, match=r"lo \(1.0\) must be below hi \(1.0\)"):
        check_order("lo", 1.0, "hi", 1.0, strict=True)
    with pytest.raises(ValueError, match=r"lo \(3\) must be at most hi \(2\)"):
        check_order("lo", 3, "hi", 2)


@pytest.mark.parametrize("kwargs, names", [
    ({"n_devices": 2}, ("n_channels", "n_devices")),
    ({"min_distance_m": 251.0}, ("min_distance_m", "max_distance_m")),
    ({"max_distance_m": 20.0}, ("min_distance_m", "max_distance_m")),
])
def test_cross_field_errors_name_the_field_that_was_set(kwargs: dict, names: tuple) -> None:
    from qdrl_envs.dt_sync import DTSyncConfig

    with pytest.raises(ValueError) as err:
        DTSyncConfig(**kwargs)
    assert all(name in str(err.value) for name in names)
