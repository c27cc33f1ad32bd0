"""The executor contract: input angles and weights in, expectation values out, differentiable."""

from __future__ import annotations

import abc

import torch

from qdrl_agents.circuits import BuiltCircuit

__all__ = ["Executor"]

_FLOAT_DTYPES = (torch.float32, torch.float64)


class Executor(abc.ABC):
    """Engine that evaluates a :class:`~qdrl_agents.circuits.BuiltCircuit`.

    A batch of encoding angles and one weight vector go in; one expectation value per
    observable and batch row comes out, differentiable in both (autograd flows to ``inputs`` and
    ``weights``). An executor knows nothing of ``nn.Module``: the torch layers own the
    parameters and pass them in on every call.

    The public :meth:`__call__` validates shapes, dtypes and devices; subclasses implement
    :meth:`_forward` on already-validated tensors.

    Guarantees of ``__call__``:

    * ``inputs`` of shape ``(B, n_input_params)`` give ``(B, n_outputs)``; an unbatched
      ``(n_input_params,)`` gives ``(n_outputs,)`` (as ``nn.Linear`` does).
    * The result has the dtype (float32 or float64) and device of ``inputs``; ``weights`` are
      cast to that dtype (autograd flows through the cast).

    Attributes:
        built: The circuit this executor evaluates.
    """

    built: BuiltCircuit

    def __init__(self, built: BuiltCircuit) -> None:
        if not isinstance(built, BuiltCircuit):
            raise TypeError(f"built must be a BuiltCircuit, got {type(built).__name__}")
        self.built = built

    @property
    def name(self) -> str:
        """Short name of the executor kind (``"statevector"``, ``"qiskit"``)."""
        return type(self).__name__

    def __call__(self, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Evaluate the expectation values.

        Args:
            inputs: Encoding angles, ``(B, n_input_params)`` or ``(n_input_params,)``, float32 or
                float64.
            weights: Rotation angles, ``(n_weights,)``, on the device of ``inputs``.

        Returns:
            Expectation values, ``(B, n_outputs)`` (or ``(n_outputs,)`` for unbatched inputs),
            in the dtype and on the device of ``inputs``.

        Raises:
            TypeError: If an argument is not a torch tensor (a NumPy array, say: the message
                says how to convert it) or not of float32 or float64.
            ValueError: If a shape is wrong (the message gives the expected shape) or the
                tensors are on different devices.
        """
        n_in, n_w = self.built.n_input_params, self.built.n_weights
        for arg, tensor in (("inputs", inputs), ("weights", weights)):
            if not isinstance(tensor, torch.Tensor):
                hint = (
                    f"; convert it with torch.as_tensor({arg}, dtype=torch.float32)"
                    if hasattr(tensor, "__array__") or isinstance(tensor, (list, tuple))
                    else ""
                )
                raise TypeError(
                    f"{arg} must be a torch.Tensor (the executor is differentiable in its "
                    f"arguments), got {type(tensor).__name__}{hint}"
                )
            if tensor.dtype not in _FLOAT_DTYPES:
                raise TypeError(f"{arg} must be float32 or float64, got {tensor.dtype}")
        unbatched = inputs.dim() == 1
        if unbatched:
            inputs = inputs.unsqueeze(0)
        if inputs.dim() != 2 or inputs.shape[1] != n_in:
            raise ValueError(
                f"inputs must have shape (B, {n_in}) or ({n_in},) (n_input_params={n_in}), "
                f"got {tuple(inputs.shape) if not unbatched else (inputs.shape[1],)}"
            )
        if weights.shape != (n_w,):
            raise ValueError(
                f"weights must have shape ({n_w},) (n_weights={n_w}), got {tuple(weights.shape)}"
            )
        if weights.device != inputs.device:
            raise ValueError(
                f"inputs are on {inputs.device} but weights on {weights.device}; "
                "move both to one device"
            )
        out = self._forward(inputs, weights.to(inputs.dtype))
        return out[0] if unbatched else out

    @abc.abstractmethod
    def _forward(self, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Compute ``(B, n_outputs)`` from validated ``(B, n_input_params)`` and ``(n_weights,)``.

        Args:
            inputs: Encoding angles, 2-D, float32 or float64.
            weights: Rotation angles, same dtype and device as ``inputs``.

        Returns:
            Expectation values, same dtype and device as ``inputs``.
        """

    def __repr__(self) -> str:
        spec, built = self.built.spec, self.built
        if spec is None:  # a user's circuit (circuit_from_qiskit): no layers to speak of
            shape = (
                f"circuit={built.circuit.name!r}, n_qubits={built.n_qubits}, "
                f"n_input_params={built.n_input_params}, n_weights={built.n_weights}"
            )
        else:
            shape = f"n_qubits={spec.n_qubits}, n_layers={spec.n_layers}"
        return f"{type(self).__name__}({shape}, n_outputs={built.n_outputs}{self._repr_extra()})"

    def _repr_extra(self) -> str:
        return ""
