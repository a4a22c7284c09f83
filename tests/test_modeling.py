"""TextGRUModel / TextGRUForSequenceClassification: outputs, exactness under padding, losses, checkpoints, errors.

Every model here is tiny (vocab 100, hidden 16 per direction, 2 layers) and has its parameters perturbed away from
their initial values (zero biases, unit LayerNorm weights), so a term that should not matter cannot hide behind a
zero. Dropout is off unless a test says otherwise; `path` names the recurrent code path each test runs on.
"""

import contextlib

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel, AutoModelForSequenceClassification
from transformers.modeling_outputs import BaseModelOutputWithPooling, SequenceClassifierOutput

from textgru import TextGRUConfig, TextGRUForSequenceClassification, TextGRUModel

VOCAB = 100
HIDDEN = 16
POOLINGS = ("attention", "mean", "max", "last")
RESIDUALS = ("none", "add", "gated")
LENGTHS = (5, 1, 9, 3)  # mixed lengths, including a single token
ATOL = 1e-5


def make_config(**overrides) -> TextGRUConfig:
    kwargs = {
        "vocab_size": VOCAB,
        "embedding_size": 24,  # differs from the stack width (2 * 16): the first skip path needs its projection
        "hidden_size": HIDDEN,
        "num_hidden_layers": 2,
        "attention_hidden_size": 16,
        "num_labels": 3,
        "embedding_dropout": 0.0,
        "hidden_dropout": 0.0,
        "classifier_dropout": 0.0,
    }
    return TextGRUConfig(**{**kwargs, **overrides})


def perturb(model: nn.Module, seed: int = 0, scale: float = 0.2) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * scale)
    return model


def make_model(seed: int = 0, head: bool = True, **overrides) -> nn.Module:
    torch.manual_seed(seed)
    cls = TextGRUForSequenceClassification if head else TextGRUModel
    return perturb(cls(make_config(**overrides)), seed)


def make_rows(lengths=LENGTHS, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(1, VOCAB, (length,), generator=generator) for length in lengths]


def pad(rows: list[torch.Tensor], side: str, extra: int = 3, seed: int = 1):
    """Batch `rows` with `side` padding and `extra` all-padding columns. Padded slots hold random *non-pad* ids,
    so only the mask can tell the model they are padding. Returns ids, mask and each row's real positions."""
    generator = torch.Generator().manual_seed(seed)
    width = max(len(r) for r in rows) + extra
    ids = torch.randint(1, VOCAB, (len(rows), width), generator=generator)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    positions = []
    for i, row in enumerate(rows):
        if side == "right":
            where = torch.arange(len(row))
        elif side == "left":
            where = torch.arange(width - len(row), width)
        else:  # "scattered": real tokens at random places, in order, with holes between them
            where = torch.randperm(width, generator=generator)[: len(row)].sort().values
        ids[i, where] = row
        mask[i, where] = 1
        positions.append(where)
    return ids, mask, positions


@contextlib.contextmanager
def path(model: nn.Module, name: str):
    """`train`: grad enabled, padded path (on the CPU: the stepwise GRU with its own backward, its per-step loops in
    the compiled recurrence where it builds); `train_torch`: the same with those loops in PyTorch. Under eval +
    no_grad: `packed` (nn.GRU on packed sequences), `stepwise_no_grad` (textgru's recurrence, nothing saved),
    `padded_no_grad` (nn.GRU on the padded batch)."""
    encoder = model.textgru if hasattr(model, "textgru") else model
    previous = encoder.packed_inference, encoder.packed_min_fill, encoder.stepwise_inference_max_batch
    if name in ("train", "train_torch"):
        model.train()
        encoder.native_training = name == "train"
        try:
            with torch.enable_grad():
                yield
        finally:
            encoder.native_training = True
    else:
        model.eval()
        encoder.packed_inference = name == "packed"
        encoder.packed_min_fill = 1.01  # pack whatever the padding, so the packed path is what runs
        encoder.stepwise_inference_max_batch = 10**6 if name == "stepwise_no_grad" else 0
        try:
            with torch.no_grad():
                yield
        finally:
            encoder.packed_inference, encoder.packed_min_fill, encoder.stepwise_inference_max_batch = previous


PATHS = ("train", "train_torch", "packed", "stepwise_no_grad")


def native_training_kernels():
    """The compiled training recurrence, or skip the test (no C compiler, or the build failed)."""
    from textgru.kernels import KernelUnavailableError, load_training

    try:
        return load_training()
    except KernelUnavailableError as err:
        pytest.skip(f"textgru's compiled training recurrence cannot be built here: {err}")


# ---------------------------------------------------------------------------------------------------------------------
# Output types and shapes


def test_encoder_output_type_and_shapes():
    model = make_model(head=False, num_attention_heads=2).eval()
    ids, mask, _ = pad(make_rows(), "right")
    out = model(ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
    assert isinstance(out, BaseModelOutputWithPooling)
    batch, seq_len = ids.shape
    assert out.last_hidden_state.shape == (batch, seq_len, 2 * HIDDEN)
    assert out.pooler_output.shape == (batch, 2 * 2 * HIDDEN)  # two attention heads, concatenated
    assert out.attentions[0].shape == (batch, 2, seq_len)

    plain = model(ids, attention_mask=mask)
    assert plain.hidden_states is None and plain.attentions is None

    as_tuple = model(ids, attention_mask=mask, return_dict=False)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 2
    torch.testing.assert_close(as_tuple[0], plain.last_hidden_state, rtol=0, atol=0)
    torch.testing.assert_close(as_tuple[1], plain.pooler_output, rtol=0, atol=0)
    with_hidden = model(ids, attention_mask=mask, output_hidden_states=True, return_dict=False)
    assert len(with_hidden) == 3 and len(with_hidden[2]) == 3


def test_classifier_output_type_and_shapes():
    model = make_model().eval()
    ids, mask, _ = pad(make_rows(), "right")
    labels = torch.tensor([0, 2, 1, 1])
    out = model(ids, attention_mask=mask)
    assert isinstance(out, SequenceClassifierOutput)
    assert out.logits.shape == (len(LENGTHS), 3)
    assert out.loss is None and out.hidden_states is None and out.attentions is None

    logits_only = model(ids, attention_mask=mask, return_dict=False)
    assert isinstance(logits_only, tuple) and len(logits_only) == 1
    torch.testing.assert_close(logits_only[0], out.logits, rtol=0, atol=0)
    loss, logits = model(ids, attention_mask=mask, labels=labels, return_dict=False)
    assert loss.dim() == 0
    torch.testing.assert_close(logits, out.logits, rtol=0, atol=0)

    extras = model(ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
    assert len(extras.hidden_states) == 3 and extras.attentions[0].shape == (len(LENGTHS), 1, ids.shape[1])


def test_config_flags_switch_extra_outputs_on():
    model = make_model(output_hidden_states=True).eval()
    out = model(torch.tensor([[5, 6, 7]]))
    assert out.hidden_states is not None and len(out.hidden_states) == 3


@pytest.mark.parametrize("num_layers", [1, 3])
def test_hidden_states_count_and_widths(num_layers):
    model = make_model(head=False, num_hidden_layers=num_layers, layer_norm=False).eval()
    ids, mask, _ = pad(make_rows(), "right")
    out = model(ids, attention_mask=mask, output_hidden_states=True)
    assert len(out.hidden_states) == num_layers + 1  # embeddings + every layer
    assert out.hidden_states[0].shape == (*ids.shape, 24)  # the embeddings keep their own width
    assert all(h.shape == (*ids.shape, 2 * HIDDEN) for h in out.hidden_states[1:])
    # without layer norm the stack's last output is the last hidden state
    torch.testing.assert_close(out.hidden_states[-1], out.last_hidden_state, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------------------------
# Exactness under padding


def assert_rows_match_unpadded_runs(model, ids, mask, positions, rows):
    encoder = model.textgru
    batch = encoder(ids, attention_mask=mask, output_hidden_states=True)
    logits = model(ids, attention_mask=mask).logits
    for i, (row, where) in enumerate(zip(rows, positions)):
        alone = encoder(row[None], output_hidden_states=True)
        alone_logits = model(row[None]).logits
        torch.testing.assert_close(logits[i], alone_logits[0], rtol=0, atol=ATOL)
        torch.testing.assert_close(batch.pooler_output[i], alone.pooler_output[0], rtol=0, atol=ATOL)
        # every position of every layer, both directions: the backward half is what padding would corrupt
        torch.testing.assert_close(batch.last_hidden_state[i, where], alone.last_hidden_state[0], rtol=0, atol=ATOL)
        for layer, (padded, single) in enumerate(zip(batch.hidden_states, alone.hidden_states)):
            torch.testing.assert_close(padded[i, where], single[0], rtol=0, atol=ATOL, msg=f"layer {layer}, row {i}")
        padding = torch.ones(ids.shape[1], dtype=torch.bool)
        padding[where] = False
        assert torch.all(batch.last_hidden_state[i, padding] == 0), "padding positions must stay exactly zero"
        assert all(torch.all(h[i, padding] == 0) for h in batch.hidden_states)


@pytest.mark.parametrize("run", PATHS)
@pytest.mark.parametrize("side", ["right", "left", "scattered"])
@pytest.mark.parametrize("residual", RESIDUALS)
@pytest.mark.parametrize("pooling", POOLINGS)
def test_padding_invariance(pooling, residual, side, run):
    model = make_model(pooling=pooling, residual=residual)
    rows = make_rows()
    ids, mask, positions = pad(rows, side)
    with path(model, run):
        assert_rows_match_unpadded_runs(model, ids, mask, positions, rows)


@pytest.mark.parametrize(
    "overrides",
    [
        {"bidirectional": False, "pooling": "last"},
        {"bidirectional": False, "pooling": "attention", "num_attention_heads": 3},
        {"layer_norm": False, "pooling": "max"},
        {"embedding_size": 2 * HIDDEN, "residual": "gated"},  # no projection on the skip path
        {"num_hidden_layers": 1, "pooling": "mean"},
    ],
)
@pytest.mark.parametrize("run", [*PATHS, "padded_no_grad"])
def test_padding_invariance_other_shapes(overrides, run):
    model = make_model(**overrides)
    rows = make_rows(lengths=(2, 7, 1, 4, 7))
    ids, mask, positions = pad(rows, "left", extra=2)
    with path(model, run):
        assert_rows_match_unpadded_runs(model, ids, mask, positions, rows)


@pytest.mark.parametrize(
    "run, packs, stepwise, native, gru_calls",
    [
        ("train", False, 0, 2, 0),
        ("train_torch", False, 2, 0, 0),
        ("packed", True, 0, 0, 0),
        ("stepwise_no_grad", False, 2, 0, 0),
        ("padded_no_grad", False, 0, 0, 4),
    ],
)
def test_paths_are_the_ones_the_tests_claim(run, packs, stepwise, native, gru_calls, monkeypatch):
    from textgru import modeling_textgru

    if native:
        native_training_kernels()
    calls = {"pack": 0, "stepwise": 0, "native": 0, "gru": 0}

    def counting(key, original):
        return lambda *a, **k: calls.__setitem__(key, calls[key] + 1) or original(*a, **k)

    monkeypatch.setattr(nn.utils.rnn, "pack_padded_sequence", counting("pack", nn.utils.rnn.pack_padded_sequence))
    monkeypatch.setattr(modeling_textgru, "_stepwise_states", counting("stepwise", modeling_textgru._stepwise_states))
    monkeypatch.setattr(modeling_textgru, "_native_forward", counting("native", modeling_textgru._native_forward))
    monkeypatch.setattr(nn.GRU, "forward", counting("gru", nn.GRU.forward))
    model = make_model()
    ids, mask, _ = pad(make_rows(), "right")
    with path(model, run):
        model(ids, attention_mask=mask)
    assert bool(calls["pack"]) == packs
    assert calls["stepwise"] == stepwise  # one call per layer, both directions at once
    assert calls["native"] == native  # the compiled recurrence: one call per layer too
    assert calls["gru"] == gru_calls  # nn.GRU modules called (two per layer)


@pytest.mark.parametrize("fill, packs", [(1.0, False), (0.5, True)])
def test_inference_packs_only_when_there_is_padding_to_skip(fill, packs, monkeypatch):
    calls = []
    original = nn.utils.rnn.pack_padded_sequence
    monkeypatch.setattr(nn.utils.rnn, "pack_padded_sequence", lambda *a, **k: calls.append(1) or original(*a, **k))
    model = make_model().eval()
    model.textgru.stepwise_inference_max_batch = 0  # it would take these 4 rows (and never packs)
    ids = torch.randint(1, VOCAB, (4, 10))
    mask = torch.ones_like(ids)
    mask[1:, int(10 * fill) :] = 0  # fill 1.0: no padding; 0.5: rows 1-3 half padding (62% real tokens)
    with torch.no_grad():
        model(ids, attention_mask=mask)
    assert bool(calls) == packs


@pytest.mark.parametrize("pooling", POOLINGS)
def test_packed_and_padded_paths_agree(pooling):
    model = make_model(pooling=pooling)
    ids, mask, _ = pad(make_rows(), "right")
    results = {}
    for run in ("train", "packed", "padded_no_grad"):
        with path(model, run):
            results[run] = model(ids, attention_mask=mask, output_hidden_states=True)
    for run in ("packed", "padded_no_grad"):
        torch.testing.assert_close(results[run].logits, results["train"].logits.detach(), rtol=0, atol=ATOL)


@pytest.mark.parametrize("run", PATHS)
def test_bidirectional_layer_matches_torch_on_unpadded_rows(run):
    """An independent reference: torch's own bidirectional GRU on each row alone (no padding, so it is exact).

    The self-consistency tests above would still pass if the backward GRU read the row forwards, or read the
    padding first in every case; this one would not.
    """
    model = make_model(head=False, num_hidden_layers=1, residual="none", layer_norm=False, pooling="mean")
    rnn = model.layers[0].rnn
    reference = nn.GRU(24, HIDDEN, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(reference, name).copy_(getattr(rnn.forward_gru, name))
            getattr(reference, f"{name}_reverse").copy_(getattr(rnn.backward_gru, name))
    rows = make_rows()
    for side in ("right", "left"):
        ids, mask, positions = pad(rows, side)
        with path(model, run):
            layer_output = model(ids, attention_mask=mask, output_hidden_states=True).hidden_states[1]
            for i, (row, where) in enumerate(zip(rows, positions)):
                expected = reference(model.embeddings(row[None]))[0][0]  # (length, 2 * hidden)
                got = layer_output[i, where]
                torch.testing.assert_close(got[:, HIDDEN:], expected[:, HIDDEN:], rtol=0, atol=ATOL, msg="backward")
                torch.testing.assert_close(got[:, :HIDDEN], expected[:, :HIDDEN], rtol=0, atol=ATOL, msg="forward")


# ---------------------------------------------------------------------------------------------------------------------
# The stepwise GRU (textgru's own autograd for training on the CPU)


def _training_run(model, ids, mask, stepwise: bool):
    """Logits, every parameter's gradient and the input embeddings' gradient of one training forward/backward."""
    encoder = model.textgru
    encoder.stepwise_training = stepwise
    model.zero_grad()
    embeds = encoder.embeddings(ids).detach().requires_grad_(True)
    logits = model(inputs_embeds=embeds, attention_mask=mask).logits
    (logits * torch.linspace(-1, 1, logits.numel(), dtype=logits.dtype).view_as(logits)).sum().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return logits.detach(), grads, embeds.grad


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("residual", RESIDUALS)
def test_stepwise_training_gru_equals_nn_gru(residual, bidirectional):
    """Same logits and gradients (every parameter, and the inputs) as `nn.GRU`, in float64 to rounding, on
    left-padded mixed lengths with an empty row and a one-token row."""
    model = make_model(residual=residual, bidirectional=bidirectional).double().train()
    ids, mask, _ = pad(make_rows((5, 1, 9, 0, 3)), "left")
    logits, grads, input_grad = _training_run(model, ids, mask, stepwise=True)
    ref_logits, ref_grads, ref_input_grad = _training_run(model, ids, mask, stepwise=False)
    gru_grads = [name for name in ref_grads if "_gru." in name]
    assert len(gru_grads) == 4 * model.config.num_hidden_layers * (2 if bidirectional else 1)
    assert sorted(grads) == sorted(ref_grads)
    torch.testing.assert_close(logits, ref_logits, rtol=0, atol=1e-12)
    for name in ref_grads:
        assert ref_grads[name].abs().max() > 0, name  # a gradient that is there to compare
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=0, atol=1e-12, msg=name)
    torch.testing.assert_close(input_grad, ref_input_grad, rtol=0, atol=1e-12)


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("residual", RESIDUALS)
def test_stepwise_inference_equals_nn_gru(residual, bidirectional):
    """Under no_grad the recurrence runs without saving anything (one reused slot per buffer): logits and every
    layer's states equal nn.GRU's (padded and packed paths) in float64 to rounding, on left-padded mixed lengths with
    an empty row and a one-token row."""
    model = make_model(residual=residual, bidirectional=bidirectional).double()
    ids, mask, _ = pad(make_rows((5, 1, 9, 0, 3)), "left")
    results = {}
    for run in ("stepwise_no_grad", "padded_no_grad", "packed"):
        with path(model, run):
            results[run] = model(ids, attention_mask=mask, output_hidden_states=True)
    for run in ("padded_no_grad", "packed"):
        torch.testing.assert_close(results["stepwise_no_grad"].logits, results[run].logits, rtol=0, atol=1e-12)
        for got, expected in zip(results["stepwise_no_grad"].hidden_states, results[run].hidden_states, strict=True):
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "setting, expected_calls",
    [("small_batch", 2), ("large_batch", 0), ("switched_off", 0), ("autocast", 0), ("int8", 0)],
)
def test_stepwise_inference_runs_only_for_small_cpu_batches(setting, expected_calls, monkeypatch):
    from textgru import modeling_textgru

    calls = []
    original = modeling_textgru._stepwise_states
    monkeypatch.setattr(modeling_textgru, "_stepwise_states", lambda *a, **k: calls.append(k) or original(*a, **k))
    model = make_model().eval()
    ids, mask, _ = pad(make_rows(), "right")
    encoder = model.textgru
    encoder.stepwise_inference_max_batch = {"large_batch": ids.size(0) - 1, "switched_off": 0}.get(setting, 16)
    encoder.stepwise_training = False  # the training switch does not govern inference
    if setting == "int8":
        from textgru.export import quantize_dynamic

        model = quantize_dynamic(model)
    context = torch.autocast("cpu", dtype=torch.bfloat16) if setting == "autocast" else contextlib.nullcontext()
    with torch.no_grad(), context:
        model(ids, attention_mask=mask)
    assert calls == [{"save": False}] * expected_calls


def _cached_weights(model) -> list:
    return [layer.rnn._stepwise_weights for layer in model.textgru.layers]


def test_stepwise_weight_cache_is_kept_while_weights_stand_still_and_rebuilt_when_they_move():
    model = make_model().eval()
    ids, mask, _ = pad(make_rows(), "right")
    with torch.no_grad():
        uncached = model(ids, attention_mask=mask).logits
        assert _cached_weights(model) == [None, None]  # off by default: plain model calls keep nothing
        model.textgru.cache_stepwise_weights()
        first = model(ids, attention_mask=mask).logits
        kept = _cached_weights(model)
        assert all(c is not None for c in kept)
        torch.testing.assert_close(first, uncached, rtol=0, atol=0)
        model(ids, attention_mask=mask)
        assert all(a is b for a, b in zip(_cached_weights(model), kept, strict=True))  # reused, not rebuilt

        def changed(edit) -> None:
            edit()
            got = model(ids, attention_mask=mask).logits
            model.textgru.cache_stepwise_weights(False)
            expected = model(ids, attention_mask=mask).logits  # built afresh from the parameters
            model.textgru.cache_stepwise_weights()
            assert not torch.equal(got, first), "the edit should change the logits"
            torch.testing.assert_close(got, expected, rtol=0, atol=0)

        gru = model.textgru.layers[1].rnn.backward_gru
        changed(lambda: gru.weight_hh_l0.mul_(1.5))  # in place (version moves), e.g. an optimizer step
        changed(lambda: setattr(gru, "bias_ih_l0", nn.Parameter(gru.bias_ih_l0 + 0.5)))  # replaced (new data)
        state = {k: v + 0.1 if "forward_gru.weight_ih" in k else v for k, v in model.state_dict().items()}
        changed(lambda: model.load_state_dict(state))
    model.textgru.cache_stepwise_weights(False)
    assert _cached_weights(model) == [None, None]


def test_stepwise_weight_cache_is_not_used_with_gradients():
    model = make_model().train()
    model.textgru.cache_stepwise_weights()
    ids, mask, _ = pad(make_rows(), "right")
    model(ids, attention_mask=mask).logits.sum().backward()
    assert _cached_weights(model) == [None, None]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.textgru.layers[0].rnn.parameters())


@pytest.mark.parametrize("steps", [1, 4])
def test_stepwise_gru_passes_gradcheck(steps):
    from textgru.modeling_textgru import _StepwiseGRU

    generator = torch.Generator().manual_seed(0)
    directions, batch, inputs, hidden = 2, 3, 5, 4

    def tensor(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64).requires_grad_(True)

    x = tensor(directions, steps, batch, inputs)
    weights = (
        tensor(directions, 3 * hidden, inputs),
        tensor(directions, 3 * hidden, hidden),
        tensor(directions, 3 * hidden),
        tensor(directions, 3 * hidden),
    )
    assert torch.autograd.gradcheck(_StepwiseGRU.apply, (x, *weights))


@pytest.mark.parametrize("variant", ["best", "avx2", "generic"])
@pytest.mark.parametrize("m, n, k", [(32, 384, 128), (5, 37, 3), (7, 64, 300), (1, 129, 129), (9, 16, 1)])
@pytest.mark.parametrize("accumulate", [0, 1])
def test_compiled_training_product(m, n, k, accumulate, variant):
    """The recurrence's register-tiled product (row, column and K-block tails; strided rows) against numpy."""
    import ctypes

    import numpy as np

    from textgru.kernels import KernelUnavailableError, load_training

    try:
        lib = load_training(variant)
    except KernelUnavailableError as err:
        pytest.skip(f"textgru's compiled training recurrence cannot be built here: {err}")
    rng = np.random.default_rng(m * n + k)
    a = rng.standard_normal((m, k + 3), dtype=np.float32)  # row stride k + 3: only the first k columns are read
    w = rng.standard_normal((k, n + 5), dtype=np.float32)
    c = rng.standard_normal((m, n + 2), dtype=np.float32)
    expected = a[:, :k].astype(np.float64) @ w[:, :n] + (c[:, :n] if accumulate else 0)
    untouched = c[:, n:].copy()
    pointer = lambda array: array.ctypes.data_as(ctypes.c_void_p)  # noqa: E731
    lib.textgru_train_gemm(m, n, k, pointer(a), k + 3, pointer(w), n + 5, pointer(c), n + 2, accumulate)
    np.testing.assert_allclose(c[:, :n], expected, rtol=1e-5, atol=1e-4 * np.sqrt(k))
    np.testing.assert_array_equal(c[:, n:], untouched)  # nothing written past column n


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("variant", ["best", "avx2", "generic"])
@pytest.mark.parametrize(
    "directions, steps, batch, inputs, hidden",
    [(2, 7, 5, 11, 37), (1, 1, 1, 3, 16), (2, 4, 9, 40, 64), (2, 6, 4, 8, 17), (1, 3, 2, 5, 3), (2, 3, 6, 9, 200)],
)
def test_compiled_training_recurrence_matches_pytorch(directions, steps, batch, inputs, hidden, variant, threads):
    """The compiled per-step loops (every vector width, with row and column tails, one and two threads) give
    `_StepwiseGRU`'s states and every gradient as the PyTorch loops do, to fp32 rounding."""
    from textgru.kernels import KernelUnavailableError, load_training
    from textgru.modeling_textgru import _StepwiseGRU

    try:
        lib = load_training(variant)
    except KernelUnavailableError as err:
        pytest.skip(f"textgru's compiled training recurrence cannot be built here: {err}")
    generator = torch.Generator().manual_seed(steps * 100 + hidden)
    shapes = [
        (directions, steps, batch, inputs),
        (directions, 3 * hidden, inputs),
        (directions, 3 * hidden, hidden),
        (directions, 3 * hidden),
        (directions, 3 * hidden),
    ]
    tensors = [torch.randn(*shape, generator=generator) * 0.5 for shape in shapes]
    grad_states = torch.randn(directions, steps, batch, hidden, generator=generator)
    previous = torch.get_num_threads()
    results = []
    try:
        torch.set_num_threads(threads)
        for native in (None, lib):
            leaves = [t.clone().requires_grad_(True) for t in tensors]
            states = _StepwiseGRU.apply(*leaves, native)
            states.backward(grad_states)
            results.append([states.detach(), *(leaf.grad for leaf in leaves)])
    finally:
        torch.set_num_threads(previous)
    for name, got, expected in zip(["states", "x", "weight_ih", "weight_hh", "bias_ih", "bias_hh"], *results[::-1]):
        assert expected.abs().max() > 0 or (name == "weight_hh" and steps == 1), name  # one step: h = 0 only
        atol = 2e-6 * float(expected.abs().max()) + 1e-6  # sums of up to 600 products: rounding scales with them
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=atol, msg=name)


@pytest.mark.parametrize("scale", [1e-7, 1e-4, 1.0, 30.0, 1e4])
def test_compiled_training_recurrence_is_as_accurate_as_pytorch_fp32(scale):
    """Inputs and biases from tiny (where tanh(a) ~ a must keep its relative accuracy) to saturating: states and
    every gradient of the compiled loops are as close to a float64 reference as PyTorch's own fp32 loops are."""
    from textgru.modeling_textgru import _StepwiseGRU

    lib = native_training_kernels()
    generator = torch.Generator().manual_seed(7)
    directions, steps, batch, inputs, hidden = 2, 5, 3, 7, 37
    tensors = [
        torch.randn(directions, steps, batch, inputs, generator=generator, dtype=torch.float64) * scale,
        torch.randn(directions, 3 * hidden, inputs, generator=generator, dtype=torch.float64),
        torch.randn(directions, 3 * hidden, hidden, generator=generator, dtype=torch.float64),
        torch.randn(directions, 3 * hidden, generator=generator, dtype=torch.float64) * scale,
        torch.randn(directions, 3 * hidden, generator=generator, dtype=torch.float64) * scale,
    ]
    grad_states = torch.randn(directions, steps, batch, hidden, generator=generator, dtype=torch.float64)

    def run(dtype, native):
        leaves = [t.detach().to(dtype).clone().requires_grad_(True) for t in tensors]
        states = _StepwiseGRU.apply(*leaves, native)
        states.backward(grad_states.to(dtype))
        return [states.detach().double(), *(leaf.grad.double() for leaf in leaves)]

    def error(values, reference):  # relative, over the entries not lost to cancellation
        keep = reference.abs() > 1e-3 * reference.abs().max()
        return float(((values - reference).abs() / reference.abs())[keep].max())

    reference, pytorch, compiled = run(torch.float64, None), run(torch.float32, None), run(torch.float32, lib)
    names = ["states", "x", "weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    for name, ref, torch_fp32, ours in zip(names, reference, pytorch, compiled):
        assert torch.isfinite(ours).all(), name
        assert error(ours, ref) <= 4 * error(torch_fp32, ref) + 1e-5, (name, error(ours, ref), error(torch_fp32, ref))


def test_compiled_training_recurrence_keeps_nan_and_inf_as_pytorch_does():
    """A NaN input gives NaN exactly where the PyTorch loop does; +-inf saturates the gates instead of poisoning."""
    from textgru.modeling_textgru import _StepwiseGRU

    lib = native_training_kernels()
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(1, 4, 3, 5, generator=generator)
    weights = [torch.randn(*shape, generator=generator) * 0.5 for shape in [(1, 48, 5), (1, 48, 16), (1, 48), (1, 48)]]
    x_nan = x.clone()
    x_nan[0, 1, 2, 0] = float("nan")  # row 2 from step 1 on
    expected, got = (_StepwiseGRU.apply(x_nan, *weights, native) for native in (None, lib))
    assert torch.equal(torch.isnan(got), torch.isnan(expected)) and torch.isnan(got).any()
    x_inf = x.clone()
    x_inf[0, 0, 0] = float("inf")
    x_inf[0, 0, 1] = -float("inf")
    expected, got = (_StepwiseGRU.apply(x_inf, *weights, native) for native in (None, lib))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5, equal_nan=True)


def test_stepwise_gru_refuses_double_backward():
    """Its backward pass is written out and not itself differentiable: asking for a second derivative must fail
    rather than return one that leaves out the recurrence (both loops)."""
    from textgru.modeling_textgru import _StepwiseGRU

    lib = native_training_kernels()
    generator = torch.Generator().manual_seed(0)
    for native in (None, lib):
        x = torch.randn(2, 3, 2, 4, generator=generator).requires_grad_(True)
        weights = [
            torch.randn(*s, generator=generator).requires_grad_(True)
            for s in [(2, 12, 4), (2, 12, 4), (2, 12), (2, 12)]
        ]
        (grad,) = torch.autograd.grad(_StepwiseGRU.apply(x, *weights, native).square().sum(), x, create_graph=True)
        with pytest.raises(RuntimeError):
            grad.sum().backward()


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("residual", RESIDUALS)
def test_native_training_equals_pytorch_training(residual, bidirectional, monkeypatch):
    """A whole model's logits and gradients with the compiled recurrence match the PyTorch loop's (fp32)."""
    from textgru import modeling_textgru

    native_training_kernels()
    model = make_model(residual=residual, bidirectional=bidirectional).train()
    ids, mask, _ = pad(make_rows((5, 1, 9, 0, 3)), "left")
    runs, calls = [], []
    original = modeling_textgru._native_forward
    monkeypatch.setattr(modeling_textgru, "_native_forward", lambda *a: calls.append(1) or original(*a))
    for native in (True, False):
        model.textgru.native_training = native
        runs.append(_training_run(model, ids, mask, stepwise=True))
    assert len(calls) == model.config.num_hidden_layers  # the first run took the compiled loops, the second not
    (logits, grads, input_grad), (ref_logits, ref_grads, ref_input_grad) = runs
    torch.testing.assert_close(logits, ref_logits, rtol=0, atol=1e-5)
    assert sorted(grads) == sorted(ref_grads)
    for name in ref_grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-4, atol=1e-5, msg=name)
    torch.testing.assert_close(input_grad, ref_input_grad, rtol=1e-4, atol=1e-5)


def test_training_falls_back_to_pytorch_without_the_compiled_recurrence(monkeypatch, caplog):
    """No C compiler (or a failed build): one warning, then training runs the PyTorch loop, same values."""
    from textgru import kernels, modeling_textgru

    def unavailable(variant="best"):
        raise kernels.KernelUnavailableError("no C compiler (simulated)")

    monkeypatch.setattr(modeling_textgru, "_NATIVE_KERNELS", [])
    monkeypatch.setattr(kernels, "load_training", unavailable)
    model = make_model().train()
    ids, mask, _ = pad(make_rows(), "right")
    with caplog.at_level("WARNING"):
        logits, grads, _ = _training_run(model, ids, mask, stepwise=True)
        _training_run(model, ids, mask, stepwise=True)
    warnings = [r.getMessage() for r in caplog.records if "compiled training recurrence" in r.getMessage()]
    assert len(warnings) == 1 and "no C compiler (simulated)" in warnings[0]
    assert modeling_textgru._native_kernels() is None
    model.textgru.native_training = False
    ref_logits, ref_grads, _ = _training_run(model, ids, mask, stepwise=True)
    torch.testing.assert_close(logits, ref_logits, rtol=0, atol=0)
    for name in ref_grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=0, atol=0, msg=name)


def test_native_training_runs_fp32_only():
    """A float64 model takes the PyTorch loop (the compiled recurrence is fp32): exact against nn.GRU above."""
    from textgru import modeling_textgru

    native_training_kernels()  # else this would pass for want of the compiled loops
    calls = []
    original = modeling_textgru._native_forward
    modeling_textgru._native_forward = lambda *a: calls.append(1) or original(*a)
    try:
        model = make_model().double().train()
        ids, mask, _ = pad(make_rows(), "right")
        model(ids, attention_mask=mask).logits.sum().backward()
    finally:
        modeling_textgru._native_forward = original
    assert calls == []


@pytest.mark.parametrize(
    "setting, expected_calls",
    [
        ("train", 2),
        ("no_grad", 0),
        ("switched_off", 0),
        ("autocast", 0),
        ("large_batch", 0),
        ("large_batch_native", 2),
        ("large_batch_pytorch_loop", 0),
        ("large_batch_float64", 0),
    ],
)
def test_stepwise_gru_runs_only_when_training_on_the_cpu(setting, expected_calls, monkeypatch):
    from textgru import modeling_textgru

    if setting == "large_batch_native":
        native_training_kernels()
    calls = []
    original = modeling_textgru._StepwiseGRU.apply
    monkeypatch.setattr(modeling_textgru._StepwiseGRU, "apply", lambda *a: calls.append(1) or original(*a))
    model = make_model().train()
    if setting == "large_batch_float64":  # the compiled loops are fp32: past the PyTorch loop's limit, nn.GRU runs
        model.double()
    model.textgru.stepwise_training = setting != "switched_off"
    ids, mask, _ = pad(make_rows(), "right")
    if setting.startswith("large_batch"):  # more rows than the PyTorch loop is measured to win at
        model.textgru.stepwise_max_batch = ids.size(0) - 1
    if setting == "large_batch":  # and than the compiled loop's limit: nn.GRU runs
        model.textgru.native_max_batch = ids.size(0) - 1
    model.textgru.native_training = setting != "large_batch_pytorch_loop"  # the compiled loop: up to 128 rows
    if setting == "no_grad":
        context = torch.no_grad()
    elif setting == "autocast":
        context = torch.autocast("cpu", dtype=torch.bfloat16)
    else:
        context = contextlib.nullcontext()
    with context:
        model(ids, attention_mask=mask)
    assert len(calls) == expected_calls  # one call per layer (both directions at once)


@pytest.mark.parametrize("hidden, limit", [(128, 128), (256, 128), (512, 32)])
def test_compiled_loops_raise_the_stepwise_limit_only_where_measured_faster(hidden, limit):
    """docs/design.md: up to 128 rows the compiled loops beat nn.GRU at hidden <= 256; at 512 they are level."""
    encoder = TextGRUModel(make_config(hidden_size=hidden, embedding_size=8, attention_hidden_size=8))
    assert encoder.native_max_batch == limit and encoder.stepwise_max_batch == 32


def test_padding_receives_no_gradient():
    model = make_model().train()
    ids, mask, positions = pad(make_rows(), "left")
    embeds = model.textgru.embeddings(ids).detach().requires_grad_(True)
    model(inputs_embeds=embeds, attention_mask=mask).logits.square().sum().backward()
    real = mask.bool()
    assert torch.all(embeds.grad[~real] == 0), "outputs must not depend on what sits in padded slots"
    assert embeds.grad[real].abs().sum(-1).min() > 0, "every real token must influence the output"


# ---------------------------------------------------------------------------------------------------------------------
# Pooling


@pytest.mark.parametrize("run", PATHS)
@pytest.mark.parametrize("side", ["right", "left", "scattered"])
def test_attention_pooling_gives_padding_exactly_zero_weight(side, run):
    model = make_model(head=False, num_attention_heads=2)
    rows = make_rows()
    ids, mask, positions = pad(rows, side)
    with path(model, run):
        out = model(ids, attention_mask=mask, output_attentions=True)
    weights = out.attentions[0]  # (batch, heads, seq_len), in the caller's token positions
    assert torch.all(weights[mask[:, None, :].expand_as(weights) == 0] == 0)
    assert torch.all(weights >= 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(len(rows), 2), rtol=0, atol=ATOL)
    # the pooled vector is the weighted sum of the token states, head by head
    expected = torch.einsum("bhs,bsd->bhd", weights, out.last_hidden_state).flatten(1)
    torch.testing.assert_close(out.pooler_output, expected, rtol=0, atol=ATOL)


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("pooling", ["mean", "max", "last"])
def test_simple_poolings_read_only_real_tokens(pooling, bidirectional):
    model = make_model(head=False, pooling=pooling, bidirectional=bidirectional).eval()
    rows = make_rows()
    ids, mask, positions = pad(rows, "scattered")
    with torch.no_grad():
        out = model(ids, attention_mask=mask, output_attentions=True)
    assert out.attentions is None  # only attention pooling has weights to show
    for i, where in enumerate(positions):
        states = out.last_hidden_state[i, where]  # (length, width), real tokens in reading order
        if pooling == "mean":
            expected = states.mean(0)
        elif pooling == "max":
            expected = states.max(0).values
        elif bidirectional:  # forward direction's final state + backward direction's final state (at the start)
            expected = torch.cat([states[-1, :HIDDEN], states[0, HIDDEN:]])
        else:
            expected = states[-1]
        torch.testing.assert_close(out.pooler_output[i], expected, rtol=0, atol=ATOL)


# ---------------------------------------------------------------------------------------------------------------------
# Empty rows and empty batches


@pytest.mark.parametrize("run", PATHS)
@pytest.mark.parametrize("pooling", POOLINGS)
def test_empty_rows_pool_to_zero_and_logits_equal_the_bias(pooling, run):
    model = make_model(pooling=pooling)  # perturbed: the classifier bias is not zero
    assert model.classifier.bias.abs().min() > 0
    rows = make_rows(lengths=(4, 6))
    ids, mask, _ = pad(rows, "right")
    ids = torch.cat([ids[:1], ids[:1], ids[1:]])  # rows: real, empty, real
    mask = torch.cat([mask[:1], torch.zeros_like(mask[:1]), mask[1:]])
    with path(model, run):
        encoded = model.textgru(ids, attention_mask=mask, output_attentions=True)
        logits = model(ids, attention_mask=mask).logits
        alone = [model(row[None]).logits[0] for row in rows]
    assert torch.isfinite(logits).all() and torch.isfinite(encoded.last_hidden_state).all()
    assert torch.all(encoded.pooler_output[1] == 0)
    assert torch.all(encoded.last_hidden_state[1] == 0)
    torch.testing.assert_close(logits[1], model.classifier.bias.detach(), rtol=0, atol=0)
    if pooling == "attention":
        assert torch.all(encoded.attentions[0][1] == 0)
    torch.testing.assert_close(logits[0], alone[0], rtol=0, atol=ATOL)  # neighbours are unaffected
    torch.testing.assert_close(logits[2], alone[1], rtol=0, atol=ATOL)


@pytest.mark.parametrize("run", PATHS)
def test_a_batch_of_only_empty_rows(run):
    model = make_model()
    ids = torch.randint(1, VOCAB, (3, 5))
    with path(model, run):
        logits = model(ids, attention_mask=torch.zeros_like(ids)).logits
    torch.testing.assert_close(logits, model.classifier.bias.detach().expand(3, -1), rtol=0, atol=0)


@pytest.mark.parametrize("run", PATHS)
def test_zero_length_inputs_behave_like_empty_rows(run):
    model = make_model()
    ids = torch.zeros(2, 0, dtype=torch.long)
    with path(model, run):
        logits = model(ids, attention_mask=torch.zeros_like(ids)).logits
    torch.testing.assert_close(logits, model.classifier.bias.detach().expand(2, -1), rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------------------------
# Residual connections


def test_add_residual_changes_the_function_and_follows_its_formula():
    add = make_model(head=False, residual="add", embedding_size=2 * HIDDEN).eval()
    plain = TextGRUModel(make_config(residual="none", embedding_size=2 * HIDDEN)).eval()
    plain.load_state_dict(add.state_dict())  # same parameters: only the wiring differs
    ids, mask, _ = pad(make_rows(), "right")
    with torch.no_grad():
        out_add = add(ids, attention_mask=mask, output_hidden_states=True)
        out_plain = plain(ids, attention_mask=mask, output_hidden_states=True)
        assert (out_add.pooler_output - out_plain.pooler_output).abs().max() > 1e-3
        # x_1 = x_0 + GRU(norm(x_0)) and the plain stack's x_1 = GRU(norm(x_0)): the difference is x_0 itself
        x0 = out_add.hidden_states[0]
        torch.testing.assert_close(out_add.hidden_states[1] - out_plain.hidden_states[1], x0, rtol=0, atol=ATOL)


def test_gated_residual_has_gate_parameters_and_interpolates():
    model = make_model(head=False, residual="gated").eval()
    width = 2 * HIDDEN
    for layer in model.layers:
        assert isinstance(layer.gate, nn.Linear) and layer.gate.weight.shape == (width, 2 * width)
    assert all(layer.gate is None for layer in make_model(head=False, residual="add").layers)

    ids, mask, _ = pad(make_rows(), "right")
    real = mask.bool()
    with torch.no_grad():
        baseline = model(ids, attention_mask=mask, output_hidden_states=True)
        for layer in model.layers:
            layer.gate.weight.zero_()
            layer.gate.bias.fill_(-100.0)  # gates shut: every layer passes its (projected) input through
        shut = model(ids, attention_mask=mask, output_hidden_states=True)
        torch.testing.assert_close(shut.hidden_states[2][real], shut.hidden_states[1][real], rtol=0, atol=ATOL)
        projected = model.layers[0].projection(shut.hidden_states[0])
        torch.testing.assert_close(shut.hidden_states[1][real], projected[real], rtol=0, atol=ATOL)
        assert (baseline.pooler_output - shut.pooler_output).abs().max() > 1e-3

        for layer in model.layers:
            layer.gate.bias.fill_(100.0)  # gates open: a plain stack, the same as residual="none"
        opened = model(ids, attention_mask=mask)
        plain = TextGRUModel(make_config(residual="none")).eval()
        missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
        # the plain stack has neither gates nor a skip projection
        assert not missing and all(".gate." in name or ".projection." in name for name in unexpected)
        torch.testing.assert_close(
            opened.pooler_output, plain(ids, attention_mask=mask).pooler_output, rtol=0, atol=ATOL
        )


# ---------------------------------------------------------------------------------------------------------------------
# Losses and gradients


def test_single_label_loss_is_cross_entropy():
    model = make_model().eval()
    ids, mask, _ = pad(make_rows(), "left")
    labels = torch.tensor([2, 0, 1, -100])  # -100 is ignored, as everywhere in transformers
    out = model(ids, attention_mask=mask, labels=labels)
    assert model.config.problem_type == "single_label_classification"
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, labels, ignore_index=-100))


@pytest.mark.parametrize("dtype", [torch.float32, torch.long])
def test_multi_label_loss_is_binary_cross_entropy(dtype):
    model = make_model(problem_type="multi_label_classification").eval()
    ids, mask, _ = pad(make_rows(), "right")
    targets = torch.tensor([[1, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0]])
    out = model(ids, attention_mask=mask, labels=targets.to(dtype))
    torch.testing.assert_close(out.loss, F.binary_cross_entropy_with_logits(out.logits, targets.float()))


def test_regression_loss_is_mean_squared_error():
    model = make_model(num_labels=1, problem_type="regression").eval()
    ids, mask, _ = pad(make_rows(), "right")
    targets = torch.tensor([0.5, -1.0, 2.0, 0.0])
    out = model(ids, attention_mask=mask, labels=targets)
    assert out.logits.shape == (4, 1)
    torch.testing.assert_close(out.loss, F.mse_loss(out.logits.squeeze(-1), targets))


@pytest.mark.parametrize(
    "residual",
    [
        "none",
        "add",
        "gated",
    ],
)
@pytest.mark.parametrize("pooling", POOLINGS)
def test_backward_reaches_every_parameter(pooling, residual):
    model = make_model(pooling=pooling, residual=residual, num_attention_heads=2).train()
    ids, mask, _ = pad(make_rows(), "right")
    model(ids, attention_mask=mask, labels=torch.tensor([0, 1, 2, 1])).loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


@pytest.mark.parametrize(
    "overrides, labels",
    [
        ({"problem_type": "multi_label_classification"}, torch.tensor([[1.0, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0]])),
        ({"problem_type": "regression", "num_labels": 1}, torch.tensor([0.5, -1.0, 2.0, 0.0])),
    ],
)
def test_backward_is_finite_for_other_problem_types(overrides, labels):
    model = make_model(**overrides).train()
    ids, mask, _ = pad(make_rows(), "left")
    model(ids, attention_mask=mask, labels=labels).loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert grads["classifier.weight"].abs().sum() > 0 and grads["textgru.embeddings.weight"].abs().sum() > 0


def test_dropout_is_active_in_train_mode_only():
    model = make_model(embedding_dropout=0.3, hidden_dropout=0.3, classifier_dropout=0.3)
    ids, mask, _ = pad(make_rows(), "right")
    model.eval()
    torch.testing.assert_close(model(ids, attention_mask=mask).logits, model(ids, attention_mask=mask).logits)
    model.train()
    assert not torch.allclose(model(ids, attention_mask=mask).logits, model(ids, attention_mask=mask).logits)


def test_dropout_mask_keeps_each_element_with_probability_1_minus_p():
    """TextGRUDropout's CPU mask (16-bit lanes of 64-bit draws): every lane kept with probability 1 - p and
    independently of its neighbours, kept values scaled by 1 / (1 - p), the gradient the same mask."""
    from textgru.modeling_textgru import TextGRUDropout

    p = 0.1
    dropout = TextGRUDropout(p).train()
    torch.manual_seed(0)
    x = torch.rand(250, 4001) + 0.5  # an odd element count: not a whole number of 64-bit draws
    x.requires_grad_(True)
    y = dropout(x)
    kept = y != 0
    torch.testing.assert_close(y[kept], (x / (1 - p))[kept])  # kept: scaled; dropped: exactly zero
    # each of the four 16-bit lanes of a draw (a biased top lane would show as a lane kept ~100% of the time)
    flat = kept.reshape(-1)
    lanes = [flat[k : flat.numel() - flat.numel() % 4 : 4].float().mean().item() for k in range(4)]
    assert all(abs(lane - (1 - p)) < 0.003 for lane in lanes), lanes  # 250k per lane: sd 0.0006
    pairs = (flat[:-1] & flat[1:]).float().mean().item()  # neighbours independent: P(both kept) = (1 - p)^2
    assert abs(pairs - (1 - p) ** 2) < 0.003
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() / (1 - p))
    # repeatable under a seed, fresh on every call, dtype kept, any shape
    torch.manual_seed(1)
    first = dropout(torch.ones(3, 5, 7))
    torch.manual_seed(1)
    torch.testing.assert_close(dropout(torch.ones(3, 5, 7)), first)
    assert not torch.equal(dropout(torch.ones(3, 5, 7)), first)
    assert dropout(torch.ones(2, 3, dtype=torch.bfloat16)).dtype == torch.bfloat16
    assert dropout(torch.ones(0, 4)).shape == (0, 4)
    # evaluation and p = 0 leave the input as it is
    assert dropout.eval()(x) is x and TextGRUDropout(0.0).train()(x) is x


# ---------------------------------------------------------------------------------------------------------------------
# inputs_embeds


@pytest.mark.parametrize("run", PATHS)
def test_inputs_embeds_path_equals_input_ids_path(run):
    model = make_model()
    ids, mask, _ = pad(make_rows(), "left")
    with path(model, run):
        from_ids = model(ids, attention_mask=mask).logits
        from_embeds = model(inputs_embeds=model.get_input_embeddings()(ids), attention_mask=mask).logits
    torch.testing.assert_close(from_embeds, from_ids, rtol=0, atol=ATOL)


# ---------------------------------------------------------------------------------------------------------------------
# Initialisation, saving and loading


def assert_sane_parameters(model: nn.Module) -> None:
    for name, param in model.named_parameters():
        assert torch.isfinite(param).all(), f"{name} is not finite"
        assert param.abs().max() < 10, f"{name} holds garbage (max |w| = {param.abs().max():.3g})"
    for module in model.modules():
        if isinstance(module, nn.GRU):
            for name, param in module.named_parameters():
                if name.startswith("weight"):
                    assert param.std() > 1e-3, f"GRU {name} was left at zero"


def test_fresh_model_is_initialised_sensibly():
    torch.manual_seed(0)
    model = TextGRUForSequenceClassification(make_config(pad_token_id=5))
    assert_sane_parameters(model)
    assert torch.all(model.textgru.embeddings.weight[5] == 0), "the padding embedding starts at zero"
    assert model.textgru.embeddings.weight.std().item() == pytest.approx(0.02, rel=0.2)  # initializer_range
    assert torch.all(model.textgru.final_norm.weight == 1) and torch.all(model.classifier.bias == 0)
    assert type(AutoModelForSequenceClassification.from_config(model.config)) is TextGRUForSequenceClassification


def test_save_and_load_give_identical_logits(tmp_path):
    model = make_model(residual="gated", pooling="attention").eval()
    ids, mask, _ = pad(make_rows(), "left")
    with torch.no_grad():
        expected = model(ids, attention_mask=mask).logits
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert (tmp_path / "config.json").is_file()

    for loaded in (
        TextGRUForSequenceClassification.from_pretrained(tmp_path),
        AutoModelForSequenceClassification.from_pretrained(tmp_path),
    ):
        assert type(loaded) is TextGRUForSequenceClassification
        assert not loaded.training  # from_pretrained returns an eval-mode model
        assert loaded.config.residual == "gated"
        for name, param in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[name], param), name
        with torch.no_grad():
            torch.testing.assert_close(loaded(ids, attention_mask=mask).logits, expected, rtol=0, atol=0)


def test_encoder_checkpoint_loads_into_the_classifier(tmp_path):
    encoder = make_model(head=False)
    encoder.save_pretrained(tmp_path)
    classifier = TextGRUForSequenceClassification.from_pretrained(tmp_path, num_labels=4)
    assert classifier.config.num_labels == 4
    assert_sane_parameters(classifier)  # the new head was initialised, not left as garbage
    assert classifier.classifier.weight.std().item() == pytest.approx(0.02, rel=0.3)
    for name, param in encoder.state_dict().items():
        assert torch.equal(classifier.textgru.state_dict()[name], param), f"{name} did not load"

    ids, mask, _ = pad(make_rows(), "right")
    with torch.no_grad():
        torch.testing.assert_close(
            classifier.textgru(ids, attention_mask=mask).pooler_output,
            encoder.eval()(ids, attention_mask=mask).pooler_output,
            rtol=0,
            atol=0,
        )


def test_classifier_checkpoint_loads_into_the_encoder(tmp_path):
    classifier = make_model()
    classifier.save_pretrained(tmp_path)
    for encoder in (TextGRUModel.from_pretrained(tmp_path), AutoModel.from_pretrained(tmp_path)):
        assert type(encoder) is TextGRUModel
        for name, param in classifier.textgru.state_dict().items():
            assert torch.equal(encoder.state_dict()[name], param), name


def test_missing_gru_weights_are_initialised_not_garbage(tmp_path):
    """transformers builds the model on the meta device and initialises only what the checkpoint lacks."""
    model = make_model()
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    dropped = [name for name in weights if ".backward_gru." in name or name.startswith("classifier.")]
    assert len(dropped) == 2 * 4 + 2
    save_file({k: v for k, v in weights.items() if k not in dropped}, tmp_path / "model.safetensors", {"format": "pt"})

    loaded = TextGRUForSequenceClassification.from_pretrained(tmp_path)
    assert_sane_parameters(loaded)
    state = loaded.state_dict()
    for name in dropped:
        assert not torch.equal(state[name], weights[name]), f"{name} should have been re-initialised"
        if "bias" in name:
            assert torch.all(state[name] == 0), name
    hh = state["textgru.layers.0.rnn.backward_gru.weight_hh_l0"]  # (3 * hidden, hidden), orthogonal columns
    torch.testing.assert_close(hh.T @ hh, torch.eye(HIDDEN), rtol=0, atol=1e-4)
    for name in weights.keys() - set(dropped):  # everything else loaded as saved
        assert torch.equal(state[name], weights[name]), name


def test_resize_token_embeddings_as_the_error_message_suggests():
    model = make_model().eval()
    with pytest.raises(ValueError, match="resize_token_embeddings"):
        model(torch.tensor([[VOCAB + 10]]))
    model.resize_token_embeddings(VOCAB + 20)
    assert model.config.vocab_size == VOCAB + 20
    logits = model(torch.tensor([[VOCAB + 10, 3]])).logits
    assert torch.isfinite(logits).all()


# ---------------------------------------------------------------------------------------------------------------------
# Errors a user can cause


@pytest.fixture(scope="module")
def classifier():
    return make_model().eval()


def test_token_id_past_the_vocabulary_names_the_limits(classifier):
    with pytest.raises(ValueError) as error:
        classifier(torch.tensor([[5, VOCAB, 7]]))
    message = str(error.value)
    assert f"token id {VOCAB}" in message and f"vocab_size={VOCAB}" in message and f"{VOCAB - 1}" in message
    assert "len(tokenizer)" in message


def test_negative_token_id_is_rejected(classifier):
    with pytest.raises(ValueError, match=r"token id -1 .*vocab_size=100"):
        classifier(torch.tensor([[5, -1, 7]]))


def test_attention_mask_of_the_wrong_shape_is_rejected(classifier):
    with pytest.raises(ValueError, match=r"attention_mask.*\(2, 4\).*\(2, 3\)"):
        classifier(torch.ones(2, 3, dtype=torch.long), attention_mask=torch.ones(2, 4, dtype=torch.long))


@pytest.mark.parametrize("shape", [(3,), (2, 3, 4)])  # a bare row, or one dimension too many
def test_input_ids_must_be_two_dimensional(classifier, shape):
    with pytest.raises(ValueError, match=r"\(batch, seq_len\)"):
        classifier(torch.ones(shape, dtype=torch.long))


def test_exactly_one_of_ids_or_embeddings(classifier):
    ids = torch.tensor([[1, 2]])
    with pytest.raises(ValueError, match="exactly one"):
        classifier(ids, inputs_embeds=classifier.get_input_embeddings()(ids))
    with pytest.raises(ValueError, match="exactly one"):
        classifier()


@pytest.mark.parametrize("bad_label", [3, -1, 17])
def test_label_out_of_range_names_num_labels(bad_label):
    model = make_model().eval()
    with pytest.raises(ValueError) as error:
        model(torch.tensor([[1, 2], [3, 4]]), labels=torch.tensor([0, bad_label]))
    message = str(error.value)
    assert f"label {bad_label}" in message and "num_labels=3" in message and "-100" in message


def test_multi_label_targets_of_the_wrong_shape_are_rejected():
    model = make_model(problem_type="multi_label_classification").eval()
    with pytest.raises(ValueError, match=r"multi-label targets need shape \(batch, num_labels=3\); got \(2,\)"):
        model(torch.tensor([[1, 2], [3, 4]]), labels=torch.tensor([1.0, 0.0]))


def test_inferred_multi_label_targets_of_the_wrong_shape_are_rejected():
    # problem_type unset: float targets with num_labels > 1 mean multi-label, as transformers' loss infers
    model = make_model().eval()
    assert model.config.problem_type is None
    with pytest.raises(ValueError, match=r"multi-label targets need shape \(batch, num_labels=3\); got \(2, 2\)"):
        model(torch.tensor([[1, 2], [3, 4]]), labels=torch.tensor([[1.0, 0.0], [0.0, 1.0]]))


def test_word_dropout_drops_whole_tokens_in_training_only():
    model = make_model(head=False, word_dropout=0.5, embedding_dropout=0.0, hidden_dropout=0.0)
    ids = torch.randint(1, VOCAB, (8, 12))
    torch.manual_seed(0)
    model.train()
    first = model(ids, output_hidden_states=True).hidden_states[0]  # (batch, seq_len, embedding_size)
    dropped = (first == 0).all(-1)  # whole token vectors zeroed, never single features only
    assert 0.3 < dropped.float().mean() < 0.7
    assert ((first == 0).any(-1) == dropped).all()
    model.eval()
    a, b = model(ids).pooler_output, model(ids).pooler_output
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not (model(ids, output_hidden_states=True).hidden_states[0] == 0).all(-1).any()


def test_training_mode_gru_call_equals_the_module_and_leaves_its_mode_alone():
    """What CUDA runs for an eval-mode forward that needs gradients (cuDNN's backward wants the `train` flag): the
    functional call gives the module's outputs and gradients, and never flips the shared module's mode."""
    from textgru.modeling_textgru import _gru_in_training_mode, _needs_backward

    torch.manual_seed(0)
    gru = perturb(nn.GRU(6, 5, batch_first=True)).eval()
    x = torch.randn(3, 7, 6, requires_grad=True)
    expected = gru(x)[0]
    (want_x,) = torch.autograd.grad(expected.square().sum(), x)
    want_w = torch.autograd.grad(gru(x)[0].square().sum(), gru.weight_hh_l0)[0]
    got = _gru_in_training_mode(gru, x)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    got_x, got_w = torch.autograd.grad(got.square().sum(), [x, gru.weight_hh_l0])
    torch.testing.assert_close(got_x, want_x, rtol=0, atol=1e-6)
    torch.testing.assert_close(got_w, want_w, rtol=0, atol=1e-6)
    assert not gru.training
    assert _needs_backward(gru, x)
    with torch.no_grad():
        assert not _needs_backward(gru, x)
    gru.requires_grad_(False)
    assert not _needs_backward(gru, x.detach())
