"""Pieces shared by the quantum SB3 policies.

Configuration (`QuantumNetConfig`, composed from the options of `CircuitSpec` and
`LayerOptions`, each declared once, there), network builders, the grouped optimiser, and
`QuantumPolicyMixin` (what every quantum policy adds to its SB3 base class).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch
from gymnasium import spaces
from qiskit.circuit import QuantumCircuit
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, FlattenExtractor
from torch import nn

from qdrl_agents.circuits import MAX_QUBITS, BuiltCircuit, CircuitSpec, UserCircuit
from qdrl_agents.layers import (
    PARAMETER_GROUPS,
    ClassicalToQuantum,
    LayerOptions,
    QuantumLayer,
    QuantumToClassical,
    parameter_counts,
    quantum_parameter_groups,
)

OutputHead = Literal["auto", "direct", "linear"]
OUTPUT_HEADS = ("auto", "direct", "linear")
CRITIC_KINDS = ("mlp", "quantum")
_FLAT_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)


class PolicyDefault(NamedTuple):
    """A policy option whose default differs from its option type's (`POLICY_DEFAULTS`)."""

    type: Any
    default: Any
    why: str


#: The option types `QuantumNetConfig` is composed of, each with the fields that every policy
#: network sets itself (so they are not ``policy_kwargs``): the circuit's input width (from
#: the features and ``encoder``) and readout (from ``output_head``), and the output bias.
OPTION_TYPES: dict[type, tuple[str, ...]] = {
    CircuitSpec: ("n_inputs", "readout", "parity_groups"),
    LayerOptions: ("output_bias",),
}

#: The only policy defaults that are not their option type's own, and why. Every other
#: default (and every allowed value, and every check) is `CircuitSpec`'s or `LayerOptions`'.
POLICY_DEFAULTS: dict[str, PolicyDefault] = {
    "n_qubits": PolicyDefault(
        int | None,
        None,
        "``None`` (the policies' default; a `CircuitSpec` needs a number): one qubit per "
        "input feature, a width SB3 knows only when it builds the network. When the features "
        "are wider than ``n_qubits`` an ``encoder`` is required, as it is for more features "
        "than `qdrl_agents.circuits.MAX_QUBITS` (30).",
    ),
    "n_layers": PolicyDefault(
        int,
        2,
        "The policies' default is 2, not `CircuitSpec`'s 1 (the smallest circuit, the natural "
        "default of a building block): with one layer each input is encoded once and the "
        "network is a degree-1 Fourier series in it (Schuld et al. 2021), and 2 is what the "
        "policies have always defaulted to, so models saved without ``n_layers`` keep their "
        "meaning.",
    ),
}


def _attribute_docs(cls: type) -> dict[str, str]:
    """The entries of the ``Attributes:`` section of a class docstring, name -> text."""
    docs: dict[str, str] = {}
    lines = inspect.cleandoc(cls.__doc__ or "").splitlines()
    if "Attributes:" not in lines:
        return docs
    name = None
    for line in lines[lines.index("Attributes:") + 1 :]:
        entry = re.match(r"^    (\w+): (.*)$", line)
        if entry:
            name = entry.group(1)
            docs[name] = entry.group(2)
        elif name is not None and line.startswith("        "):
            docs[name] += " " + line.strip()
        else:
            break
    return docs


def _compose_options(cls: type) -> type:
    """Make ``cls`` a frozen dataclass of its own fields plus the options of `OPTION_TYPES`.

    Each option keeps its option type's annotation and default (except `POLICY_DEFAULTS`), and
    its manual entry, copied from the option type's docstring into ``cls.__doc__``'s
    ``Attributes:`` section, with the default. ``cls`` must not restate an option.
    """
    own = dict(inspect.get_annotations(cls))
    annotations: dict[str, Any] = {}
    entries: list[str] = []
    for part, per_network in OPTION_TYPES.items():
        hints = typing.get_type_hints(part)
        docs = _attribute_docs(part)
        for f in dataclasses.fields(part):
            if f.name in per_network:
                continue
            if f.name in own:
                raise TypeError(
                    f"{cls.__name__}.{f.name} restates {part.__name__}.{f.name}; a different "
                    "policy default belongs in POLICY_DEFAULTS"
                )
            override = POLICY_DEFAULTS.get(f.name)
            if f.name not in docs:
                raise TypeError(f"{part.__name__}.{f.name} has no entry in its Attributes docs")
            text = docs[f.name]
            if override is None:
                annotations[f.name], default = hints[f.name], f.default
                note = f"Default ``{default!r}``."
            else:
                annotations[f.name], default = override.type, override.default
                note = f"{override.why} Default ``{default!r}``."
            if default is dataclasses.MISSING:
                raise TypeError(f"{part.__name__}.{f.name} has no default for {cls.__name__}")
            setattr(cls, f.name, default)
            entries.append(f"{f.name}: (`{part.__name__}`) {text} {note}".replace("  ", " "))
    unknown = sorted(set(POLICY_DEFAULTS) - set(annotations))
    if unknown:
        raise TypeError(f"POLICY_DEFAULTS names {unknown}, which no option type declares")
    cls.__annotations__ = {**annotations, **own}
    lines = inspect.cleandoc(cls.__doc__ or "").splitlines()
    at = lines.index("Attributes:") + 1
    wrapped = [_wrap(entry, "    ", "        ") for entry in entries]
    cls.__doc__ = "\n".join([*lines[:at], *wrapped, *lines[at:]])
    cls.CIRCUIT_OPTIONS = tuple(  # type: ignore[attr-defined]
        f.name for f in dataclasses.fields(CircuitSpec) if f.name in annotations
    )
    cls.LAYER_OPTIONS = tuple(  # type: ignore[attr-defined]
        f.name for f in dataclasses.fields(LayerOptions) if f.name in annotations
    )
    return dataclass(frozen=True)(cls)


def _wrap(text: str, first: str, rest: str, width: int = 96) -> str:
    words, lines, line = text.split(), [], first
    for word in words:
        if len(line) + len(word) + 1 > width and line.strip():
            lines.append(line.rstrip())
            line = rest
        line += word + " "
    lines.append(line.rstrip())
    return "\n".join(lines)


@_compose_options
class QuantumNetConfig:
    """The quantum part of a policy, as given through ``policy_kwargs``.

    Every field is a keyword of the quantum policies (``policy_kwargs=dict(n_qubits=4, ...)``);
    unknown keywords are rejected with a ``TypeError`` naming them. Every field is validated
    here, at construction, so a bad option fails when the policy is made, not when SB3 builds
    its networks. Integer fields take Python or NumPy integers.

    **One declaration per option.** The fields are composed from the option types: the circuit
    options are the fields of `qdrl_agents.circuits.CircuitSpec` (``n_qubits`` ...
    ``final_rotation``; not ``n_inputs``, ``readout``, ``parity_groups``, which each network
    sets), the layer options the fields of `qdrl_agents.layers.LayerOptions` (``executor`` ...
    ``output_scaling_init``; not ``output_bias``). Each keeps its type's default, allowed
    values, checks and manual entry (copied below), except the defaults in `POLICY_DEFAULTS`
    (``n_qubits``, ``n_layers``), which say why they differ. `OPTION_TYPES` names the parts;
    ``CIRCUIT_OPTIONS`` and ``LAYER_OPTIONS`` list the fields of each.

    **The circuit.** By default each quantum network is the built-in re-uploading circuit
    (`qdrl_agents.circuits.CircuitSpec`) shaped by the circuit options. Or bring your own, in
    qiskit-machine-learning's ``EstimatorQNN`` vocabulary::

        policy_kwargs=dict(circuit=qc, input_params=fmap.parameters,
                           weight_params=ansatz.parameters, observables=["ZZII", "IIZZ"])

    or as a callable of the input width, since SB3 builds the policy only once it has seen the
    observation space::

        def make(n_features):
            fmap, ansatz = zz_feature_map(n_features), real_amplitudes(n_features, reps=2)
            return fmap.compose(ansatz), fmap.parameters, ansatz.parameters, None

        policy_kwargs=dict(circuit=make)

    The callable gets the width of the network's input (SB3's ``features_dim``; for a TD3 or
    SAC quantum critic ``features_dim + action_dim``), is called once per distinct width (the
    online and target networks of one width share its circuit), and returns ``(circuit,
    input_params, weight_params, observables)`` (the last two may be left out or ``None``: every
    other parameter is a weight, one Z...Z output is read), a mapping with those keys, or a
    `BuiltCircuit`. Either way the network feeds feature ``i`` to ``input_params[i]``, so the
    circuit must have exactly as many input parameters as the network has input features,
    unless ``encoder=`` maps the features onto them; with ``output_head="direct"`` (or
    ``"auto"`` when the counts match) the observables are the action logits / means / Q-values
    themselves (times the trainable output scaling), otherwise a linear head follows. Squashing
    and trainable input scaling (one ``lambda`` per input parameter) apply as for the built-in
    circuit; ``squash="none", input_scaling=False`` feeds the features unchanged, as
    ``EstimatorQNN`` does.

    The circuit is held as a `qdrl_agents.circuits.UserCircuit`, which pickles as ``qiskit.qpy``
    bytes: ``policy.save`` stores it as QPY. An algorithm's ``model.save`` stores
    ``policy_kwargs`` exactly as you passed them (SB3 cloudpickles them), so pass
    ``circuit=UserCircuit(qc, input_params, weight_params, observables)`` (or
    ``UserCircuit(make)``) there to have the circuit saved as QPY and rebuilt by ``qpy.load`` in
    any process, without the code that made it.

    Attributes:
        encoder: Classical -> quantum encoder for features wider than the qubits (or than a
            user circuit's inputs): ``None`` (default: none; wider features raise
            ``ValueError``), ``"linear"``, ``"mlp"`` (one hidden layer of 64, tanh) or a list
            of hidden widths.
        circuit: A user's circuit instead of the built-in one: a Qiskit ``QuantumCircuit``, a
            `BuiltCircuit`, a `UserCircuit`, or a callable ``n_features -> (circuit,
            input_params, weight_params, observables)`` (see above). Stored as a
            `UserCircuit`; then the circuit options (``CIRCUIT_OPTIONS``: ``n_qubits``,
            ``n_layers``, ...) must keep their defaults.
        input_params: The parameters of ``circuit`` fed by the features, in order (with a
            ``QuantumCircuit``; folded into the `UserCircuit`, then ``None``).
        weight_params: Its trainable parameters, in order; ``None``: every other parameter.
        observables: One ``SparsePauliOp``, ``Pauli`` or Pauli string per output; ``None``:
            one output, Z on every qubit (``EstimatorQNN``'s default).
    """

    encoder: str | Sequence[int] | None = None
    circuit: Any = None
    input_params: Any = None
    weight_params: Any = None
    observables: Any = None

    # Set by `_compose_options`: the fields from each option type, in its order.
    CIRCUIT_OPTIONS: typing.ClassVar[tuple[str, ...]]
    LAYER_OPTIONS: typing.ClassVar[tuple[str, ...]]

    def __post_init__(self) -> None:
        # The option types validate (and normalise: NumPy ints, floats) their own fields.
        probe = self.circuit_spec(1 if self.n_qubits is None else self.n_qubits)
        layer = self.layer_options()
        for name in self.CIRCUIT_OPTIONS:
            if name != "n_qubits" or self.n_qubits is not None:
                object.__setattr__(self, name, getattr(probe, name))
        for name in self.LAYER_OPTIONS:
            object.__setattr__(self, name, getattr(layer, name))
        self._normalise_circuit()
        if self.encoder is not None and not isinstance(self.encoder, str | Sequence):
            raise ValueError(
                f"encoder must be None, 'linear', 'mlp' or a list of hidden widths, "
                f"got {self.encoder!r}"
            )
        if isinstance(self.encoder, str) and self.encoder not in ("linear", "mlp"):
            raise ValueError(
                f"encoder must be None, 'linear', 'mlp' or a list of hidden widths, "
                f"got {self.encoder!r}"
            )

    def circuit_spec(self, n_qubits: int, **per_network: Any) -> CircuitSpec:
        """The built-in circuit of one network: the circuit options, and what it sets itself.

        Args:
            n_qubits: The network's qubit count (`resolve_n_qubits`).
            **per_network: ``n_inputs``, ``readout``, ``parity_groups`` (`OPTION_TYPES`).

        Returns:
            The `CircuitSpec`.

        Raises:
            ValueError: If a field is invalid (the message names it).
        """
        options = {name: getattr(self, name) for name in self.CIRCUIT_OPTIONS}
        return CircuitSpec(**{**options, "n_qubits": n_qubits, **per_network})

    def layer_options(self, **per_network: Any) -> LayerOptions:
        """The `LayerOptions` of one network: the layer options, and what it sets itself.

        Args:
            **per_network: ``output_bias`` (`OPTION_TYPES`).

        Returns:
            The options.

        Raises:
            ValueError: If a field is invalid (the message names it).
        """
        return LayerOptions(
            **{name: getattr(self, name) for name in self.LAYER_OPTIONS}, **per_network
        )

    def _normalise_circuit(self) -> None:
        """Fold ``circuit=`` and its parameter roles into one `UserCircuit`, validated now."""
        roles = {
            name: getattr(self, name)
            for name in ("input_params", "weight_params", "observables")
            if getattr(self, name) is not None
        }
        if self.circuit is None:
            if roles:
                raise ValueError(
                    f"{sorted(roles)} describe a user's circuit and need circuit= (a "
                    "QuantumCircuit); the built-in circuit is shaped by n_qubits, n_layers, ..."
                )
            return
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        shaped = [
            f"{name}={getattr(self, name)!r}"
            for name in self.CIRCUIT_OPTIONS
            if getattr(self, name) != defaults[name]
        ]
        if shaped:
            raise ValueError(
                f"{', '.join(shaped)} shape the built-in circuit, but circuit= brings your own; "
                "leave them out (the circuit defines its qubits and layers)"
            )
        circuit = self.circuit
        if isinstance(circuit, UserCircuit):
            if roles:
                raise ValueError(
                    f"{sorted(roles)} given with a UserCircuit, which holds them already"
                )
        elif isinstance(circuit, QuantumCircuit | BuiltCircuit) or callable(circuit):
            circuit = UserCircuit(
                circuit, self.input_params, self.weight_params, self.observables
            )
        else:
            raise TypeError(
                "circuit must be a qiskit QuantumCircuit, a BuiltCircuit, a UserCircuit or a "
                "callable n_features -> (circuit, input_params, weight_params, observables), "
                f"got {type(circuit).__name__}"
            )
        object.__setattr__(self, "circuit", circuit)
        for name in ("input_params", "weight_params", "observables"):
            object.__setattr__(self, name, None)

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any], who: str) -> QuantumNetConfig:
        """Build from policy keyword arguments, rejecting unknown names.

        Args:
            kwargs: The keyword arguments.
            who: Name of the policy, for the error message.

        Returns:
            The config.

        Raises:
            TypeError: If a keyword is not a field.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise TypeError(
                f"{who} got unexpected keyword argument(s) {unknown}; quantum options are "
                f"{sorted(names)}"
            )
        return cls(**kwargs)

    def as_kwargs(self) -> dict[str, Any]:
        """The fields as a flat dict (for ``_get_constructor_parameters``).

        Returns:
            Field name -> value, without copying values.
        """
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def check_observation_space(
    observation_space: spaces.Space,
    features_extractor_class: type[BaseFeaturesExtractor],
    who: str,
) -> None:
    """Reject observation spaces a quantum policy cannot take, at construction.

    Flat spaces (Box, Discrete, MultiDiscrete, MultiBinary) are accepted with any features
    extractor; SB3 one-hot encodes Discrete and MultiDiscrete observations, so their width is
    ``n`` or ``sum(nvec)``. ``Dict`` spaces are accepted with a features extractor that takes
    them (SB3's ``CombinedExtractor``, what its ``MultiInputPolicy`` uses); add ``encoder=`` when
    the combined features are wider than the qubits. Images need a classical features
    extractor (e.g. SB3's ``NatureCNN``) and an ``encoder``.

    Args:
        observation_space: The env's observation space.
        features_extractor_class: The SB3 features extractor class in use.
        who: Name of the policy, for the error message.

    Raises:
        ValueError: For Tuple and other structured spaces, Dict spaces with the default
            ``FlattenExtractor``, and images with the default ``FlattenExtractor``.
    """
    if isinstance(observation_space, spaces.Dict):
        if features_extractor_class is FlattenExtractor:
            raise ValueError(
                f"{who} takes flat observation spaces (Box, Discrete, MultiDiscrete, "
                "MultiBinary) with the default FlattenExtractor, got Dict; pass "
                "features_extractor_class=stable_baselines3.common.torch_layers."
                "CombinedExtractor (as SB3's MultiInputPolicy does, plus encoder= if the "
                "features are wider than the qubits), or wrap the env in "
                "gymnasium.wrappers.FlattenObservation"
            )
        return
    if not isinstance(observation_space, _FLAT_SPACES):
        raise ValueError(
            f"{who} takes flat observation spaces (Box, Discrete, MultiDiscrete, MultiBinary) "
            f"or Dict spaces, got {type(observation_space).__name__}; wrap the env in "
            f"gymnasium.wrappers.FlattenObservation"
        )
    if features_extractor_class is FlattenExtractor and is_image_space(observation_space):
        raise ValueError(
            f"{who} got image observations {observation_space.shape}: pass a convolutional "
            f"features_extractor_class (e.g. stable_baselines3.common.torch_layers.NatureCNN) "
            f"and encoder='linear' so the features fit the qubits"
        )


def check_action_space(action_space: spaces.Space, expected: type[spaces.Space], who: str) -> None:
    """Reject an action space that is not of the one type a policy takes, at construction.

    Args:
        action_space: The env's action space.
        expected: The space class the policy takes (``spaces.Discrete``, ``spaces.Box``).
        who: Name of the policy, for the error message.

    Raises:
        ValueError: If ``action_space`` is not an ``expected``.
    """
    if not isinstance(action_space, expected):
        raise ValueError(
            f"{who} takes {expected.__name__} actions, got {type(action_space).__name__}"
        )


def check_choice(name: str, value: Any, allowed: Sequence[Any]) -> None:
    """Raise ValueError unless ``value`` is one of ``allowed``.

    Args:
        name: Field name for the message.
        value: The value.
        allowed: Allowed values.

    Raises:
        ValueError: If ``value`` is not allowed.
    """
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def direct_outputs(output_head: str, n_outputs: int, n_qubits: int) -> bool:
    """Decide whether a network reads its outputs directly from scaled expectations.

    Args:
        output_head: ``"auto"``, ``"direct"`` or ``"linear"``.
        n_outputs: Outputs the network must produce.
        n_qubits: Qubits in its circuit.

    Returns:
        True for a direct readout (one parity group of qubits per output), False for a
        per-qubit Z readout followed by a classical linear map.

    Raises:
        ValueError: If ``output_head="direct"`` but there are more outputs than qubits.
    """
    check_choice("output_head", output_head, OUTPUT_HEADS)
    if output_head == "linear":
        return False
    if n_outputs > n_qubits:
        if output_head == "direct":
            raise ValueError(
                f"output_head='direct' needs at most one output per qubit: {n_outputs} outputs, "
                f"{n_qubits} qubits; use output_head='linear' or more qubits"
            )
        return False
    return True


def parity_partition(n_qubits: int, n_groups: int) -> tuple[tuple[int, ...], ...]:
    """Split qubits ``0..n_qubits-1`` into ``n_groups`` contiguous, near-equal groups.

    Args:
        n_qubits: Number of qubits.
        n_groups: Number of groups (``1 <= n_groups <= n_qubits``).

    Returns:
        The groups, e.g. ``((0, 1), (2, 3))`` for 4 qubits and 2 groups.
    """
    base, extra = divmod(n_qubits, n_groups)
    groups, start = [], 0
    for g in range(n_groups):
        size = base + (1 if g < extra else 0)
        groups.append(tuple(range(start, start + size)))
        start += size
    return tuple(groups)


def user_circuit(cfg: QuantumNetConfig, in_features: int, who: str) -> BuiltCircuit | None:
    """The user's circuit of a network on ``in_features`` inputs, checked against that width.

    Args:
        cfg: The quantum config.
        in_features: Width of the network's input.
        who: Description of the network, for the error message.

    Returns:
        ``cfg.circuit.build(in_features)``, or ``None`` for the built-in circuit.

    Raises:
        ValueError: If the circuit has another number of inputs than ``in_features`` and no
            encoder is configured (the message names ``encoder=``).
    """
    if cfg.circuit is None:
        return None
    in_features = int(in_features)
    built = cfg.circuit.build(in_features)
    n_inputs = built.spec.inputs_encoded if built.spec is not None else built.n_input_params
    if cfg.encoder is None and in_features != n_inputs:
        names = [str(p) for p in built.inputs[:6]]
        more = ", ..." if built.n_input_params > 6 else ""
        raise ValueError(
            f"{who}: {in_features} input features but the circuit has {n_inputs} input "
            f"parameters ({', '.join(names)}{more}) and there is no encoder; pass "
            f"encoder='linear' (or 'mlp', or hidden widths) to map the features onto them, or "
            f"a circuit with {in_features} input parameters (circuit= may be a callable of "
            "the width)"
        )
    return built


def resolve_n_qubits(cfg: QuantumNetConfig, in_features: int, who: str) -> int:
    """The number of qubits of a network on ``in_features`` inputs.

    Args:
        cfg: The quantum config.
        in_features: Width of the network's input (an int; NumPy integers are accepted).
        who: Description of the network, for the error message.

    Returns:
        The user circuit's qubit count; else ``cfg.n_qubits`` or, when None, ``in_features``.

    Raises:
        ValueError: If the inputs are wider than the qubits (or a user circuit's inputs) and no
            encoder is configured, or one qubit per feature would exceed
            `qdrl_agents.circuits.MAX_QUBITS`; the message names ``encoder=``.
    """
    in_features = int(in_features)
    built = user_circuit(cfg, in_features, who)
    if built is not None:
        return built.n_qubits
    n_qubits = cfg.n_qubits if cfg.n_qubits is not None else in_features
    if cfg.encoder is None and in_features > n_qubits:
        raise ValueError(
            f"{who}: {in_features} input features but n_qubits={n_qubits} and no encoder; pass "
            f"encoder='linear' (or 'mlp', or hidden widths) to map the features onto the "
            f"qubits, or n_qubits>={in_features}"
        )
    if n_qubits > MAX_QUBITS:
        raise ValueError(
            f"{who}: {in_features} input features, one qubit each, is more than the "
            f"{MAX_QUBITS} qubits a circuit may have (MAX_QUBITS; a statevector of 2**n "
            f"amplitudes); pass encoder='linear' (or 'mlp', or hidden widths) with "
            f"n_qubits<={MAX_QUBITS} to map the features onto fewer qubits"
        )
    return n_qubits


def readout_width(cfg: QuantumNetConfig, in_features: int, who: str) -> int:
    """Outputs of a network's readout before any head: ``n_qubits`` Z's, or the user's observables.

    Args:
        cfg: The quantum config.
        in_features: Width of the network's input.
        who: Description of the network, for error messages.

    Returns:
        The number of expectation values the circuit gives.

    Raises:
        ValueError: As `resolve_n_qubits`.
    """
    built = user_circuit(cfg, in_features, who)
    if built is not None:
        return built.n_outputs
    return resolve_n_qubits(cfg, in_features, who)


def choose_direct(
    cfg: QuantumNetConfig, output_head: str, n_outputs: int, in_features: int, who: str
) -> bool:
    """`direct_outputs` for a config: the built-in circuit, or a user's observables.

    A user's circuit reads its outputs directly when it has exactly one observable per output
    (``"auto"``, ``"direct"``); otherwise a linear head follows its observables.

    Args:
        cfg: The quantum config.
        output_head: ``"auto"``, ``"direct"`` or ``"linear"``.
        n_outputs: Outputs the network must produce.
        in_features: Width of the network's input.
        who: Description of the network, for error messages.

    Returns:
        True for a direct readout.

    Raises:
        ValueError: For ``output_head="direct"`` that cannot be honoured, or a width mismatch.
    """
    check_choice("output_head", output_head, OUTPUT_HEADS)
    built = user_circuit(cfg, in_features, who)
    if built is None:
        return direct_outputs(output_head, n_outputs, resolve_n_qubits(cfg, in_features, who))
    if output_head == "linear":
        return False
    if built.n_outputs == n_outputs:
        return True
    if output_head == "direct":
        raise ValueError(
            f"{who}: output_head='direct' reads one observable per output: {n_outputs} outputs "
            f"needed, the circuit has {built.n_outputs} observables; pass {n_outputs} "
            "observables= or output_head='linear'"
        )
    return False


def build_quantum_net(
    cfg: QuantumNetConfig,
    in_features: int,
    *,
    who: str,
    n_direct_outputs: int | None = None,
    head_outputs: int | None = None,
    output_bias: bool = False,
) -> nn.Module:
    """Build a quantum network (optional encoder -> `QuantumLayer` -> optional linear head).

    Args:
        cfg: The quantum config.
        in_features: Input width.
        who: Description of the network, for error messages.
        n_direct_outputs: Read this many outputs directly, one parity group of qubits each
            (``parity_partition``); None reads Pauli-Z on every qubit.
        head_outputs: Add a classical linear head with this many outputs (quantum -> classical).
        output_bias: Add a trainable bias to the quantum outputs.

    Returns:
        A module with ``in_features`` and ``out_features`` attributes.

    With a user's circuit (``cfg.circuit``) the readout is its observables: ``n_direct_outputs``
    must then equal their number (see `choose_direct`).
    """
    in_features = int(in_features)
    built = user_circuit(cfg, in_features, who)
    if built is not None:
        if n_direct_outputs is not None and n_direct_outputs != built.n_outputs:
            raise ValueError(
                f"{who}: {n_direct_outputs} direct outputs needed, the circuit has "
                f"{built.n_outputs} observables"
            )
        circuit: dict[str, Any] = {"circuit": built}
    else:
        n_qubits = resolve_n_qubits(cfg, in_features, who)
        n_inputs = n_qubits if cfg.encoder is not None else in_features
        if n_direct_outputs is not None:
            readout: dict[str, Any] = {
                "readout": "parity",
                "parity_groups": parity_partition(n_qubits, n_direct_outputs),
            }
        else:
            readout = {"readout": "z"}
        circuit = {"spec": cfg.circuit_spec(n_qubits, n_inputs=n_inputs, **readout)}
    net: nn.Module = QuantumLayer(**circuit, options=cfg.layer_options(output_bias=output_bias))
    if cfg.encoder is not None:
        hidden: Sequence[int]
        if cfg.encoder == "linear":
            hidden = ()
        elif cfg.encoder == "mlp":
            hidden = (64,)
        else:
            hidden = tuple(int(h) for h in cfg.encoder)
        net = ClassicalToQuantum(net, in_features, hidden=hidden)  # type: ignore[arg-type]
    if head_outputs is not None:
        net = QuantumToClassical(net, head_outputs)
    return net


def build_readout_net(
    cfg: QuantumNetConfig,
    in_features: int,
    n_outputs: int,
    output_head: str,
    *,
    who: str,
    bias_if_direct: bool = False,
) -> nn.Module:
    """A quantum network with ``n_outputs`` outputs, read as `direct_outputs` decides.

    Direct: one parity group of qubits per output (a user's circuit: one observable per
    output), times a trainable output scaling (plus a trainable bias when ``bias_if_direct``).
    Otherwise Pauli-Z on every qubit (a user's circuit: its observables) followed by a
    classical linear head of ``n_outputs``.

    Args:
        cfg: The quantum config.
        in_features: Input width.
        n_outputs: Outputs the network must produce (actions, Q-values).
        output_head: ``"auto"``, ``"direct"`` or ``"linear"``.
        who: Description of the network, for error messages.
        bias_if_direct: Add a trainable output bias to a direct readout.

    Returns:
        The network (`build_quantum_net`).

    Raises:
        ValueError: If the inputs are wider than the qubits without an encoder, or
            ``output_head="direct"`` with more outputs than qubits.
    """
    direct = choose_direct(cfg, output_head, n_outputs, in_features, who)
    return build_quantum_net(
        cfg,
        in_features,
        who=who,
        n_direct_outputs=n_outputs if direct else None,
        head_outputs=None if direct else n_outputs,
        output_bias=bias_if_direct and direct,
    )


def first_circuit(module: nn.Module) -> Any:
    """The Qiskit circuit of the first `QuantumLayer` inside ``module``.

    Args:
        module: A module containing a quantum layer.

    Returns:
        The ``QuantumCircuit``.

    Raises:
        ValueError: If there is no quantum layer.
    """
    for m in module.modules():
        if isinstance(m, QuantumLayer):
            return m.circuit
    raise ValueError(f"{type(module).__name__} holds no QuantumLayer")


def count_parameters(modules: Iterable[nn.Module]) -> dict[str, int]:
    """Quantum / classical trainable parameter counts over modules, each parameter once.

    Args:
        modules: The trained networks (target networks excluded by the caller).

    Returns:
        ``{"quantum": n, "classical": m}``.
    """
    holder = nn.ModuleList()
    for m in modules:
        holder.append(m)
    return parameter_counts(holder)


# --------------------------------------------------------------------------------------------
# Separate learning rates per parameter group, surviving SB3's learning-rate schedule.
# --------------------------------------------------------------------------------------------

LR_MULTIPLIER_KEY = "lr_multiplier"


class _ScaledLRGroup(dict):
    """An optimiser param group whose ``"lr"`` is set relative to a base rate.

    SB3's ``update_learning_rate`` does ``group["lr"] = schedule(progress)`` for every group.
    Here that assignment stores ``schedule(progress) * group["lr_multiplier"]``, so per-group
    ratios persist through any schedule. Reading ``group["lr"]`` returns the effective rate.
    """

    def __setitem__(self, key: Any, value: Any) -> None:
        if key == "lr" and LR_MULTIPLIER_KEY in self:
            value = float(value) * float(self[LR_MULTIPLIER_KEY])
        super().__setitem__(key, value)


def _wrap_param_groups(optimizer: torch.optim.Optimizer) -> None:
    optimizer.param_groups[:] = [
        g if isinstance(g, _ScaledLRGroup) else _ScaledLRGroup(g) for g in optimizer.param_groups
    ]


def make_grouped_optimizer(
    module: nn.Module,
    optimizer_class: type[torch.optim.Optimizer],
    base_lr: float,
    optimizer_kwargs: Mapping[str, Any] | None,
    group_lrs: Mapping[str, float | None],
    parameters: Iterable[nn.Parameter] | None = None,
) -> torch.optim.Optimizer:
    """An optimiser with one param group per `PARAMETER_GROUPS` entry and fixed lr ratios.

    Each group's initial learning rate is ``group_lrs[name]`` (or ``base_lr`` when None) and its
    ``"lr_multiplier"`` is that rate divided by ``base_lr``. Every later assignment
    ``group["lr"] = x`` (what SB3's schedule does) stores ``x * lr_multiplier``. The multipliers
    are saved in the optimiser state dict and re-applied after ``load_state_dict``. A zero
    ``base_lr`` (SB3's dummy schedule for a policy loaded on its own) gives every group lr 0
    and multiplier 1.

    Args:
        module: The module whose parameters are grouped (`quantum_parameter_groups`).
        optimizer_class: A torch optimiser class.
        base_lr: The algorithm's initial learning rate, ``lr_schedule(1)``.
        optimizer_kwargs: Extra optimiser arguments (``eps``, ...).
        group_lrs: Group name -> initial learning rate or None.
        parameters: Restrict to these parameters (default: all of ``module``'s).

    Returns:
        The optimiser.

    Raises:
        ValueError: If a group name is unknown, ``base_lr`` is negative or a group's learning
            rate is not positive.
    """
    unknown = sorted(set(group_lrs) - set(PARAMETER_GROUPS))
    if unknown:
        raise ValueError(f"unknown parameter group(s) {unknown}; groups are {PARAMETER_GROUPS}")
    if not (math.isfinite(base_lr) and base_lr >= 0):
        raise ValueError(f"the base learning rate must be >= 0, got {base_lr}")
    keep = None if parameters is None else {id(p) for p in parameters}
    param_groups = []
    for name, params in quantum_parameter_groups(module).items():
        if keep is not None:
            params = [p for p in params if id(p) in keep]
        if not params:
            continue
        given = group_lrs.get(name)
        if given is not None and not (math.isfinite(given) and given > 0):
            raise ValueError(f"lr_{name} must be a positive number, got {given}")
        lr = base_lr if given is None else float(given)
        if base_lr == 0:
            # SB3's dummy schedule (a policy loaded on its own, for inference): no training.
            lr, multiplier = 0.0, 1.0
        else:
            multiplier = lr / base_lr
        param_groups.append(
            {"params": params, "lr": lr, "name": name, LR_MULTIPLIER_KEY: multiplier}
        )
    optimizer = optimizer_class(param_groups, lr=base_lr, **dict(optimizer_kwargs or {}))
    _wrap_param_groups(optimizer)
    optimizer.register_load_state_dict_post_hook(_wrap_param_groups)
    return optimizer


def learning_rates(
    lr_input_scaling: float | None,
    lr_weights: float | None,
    lr_output_scaling: float | None,
    lr_classical: float | None,
) -> dict[str, float | None]:
    """Collect the per-group learning rates of a policy's keywords.

    Args:
        lr_input_scaling: Initial lr of the input scaling ``lambda`` (None: the algorithm's).
        lr_weights: Initial lr of the circuit weights.
        lr_output_scaling: Initial lr of output scaling and bias.
        lr_classical: Initial lr of all classical parameters.

    Returns:
        Group name -> learning rate or None.

    Raises:
        ValueError: If a rate is given but not a positive number.
    """
    lrs = {
        "input_scaling": lr_input_scaling,
        "weights": lr_weights,
        "output_scaling": lr_output_scaling,
        "classical": lr_classical,
    }
    for name, lr in lrs.items():
        if lr is not None and not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr_{name} must be a positive number or None, got {lr!r}")
    return lrs


# --------------------------------------------------------------------------------------------
# What every quantum policy adds to its SB3 base class.
# --------------------------------------------------------------------------------------------


class QuantumPolicyMixin:
    """Grouped optimisers, saved learning rates, ``circuit`` and ``parameter_counts``.

    Listed before the SB3 policy class (``class P(QuantumPolicyMixin, DQNPolicy)``). The
    policy sets ``quantum_config`` and ``group_lrs`` (`learning_rates`) before SB3's
    constructor runs, and names its networks in two hooks: `_circuit_module` (the network whose
    circuit ``circuit`` returns) and `_counted_modules` (the trained networks).
    """

    quantum_config: QuantumNetConfig
    group_lrs: dict[str, float | None]
    optimizer_class: type[torch.optim.Optimizer]
    optimizer_kwargs: dict[str, Any]

    def _circuit_module(self) -> nn.Module:
        """The network whose circuit `circuit` returns (the actor, or DQN's Q-network)."""
        raise NotImplementedError

    def _counted_modules(self) -> list[nn.Module]:
        """The networks `parameter_counts` counts (target networks are copies, left out)."""
        raise NotImplementedError

    def _grouped_optimizer(
        self,
        module: nn.Module,
        base_lr: float,
        parameters: Iterable[nn.Parameter] | None = None,
    ) -> torch.optim.Optimizer:
        """`make_grouped_optimizer` with the policy's optimiser class, options and group lrs.

        Args:
            module: The module whose parameters are grouped.
            base_lr: The algorithm's initial learning rate, ``lr_schedule(1)``.
            parameters: Restrict to these parameters (default: all of ``module``'s).

        Returns:
            The optimiser.
        """
        return make_grouped_optimizer(
            module,
            self.optimizer_class,
            base_lr,
            self.optimizer_kwargs,
            self.group_lrs,
            parameters=parameters,
        )

    def _lr_constructor_parameters(self) -> dict[str, float | None]:
        """The ``lr_*`` keywords for ``_get_constructor_parameters``, in signature order.

        Returns:
            ``{"lr_input_scaling": ..., "lr_weights": ..., "lr_output_scaling": ...,
            "lr_classical": ...}``.
        """
        return {f"lr_{name}": lr for name, lr in self.group_lrs.items()}

    @property
    def circuit(self) -> Any:
        """The Qiskit ``QuantumCircuit`` of the actor (DQN: of the Q-network), as used.

        For a user's ``circuit=`` this is that circuit (a callable's, built for the actor's
        input width).
        """
        return first_circuit(self._circuit_module())

    def parameter_counts(self) -> dict[str, int]:
        """Trainable parameter counts of the trained networks (target networks are copies).

        Returns:
            ``{"quantum": circuit weights, "classical": everything else}``.
        """
        return count_parameters(self._counted_modules())
