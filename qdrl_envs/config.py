"""The frozen, validated configuration pattern shared by every environment.

Each environment owns one frozen dataclass deriving from :class:`EnvConfig`, with units in the
field names (``p_max_dbm``, ``bandwidth_hz``, ``area_m``) and a ``validate()`` method built from
the ``check_*`` helpers below. Validation runs in ``__post_init__`` and raises ``ValueError``
naming the field, the value and the allowed range, so a typo or an impossible figure fails at
construction rather than deep inside an episode.

Example:
    >>> @dataclass(frozen=True)
    ... class MyConfig(EnvConfig):
    ...     n_users: int = 2
    ...     def validate(self) -> None:
    ...         check_int("n_users", self.n_users, low=1)
    >>> cfg = resolve_config(MyConfig, None, {"n_users": 3})
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

C = TypeVar("C", bound="EnvConfig")


@dataclass(frozen=True)
class EnvConfig:
    """Base class of every environment config: frozen, validated at construction."""

    def __post_init__(self) -> None:
        # A per-entry field given as a list (YAML has no tuples) is stored as the tuple the
        # field declares, so configs stay hashable and ``isinstance(..., tuple)`` checks hold.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
        self.validate()

    def validate(self) -> None:
        """Check every field; raise ``ValueError`` naming the offending one. Override this."""

    def replace(self: C, **overrides: Any) -> C:
        """Return a copy with ``overrides`` applied (validated; unknown keys rejected)."""
        return resolve_config(type(self), self, overrides)

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a plain dict (tuples kept as tuples)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Return the names of the config fields."""
        return tuple(f.name for f in dataclasses.fields(cls))


def resolve_config(cls: type[C], config: C | Mapping[str, Any] | None,
                   overrides: Mapping[str, Any]) -> C:
    """Build a config of type ``cls`` from an instance or mapping plus keyword overrides.

    This is what ``Env(config=None, **kwargs)`` constructors and ``gym.make(id, **kwargs)`` go
    through.

    Args:
        cls: The config dataclass.
        config: An existing ``cls`` instance, a mapping of field values, or ``None`` (defaults).
        overrides: Field values that take precedence over ``config``.

    Returns:
        A validated ``cls`` instance.

    Raises:
        ValueError: On unknown field names (listing the valid ones) or invalid values.
        TypeError: If ``config`` is neither ``None``, a mapping nor a ``cls`` instance.
    """
    if config is None:
        base: dict[str, Any] = {}
    elif isinstance(config, cls):
        base = config.to_dict()
    elif isinstance(config, Mapping):
        base = dict(config)
    else:
        raise TypeError(
            f"config must be a {cls.__name__}, a mapping or None, got {type(config).__name__}"
        )
    base.update(overrides)
    valid = set(cls.field_names())
    unknown = sorted(set(base) - valid)
    if unknown:
        raise ValueError(
            f"unknown {cls.__name__} field(s) {unknown}; valid fields are {sorted(valid)}"
        )
    return cls(**base)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_real(name: str, value: Any, low: float | None = None, high: float | None = None, *,
               low_inclusive: bool = True, high_inclusive: bool = True) -> None:
    """Require a finite real number within ``[low, high]`` (bounds optional, open or closed).

    Raises:
        ValueError: Naming ``name``, the value and the allowed range.
    """
    lo_br = "[" if low_inclusive else "("
    hi_br = "]" if high_inclusive else ")"
    allowed = f"{lo_br}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi_br}"
    if not _is_real(value) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite real number in {allowed}, got {value!r}")
    v = float(value)
    if low is not None and (v < low or (v == low and not low_inclusive)):
        raise ValueError(f"{name} must be in {allowed}, got {value!r}")
    if high is not None and (v > high or (v == high and not high_inclusive)):
        raise ValueError(f"{name} must be in {allowed}, got {value!r}")


def check_int(name: str, value: Any, low: int | None = None, high: int | None = None) -> None:
    """Require an integer (not bool) within ``[low, high]``.

    Raises:
        ValueError: Naming ``name``, the value and the allowed range.
    """
    allowed = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer in {allowed}, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be an integer in {allowed}, got {value!r}")


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> None:
    """Require ``value`` to be one of ``choices``.

    Raises:
        ValueError: Naming ``name``, the value and the choices.
    """
    choices = tuple(choices)
    if isinstance(value, bool) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def check_bool(name: str, value: Any) -> None:
    """Require a real ``bool``.

    Raises:
        ValueError: Naming ``name`` and the value.
    """
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def check_reals(name: str, values: Any, length: int | None = None, low: float | None = None,
                high: float | None = None) -> None:
    """Require a sequence of finite reals (optionally of a given length) within ``[low, high]``.

    Raises:
        ValueError: Naming ``name`` (with the index of a bad element) and the allowed range.
    """
    if not isinstance(values, (tuple, list)):
        raise ValueError(f"{name} must be a tuple of numbers, got {values!r}")
    if length is not None and len(values) != length:
        raise ValueError(f"{name} must have {length} entries, got {len(values)}: {values!r}")
    for i, v in enumerate(values):
        check_real(f"{name}[{i}]", v, low, high)


def check_order(low_name: str, low_value: Any, high_name: str, high_value: Any, *,
                strict: bool = False) -> None:
    """Require ``low_value <= high_value`` (``<`` when ``strict``) for two already-checked fields.

    The message names both fields, so whichever of the two a user set is named.

    Raises:
        ValueError: Naming both fields and their values.
    """
    bad = low_value >= high_value if strict else low_value > high_value
    if bad:
        relation = "below" if strict else "at most"
        raise ValueError(f"{low_name} ({low_value!r}) must be {relation} {high_name} "
                         f"({high_value!r})")
