"""TextGRU: a deep residual (bi)directional GRU encoder with attention pooling, as a transformers model.

Self-contained on purpose: it imports only torch, transformers and the config (relatively), so a saved
model loads with ``trust_remote_code=True`` on a machine that has never installed textgru.

Exact padding at padded speed. A bidirectional ``nn.GRU`` over right-padded input is wrong for the
backward direction (it reads the padding before the real tokens), and packing fixes that at the price of a
much slower training step on the CPU. TextGRU runs each direction as its own unidirectional GRU on
right-padded input; the backward GRU reads every sequence reversed *within its own length*, so real
tokens always come before padding and both directions run the plain padded GRU. Outputs at real
positions therefore never depend on padding or on the other rows of the batch. Under ``torch.no_grad``, when
a quarter or more of the batch is padding, the same weights run on packed sequences, which skips the padded
steps (faster inference, same result); there, on the CPU,
both directions run as one bidirectional GRU call, which on packed sequences starts each row's backward pass at
its own last token, so no reversal is needed (on CUDA each direction runs packed on its own: see
``TextGRUBidirectionalLayer.forward``).
The measurements behind this choice are in ``docs/design.md`` (``benchmarks/bench_rnn_paths.py``).

Training on a CPU runs the same padded computation through ``_StepwiseGRU``, an autograd function that advances
both directions in one batched matmul per step and computes the weight gradients in one matmul per layer, in
place of ``nn.GRU``'s per-step autograd graph (same values; ``TextGRUModel.stepwise_training``); where textgru is
installed and a C compiler is at hand, its per-step loops run in textgru's compiled fp32 recurrence
(``textgru/kernels/gru_train.c``; ``TextGRUModel.native_training``), which this file uses only if it can import it.
Inference on
small batches runs the same recurrence with nothing saved (``TextGRUModel.stepwise_inference_max_batch``): six ops
a step for all directions where ``nn.GRU`` spends ~15 per direction, which is what a small batch's step costs.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPooling, SequenceClassifierOutput
from transformers.utils import logging

from .configuration_textgru import TextGRUConfig

logger = logging.get_logger(__name__)


class TextGRUDropout(nn.Dropout):
    """`nn.Dropout` with a cheaper mask for CPU training: 16 random bits per element, cut from 64-bit draws, kept
    where they clear a threshold, so an element is kept with probability `1 - p` rounded to 1/65536 and scaled by
    `1 / (1 - p)`. CPU `bernoulli_` (what `nn.Dropout` uses) draws a random number per element; this mask costs about
    half as much, and a training step on SST-2 sentences ~4% less (`benchmarks/dropout_cost.py`). Anywhere else
    (evaluation, CUDA, `p = 0`, `inplace=True`) it is `nn.Dropout`. Drawn from torch's default generator, so
    `torch.manual_seed` makes it repeatable (the stream differs from `nn.Dropout`'s)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not 0 < self.p < 1 or self.inplace or x.device.type != "cpu":
            return super().forward(x)
        n = x.numel()
        bits = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64)  # 2^64 - 1 values: uniform
        bits = bits.view(torch.int16)[:n].view(x.shape)  # four uniform 16-bit lanes per draw
        keep = bits >= round(self.p * 65536) - 32768  # P = 1 - p (to 1/65536)
        return x * keep.to(x.dtype).mul_(1 / (1 - self.p))


def reverse_within_length(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Reorder `x` (batch, seq_len, dim) along time by `index` (batch, seq_len); see `_reversal_index`."""
    batch, seq_len, dim = x.shape
    # row copies through a flat index are ~30% cheaper than gather with an expanded index (fwd + bwd)
    flat = (index + torch.arange(batch, device=x.device).unsqueeze(1) * seq_len).reshape(-1)
    return x.reshape(batch * seq_len, dim).index_select(0, flat).view(batch, seq_len, dim)


def _reversal_index(lengths: torch.Tensor, seq_len: int) -> torch.Tensor:
    """Index that reverses positions `[0, length)` of each row and leaves its padding where it is.

    It is its own inverse, so the same index maps the backward GRU's outputs back to reading order.
    """
    positions = torch.arange(seq_len, device=lengths.device).unsqueeze(0)  # (1, seq_len)
    reversed_positions = lengths.unsqueeze(1) - 1 - positions  # (batch, seq_len)
    return torch.where(reversed_positions >= 0, reversed_positions, positions)


def _stepwise_index(reversal: torch.Tensor, directions: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat row indices for the stepwise path, the same for every layer of a batch: `source` gathers the rows of a
    (batch, seq_len) layout into (directions, seq_len, batch), the backward direction reversed within each row's
    length (`reversal`, see `_reversal_index`); `target` gathers the states back into (batch, seq_len, directions)."""
    batch, seq_len = reversal.shape
    row = torch.arange(batch, device=reversal.device)
    step = torch.arange(seq_len, device=reversal.device)
    sources = [row.unsqueeze(0) * seq_len + step.unsqueeze(1), row.unsqueeze(0) * seq_len + reversal.t()]
    targets = [step.expand(batch, seq_len) * batch, seq_len * batch + reversal * batch]
    source = torch.stack(sources[:directions]).reshape(-1)
    target = (torch.stack(targets[:directions], dim=-1) + row.view(batch, 1, 1)).reshape(-1)
    return source, target


def _gru_recurrence(
    gates_in: torch.Tensor, weight_hh_t: torch.Tensor, bias_hh: torch.Tensor, save: bool
) -> tuple[torch.Tensor, tuple | None]:
    """The GRU recurrence of all directions at once, one batched matmul per step, with `nn.GRU`'s equations.

    `gates_in` (directions, steps, batch, 3 * hidden) holds `x W_ih^T + b_ih`; `weight_hh_t` is `W_hh^T` stacked by
    direction (directions, hidden, 3 * hidden), `bias_hh` (directions, 1, 3 * hidden). Returns the states
    (directions, steps, batch, hidden) and, when `save`, what the backward pass needs: r and z (directions, steps,
    batch, 2 * hidden), the candidate n (directions, steps, batch, hidden) and `h W_hh^T + b_hh` (steps, directions,
    batch, 3 * hidden). Without `save` every step reuses one slot per buffer. Every per-step view is made before the
    loop, so a step is six tensor ops and no slicing: at small batches a step costs its op count, not its arithmetic.
    """
    directions, steps, batch, three_hidden = gates_in.shape
    hidden = three_hidden // 3
    slots = steps if save else 1

    def per_step(buffer: torch.Tensor, dim: int) -> tuple:
        views = buffer.unbind(dim)
        return views if save else views * steps

    in_rz, in_n = gates_in[..., : 2 * hidden].unbind(1), gates_in[..., 2 * hidden :].unbind(1)
    states = gates_in.new_empty(directions, steps, batch, hidden)
    rz = gates_in.new_empty(directions, slots, batch, 2 * hidden)
    candidate = gates_in.new_empty(directions, slots, batch, hidden)
    rec = gates_in.new_empty(slots, directions, batch, 3 * hidden)  # slot-major: the matmul writes a contiguous slot
    states_t, rz_t, r_t, z_t = (
        per_step(states, 1),
        per_step(rz, 1),
        per_step(rz[..., :hidden], 1),
        per_step(rz[..., hidden:], 1),
    )
    candidate_t, rec_t = per_step(candidate, 1), per_step(rec, 0)
    rec_rz_t, rec_n_t = per_step(rec[..., : 2 * hidden], 0), per_step(rec[..., 2 * hidden :], 0)
    h = gates_in.new_zeros(directions, batch, hidden)
    for t in range(steps):
        torch.baddbmm(bias_hh, h, weight_hh_t, out=rec_t[t])  # (directions, batch, 3 * hidden)
        torch.add(in_rz[t], rec_rz_t[t], out=rz_t[t]).sigmoid_()
        torch.addcmul(in_n[t], r_t[t], rec_n_t[t], out=candidate_t[t]).tanh_()
        h = torch.lerp(candidate_t[t], h, z_t[t], out=states_t[t])  # (1 - z) * n + z * h
    return states, ((rz, candidate, rec) if save else None)


def _stepwise_states(x, weight_ih_t, weight_hh_t, bias_ih, bias_hh, save: bool) -> tuple[torch.Tensor, tuple | None]:
    """`x` (directions, seq_len, batch, input) -> `_gru_recurrence` over its input projections (one matmul).

    Weights stacked by direction and transposed: `weight_ih_t` (directions, input, 3 * hidden), `weight_hh_t`
    (directions, hidden, 3 * hidden), the latter contiguous (it is read every step).
    """
    return _gru_recurrence(_input_gates(x, weight_ih_t, bias_ih), weight_hh_t, bias_hh.unsqueeze(1), save)


def _input_gates(x: torch.Tensor, weight_ih_t: torch.Tensor, bias_ih: torch.Tensor) -> torch.Tensor:
    """`x W_ih^T + b_ih` of every step in one batched matmul: (directions, seq_len, batch, 3 * hidden), contiguous."""
    directions, steps, batch, input_size = x.shape
    gates_in = torch.baddbmm(bias_ih.unsqueeze(1), x.reshape(directions, steps * batch, input_size), weight_ih_t)
    return gates_in.view(directions, steps, batch, gates_in.size(-1))


class _StepwiseGRU(torch.autograd.Function):
    """GRU layers of all directions at once, for training on the CPU: `x` (directions, seq_len, batch, input) ->
    states (directions, seq_len, batch, hidden), with `nn.GRU`'s equations and weights stacked by direction.

    What `nn.GRU` costs on a CPU under autograd is mostly per step: a recorded node per gate op per direction and,
    in backward, a small weight-gradient matmul per step and direction. Here every direction advances in one
    batched matmul per step (`_gru_recurrence`), the backward pass is written out (a fixed handful of ops per step),
    and the weight and input gradients are one matmul each per layer over all steps, straight from direction-major
    buffers (no transposing copies). Same values as `nn.GRU` to float rounding (checked in tests/test_modeling.py,
    gradients included); measured in docs/design.md.
    """

    @staticmethod
    def forward(ctx, x, weight_ih, weight_hh, bias_ih, bias_hh, native=None):
        # `native`: the compiled recurrence (`_native_kernels`) for the per-step loops, or None for PyTorch's
        ctx.native = native
        if native is None:
            states, saved = _stepwise_states(x, weight_ih.mT, weight_hh.mT.contiguous(), bias_ih, bias_hh, save=True)
        else:
            states, saved = _native_forward(native, x, weight_ih, weight_hh, bias_ih, bias_hh)
        ctx.save_for_backward(x, weight_ih, weight_hh, states, *saved)
        return states

    @staticmethod
    @once_differentiable  # written out, not itself differentiable: a second derivative must fail, not come out wrong
    def backward(ctx, grad_states):
        x, weight_ih, weight_hh, states, *saved = ctx.saved_tensors
        directions, steps, batch, input_size = x.shape
        hidden = weight_hh.shape[-1]
        if ctx.native is None:
            grad_rec, grad_n = _recurrence_backward(grad_states, states, *saved, weight_hh)
        else:
            grad_rec, grad_n = _native_backward(ctx.native, grad_states, states, *saved, weight_hh)
        # weight and input gradients: one matmul each over all steps, read in place from the (directions, steps,
        # batch, .) buffers; the input side's gates are r and z from `grad_rec` and n from `grad_n`
        grad_rec_all = grad_rec.view(directions, steps * batch, 3 * hidden)
        grad_n_all = grad_n.view(directions, steps * batch, hidden)
        grad_rz_all = grad_rec_all[..., : 2 * hidden]
        h_prev = states[:, :-1].reshape(directions, (steps - 1) * batch, hidden)  # step 0 starts from h = 0
        grad_weight_hh = torch.bmm(grad_rec[:, 1:].reshape(directions, (steps - 1) * batch, 3 * hidden).mT, h_prev)
        sums = grad_rec_all.sum(1)
        grad_bias_ih = torch.cat([sums[:, : 2 * hidden], grad_n_all.sum(1)], dim=-1)
        grad_bias_hh = sums  # r, z: as on the input side; n: d(rec_n) = grad_n * r
        x_all = x.view(directions, steps * batch, input_size)
        grad_weight_ih = torch.cat([torch.bmm(grad_rz_all.mT, x_all), torch.bmm(grad_n_all.mT, x_all)], dim=1)
        grad_x = torch.baddbmm(
            torch.bmm(grad_n_all, weight_ih[:, 2 * hidden :]), grad_rz_all, weight_ih[:, : 2 * hidden]
        )
        return (
            grad_x.view(directions, steps, batch, input_size),
            grad_weight_ih,
            grad_weight_hh,
            grad_bias_ih,
            grad_bias_hh,
            None,
        )


def _recurrence_backward(grad_states, states, rz, candidate, rec, weight_hh) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-step half of `_StepwiseGRU.backward` in PyTorch: d(loss) w.r.t. the pre-activations of every step,
    `grad_rec` (directions, steps, batch, 3 * hidden: r, z and the recurrent product of n) and `grad_n` (the
    pre-activation of n), the recurrent matmul's share included."""
    directions, steps, batch, hidden = states.shape
    grad_rec = states.new_empty(directions, steps, batch, 3 * hidden)  # d(pre-activations) via W_hh: r, z, r * n
    grad_n = states.new_empty(directions, steps, batch, hidden)  # d(pre-activation of n)
    grad_states_t, grad_rec_t, grad_n_t = grad_states.unbind(1), grad_rec.unbind(1), grad_n.unbind(1)
    states_t, rz_t, candidate_t = states.unbind(1), rz.unbind(1), candidate.unbind(1)
    r_t, z_t = rz[..., :hidden].unbind(1), rz[..., hidden:].unbind(1)
    rec_n_t = rec[..., 2 * hidden :].unbind(0)  # the recurrent part of n's input, h W_hn^T + b_hn
    grad_rec_rz_t, grad_rec_n_t = grad_rec[..., : 2 * hidden].unbind(1), grad_rec[..., 2 * hidden :].unbind(1)
    h_prev_t = (states.new_zeros(directions, batch, hidden), *states_t[:-1])
    grad_gates = states.new_empty(directions, batch, 2 * hidden)  # d(r, z) of the current step, before the sigmoid
    grad_r, grad_z = grad_gates[..., :hidden], grad_gates[..., hidden:]
    tanh_backward, sigmoid_backward = (
        torch.ops.aten.tanh_backward.grad_input,
        torch.ops.aten.sigmoid_backward.grad_input,
    )
    # per step: every result written into its slot (per-step views made above), no slicing, no cat, no copies
    grad_h = None
    for t in range(steps - 1, -1, -1):
        grad_h = grad_states_t[t] if grad_h is None else grad_h.add_(grad_states_t[t])
        grad_h_z = grad_h * z_t[t]  # the path through h' = n + z * (h - n) that skips the gates
        tanh_backward(grad_h - grad_h_z, candidate_t[t], grad_input=grad_n_t[t])
        torch.mul(grad_n_t[t], rec_n_t[t], out=grad_r)
        torch.sub(h_prev_t[t], candidate_t[t], out=grad_z).mul_(grad_h)
        sigmoid_backward(grad_gates, rz_t[t], grad_input=grad_rec_rz_t[t])
        torch.mul(grad_n_t[t], r_t[t], out=grad_rec_n_t[t])
        grad_h = torch.baddbmm(grad_h_z, grad_rec_t[t], weight_hh)
    return grad_rec, grad_n


_NATIVE_KERNELS: list = []  # [the compiled training recurrence, or None where it cannot be had], once looked up


def _native_kernels():
    """textgru's compiled fp32 GRU recurrence (`textgru/kernels/gru_train.c`) for `_StepwiseGRU`'s per-step loops,
    or None where it cannot be had: textgru not installed (this file loaded as remote code), no C compiler, or a
    failed build (logged once). Looked up once per process; built on first use and cached by `textgru.kernels`."""
    if not _NATIVE_KERNELS:
        try:
            from textgru.kernels import load_training  # an optional accelerator: this file needs only torch
        except ImportError:
            lib = None
        else:
            try:
                lib = load_training()
            except Exception as err:  # KernelUnavailableError and whatever a broken toolchain raises
                logger.warning(
                    "textgru's compiled training recurrence is unavailable (%s); training runs the PyTorch loop "
                    "(same values, slower).",
                    str(err).splitlines()[0],
                )
                lib = None
        _NATIVE_KERNELS.append(lib)
    return _NATIVE_KERNELS[0]


def _check_native_inputs(*tensors: torch.Tensor) -> None:
    """The compiled loops read raw fp32 CPU memory: refuse anything else rather than read it wrongly."""
    for t in tensors:
        if t.dtype != torch.float32 or t.device.type != "cpu":
            raise ValueError(
                f"textgru's compiled GRU recurrence takes float32 CPU tensors, got {t.dtype} on {t.device}; "
                "pass native=None to _StepwiseGRU for the PyTorch loop."
            )


def _check_native(code: int) -> None:
    if code != 0:
        raise MemoryError("textgru's compiled GRU recurrence could not allocate its scratch buffers.")


def _native_forward(lib, x, weight_ih, weight_hh, bias_ih, bias_hh) -> tuple[torch.Tensor, tuple]:
    """`_stepwise_states(..., save=True)` with the per-step loop in C; saves (r and z, the candidate n, the recurrent
    part of n's input h W_hn^T + b_hn), all (directions, steps, batch, .), for `_native_backward`."""
    _check_native_inputs(x, weight_ih, weight_hh, bias_ih, bias_hh)
    directions, steps, batch, _ = x.shape
    hidden = weight_hh.shape[-1]
    gates_in = _input_gates(x, weight_ih.mT, bias_ih)
    weight_hh_t, bias_hh = weight_hh.mT.contiguous(), bias_hh.contiguous()
    states = x.new_empty(directions, steps, batch, hidden)
    rz = x.new_empty(directions, steps, batch, 2 * hidden)
    candidate, rec_n = torch.empty_like(states), torch.empty_like(states)
    args = (gates_in, weight_hh_t, bias_hh, states, rz, candidate, rec_n)
    _check_native(
        lib.textgru_gru_train_forward(
            directions, steps, batch, hidden, *(t.data_ptr() for t in args), torch.get_num_threads()
        )
    )
    return states, (rz, candidate, rec_n)


def _native_backward(lib, grad_states, states, rz, candidate, rec_n, weight_hh) -> tuple[torch.Tensor, torch.Tensor]:
    """`_recurrence_backward` with the per-step loop in C, from what `_native_forward` saved."""
    _check_native_inputs(grad_states, states, weight_hh)
    directions, steps, batch, hidden = states.shape
    grad_states, weight_hh = grad_states.contiguous(), weight_hh.contiguous()
    grad_rec = states.new_empty(directions, steps, batch, 3 * hidden)
    grad_n = torch.empty_like(states)
    args = (grad_states, states, rz, candidate, rec_n, weight_hh, grad_rec, grad_n)
    _check_native(
        lib.textgru_gru_train_backward(
            directions, steps, batch, hidden, *(t.data_ptr() for t in args), torch.get_num_threads()
        )
    )
    return grad_rec, grad_n


_GRU_WEIGHTS = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")


def _needs_backward(gru: nn.GRU, x: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in gru.parameters()))


def _gru_in_training_mode(gru: nn.GRU, x: torch.Tensor) -> torch.Tensor:
    """`gru(x)[0]` for a batch-first, single-layer, unidirectional `nn.GRU`, computed with the `train` flag on.

    cuDNN runs a GRU's backward only after a forward in training mode. For these dropout-free single-layer GRUs the
    flag changes nothing else, so an eval-mode forward that needs gradients on CUDA (explanations, gradient probes)
    calls the op with it directly. The module's own `training` is left alone, so other threads using the model
    are unaffected; forward hooks registered on the `nn.GRU` module do not run on this path.
    """
    initial = x.new_zeros(1, x.size(0), gru.hidden_size)
    weights = [getattr(gru, name) for name in _GRU_WEIGHTS]  # the parameters themselves, as the packed path passes
    return torch.gru(x, initial, weights, True, 1, 0.0, True, False, True)[0]


class TextGRUBidirectionalLayer(nn.Module):
    """One recurrent layer: a forward GRU and (optionally) a backward GRU, exact under right padding."""

    def __init__(self, config: TextGRUConfig, input_size: int):
        super().__init__()
        self.forward_gru = nn.GRU(input_size, config.hidden_size, batch_first=True)
        self.backward_gru = nn.GRU(input_size, config.hidden_size, batch_first=True) if config.bidirectional else None
        self.cache_stepwise_weights = False  # see TextGRUModel.cache_stepwise_weights
        self._stepwise_weights = None  # (key, weights) while cached

    def _run(self, gru: nn.GRU, x: torch.Tensor, lengths: torch.Tensor, packed: bool) -> torch.Tensor:
        if not packed:
            if x.device.type == "cuda" and not gru.training and _needs_backward(gru, x):
                return _gru_in_training_mode(gru, x)
            return gru(x)[0]
        # while tracing, no sort: the exported ONNX GRU takes `sequence_lens` in any order (see `trace_packed`)
        seq = nn.utils.rnn.pack_padded_sequence(
            x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=torch.jit.is_tracing()
        )
        return nn.utils.rnn.pad_packed_sequence(gru(seq)[0], batch_first=True, total_length=x.size(1))[0]

    def _run_packed_bidirectional(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Both directions in one packed, bidirectional GRU call with the two GRUs' weights.

        On packed sequences the backward direction starts at each row's own last token, so this is the same
        computation as the two-GRU path without the reversal gathers; the ONNX exporter turns it into a single
        bidirectional ONNX GRU with `sequence_lens`. While tracing, the packing does not sort the rows: ONNX's
        GRU does not need sorted lengths (the trace is for export only; see `TextGRUModel.trace_packed`).
        """
        forward, backward = self.forward_gru, self.backward_gru
        seq = nn.utils.rnn.pack_padded_sequence(
            x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=torch.jit.is_tracing()
        )
        weights = [getattr(gru, name) for gru in (forward, backward) for name in _GRU_WEIGHTS]
        initial = x.new_zeros(2, x.size(0), forward.hidden_size)  # (directions, batch, hidden)
        data = torch.gru(seq.data, seq.batch_sizes, initial, weights, True, 1, 0.0, False, True)[0]
        out = nn.utils.rnn.PackedSequence(data, seq.batch_sizes, seq.sorted_indices, seq.unsorted_indices)
        return nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.size(1))[0]

    def _run_stepwise(
        self, x: torch.Tensor, source: torch.Tensor, target: torch.Tensor, native: bool = False
    ) -> torch.Tensor:
        """Both directions through the stepwise recurrence: the same values as the two-GRU padded path.

        `source` and `target` are the gathers of `_stepwise_index` (the same for every layer of a batch); `native`
        runs a training step's per-step loops in textgru's compiled recurrence where it is available and the
        tensors are fp32."""
        batch, seq_len, input_size = x.shape
        grus = [self.forward_gru] if self.backward_gru is None else [self.forward_gru, self.backward_gru]
        directions, hidden = len(grus), self.forward_gru.hidden_size
        x = x.reshape(batch * seq_len, input_size).index_select(0, source).view(directions, seq_len, batch, input_size)
        if torch.is_grad_enabled():
            weights = [torch.stack([getattr(gru, name) for gru in grus]) for name in _GRU_WEIGHTS]
            lib = _native_kernels() if native and all(t.dtype == torch.float32 for t in (x, *weights)) else None
            states = _StepwiseGRU.apply(x, *weights, lib)  # (directions, seq_len, batch, hidden)
        else:  # inference: nothing saved for a backward pass
            states = _stepwise_states(x, *self._inference_weights(grus), save=False)[0]
        return states.view(-1, hidden).index_select(0, target).view(batch, seq_len, directions * hidden)

    def _inference_weights(self, grus: list[nn.GRU]) -> list[torch.Tensor]:
        """The GRU weights stacked by direction (matrices transposed) for `_stepwise_states`. Kept between calls
        while `cache_stepwise_weights` is on (otherwise a batch-1 forward spends a good share of its time copying
        them); rebuilt whenever a parameter is replaced or changed in place (its data pointer or version moves)."""
        params = [[getattr(gru, name) for gru in grus] for name in _GRU_WEIGHTS]
        key = (
            tuple((p.data_ptr(), p._version) for group in params for p in group)
            if self.cache_stepwise_weights
            else None
        )
        if key is not None and self._stepwise_weights is not None and self._stepwise_weights[0] == key:
            return self._stepwise_weights[1]
        weight_ih, weight_hh, bias_ih, bias_hh = params
        weights = [
            torch.stack([w.t() for w in weight_ih]),
            torch.stack([w.t() for w in weight_hh]),
            torch.stack(bias_ih),
            torch.stack(bias_hh),
        ]
        self._stepwise_weights = (key, weights) if key is not None else None
        return weights

    def forward(
        self,
        x: torch.Tensor,
        lengths: torch.Tensor,
        reversal: torch.Tensor,
        packed: bool = False,
        stepwise: tuple[torch.Tensor, torch.Tensor, bool] | None = None,
    ) -> torch.Tensor:
        # x: (batch, seq_len, input_size), right-padded; returns (batch, seq_len, hidden * directions).
        # `stepwise`: the gathers of `_stepwise_index` and the `native_training` flag to take the stepwise path, None
        # for nn.GRU.
        plain = type(self.forward_gru) is nn.GRU and type(self.backward_gru) in (nn.GRU, type(None))  # not int8
        if stepwise is not None and plain:
            return self._run_stepwise(x, *stepwise)
        # one call for both directions on the CPU (and in the export trace); on CUDA the two GRUs' weights are not
        # one cuDNN weight buffer, which cuDNN would compact on every call (and warn), so each GRU runs packed alone
        if packed and plain and self.backward_gru is not None and x.device.type == "cpu":
            return self._run_packed_bidirectional(x, lengths)
        out = self._run(self.forward_gru, x, lengths, packed)
        if self.backward_gru is None:
            return out
        backward = self._run(self.backward_gru, reverse_within_length(x, reversal), lengths, packed)
        return torch.cat([out, reverse_within_length(backward, reversal)], dim=-1)


class TextGRUResidualBlock(nn.Module):
    """`x_{l+1} = x_l + dropout(GRU(norm(x_l)))` (`add`), its highway variant (`gated`), or a plain layer (`none`)."""

    def __init__(self, config: TextGRUConfig, input_size: int):
        super().__init__()
        width = config.output_size
        self.residual = config.residual
        self.norm = nn.LayerNorm(input_size) if config.layer_norm else nn.Identity()
        self.rnn = TextGRUBidirectionalLayer(config, input_size)
        self.dropout = TextGRUDropout(config.hidden_dropout)
        # Where the embedding width differs from the stack's, the skip path needs a projection.
        needs_projection = input_size != width and config.residual != "none"
        self.projection = nn.Linear(input_size, width, bias=False) if needs_projection else nn.Identity()
        self.gate = nn.Linear(2 * width, width) if config.residual == "gated" else None

    def forward(
        self,
        x,
        lengths,
        reversal,
        mask,
        packed: bool = False,
        stepwise: tuple[torch.Tensor, torch.Tensor, bool] | None = None,
    ) -> torch.Tensor:
        update = self.dropout(self.rnn(self.norm(x), lengths, reversal, packed, stepwise))  # (batch, seq_len, width)
        if self.residual == "none":
            out = update
        else:
            skip = self.projection(x)
            if self.residual == "add":
                out = skip + update
            else:  # highway: a per-feature gate decides how much of the new layer to let through
                gate = torch.sigmoid(self.gate(torch.cat([skip, update], dim=-1)))
                out = skip + gate * (update - skip)
        return out * mask  # padding stays exactly zero all the way up the stack


class TextGRUPooler(nn.Module):
    """Turns token states into one vector per row. Padding gets exactly zero weight; empty rows pool to zeros."""

    def __init__(self, config: TextGRUConfig):
        super().__init__()
        self.mode = config.pooling
        self.bidirectional = config.bidirectional
        self.hidden_size = config.hidden_size
        if self.mode == "attention":  # structured self-attention (Lin et al. 2017): A = softmax(W2 tanh(W1 H^T))
            self.scorer = nn.Linear(config.output_size, config.attention_hidden_size, bias=False)
            self.heads = nn.Linear(config.attention_hidden_size, config.num_attention_heads, bias=False)

    def forward(self, states: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor):
        # states: (batch, seq_len, width), zero at padding; mask: (batch, seq_len, 1) float
        nonempty = (lengths > 0).to(states.dtype).unsqueeze(-1)  # (batch, 1)
        weights = None
        if self.mode == "attention":
            scores = self.heads(torch.tanh(self.scorer(states))).transpose(1, 2)  # (batch, heads, seq_len)
            scores = scores.masked_fill(mask.transpose(1, 2) == 0, torch.finfo(scores.dtype).min)
            # exp(min - max) underflows to exactly 0; the product zeroes the uniform weights of empty rows
            weights = torch.softmax(scores, dim=-1) * mask.transpose(1, 2)  # (batch, heads, seq_len)
            pooled = torch.bmm(weights, states).flatten(1)  # (batch, heads * width)
        elif self.mode == "mean":
            pooled = states.sum(1) / lengths.clamp(min=1).unsqueeze(-1).to(states.dtype)
        elif self.mode == "max":
            pooled = states.masked_fill(mask == 0, torch.finfo(states.dtype).min).max(1).values * nonempty
        else:  # "last": the forward direction's final state and the backward direction's (at position 0)
            last = (lengths - 1).clamp(min=0)
            pooled = states[torch.arange(states.size(0), device=states.device), last]  # (batch, width)
            if self.bidirectional:
                pooled = torch.cat([pooled[:, : self.hidden_size], states[:, 0, self.hidden_size :]], dim=-1)
            pooled = pooled * nonempty
        return pooled, weights


class TextGRUPreTrainedModel(PreTrainedModel):
    config_class = TextGRUConfig
    base_model_prefix = "textgru"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False
    _no_split_modules = ["TextGRUResidualBlock"]
    # A saved model carries its code and an auto_map for every Auto class, so it loads with
    # `trust_remote_code=True` where textgru is not installed (register_for_auto_class alone records only
    # the class being saved).
    AUTO_MAP = {
        "AutoConfig": "configuration_textgru.TextGRUConfig",
        "AutoModel": "modeling_textgru.TextGRUModel",
        "AutoModelForSequenceClassification": "modeling_textgru.TextGRUForSequenceClassification",
    }

    def save_pretrained(self, save_directory, *args, **kwargs):
        self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), **self.AUTO_MAP}
        return super().save_pretrained(save_directory, *args, **kwargs)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Initialise every parameter. transformers v5 builds models on the meta device and calls this for
        whatever a checkpoint lacks, so a module missing here (nn.GRU by default) would come back as garbage."""
        std = self.config.initializer_range
        if isinstance(module, nn.GRU):
            for name, param in module.named_parameters():
                if name.startswith("weight_ih"):
                    init.xavier_uniform_(param)
                elif name.startswith("weight_hh"):
                    init.orthogonal_(param)  # keeps the recurrent map norm-preserving at the start
                else:
                    init.zeros_(param)
        elif isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)


class TextGRUModel(TextGRUPreTrainedModel):
    """The encoder: embeddings, a residual stack of GRU layers and a pooler.

    Example:

    >>> import torch
    >>> from textgru import TextGRUConfig, TextGRUModel
    >>> model = TextGRUModel(TextGRUConfig(vocab_size=100, hidden_size=32)).eval()
    >>> out = model(torch.tensor([[5, 6, 7, 0]]), attention_mask=torch.tensor([[1, 1, 1, 0]]))
    >>> tuple(out.last_hidden_state.shape), tuple(out.pooler_output.shape)
    ((1, 4, 64), (1, 64))
    """

    _auto_class = "AutoModel"

    def __init__(self, config: TextGRUConfig):
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        self.embedding_dropout = TextGRUDropout(config.embedding_dropout)
        self.layers = nn.ModuleList(
            TextGRUResidualBlock(config, config.embedding_size if i == 0 else config.output_size)
            for i in range(config.num_hidden_layers)
        )
        self.final_norm = nn.LayerNorm(config.output_size) if config.layer_norm else nn.Identity()
        self.pooler = TextGRUPooler(config)
        # Under torch.no_grad, run the GRUs on packed sequences (skips padded steps; same result) when less
        # than `packed_min_fill` of the batch is real tokens.
        self.packed_inference = True
        self.packed_min_fill = 0.75
        # While tracing for ONNX export, take the packed path instead of the padded one: the exporter turns it into
        # one bidirectional ONNX GRU per layer with `sequence_lens` (each row stops at its own length; no reversal
        # gathers). The packing does not sort while tracing, so such a trace needs an example batch sorted by
        # decreasing length and is meant for ONNX only (ONNX's GRU accepts lengths in any order; TorchScript's
        # packing would not).
        self.trace_packed = False
        # With gradients on a CPU, run the GRUs through textgru's own autograd function (`_StepwiseGRU`: all
        # directions per step in one matmul, weight gradients in one matmul per layer) instead of `nn.GRU`; same
        # values, a faster training step for batches of up to `stepwise_max_batch` rows with its loops in PyTorch
        # (measured by benchmarks/stepwise_crossover.py: 1.1-2.8x faster up to 32 rows at hidden 64-512, 0.99-1.5x at
        # 64, 0.91-1.2x at 128). Elsewhere (larger batches, CUDA, autocast, tracing) `nn.GRU` runs.
        self.stepwise_training = True
        self.stepwise_max_batch = 32
        # On that path, run the per-step loops (forward and backward) in textgru's compiled fp32 recurrence
        # (`textgru/kernels/gru_train.c`, built at first use) where textgru is installed and a C compiler is at hand,
        # else in PyTorch; same values to float rounding. With it the stepwise path is level with `nn.GRU` or faster
        # up to 128 rows at hidden <= 256 (0.98-7.7x on 1 thread, level only at 256 x 128 rows; 1.13-2.06x on 2;
        # docs/design.md, "The compiled training recurrence"), so it is taken up to `native_max_batch` rows there; at
        # hidden 512 it is level from 64 rows (0.93-1.12x), so there the PyTorch loop's limit stands.
        self.native_training = True
        self.native_max_batch = 128 if config.hidden_size <= 256 else self.stepwise_max_batch
        # Without gradients (inference) the same recurrence, nothing saved, runs batches of up to
        # `stepwise_inference_max_batch` rows on the CPU (0 switches it off), ahead of packing. A small batch's step
        # costs its op count: `nn.GRU` spends ~15 ops per step and direction, `_gru_recurrence` 6 for all directions.
        # Measured (benchmarks/stepwise_crossover.py --mode inference, docs/design.md): up to 16 rows 1.25-1.97x
        # faster than nn.GRU's faster path at hidden 64-128 (at 64 rows 0.74-0.93x at hidden 128); at hidden 256
        # level or slower (0.76-1.17x), so it is on by default up to hidden 128 only.
        self.stepwise_inference_max_batch = 16 if config.hidden_size <= 128 else 0
        self.post_init()

    def cache_stepwise_weights(self, enabled: bool = True) -> None:
        """Keep each layer's direction-stacked GRU weights between inference calls on the stepwise path.

        `textgru.inference.TextClassifier` switches this on for the model it serves. A cached copy is rebuilt when a
        parameter is replaced or changed in place through autograd-visible ops (optimizer steps, `load_state_dict`,
        `param.copy_`); edits through `param.data` are invisible to it, so switch the cache off (`enabled=False`
        drops it) before changing weights that way.
        """
        for layer in self.layers:
            layer.rnn.cache_stepwise_weights = enabled
            layer.rnn._stepwise_weights = None

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings = value

    def _check_inputs(self, input_ids, attention_mask, inputs_embeds):
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("TextGRU: pass exactly one of `input_ids` or `inputs_embeds`.")
        shape = input_ids.shape if input_ids is not None else inputs_embeds.shape[:2]
        if len(shape) != 2:
            raise ValueError(f"TextGRU: `input_ids` must have shape (batch, seq_len); got {tuple(shape)}.")
        if input_ids is not None and input_ids.numel() > 0 and not torch.jit.is_tracing():
            low, high = int(input_ids.min()), int(input_ids.max())
            if low < 0 or high >= self.config.vocab_size:
                bad = high if high >= self.config.vocab_size else low
                raise ValueError(
                    f"TextGRU: token id {bad} is outside [0, vocab_size={self.config.vocab_size}) (largest id "
                    f"allowed: {self.config.vocab_size - 1}). The tokenizer does not match the model: build the "
                    "model with `vocab_size=len(tokenizer)`, or call `model.resize_token_embeddings(len(tokenizer))`."
                )
        if attention_mask is not None and tuple(attention_mask.shape) != tuple(shape):
            raise ValueError(
                f"TextGRU: `attention_mask` has shape {tuple(attention_mask.shape)} but the inputs have shape "
                f"{tuple(shape)}; it needs one 0/1 entry per token."
            )
        return shape

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling | tuple:
        """Encode a batch.

        Args:
            input_ids: token ids, (batch, seq_len). Padding may sit anywhere the mask says it does.
            attention_mask: 1 for real tokens, 0 for padding, (batch, seq_len). Defaults to all ones.
            inputs_embeds: embeddings to use instead of `input_ids`, (batch, seq_len, embedding_size).
            output_hidden_states: also return the embeddings and every layer's output.
            output_attentions: also return the attention-pooling weights, (batch, heads, seq_len).
            return_dict: return a `BaseModelOutputWithPooling` (default) rather than a tuple.
        """
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        batch_size, seq_len = self._check_inputs(input_ids, attention_mask, inputs_embeds)

        embeds = self.embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        device = embeds.device
        mask = (
            torch.ones(batch_size, seq_len, dtype=torch.bool, device=device)
            if attention_mask is None
            else attention_mask.to(device).bool()
        )
        requested_len = seq_len
        if seq_len == 0:  # a batch of empty texts: run one all-padding column, so rows pool to zeros
            embeds = embeds.new_zeros(batch_size, 1, embeds.size(-1))
            mask = torch.zeros(batch_size, 1, dtype=torch.bool, device=device)
            seq_len = 1
        lengths = mask.sum(1)  # (batch,)
        positions = torch.arange(seq_len, device=device).unsqueeze(0)  # (1, seq_len)

        # The recurrent stack runs on right-padded, trimmed input: move real tokens to the front of each row
        # (only when the mask is not already right-padded, e.g. a left-padding tokenizer) and drop the
        # columns that are padding in every row.
        order = None
        if not torch.jit.is_tracing() and not torch.equal(mask, positions < lengths.unsqueeze(1)):
            order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices  # real positions first
            embeds = embeds.gather(1, order.unsqueeze(-1).expand(-1, -1, embeds.size(-1)))
        width = seq_len if torch.jit.is_tracing() else max(int(lengths.max()), 1)
        embeds = embeds[:, :width]
        step_mask = (positions[:, :width] < lengths.unsqueeze(1)).unsqueeze(-1).to(embeds.dtype)  # (batch, width, 1)
        reversal = _reversal_index(lengths, width)
        if torch.is_grad_enabled():
            limit = self.stepwise_max_batch
            if (  # the compiled loops win up to `native_max_batch` rows; look them up only where they could run
                self.stepwise_training
                and self.native_training
                and self.stepwise_max_batch < batch_size <= self.native_max_batch
                and embeds.device.type == "cpu"
                and embeds.dtype == torch.float32
                and _native_kernels() is not None
            ):
                limit = self.native_max_batch
            stepwise = self.stepwise_training and batch_size <= limit
        else:
            stepwise = batch_size <= self.stepwise_inference_max_batch
        stepwise = (
            (*_stepwise_index(reversal, 2 if self.config.bidirectional else 1), self.native_training)  # every layer's
            if stepwise
            and embeds.device.type == "cpu"
            and not torch.is_autocast_enabled(embeds.device.type)
            and not torch.jit.is_tracing()
            else None
        )
        # packing pays off only when there is padding to skip (measured: with none it is 5-45% slower); the
        # stepwise path, where taken, goes first and never packs
        if torch.jit.is_tracing():
            packed = self.trace_packed
        else:
            packed = (
                stepwise is None
                and self.packed_inference
                and not torch.is_grad_enabled()
                and int(lengths.sum()) < self.packed_min_fill * batch_size * width
            )

        x = self.embedding_dropout(embeds) * step_mask  # (batch, width, embedding_size)
        if self.training and self.config.word_dropout > 0:  # drop whole tokens, not single features
            keep = torch.rand(x.shape[:2], device=device) >= self.config.word_dropout
            x = x * keep.unsqueeze(-1).to(x.dtype)
        hidden_states = [x] if output_hidden_states else None
        for layer in self.layers:
            x = layer(x, lengths, reversal, step_mask, packed, stepwise)  # (batch, width, output_size)
            if output_hidden_states:
                hidden_states.append(x)
        x = self.final_norm(x) * step_mask
        pooled, weights = self.pooler(x, step_mask, lengths)  # (batch, pooled_size), (batch, heads, width)

        def restore(t: torch.Tensor) -> torch.Tensor:
            # (batch, width, dim) -> (batch, seq_len, dim): pad back and undo the move to the front, so
            # positions match the caller's tokens
            if t.size(1) < seq_len:
                t = torch.cat([t, t.new_zeros(t.size(0), seq_len - t.size(1), t.size(2))], dim=1)
            if order is not None:
                t = torch.zeros_like(t).scatter(1, order.unsqueeze(-1).expand(-1, -1, t.size(-1)), t)
            return t[:, :requested_len]

        last_hidden_state = restore(x)
        all_hidden = tuple(restore(h) for h in hidden_states) if output_hidden_states else None
        attentions = None
        if output_attentions and weights is not None:
            attentions = (restore(weights.transpose(1, 2)).transpose(1, 2),)  # (batch, heads, seq_len)
        if not return_dict:
            return tuple(v for v in (last_hidden_state, pooled, all_hidden, attentions) if v is not None)
        return BaseModelOutputWithPooling(
            last_hidden_state=last_hidden_state,
            pooler_output=pooled,
            hidden_states=all_hidden,
            attentions=attentions,
        )


class TextGRUForSequenceClassification(TextGRUPreTrainedModel):
    """TextGRU encoder with a linear head: single-label, multi-label or regression, by `config.problem_type`.

    Example:

    >>> import torch
    >>> from textgru import TextGRUConfig, TextGRUForSequenceClassification
    >>> model = TextGRUForSequenceClassification(TextGRUConfig(vocab_size=100, hidden_size=32, num_labels=2))
    >>> out = model(torch.tensor([[5, 6, 7]]), labels=torch.tensor([1]))
    >>> tuple(out.logits.shape), out.loss.dim()
    ((1, 2), 0)
    """

    _auto_class = "AutoModelForSequenceClassification"

    def __init__(self, config: TextGRUConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.textgru = TextGRUModel(config)
        self.dropout = TextGRUDropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.pooled_size, config.num_labels)
        self.post_init()

    def _check_labels(self, labels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        problem = self.config.problem_type
        if problem is None:  # the rule transformers' loss_function applies on first use
            if self.num_labels == 1:
                problem = "regression"
            elif labels.dtype in (torch.long, torch.int):
                problem = "single_label_classification"
            else:
                problem = "multi_label_classification"
        if problem == "single_label_classification":
            valid = (labels == -100) | ((labels >= 0) & (labels < self.num_labels))
            if not bool(valid.all()):
                bad = labels[~valid][0].item()
                raise ValueError(
                    f"TextGRU: label {bad} is out of range for num_labels={self.num_labels} (valid: 0.."
                    f"{self.num_labels - 1}, or -100 to ignore). Build the model with the data's label set "
                    "(`num_labels`, `id2label`, `label2id`)."
                )
        elif problem == "multi_label_classification":
            if labels.shape != logits.shape:
                raise ValueError(
                    f"TextGRU: multi-label targets need shape (batch, num_labels={self.num_labels}); got "
                    f"{tuple(labels.shape)}."
                )
            labels = labels.to(logits.dtype)
        elif problem == "regression":
            labels = labels.to(logits.dtype)
        return labels

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput | tuple:
        """Classify a batch.

        Args:
            input_ids, attention_mask, inputs_embeds, output_hidden_states, output_attentions: as in `TextGRUModel`.
            labels: class ids (batch,) for single-label, 0/1 targets (batch, num_labels) for multi-label,
                floats for regression. When given, the output carries the loss.
            return_dict: return a `SequenceClassifierOutput` (default) rather than a tuple.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        encoded = self.textgru(
            input_ids=input_ids,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            return_dict=True,
        )
        logits = self.classifier(self.dropout(encoded.pooler_output))  # (batch, num_labels)
        loss = None
        if labels is not None:
            labels = self._check_labels(labels.to(logits.device), logits)
            loss = self.loss_function(labels, logits, self.config)
        if not return_dict:
            out = tuple(v for v in (logits, encoded.hidden_states, encoded.attentions) if v is not None)
            return ((loss,) + out) if loss is not None else out
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=encoded.hidden_states, attentions=encoded.attentions
        )


__all__ = ["TextGRUPreTrainedModel", "TextGRUModel", "TextGRUForSequenceClassification"]
