"""Torch layers around the quantum engine: `QuantumLayer` and the hybrid compositions.

The engine (`qdrl_agents.circuits`, `qdrl_agents.executors`) knows nothing of torch modules:
a `CircuitSpec` builds a Qiskit circuit (or the user brings one: ``circuit=``, ``input_params=``,
``weight_params=``, ``observables=``, as qiskit-machine-learning's ``EstimatorQNN`` takes
them), an executor turns (input angles, circuit weights) into expectation values. This module
is the thin torch adapter around it (docs/design.md §5). Everything that is classical stays
here, in torch, and a spec's circuit stays linear in its parameters:

* observation squashing (``arctan`` or ``tanh``) maps unbounded features to bounded angles;
* trainable input scaling ``lambda`` per (layer, input): ``angle = lambda * squash(x)``
  (Jerbi et al. 2021, Skolik et al. 2022); for a user's circuit one ``lambda`` per input
  parameter;
* trainable circuit weights (the rotation angles of the variational blocks);
* trainable output scaling and bias per output, since expectations lie in ``[-1, 1]`` and
  returns or Q-values do not.

These options, with the executor, are one frozen `LayerOptions` (``QuantumLayer(spec,
squash="tanh")`` or ``QuantumLayer(spec, options=LayerOptions(squash="tanh"))``), validated on
construction; the quantum policies take the same fields through ``policy_kwargs``.

The parameters carry fixed names (``input_scaling``, ``weights``, ``output_scaling``,
``output_bias``) and `QuantumLayer.parameter_groups` sorts them into the groups
``"input_scaling"``, ``"weights"`` and ``"output_scaling"`` so that an optimiser can give each
its own learning rate (see `qdrl_agents.policies.make_grouped_optimizer`).

Hybrid compositions of paper Sec. IV-A2:

* `ClassicalToQuantum`: a classical encoder (linear or MLP) maps wide inputs onto the qubits;
* `QuantumToClassical`: a small classical head after the quantum layer;
* `ParallelHybrid`: a quantum and a classical branch on the same input, outputs concatenated.

`swap_executor` evaluates every `QuantumLayer` inside a module (a layer, a hybrid, an SB3
policy) with another executor for the length of a ``with`` block, e.g. a trained policy on
qiskit-aer with shots and a noise model::

    with swap_executor(model.policy, "qiskit", estimator="aer", shots=1024, noise_model=nm):
        action, _ = model.predict(obs, deterministic=True)
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from qiskit.circuit import QuantumCircuit
from torch import nn

from qdrl_agents.circuits import (
    BuiltCircuit,
    CircuitSpec,
    ObservablesLike,
    ParametersLike,
    UserCircuit,
    as_built_circuit,
)
from qdrl_agents.executors import EXECUTORS, Executor, make_executor

__all__ = [
    "PARAMETER_GROUPS",
    "SQUASHES",
    "WEIGHT_INITS",
    "ClassicalToQuantum",
    "LayerOptions",
    "ParallelHybrid",
    "QuantumLayer",
    "QuantumToClassical",
    "make_encoder",
    "parameter_counts",
    "quantum_parameter_groups",
    "swap_executor",
]

#: Names of the parameter groups an optimiser can address separately. ``"classical"`` holds
#: every trainable parameter that is not part of a `QuantumLayer` (encoders, heads, value nets).
PARAMETER_GROUPS: tuple[str, ...] = ("input_scaling", "weights", "output_scaling", "classical")

Squash = Literal["arctan", "tanh", "none"]
WeightInit = Literal["uniform", "normal", "zeros"]

_SQUASH_FNS = {
    "arctan": torch.atan,
    "tanh": torch.tanh,
    "none": lambda x: x,
}
#: The values of `LayerOptions.squash`.
SQUASHES: tuple[str, ...] = tuple(_SQUASH_FNS)
#: The values of `LayerOptions.weight_init`.
WEIGHT_INITS: tuple[str, ...] = ("uniform", "normal", "zeros")


@dataclass(frozen=True)
class LayerOptions:
    """How a `QuantumLayer` evaluates its circuit and what it trains around it.

    Validated on construction. These are the keyword options of `QuantumLayer`
    (``QuantumLayer(spec, squash="tanh")`` builds ``LayerOptions(squash="tanh")``) and, all but
    ``output_bias`` (which each policy network sets itself), of the quantum policies'
    ``policy_kwargs`` (`qdrl_agents.policies.QuantumNetConfig`), whose defaults are these.

    Attributes:
        executor: ``"statevector"`` (exact and fast: a batched torch statevector, gradients by
            autograd), ``"qiskit"`` (EstimatorQNN over a V2 estimator: shots, noise models,
            hardware), or an `Executor` instance built for this very circuit (so, in a policy,
            only with a single quantum network; an instance is not saved with a model).
        executor_kwargs: Options passed to `qdrl_agents.executors.make_executor` with an
            executor name (e.g. ``shots=``, ``estimator=``); ``None``: none.
        squash: Observation squashing before input scaling: ``"arctan"``, ``"tanh"`` or
            ``"none"`` (for inputs that are already angles).
        input_scaling: Whether the input scaling ``lambda`` is trainable; when False it is a
            fixed buffer equal to ``input_scaling_init``.
        input_scaling_init: Initial value of every ``lambda`` (finite).
        weight_init: Initial circuit weights: ``"uniform"`` in ``[0, 2*pi)``, ``"normal"`` with
            standard deviation ``weight_init_std`` (near the identity circuit, a remedy for
            barren plateaus), or ``"zeros"``.
        weight_init_std: Standard deviation of ``weight_init="normal"``, radians (positive).
        output_scaling: Whether a trainable per-output multiplier is applied (expectations lie
            in ``[-1, 1]``, returns and Q-values do not).
        output_scaling_init: Initial value of the output multipliers (finite).
        output_bias: Whether a trainable per-output bias is added.

    Raises:
        ValueError: On any invalid field; the message names the field, its value and the
            allowed values.
    """

    executor: str | Executor = "statevector"
    executor_kwargs: Mapping[str, Any] | None = None
    squash: Squash = "arctan"
    input_scaling: bool = True
    input_scaling_init: float = 1.0
    weight_init: WeightInit = "uniform"
    weight_init_std: float = 0.1
    output_scaling: bool = True
    output_scaling_init: float = 1.0
    output_bias: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.executor, str):
            if self.executor not in EXECUTORS:
                raise ValueError(
                    f"LayerOptions.executor={self.executor!r} is not one of {sorted(EXECUTORS)} "
                    "(or an Executor instance)"
                )
        elif not isinstance(self.executor, Executor):
            raise ValueError(
                f"LayerOptions.executor={self.executor!r} must be one of {sorted(EXECUTORS)} "
                "or an Executor instance"
            )
        kwargs = self.executor_kwargs
        if kwargs is not None:
            if not isinstance(kwargs, Mapping):
                raise ValueError(
                    f"LayerOptions.executor_kwargs={kwargs!r} must be a mapping of options or None"
                )
            if kwargs and isinstance(self.executor, Executor):
                raise ValueError(
                    f"LayerOptions.executor_kwargs={dict(kwargs)!r} given with an Executor "
                    "instance; configure the instance instead"
                )
        _check_choice("squash", self.squash, SQUASHES)
        _check_choice("weight_init", self.weight_init, WEIGHT_INITS)
        for name in ("input_scaling", "output_scaling", "output_bias"):
            value = getattr(self, name)
            if not isinstance(value, bool | np.bool_):
                raise ValueError(f"LayerOptions.{name}={value!r} must be a bool")
            object.__setattr__(self, name, bool(value))
        for name in ("input_scaling_init", "output_scaling_init", "weight_init_std"):
            value = getattr(self, name)
            positive = name == "weight_init_std"
            if (
                not isinstance(value, numbers.Real)
                or isinstance(value, bool | np.bool_)
                or not math.isfinite(value)
                or (positive and value <= 0)
            ):
                allowed = "a positive finite number" if positive else "a finite number"
                raise ValueError(f"LayerOptions.{name}={value!r} must be {allowed}")
            object.__setattr__(self, name, float(value))


def _check_choice(field: str, value: object, allowed: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"LayerOptions.{field}={value!r} is not one of {list(allowed)}")


def _layer_options(options: LayerOptions | None, overrides: Mapping[str, Any]) -> LayerOptions:
    """``options`` (default ``LayerOptions()``) with keyword ``overrides``, names checked."""
    if options is not None and not isinstance(options, LayerOptions):
        raise TypeError(f"options must be a LayerOptions, got {type(options).__name__}")
    names = [f.name for f in dataclasses.fields(LayerOptions)]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise TypeError(
            f"QuantumLayer got unexpected keyword argument(s) {unknown}; its options are the "
            f"fields of LayerOptions: {names}"
        )
    base = LayerOptions() if options is None else options
    return dataclasses.replace(base, **overrides) if overrides else base


class QuantumLayer(nn.Module):
    """A parametrised quantum circuit as a torch layer.

    ``forward(x)`` computes, for a batch ``x`` of shape ``(B, n_inputs)``::

        angles[b, l, i] = input_scaling[l, i] * squash(x[b, i])        # l: re-uploading layer
        y[b, k] = output_scaling[k] * <O_k>(angles[b], weights) + output_bias[k]

    where ``<O_k>`` are the circuit's readout expectations, computed by the executor. The
    executor is called once per batch; with the default ``"statevector"`` executor all
    observables come from one simulated state and gradients are exact (autograd).

    The circuit is either described by a `CircuitSpec` (``QuantumLayer(spec)``), or brought by
    the user in qiskit-machine-learning's ``EstimatorQNN`` vocabulary::

        QuantumLayer(circuit=qc, input_params=fmap.parameters,
                     weight_params=ansatz.parameters, observables=["ZZI", "IZZ"])

    For a user's circuit, input ``i`` feeds ``input_params[i]`` (so ``n_inputs`` is
    ``len(input_params)``, and there is one re-uploading "layer": ``input_scaling`` has shape
    ``(1, n_inputs)``, one trainable ``lambda`` per input parameter), the weights are
    ``weight_params`` in order and output ``k`` is ``observables[k]``. Squashing, input and
    output scaling apply as for a spec; ``squash="none", input_scaling=False,
    output_scaling=False`` gives exactly ``EstimatorQNN``'s forward.

    Args:
        spec: The circuit description (qubits, layers, rotation, entanglement, readout, ...).
            Give either ``spec`` or ``circuit``.
        circuit: A user's Qiskit ``QuantumCircuit`` (with ``input_params``, ``weight_params``
            and ``observables``), a `BuiltCircuit` (`circuit_from_qiskit`) or a fixed
            `UserCircuit`. Which circuits an executor runs is its business (the
            ``"statevector"`` executor refuses what it cannot compile, at construction).
        input_params: The circuit's parameters fed by the inputs, in input order (only with a
            ``QuantumCircuit``); at least one.
        weight_params: Its trainable parameters, in order; ``None``: every other parameter.
        observables: ``SparsePauliOp`` s, ``Pauli`` s or Pauli strings (Qiskit order), one per
            output; ``None``: ``EstimatorQNN``'s default, one output, Z on every qubit.
        options: The layer's options, a `LayerOptions` (executor, squashing, input and output
            scaling, weight initialisation, output bias); default ``LayerOptions()``.
        **option_kwargs: Fields of `LayerOptions` given one by one (``squash="tanh"``,
            ``executor="qiskit"``, ``output_bias=True``, ...); with ``options`` they override
            its fields. Each is documented, defaulted and validated there, once.

    Raises:
        TypeError: If ``spec`` is not a `CircuitSpec`, ``circuit`` is of another type,
            ``options`` is not a `LayerOptions` or a keyword is not one of its fields.
        ValueError: If an option is outside its allowed values (`LayerOptions`), both or
            neither of ``spec`` and ``circuit`` are given, or the parameters or observables do
            not fit the circuit.
    """

    def __init__(
        self,
        spec: CircuitSpec | None = None,
        *,
        circuit: QuantumCircuit | BuiltCircuit | UserCircuit | None = None,
        input_params: ParametersLike | None = None,
        weight_params: ParametersLike | None = None,
        observables: ObservablesLike | None = None,
        options: LayerOptions | None = None,
        **option_kwargs: Any,
    ) -> None:
        super().__init__()
        if spec is not None and not isinstance(spec, CircuitSpec):
            hint = "; pass a QuantumCircuit as circuit=" if isinstance(spec, QuantumCircuit) else ""
            raise TypeError(f"spec must be a CircuitSpec, got {type(spec).__name__}{hint}")
        opts = _layer_options(options, option_kwargs)
        built = as_built_circuit(spec, circuit, input_params, weight_params, observables)

        if built.n_input_params == 0:
            raise ValueError(
                "the circuit has no input parameters, so the layer's inputs would reach nothing; "
                "name them with input_params="
            )
        #: The `CircuitSpec`, or ``None`` for a user's circuit.
        self.spec: CircuitSpec | None = built.spec
        self.built: BuiltCircuit = built
        #: The layer's `LayerOptions`, as given (``executor`` may be a name; the executor in
        #: use is `executor`).
        self.options: LayerOptions = opts
        self.executor: Executor = make_executor(
            opts.executor, self.built, **dict(opts.executor_kwargs or {})
        )

        if built.spec is not None:
            self.n_inputs = int(built.spec.inputs_encoded)
        else:
            self.n_inputs = int(built.n_input_params)
        self.n_outputs = int(self.built.n_outputs)
        n_input_params = int(self.built.n_input_params)
        if n_input_params % self.n_inputs != 0:
            raise ValueError(
                f"circuit has {n_input_params} input parameters, not a multiple of "
                f"n_inputs={self.n_inputs}"
            )
        self.n_encodings = n_input_params // self.n_inputs

        lam = torch.full((self.n_encodings, self.n_inputs), opts.input_scaling_init)
        if opts.input_scaling:
            self.input_scaling = nn.Parameter(lam)
        else:
            self.register_buffer("input_scaling", lam)
        self.weights = nn.Parameter(torch.empty(int(self.built.n_weights)))
        if opts.output_scaling:
            self.output_scaling = nn.Parameter(
                torch.full((self.n_outputs,), opts.output_scaling_init)
            )
        else:
            self.register_parameter("output_scaling", None)
        if opts.output_bias:
            self.output_bias = nn.Parameter(torch.zeros(self.n_outputs))
        else:
            self.register_parameter("output_bias", None)
        self.reset_weights()

    @property
    def squash(self) -> str:
        """The input squashing, `LayerOptions.squash`."""
        return self.options.squash

    @property
    def weight_init(self) -> str:
        """The weight initialisation `reset_weights` uses, `LayerOptions.weight_init`."""
        return self.options.weight_init

    @property
    def weight_init_std(self) -> float:
        """The standard deviation of ``weight_init="normal"``, `LayerOptions.weight_init_std`."""
        return self.options.weight_init_std

    @property
    def circuit(self) -> Any:
        """The Qiskit ``QuantumCircuit`` this layer evaluates (drawable with ``.draw()``)."""
        return self.built.circuit

    @property
    def in_features(self) -> int:
        """Width of the inputs this layer takes (the circuit's ``n_inputs``)."""
        return self.n_inputs

    @property
    def out_features(self) -> int:
        """Width of the outputs (one per readout observable)."""
        return self.n_outputs

    def reset_weights(self, generator: torch.Generator | None = None) -> None:
        """Re-draw the circuit weights with the configured initialisation.

        Args:
            generator: Optional torch generator, for reproducible draws.
        """
        with torch.no_grad():
            if self.weight_init == "uniform":
                self.weights.uniform_(0.0, 2.0 * math.pi, generator=generator)
            elif self.weight_init == "normal":
                self.weights.normal_(0.0, self.weight_init_std, generator=generator)
            else:
                self.weights.zero_()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Map inputs to the circuit's input angles.

        Args:
            x: Inputs of shape ``(B, n_inputs)``.

        Returns:
            Angles of shape ``(B, n_input_params)``, ordered layer-major as the circuit's
            input `ParameterVector`.
        """
        squashed = _SQUASH_FNS[self.squash](x)
        return (squashed.unsqueeze(1) * _as_dtype(self.input_scaling, x.dtype)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluate the circuit on a batch.

        Args:
            x: Inputs of shape ``(B, n_inputs)`` or ``(n_inputs,)``.

        Returns:
            Outputs of shape ``(B, n_outputs)`` (or ``(n_outputs,)`` for an unbatched input).

        Raises:
            TypeError: If ``x`` is not a torch tensor (a NumPy array, a list).
            ValueError: If the last dimension of ``x`` is not ``n_inputs``, ``x`` has more than
                two dimensions, or an input is NaN or inf (a squash would hide an inf).
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f"QuantumLayer expects a torch.Tensor, got {type(x).__module__}."
                f"{type(x).__qualname__}; convert it with torch.as_tensor(x, dtype=torch.float32)"
            )
        if x.ndim not in (1, 2) or x.shape[-1] != self.n_inputs:
            raise ValueError(
                f"QuantumLayer expected inputs of shape (batch, {self.n_inputs}) or "
                f"({self.n_inputs},), got {tuple(x.shape)}"
            )
        unbatched = x.ndim == 1
        if unbatched:
            x = x.unsqueeze(0)
        finite = torch.isfinite(x)
        if not bool(finite.all()):
            rows = torch.nonzero(~finite.all(dim=1)).flatten()[:3].tolist()
            raise ValueError(f"QuantumLayer got NaN or inf inputs (rows {rows} of {x.shape[0]}): "
                             "the observation, or the layer before this one, is not finite")
        out = self.executor(self.encode(x), _as_dtype(self.weights, x.dtype))
        scale, bias = self.output_scaling, self.output_bias
        if scale is not None and bias is not None:
            out = torch.addcmul(_as_dtype(bias, out.dtype), out, _as_dtype(scale, out.dtype))
        elif scale is not None:
            out = out * _as_dtype(scale, out.dtype)
        elif bias is not None:
            out = out + _as_dtype(bias, out.dtype)
        return out.squeeze(0) if unbatched else out

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters of this layer by group.

        Returns:
            ``{"input_scaling": [...], "weights": [...], "output_scaling": [...]}``; the output
            group holds the output scaling and the output bias. Empty lists for disabled parts.
        """
        groups: dict[str, list[nn.Parameter]] = {
            "input_scaling": [],
            "weights": [self.weights],
            "output_scaling": [],
        }
        if isinstance(self.input_scaling, nn.Parameter):
            groups["input_scaling"].append(self.input_scaling)
        for p in (self.output_scaling, self.output_bias):
            if p is not None:
                groups["output_scaling"].append(p)
        return groups

    def parameter_counts(self) -> dict[str, int]:
        """Count trainable parameters.

        Returns:
            ``{"quantum": n, "classical": m}``: ``quantum`` counts the circuit weights (gate
            angles); ``classical`` counts the torch-side input scaling, output scaling and bias.
        """
        return parameter_counts(self)

    def extra_repr(self) -> str:
        """One-line summary for ``print(module)``."""
        s = self.spec
        shape = (
            f"n_qubits={s.n_qubits}, n_layers={s.n_layers}"
            if s is not None
            else f"user circuit, n_qubits={self.built.n_qubits}"
        )
        return (
            f"{shape}, n_inputs={self.n_inputs}, n_outputs={self.n_outputs}, "
            f"n_weights={self.weights.numel()}, squash={self.squash}"
        )


@contextlib.contextmanager
def swap_executor(
    module: nn.Module,
    executor: str | Callable[[QuantumLayer], Executor] = "qiskit",
    **options: Any,
) -> Iterator[list[QuantumLayer]]:
    """Evaluate every `QuantumLayer` inside ``module`` with another executor, then restore.

    Inside the ``with`` block each layer's ``executor`` is replaced; on leaving it (an
    exception included) every layer gets its own executor back. Weights, scalings and the
    circuit are the layer's own, so the block evaluates the very trained circuit on, e.g.,
    qiskit-aer with shots and a noise model.

    Args:
        module: Any torch module (a layer, a hybrid composition, an SB3 policy).
        executor: An executor name, built per layer as
            ``make_executor(executor, layer.built, **options)``; or a callable
            ``layer -> Executor`` (for executors that need more than the layer's circuit, such
            as a circuit transpiled for a device), called once per layer.
        **options: Options of `make_executor` (only with a name), e.g. ``shots=1024``,
            ``noise_model=...``, ``estimator="aer"``, ``seed=0``.

    Yields:
        The layers whose executor was swapped, in module order (empty: none inside).

    Raises:
        ValueError: If options are given with a callable, or `make_executor` refuses them
            (nothing is swapped then).
    """
    if callable(executor) and not isinstance(executor, str) and options:
        raise ValueError("give executor options with an executor name, not with a factory")
    layers = [m for m in module.modules() if isinstance(m, QuantumLayer)]
    saved = [layer.executor for layer in layers]
    if isinstance(executor, str):
        name = executor
        made = [make_executor(name, layer.built, **options) for layer in layers]
    else:
        made = [executor(layer) for layer in layers]
    try:
        for layer, new in zip(layers, made, strict=True):
            layer.executor = new
        yield layers
    finally:
        for layer, old in zip(layers, saved, strict=True):
            layer.executor = old


def quantum_parameter_groups(module: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Sort all trainable parameters of ``module`` into the `PARAMETER_GROUPS`.

    Parameters of every `QuantumLayer` inside ``module`` go to ``"input_scaling"``,
    ``"weights"`` or ``"output_scaling"``; all other trainable parameters (encoders, heads, SB3's
    ``action_net`` and ``value_net``, ``log_std``) go to ``"classical"``. Each parameter appears
    once, in the order of ``module.parameters()``, so that the grouping is deterministic (an
    optimiser state dict saved from one instance loads into another).

    Args:
        module: Any torch module.

    Returns:
        A dict with the four keys of `PARAMETER_GROUPS`, each a list of parameters.
    """
    owner: dict[int, str] = {}
    for sub in module.modules():
        if isinstance(sub, QuantumLayer):
            for group, params in sub.parameter_groups().items():
                for p in params:
                    owner[id(p)] = group
    groups: dict[str, list[nn.Parameter]] = {g: [] for g in PARAMETER_GROUPS}
    for p in module.parameters():
        if p.requires_grad:
            groups[owner.get(id(p), "classical")].append(p)
    return groups


def parameter_counts(module: nn.Module) -> dict[str, int]:
    """Count the quantum and classical trainable parameters of a module.

    Args:
        module: Any torch module (a `QuantumLayer`, a hybrid, an SB3 policy).

    Returns:
        ``{"quantum": n, "classical": m}``: ``quantum`` is the number of circuit weights over
        all `QuantumLayer` s inside (each distinct parameter once); ``classical`` is every other
        trainable parameter (input and output scaling included, as they live in torch).
    """
    groups = quantum_parameter_groups(module)
    quantum = sum(p.numel() for p in groups["weights"])
    total = sum(p.numel() for ps in groups.values() for p in ps)
    return {"quantum": int(quantum), "classical": int(total - quantum)}


def make_encoder(
    in_features: int,
    out_features: int,
    hidden: Sequence[int] = (),
    activation: type[nn.Module] = nn.Tanh,
) -> nn.Sequential:
    """A classical encoder: ``Linear`` (no ``hidden``) or an MLP.

    Args:
        in_features: Input width.
        out_features: Output width (usually the number of qubits).
        hidden: Hidden layer widths; empty for a single linear map.
        activation: Activation between layers (not after the last one: the quantum layer's
            squashing bounds the result).

    Returns:
        The encoder module.

    Raises:
        ValueError: If a width is not positive.
    """
    widths = [int(in_features), *(int(h) for h in hidden), int(out_features)]
    if any(w <= 0 for w in widths):
        raise ValueError(f"encoder widths must be positive, got {widths}")
    layers: list[nn.Module] = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class _Composite(nn.Module):
    """Shared helpers of the hybrid compositions."""

    def quantum_layers(self) -> Iterator[QuantumLayer]:
        """Yield the `QuantumLayer` s inside.

        Yields:
            Each quantum layer in module order.
        """
        for m in self.modules():
            if isinstance(m, QuantumLayer):
                yield m

    @property
    def circuit(self) -> Any:
        """The Qiskit circuit of the (first) quantum layer."""
        return next(self.quantum_layers()).circuit

    def parameter_counts(self) -> dict[str, int]:
        """Count trainable parameters, see `parameter_counts`.

        Returns:
            ``{"quantum": n, "classical": m}``.
        """
        return parameter_counts(self)


class ClassicalToQuantum(_Composite):
    """Classical -> quantum hybrid: an encoder maps inputs onto the quantum layer's inputs.

    Use it when observations are wider than the qubit count (paper Sec. IV-A2).

    Args:
        quantum: The quantum layer.
        in_features: Input width of the whole module.
        hidden: Hidden widths of the encoder MLP; empty (default) for a linear encoder.
        encoder: A ready-made encoder module instead (then ``hidden`` is ignored); it must
            map ``(B, in_features)`` to ``(B, quantum.in_features)``.
        activation: Activation of the encoder MLP.

    Raises:
        ValueError: If a width is not positive.
    """

    def __init__(
        self,
        quantum: QuantumLayer,
        in_features: int,
        *,
        hidden: Sequence[int] = (),
        encoder: nn.Module | None = None,
        activation: type[nn.Module] = nn.Tanh,
    ) -> None:
        super().__init__()
        self.in_features = int(in_features)
        self.encoder = (
            encoder
            if encoder is not None
            else make_encoder(in_features, quantum.in_features, hidden, activation)
        )
        self.quantum = quantum
        self.out_features = quantum.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode, then evaluate the circuit.

        Args:
            x: Inputs of shape ``(B, in_features)``.

        Returns:
            Outputs of shape ``(B, quantum.out_features)``.

        Raises:
            TypeError: If ``x`` is not a torch tensor.
            ValueError: If the last dimension of ``x`` is not ``in_features``.
        """
        _check_width(x, self.in_features, type(self).__name__)
        return self.quantum(self.encoder(x))


class QuantumToClassical(_Composite):
    """Quantum -> classical hybrid: a small classical head after the quantum layer.

    Args:
        quantum: The quantum layer (or any quantum-containing module with ``out_features``).
        out_features: Output width of the head.
        hidden: Hidden widths of the head MLP; empty (default) for a linear head.
        activation: Activation of the head MLP.

    Raises:
        ValueError: If a width is not positive.
    """

    def __init__(
        self,
        quantum: nn.Module,
        out_features: int,
        *,
        hidden: Sequence[int] = (),
        activation: type[nn.Module] = nn.Tanh,
    ) -> None:
        super().__init__()
        self.quantum = quantum
        self.in_features = int(quantum.in_features)
        self.out_features = int(out_features)
        self.head = make_encoder(int(quantum.out_features), out_features, hidden, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluate the circuit, then the head.

        Args:
            x: Inputs of shape ``(B, in_features)``.

        Returns:
            Outputs of shape ``(B, out_features)``.
        """
        return self.head(self.quantum(x))


class ParallelHybrid(_Composite):
    """Parallel hybrid: quantum and classical branches on the same input, outputs concatenated.

    Args:
        quantum: The quantum branch (a `QuantumLayer` or a hybrid with ``in_features`` and
            ``out_features``).
        classical: The classical branch, an ``nn.Module`` mapping ``(B, in_features)`` to
            ``(B, classical_out_features)``.
        classical_out_features: Output width of the classical branch.

    Raises:
        ValueError: If ``classical_out_features`` is not positive.
    """

    def __init__(
        self, quantum: nn.Module, classical: nn.Module, classical_out_features: int
    ) -> None:
        super().__init__()
        if classical_out_features <= 0:
            raise ValueError(
                f"classical_out_features must be positive, got {classical_out_features}"
            )
        self.quantum = quantum
        self.classical = classical
        self.in_features = int(quantum.in_features)
        self.out_features = int(quantum.out_features) + int(classical_out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluate both branches and concatenate (quantum first).

        Args:
            x: Inputs of shape ``(B, in_features)``.

        Returns:
            Outputs of shape ``(B, out_features)``.

        Raises:
            TypeError: If ``x`` is not a torch tensor.
            ValueError: If the last dimension of ``x`` is not ``in_features``.
        """
        _check_width(x, self.in_features, type(self).__name__)
        return torch.cat([self.quantum(x), self.classical(x)], dim=-1)


def _as_dtype(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    # Skips the dispatch of a no-op ``.to`` on the per-step hot path.
    return t if t.dtype == dtype else t.to(dtype)


def _check_width(x: torch.Tensor, expected: int, who: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{who} expects a torch.Tensor, got {type(x).__module__}.{type(x).__qualname__}; "
            "convert it with torch.as_tensor(x, dtype=torch.float32)"
        )
    if x.ndim != 2 or x.shape[-1] != expected:
        raise ValueError(
            f"{who} expected inputs of shape (batch, {expected}), got {tuple(x.shape)}"
        )
