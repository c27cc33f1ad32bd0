"""QuantumNetConfig: one declaration per option, composed from CircuitSpec and LayerOptions."""

from __future__ import annotations

import dataclasses
import pickle
import re

import numpy as np
import pytest
from stable_baselines3 import PPO

from qdrl_agents import CircuitSpec, LayerOptions, QuantumActorCriticPolicy, QuantumLayer
from qdrl_agents.layers import SQUASHES, WEIGHT_INITS
from qdrl_agents.policies import OPTION_TYPES, POLICY_DEFAULTS, QuantumNetConfig
from qdrl_agents.policies._common import _compose_options

OWN_FIELDS = ("encoder", "circuit", "input_params", "weight_params", "observables")


def _option_fields() -> dict[str, tuple[type, dataclasses.Field]]:
    return {
        f.name: (part, f)
        for part, per_network in OPTION_TYPES.items()
        for f in dataclasses.fields(part)
        if f.name not in per_network
    }


def test_fields_are_the_option_types_fields_plus_its_own() -> None:
    names = [f.name for f in dataclasses.fields(QuantumNetConfig)]
    assert names == [*_option_fields(), *OWN_FIELDS]
    assert QuantumNetConfig.CIRCUIT_OPTIONS == (
        "n_qubits", "n_layers", "rotation", "entanglement", "entangler", "encoding", "reupload",
        "final_rotation",
    )
    assert "output_bias" not in names and "readout" not in names and "n_inputs" not in names
    assert set(QuantumNetConfig.LAYER_OPTIONS) == {
        f.name for f in dataclasses.fields(LayerOptions)
    } - {"output_bias"}


def test_defaults_are_the_option_types_except_documented_overrides() -> None:
    defaults = {f.name: f.default for f in dataclasses.fields(QuantumNetConfig)}
    for name, (part, f) in _option_fields().items():
        if name in POLICY_DEFAULTS:
            assert defaults[name] == POLICY_DEFAULTS[name].default
            # An override that equals the option type's default would be a restatement.
            assert defaults[name] != f.default, name
            assert POLICY_DEFAULTS[name].why, name
        else:
            assert defaults[name] == f.default, f"{name} differs from {part.__name__}'s"
    assert set(POLICY_DEFAULTS) == {"n_qubits", "n_layers"}


def test_n_layers_keeps_the_policies_default_of_two() -> None:
    # Saved models and hyperparameter files that leave n_layers out mean two layers.
    assert QuantumNetConfig().n_layers == 2
    assert CircuitSpec(n_qubits=2).n_layers == 1
    assert QuantumNetConfig().n_qubits is None


def test_the_manual_lists_every_field_with_its_default() -> None:
    doc = QuantumNetConfig.__doc__
    section = doc[doc.index("Attributes:") :]
    entries = dict(re.findall(r"^    (\w+): (.*(?:\n        .*)*)", section, flags=re.M))
    assert list(entries) == [f.name for f in dataclasses.fields(QuantumNetConfig)]
    for name, (part, _) in _option_fields().items():
        text = " ".join(entries[name].split())
        assert text.startswith(f"(`{part.__name__}`)"), name
        assert f"Default ``{getattr(QuantumNetConfig(), name)!r}``" in text, name
    assert "not `CircuitSpec`'s 1" in " ".join(entries["n_layers"].split())
    # The entry text is the option type's own.
    assert "Observation squashing before input scaling" in entries["squash"]


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("squash", "sigmoid", SQUASHES),
        ("weight_init", "xavier", WEIGHT_INITS),
        ("squash", None, SQUASHES),
        ("weight_init", 0, WEIGHT_INITS),
    ],
)
def test_bad_choice_raises_at_construction_naming_the_field(
    field: str, value: object, allowed: tuple[str, ...]
) -> None:
    with pytest.raises(ValueError, match=re.escape(f"{field}={value!r}")) as info:
        QuantumNetConfig(**{field: value})
    assert str(list(allowed)) in str(info.value)
    with pytest.raises(ValueError, match=re.escape(f"{field}={value!r}")):
        QuantumNetConfig.from_kwargs({field: value}, "QuantumActorCriticPolicy")


BAD_VALUES = {
    "n_qubits": [0, 31, 2.0, True],
    "n_layers": [0, 1.5, None],
    "rotation": ["rx"],
    "entanglement": ["ring"],
    "entangler": ["swap"],
    "encoding": ["ryrz"],
    "reupload": ["yes", 1],
    "final_rotation": [None],
    "executor": ["aer", 3],
    "executor_kwargs": [[("shots", 10)]],
    "squash": ["sigmoid"],
    "input_scaling": ["no"],
    "input_scaling_init": [float("nan"), "1"],
    "weight_init": ["xavier"],
    "weight_init_std": [0.0, -1.0, float("inf")],
    "output_scaling": [None],
    "output_scaling_init": [float("inf")],
}


@pytest.mark.parametrize(
    ("field", "value"), [(k, v) for k, vs in BAD_VALUES.items() for v in vs]
)
def test_each_option_is_validated_once_by_its_option_type(field: str, value: object) -> None:
    part, _ = _option_fields()[field]
    required = {"n_qubits": 2} if part is CircuitSpec and field != "n_qubits" else {}
    with pytest.raises(ValueError) as own:
        part(**{**required, field: value})
    with pytest.raises(ValueError) as config:
        QuantumNetConfig(**{field: value})
    assert str(config.value) == str(own.value)
    assert f"{part.__name__}.{field}=" in str(config.value)


def test_every_option_has_a_bad_value_case() -> None:
    assert set(BAD_VALUES) == set(_option_fields())


def test_values_are_normalised_by_the_option_types() -> None:
    cfg = QuantumNetConfig(
        n_qubits=np.int64(3),
        n_layers=np.int32(4),
        input_scaling_init=np.float32(0.5),
        output_scaling_init=2,
        input_scaling=np.bool_(False),
    )
    assert (cfg.n_qubits, cfg.n_layers) == (3, 4)
    assert type(cfg.n_qubits) is int and type(cfg.n_layers) is int
    assert type(cfg.input_scaling_init) is float and cfg.input_scaling_init == 0.5
    assert type(cfg.output_scaling_init) is float and cfg.output_scaling_init == 2.0
    assert cfg.input_scaling is False
    assert cfg == QuantumNetConfig(
        n_qubits=3, n_layers=4, input_scaling_init=0.5, output_scaling_init=2.0,
        input_scaling=False,
    )


def test_replace_and_pickle_revalidate_and_round_trip() -> None:
    cfg = QuantumNetConfig(n_qubits=4, squash="tanh", weight_init="normal")
    assert pickle.loads(pickle.dumps(cfg)) == cfg
    assert dataclasses.replace(cfg, n_qubits=None).n_qubits is None
    with pytest.raises(ValueError, match="squash"):
        dataclasses.replace(cfg, squash="relu")


def test_circuit_options_must_keep_their_defaults_with_a_user_circuit() -> None:
    from qiskit.circuit import ParameterVector, QuantumCircuit

    x = ParameterVector("x", 2)
    qc = QuantumCircuit(2)
    qc.ry(x[0], 0)
    qc.ry(x[1], 1)
    with pytest.raises(ValueError, match="n_layers=3 shape the built-in circuit"):
        QuantumNetConfig(circuit=qc, input_params=x, n_layers=3)
    # Layer options still apply to a user's circuit.
    assert QuantumNetConfig(circuit=qc, input_params=x, squash="none").squash == "none"


def test_an_option_restated_by_hand_is_refused() -> None:
    class Restating:
        """A config that restates a layer option.

        Attributes:
            extra: Its own field.
        """

        squash: str = "tanh"
        extra: int = 0

    with pytest.raises(TypeError, match=r"restates LayerOptions\.squash"):
        _compose_options(Restating)


def test_policy_networks_get_every_option_without_hand_copying() -> None:
    options = {
        "n_qubits": 4,
        "n_layers": 3,
        "rotation": "u3",
        "entanglement": "linear",
        "entangler": "cnot",
        "encoding": "rx",
        "reupload": False,
        "final_rotation": False,
        "executor": "statevector",
        "executor_kwargs": {},
        "squash": "tanh",
        "input_scaling": False,
        "input_scaling_init": 0.5,
        "weight_init": "normal",
        "weight_init_std": 0.05,
        "output_scaling": False,
        "output_scaling_init": 3.0,
    }
    assert set(options) == set(_option_fields())
    defaults = QuantumNetConfig()
    for name, value in options.items():
        if name not in ("executor", "executor_kwargs"):
            assert value != getattr(defaults, name), name
    model = PPO(
        QuantumActorCriticPolicy,
        "CartPole-v1",
        policy_kwargs=options,
        n_steps=16,
        batch_size=16,
        device="cpu",
    )
    layers = [m for m in model.policy.modules() if isinstance(m, QuantumLayer)]
    assert layers
    for layer in layers:
        for name in QuantumNetConfig.LAYER_OPTIONS:
            assert getattr(layer.options, name) == options[name], name
        for name in QuantumNetConfig.CIRCUIT_OPTIONS:
            assert getattr(layer.spec, name) == options[name], name


@pytest.mark.parametrize(("field", "value"), [("weight_init", "xavier"), ("squash", "relu")])
def test_policy_rejects_a_bad_option_before_building_networks(field: str, value: str) -> None:
    with pytest.raises(ValueError, match=rf"LayerOptions\.{field}='{value}'") as info:
        PPO(
            QuantumActorCriticPolicy,
            "CartPole-v1",
            policy_kwargs={"n_qubits": 4, field: value},
            device="cpu",
        )
    frames = [entry.name for entry in info.traceback]
    assert "from_kwargs" in frames
    assert "build_quantum_net" not in frames and "_build" not in frames
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['squish'\]"):
        PPO(QuantumActorCriticPolicy, "CartPole-v1", policy_kwargs={"squish": "tanh"})
