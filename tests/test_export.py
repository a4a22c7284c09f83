"""Fast inference formats: int8 quantisation (parity, save/load), ONNX (parity with eager), int8 ONNX (the GRU-to-Scan
rewrite, parity), `textgru export`."""

import copy
import json
import random
import sys

import numpy as np
import pytest
import torch
from torch import nn

from textgru import TextGRUConfig, TextGRUForSequenceClassification
from textgru.cli import main
from textgru.export import (
    MANIFEST_NAME,
    QUANTIZED_WEIGHTS_NAME,
    ExportFormatError,
    export_onnx,
    load_quantized,
    onnx_session,
    quantize_dynamic,
    require_onnxruntime,
    save_quantized,
)
from textgru.inference import OnnxTextClassifier, TextClassifier, encode_texts, fast_backend, load_classifier
from textgru.tokenization import train_tokenizer

POSITIVE = ["good", "great", "superb", "moving", "funny", "clever"]
NEGATIVE = ["bad", "dull", "awful", "boring", "weak", "messy"]
FILLER = ["the", "film", "plot", "actors", "a", "is", "and", "story", "scene", "it", "was", "with"]


def make_texts(n: int, seed: int) -> tuple[list[str], list[int]]:
    """Sentences whose label is 1 when they hold more positive than negative words (mixed lengths, 2-40 words)."""
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        label = rng.randint(0, 1)
        strong, weak = (POSITIVE, NEGATIVE) if label else (NEGATIVE, POSITIVE)
        words = [rng.choice(FILLER) for _ in range(rng.randint(1, 36))]
        words += [rng.choice(strong) for _ in range(rng.randint(1, 3))]
        words += [rng.choice(weak) for _ in range(rng.randint(0, 1))]
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(make_texts(300, seed=1)[0], vocab_size=600, show_progress=False)


@pytest.fixture(scope="module")
def trained(tokenizer):
    """A tiny TextGRU (hidden 32, 2 layers) trained 60 steps on the generated task: its logits mean something."""
    torch.manual_seed(0)
    config = TextGRUConfig(
        vocab_size=len(tokenizer),
        embedding_size=32,
        hidden_size=32,
        num_hidden_layers=2,
        attention_hidden_size=32,
        num_labels=2,
        id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1},
    )
    model = TextGRUForSequenceClassification(config)
    texts, labels = make_texts(640, seed=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for step in range(60):
        batch = slice((step * 32) % 640, (step * 32) % 640 + 32)
        enc = tokenizer(texts[batch], padding=True, return_tensors="pt")
        loss = model(**enc, labels=torch.tensor(labels[batch])).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


@pytest.fixture(scope="module")
def model_dir(trained, tokenizer, tmp_path_factory):
    path = tmp_path_factory.mktemp("fp32")
    trained.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def test_texts():
    return make_texts(200, seed=3)


def test_trained_fixture_learned_the_task(trained, tokenizer, test_texts):
    """Guards the parity tests below: agreement between two untrained models would say little."""
    texts, labels = test_texts
    predicted = TextClassifier(trained, tokenizer).predict(texts).argmax(-1)
    assert (predicted == np.array(labels)).mean() >= 0.8


def test_text_classifier_matches_the_model_on_every_recurrent_path(trained, tokenizer, test_texts):
    """Batches of 1 and 8 run the stepwise recurrence with cached weights; a batch of 40 (above
    `stepwise_inference_max_batch`) runs nn.GRU; all give the logits of a plain nn.GRU forward."""
    model = copy.deepcopy(trained)
    classifier = TextClassifier(model, tokenizer)
    assert all(layer.rnn.cache_stepwise_weights for layer in model.textgru.layers)
    texts = test_texts[0][:40]
    reference = copy.deepcopy(trained)
    reference.textgru.stepwise_inference_max_batch = 0
    expected = TextClassifier(reference, tokenizer).predict(texts, 40)
    for batch_size in (1, 8, 40):
        np.testing.assert_allclose(classifier.predict(texts, batch_size), expected, rtol=0, atol=1e-5)
    assert all(layer.rnn._stepwise_weights is not None for layer in model.textgru.layers)


def test_quantize_dynamic_replaces_every_gru_and_linear(trained):
    quantized = quantize_dynamic(trained)
    grus = [m for m in quantized.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.GRU)]
    assert len(grus) == 2 * trained.config.num_hidden_layers  # a forward and a backward GRU per layer
    assert not [m for m in quantized.modules() if type(m) in (nn.GRU, nn.Linear, nn.Embedding)]
    assert isinstance(quantized.textgru.embeddings, torch.ao.nn.quantized.Embedding)
    # the input model is untouched
    assert type(trained.textgru.layers[0].rnn.forward_gru) is nn.GRU
    assert not quantized.training


def test_quantized_model_runs_both_paths(trained, tokenizer, test_texts):
    """The packed path (no_grad) and the padded path (grad enabled, as in tracing) both run after quantisation."""
    quantized = quantize_dynamic(trained)
    # the task's own texts (random ids are token soup to this tiny model, and its int8 error there passed 0.1 in
    # about 1 draw of 20); one full 12-token row, one cut to 5 tokens, one to 1: the batch is half padding
    long_texts = [t for t in test_texts[0] if len(tokenizer(t)["input_ids"]) >= 12][:3]
    ids = torch.tensor([tokenizer(t)["input_ids"][:12] for t in long_texts])
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    mask[2, 1:] = 0
    with torch.no_grad():
        packed = quantized(input_ids=ids * mask, attention_mask=mask).logits
        reference = trained(input_ids=ids * mask, attention_mask=mask).logits
    padded = quantized(input_ids=ids * mask, attention_mask=mask).logits.detach()
    assert torch.isfinite(packed).all() and torch.isfinite(padded).all()
    # both approximate the fp32 logits; they differ slightly from each other (activation scales are per call)
    assert (packed - reference).abs().max() < 0.1
    assert (padded - reference).abs().max() < 0.1


def test_int8_parity_with_fp32(trained, tokenizer, test_texts):
    """int8 is approximate. Tolerance: >= 97% label agreement and every logit within 0.1 (logits span ~+-4)."""
    texts, _ = test_texts
    fp32 = TextClassifier(trained, tokenizer).predict(texts)
    int8 = TextClassifier(quantize_dynamic(trained), tokenizer).predict(texts)
    assert np.abs(fp32).max() > 1.0  # a trained model, so the bound below is meaningful
    assert (fp32.argmax(-1) == int8.argmax(-1)).mean() >= 0.97
    assert np.abs(fp32 - int8).max() < 0.1


def test_quantized_save_load_round_trip_is_exact(trained, tokenizer, test_texts, tmp_path):
    quantized = quantize_dynamic(trained)
    save_quantized(quantized, tmp_path / "int8", tokenizer=tokenizer)
    loaded = load_quantized(tmp_path / "int8")
    texts, _ = test_texts
    np.testing.assert_array_equal(
        TextClassifier(quantized, tokenizer).predict(texts), TextClassifier(loaded, tokenizer).predict(texts)
    )
    manifest = json.loads((tmp_path / "int8" / MANIFEST_NAME).read_text())
    assert manifest["format"] == "textgru-int8-dynamic" and manifest["torch_version"] == torch.__version__
    via_loader = load_classifier(tmp_path / "int8", device="cpu").predict(texts)  # int8 runs on the CPU only
    np.testing.assert_array_equal(via_loader, TextClassifier(loaded, tokenizer).predict(texts))
    with pytest.raises(ValueError, match="textgru-int8-dynamic export, which runs on the CPU only"):
        load_classifier(tmp_path / "int8", device="cuda")
    # ~4x smaller than the fp32 weights (8-bit weights plus per-tensor / per-row scales and pickling overhead)
    fp32_bytes = sum(p.numel() * 4 for p in trained.parameters())
    assert (tmp_path / "int8" / QUANTIZED_WEIGHTS_NAME).stat().st_size < 0.4 * fp32_bytes


def test_save_quantized_refuses_fp32_model_and_existing_folder(trained, tmp_path):
    with pytest.raises(ValueError, match="quantize_dynamic"):
        save_quantized(trained, tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="overwrite"):
        save_quantized(quantize_dynamic(trained), tmp_path / "b")
    assert (tmp_path / "b" / "keep.txt").exists()


def test_load_quantized_refuses_corrupt_or_mismatched_folders(trained, tokenizer, tmp_path):
    save_quantized(quantize_dynamic(trained), tmp_path / "int8", tokenizer=tokenizer)
    weights = tmp_path / "int8" / QUANTIZED_WEIGHTS_NAME
    data = weights.read_bytes()

    weights.write_bytes(data[: len(data) // 2])  # truncated download
    with pytest.raises(ExportFormatError, match="corrupt.*re-export"):
        load_quantized(tmp_path / "int8")

    weights.unlink()
    with pytest.raises(ExportFormatError, match="missing"):
        load_quantized(tmp_path / "int8")
    weights.write_bytes(data)

    config_file = tmp_path / "int8" / "config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "hidden_size": 48}))  # weights no longer fit the architecture
    with pytest.raises(ExportFormatError, match="does not match"):
        load_quantized(tmp_path / "int8")

    with pytest.raises(ExportFormatError, match="not a textgru export folder"):
        load_quantized(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ExportFormatError, match="unreadable"):
        load_quantized(tmp_path)


def test_onnx_matches_eager_on_mixed_lengths(trained, tokenizer, test_texts, tmp_path):
    pytest.importorskip("onnxruntime")
    export_onnx(trained, tokenizer, tmp_path / "onnx")
    onnx_model = OnnxTextClassifier(tmp_path / "onnx")
    eager = TextClassifier(trained, tokenizer)
    texts = test_texts[0][:50] + ["", "good"]  # an empty text and a one-token text too
    for batch_size in (1, 7, 64):  # batch and sequence axes are dynamic; unsorted batches mix lengths most
        for sort in (False, True):
            np.testing.assert_allclose(
                onnx_model.predict(texts, batch_size, sort_by_length=sort),
                eager.predict(texts, batch_size, sort_by_length=sort),
                atol=1e-4,
            )
    assert load_classifier(tmp_path / "onnx").classify(["good"])[0]["label"] == eager.classify(["good"])[0]["label"]
    for cpu in ("cpu", "cpu:0", torch.device("cpu", 0)):
        assert isinstance(load_classifier(tmp_path / "onnx", device=cpu), OnnxTextClassifier)
    for gpu in ("cuda", "cuda:1", torch.device("cuda", 0)):
        with pytest.raises(ValueError, match="runs on the CPU only.*save_pretrained"):  # before any GPU is needed
            load_classifier(tmp_path / "onnx", device=gpu)


def test_onnx_graph_is_one_bidirectional_gru_per_layer_with_sequence_lens(trained, tokenizer, tmp_path):
    """The fast path: the packed trace becomes fused ONNX GRUs that stop each row at its length (no reversal)."""
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    export_onnx(trained, tokenizer, tmp_path / "onnx")
    graph = onnx.load(str(tmp_path / "onnx" / "model.onnx")).graph
    grus = [node for node in graph.node if node.op_type == "GRU"]
    assert len(grus) == trained.config.num_hidden_layers
    for node in grus:
        attributes = {a.name: a for a in node.attribute}
        assert attributes["direction"].s == b"bidirectional"
        assert len(node.input) >= 5 and node.input[4]  # sequence_lens is wired
    assert not [node for node in graph.node if node.op_type in ("GatherElements", "TopK")]  # no reversal, no sort


def test_onnx_unidirectional_model_matches_eager(tokenizer, test_texts, tmp_path):
    pytest.importorskip("onnxruntime")
    torch.manual_seed(1)
    config = TextGRUConfig(vocab_size=len(tokenizer), embedding_size=16, hidden_size=16, bidirectional=False)
    model = TextGRUForSequenceClassification(config).eval()
    export_onnx(model, tokenizer, tmp_path / "onnx")
    texts = test_texts[0][:40] + [""]
    np.testing.assert_allclose(
        OnnxTextClassifier(tmp_path / "onnx").predict(texts, 16, sort_by_length=False),
        TextClassifier(model, tokenizer).predict(texts, 16, sort_by_length=False),
        atol=1e-4,
    )


def _session(path):
    pytest.importorskip("onnxruntime")
    return onnx_session(path)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_gru_to_scan_computes_what_the_gru_op_does(bidirectional, tokenizer, tmp_path):
    """The rewrite is exact in fp32: same logits as the GRU-op graph and eager PyTorch, on mixed lengths (an empty
    row, length-1 rows), for forward-only and bidirectional layers."""
    onnx = pytest.importorskip("onnx")
    from textgru.export import _CHECK_LENGTHS, _example_batch
    from textgru.onnx_graph import gru_to_scan

    torch.manual_seed(2)
    config = TextGRUConfig(
        vocab_size=len(tokenizer), embedding_size=8, hidden_size=16, bidirectional=bidirectional, initializer_range=0.5
    )
    model = TextGRUForSequenceClassification(config).eval()
    export_onnx(model, tokenizer, tmp_path / "onnx")
    original = onnx.load(str(tmp_path / "onnx" / "model.onnx"))
    rewritten = gru_to_scan(original)
    assert [n.op_type for n in original.graph.node].count("GRU") == config.num_hidden_layers
    assert "GRU" not in [n.op_type for n in rewritten.graph.node]
    assert [n.op_type for n in rewritten.graph.node].count("Scan") == config.num_hidden_layers
    onnx.save(rewritten, str(tmp_path / "scan.onnx"))
    gru_op, scan = _session(tmp_path / "onnx" / "model.onnx"), _session(tmp_path / "scan.onnx")
    for seed, lengths in enumerate(_CHECK_LENGTHS):
        ids, mask = _example_batch(config.vocab_size, config.pad_token_id, lengths, seed=seed)
        feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
        with torch.no_grad():
            eager = model(input_ids=ids, attention_mask=mask).logits.numpy()
        assert np.abs(eager).max() > 1.0  # large enough weights that a wrong gate or direction would show
        np.testing.assert_allclose(scan.run(None, feed)[0], gru_op.run(None, feed)[0], atol=1e-5)
        np.testing.assert_allclose(scan.run(None, feed)[0], eager, atol=1e-5)


def _gru_op_graph(direction: str, hidden: int, inputs: int, seed: int):
    """A graph of one ONNX `GRU` node as the exporter writes TextGRU's (linear_before_reset, sequence_lens), whose
    output (time, directions, batch, hidden) is the graph output."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    dirs = 2 if direction == "bidirectional" else 1
    weights = [
        numpy_helper.from_array(rng.normal(0, 0.5, shape).astype(np.float32), name)
        for name, shape in (
            ("W", (dirs, 3 * hidden, inputs)),
            ("R", (dirs, 3 * hidden, hidden)),
            ("B", (dirs, 6 * hidden)),
        )
    ]
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["time", "batch", inputs])
    lens = helper.make_tensor_value_info("L", TensorProto.INT32, ["batch"])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["time", dirs, "batch", hidden])
    node = helper.make_node(
        "GRU", ["X", "W", "R", "B", "L"], ["Y"], hidden_size=hidden, direction=direction, linear_before_reset=1
    )
    return helper.make_model(helper.make_graph([node], "g", [x, lens], [y], weights))


@pytest.mark.parametrize("direction", ["bidirectional", "forward"])
def test_gru_to_scan_matches_the_gru_op_inside_each_rows_length(direction, tmp_path):
    """Step by step, not just through TextGRU's logits: at every step inside a row's length (rows of length 0, 1,
    part and all of the batch's steps) the rewrite's outputs equal the GRU op's, in both directions and in the GRU
    op's own (time, directions, batch, hidden) layout, kept where the output is not TextGRU's Transpose + Reshape.
    Past a row's length the outputs are documented as unspecified but finite, within a GRU state's [-1, 1]."""
    onnx = pytest.importorskip("onnx")
    from textgru.onnx_graph import gru_to_scan

    original = _gru_op_graph(direction, hidden=8, inputs=5, seed=0)
    onnx.save(original, str(tmp_path / "gru.onnx"))
    onnx.save(gru_to_scan(original), str(tmp_path / "scan.onnx"))
    gru_op, scan = _session(tmp_path / "gru.onnx"), _session(tmp_path / "scan.onnx")
    lengths = np.array([7, 0, 1, 4, 7, 2], dtype=np.int32)
    x = np.random.default_rng(1).normal(0, 1, (7, len(lengths), 5)).astype(np.float32)
    expected = gru_op.run(None, {"X": x, "L": lengths})[0]
    got = scan.run(None, {"X": x, "L": lengths})[0]
    assert got.shape == expected.shape
    inside = (np.arange(7)[:, None] < lengths[None, :])[:, None, :, None]  # (time, 1, batch, 1)
    np.testing.assert_allclose(np.where(inside, got, 0), np.where(inside, expected, 0), atol=1e-5)
    assert np.abs(expected[np.broadcast_to(inside, expected.shape)]).min() < 0.9  # real, varied outputs compared
    assert np.isfinite(got).all() and np.abs(got).max() <= 1.0


def test_gru_to_scan_writes_textgrus_layer_output_layout_directly(tokenizer, tmp_path):
    """On a TextGRU export the GRU output only feeds a Transpose to (time, batch, directions, hidden) and a Reshape
    to (time, batch, -1): the rewrite writes that layout itself (one Transpose fewer per layer), and the encoder's
    states stay equal to eager PyTorch's, exactly zero at padding."""
    onnx = pytest.importorskip("onnx")
    from textgru.export import _CHECK_LENGTHS, _example_batch
    from textgru.onnx_graph import gru_to_scan

    torch.manual_seed(3)
    config = TextGRUConfig(vocab_size=len(tokenizer), embedding_size=8, hidden_size=16, initializer_range=0.5)
    encoder = TextGRUForSequenceClassification(config).eval().textgru
    export_onnx(encoder, tokenizer, tmp_path / "onnx")
    original = onnx.load(str(tmp_path / "onnx" / "model.onnx"))
    rewritten = gru_to_scan(original)
    transposes = [[n for n in g.graph.node if n.op_type == "Transpose"] for g in (original, rewritten)]
    assert len(transposes[1]) == len(transposes[0]) - config.num_hidden_layers
    onnx.save(rewritten, str(tmp_path / "scan.onnx"))
    scan = _session(tmp_path / "scan.onnx")
    for seed, lengths in enumerate(_CHECK_LENGTHS):
        ids, mask = _example_batch(config.vocab_size, config.pad_token_id, lengths, seed=seed)
        states, pooled = scan.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
        with torch.no_grad():
            eager = encoder(input_ids=ids, attention_mask=mask)
        np.testing.assert_allclose(states, eager.last_hidden_state.numpy(), atol=1e-5)
        np.testing.assert_allclose(pooled, eager.pooler_output.numpy(), atol=1e-5)
        assert not states[~mask.numpy().astype(bool)].any()  # padding exactly zero, as in eager


def test_gru_to_scan_refuses_what_it_does_not_cover():
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from textgru.onnx_graph import gru_to_scan

    hidden = 2
    weights = [
        numpy_helper.from_array(np.zeros(shape, np.float32), name)
        for name, shape in (("W", (1, 3 * hidden, 3)), ("R", (1, 3 * hidden, hidden)), ("B", (1, 6 * hidden)))
    ]
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [4, 1, 3])
    lens = helper.make_tensor_value_info("L", TensorProto.INT32, [1])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)

    def graph(**attributes):
        node = helper.make_node("GRU", ["X", "W", "R", "B", "L"], ["Y"], hidden_size=hidden, **attributes)
        return helper.make_model(helper.make_graph([node], "g", [x, lens], [y], weights))

    with pytest.raises(ValueError, match="direction 'reverse' is not supported"):
        gru_to_scan(graph(direction="reverse", linear_before_reset=1))
    with pytest.raises(ValueError, match="linear_before_reset"):
        gru_to_scan(graph(direction="forward"))
    no_gru = helper.make_model(helper.make_graph([helper.make_node("Identity", ["X"], ["Y"])], "g", [x], [y]))
    with pytest.raises(ValueError, match="no GRU node"):
        gru_to_scan(no_gru)


def test_onnx_int8_export_agrees_and_is_smaller(trained, tokenizer, test_texts, tmp_path):
    """int8 ONNX is approximate. Tolerance as for PyTorch int8: >= 97% label agreement, logits within 0.1."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    export_onnx(trained, tokenizer, tmp_path / "fp32")
    export_onnx(trained, tokenizer, tmp_path / "int8", int8=True)
    manifest = json.loads((tmp_path / "int8" / MANIFEST_NAME).read_text())
    assert manifest["format"] == "textgru-onnx" and "int8" in manifest["quantization"]
    assert manifest["max_abs_diff_fp32_rewrite_vs_eager"] < 1e-4  # the rewrite itself is exact
    assert 0 < manifest["max_abs_diff_vs_eager"] <= 0.25 and manifest["check_label_agreement"] > 0.5
    assert sorted(p.name for p in (tmp_path / "int8").iterdir() if p.suffix == ".onnx") == ["model.onnx"]
    fp32_bytes = (tmp_path / "fp32" / "model.onnx").stat().st_size
    assert (tmp_path / "int8" / "model.onnx").stat().st_size < fp32_bytes / 2  # ~3.5x on the default config
    graph = onnx.load(str(tmp_path / "int8" / "model.onnx")).graph
    scans = [node for node in graph.node if node.op_type == "Scan"]
    assert len(scans) == trained.config.num_hidden_layers and not [n for n in graph.node if n.op_type == "GRU"]
    for scan in scans:  # the recurrent matmuls inside each Scan body run in int8 too
        body_ops = {n.op_type for n in scan.attribute[0].g.node}
        assert body_ops & {"MatMulInteger", "DynamicQuantizeMatMul"} and "MatMul" not in body_ops
    texts = test_texts[0] + ["", "good"]
    eager = TextClassifier(trained, tokenizer).predict(texts)
    int8 = load_classifier(tmp_path / "int8").predict(texts)
    assert np.abs(eager).max() > 1.0
    assert (eager.argmax(-1) == int8.argmax(-1)).mean() >= 0.97
    assert np.abs(eager - int8).max() < 0.1


def test_onnx_int8_export_refuses_a_large_error_and_leaves_nothing(trained, tokenizer, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    with pytest.raises(RuntimeError, match="int8_atol"):
        export_onnx(trained, tokenizer, tmp_path / "int8", int8=True, int8_atol=0.0)  # int8 is never exact
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("backend", ["eager", "onnx"])
def test_sorting_by_length_keeps_input_order_and_logits(backend, trained, tokenizer, test_texts, tmp_path):
    if backend == "onnx":
        pytest.importorskip("onnxruntime")
        export_onnx(trained, tokenizer, tmp_path / "onnx")
        classifier = OnnxTextClassifier(tmp_path / "onnx")
    else:
        classifier = TextClassifier(trained, tokenizer)
    texts = test_texts[0][:60] + ["", "good"]
    random.Random(0).shuffle(texts)
    assert classifier.sort_by_length  # on by default
    one_by_one = np.concatenate([classifier.predict([t]) for t in texts])
    sorted_batches = classifier.predict(texts, batch_size=8)
    unsorted_batches = classifier.predict(texts, batch_size=8, sort_by_length=False)
    np.testing.assert_allclose(sorted_batches, one_by_one, atol=1e-5)  # row i is still text i
    np.testing.assert_allclose(unsorted_batches, one_by_one, atol=1e-5)
    assert classifier.predict([]).shape == (0, 2)


def _brute_force_buckets(lengths, call_cost, step_cost):
    """Cheapest split of `lengths` into consecutive parts by trying every set of cut points."""
    import itertools

    n, best = len(lengths), None
    for k in range(n):
        for cuts in itertools.combinations(range(1, n), k):
            bounds = [0, *cuts, n]
            parts = list(zip(bounds, bounds[1:]))
            cost = sum(call_cost + max(lengths[b - 1], 1) * (b - a + step_cost) for a, b in parts)
            if best is None or cost < best[0] - 1e-9:
                best = (cost, parts)
    return best


def test_length_buckets_finds_the_cheapest_split():
    from textgru.inference import length_buckets

    rng = random.Random(0)
    for _ in range(200):
        lengths = sorted(rng.choice([0, 1, 2, 5, 9, 20, 40, 80]) for _ in range(rng.randint(1, 8)))
        call_cost, step_cost = rng.choice([0.0, 3.0, 20.0, 200.0]), rng.choice([0.0, 1.0, 4.0])
        parts = length_buckets(lengths, call_cost, step_cost)
        assert [a for a, _ in parts] == [0] + [b for _, b in parts[:-1]] and parts[-1][1] == len(lengths)
        cost = sum(call_cost + max(lengths[b - 1], 1) * (b - a + step_cost) for a, b in parts)
        assert cost == pytest.approx(_brute_force_buckets(lengths, call_cost, step_cost)[0])
        # texts of equal length always run together
        assert all(lengths[b - 1] != lengths[b] for _, b in parts[:-1])
    assert length_buckets([], 20, 4) == []
    assert length_buckets([7] * 64, 0, 0) == [(0, 64)]
    with pytest.raises(ValueError, match="ascending"):
        length_buckets([5, 3], 20, 4)
    for costs in ((-1, 4), (20, float("nan"))):
        with pytest.raises(ValueError, match="costs >= 0"):
            length_buckets([3, 5], *costs)


def test_predict_runs_spread_batches_as_length_buckets(trained, tokenizer, test_texts, tmp_path):
    """With sort_by_length, a batch of very short and very long texts runs as separate forward passes where the
    backend's cost model says so; logits and input order are unchanged. Without it, every pass is batch_size texts
    in input order, and bucket_costs=None runs whole batches."""
    pytest.importorskip("onnxruntime")
    export_onnx(trained, tokenizer, tmp_path / "onnx")
    classifier = OnnxTextClassifier(tmp_path / "onnx")
    assert classifier.bucket_costs is not None  # on by default for ONNX
    short = [" ".join(["good"] * 2)] * 20
    long = [" ".join(["dull", "plot"] * 40)] * 20
    texts = [t for pair in zip(short, long) for t in pair]
    calls = []
    run = classifier._logits
    classifier._logits = lambda ids, mask: calls.append(ids.shape) or run(ids, mask)
    bucketed = classifier.predict(texts, batch_size=64)
    widths = [len(classifier.backend.encode(t).ids) for t in (short[0], long[0])]
    assert sorted(calls) == [(20, widths[0]), (20, widths[1])]
    calls.clear()
    whole = classifier.predict(texts, batch_size=64, sort_by_length=False)
    assert len(calls) == 1 and calls[0][0] == 40
    calls.clear()
    classifier.bucket_costs = None
    sorted_whole = classifier.predict(texts, batch_size=64)
    assert len(calls) == 1
    np.testing.assert_allclose(bucketed, whole, atol=1e-5)
    np.testing.assert_allclose(sorted_whole, whole, atol=1e-5)
    assert bucketed[0].tolist() != bucketed[1].tolist()  # rows stayed where their texts were
    np.testing.assert_allclose(bucketed[::2], np.repeat(bucketed[:1], 20, axis=0), atol=1e-5)


def test_onnx_encoder_export_outputs_states_and_pooled(trained, tokenizer, tmp_path):
    pytest.importorskip("onnxruntime")
    export_onnx(trained.textgru, tokenizer, tmp_path / "encoder")
    session = _session(tmp_path / "encoder" / "model.onnx")
    ids, mask = encode_texts(fast_backend(tokenizer), ["good film", "a", "dull plot and weak actors"], pad_id=0)
    states, pooled = session.run(None, {"input_ids": ids, "attention_mask": mask})
    with torch.no_grad():
        eager = trained.textgru(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
    np.testing.assert_allclose(states, eager.last_hidden_state.numpy(), atol=1e-4)
    np.testing.assert_allclose(pooled, eager.pooler_output.numpy(), atol=1e-4)
    with pytest.raises(ValueError, match="encoder export"):
        OnnxTextClassifier(tmp_path / "encoder")


def test_onnx_export_leaves_model_in_its_mode_and_nothing_behind_on_failure(trained, tokenizer, tmp_path):
    pytest.importorskip("onnxruntime")
    trained.train()
    try:
        with pytest.raises(RuntimeError, match="differs from eager"):
            export_onnx(trained, tokenizer, tmp_path / "onnx", atol=-1.0)  # no export can pass this check
        assert trained.training  # the exporter restores the wrapper's mode, not the model's: we restore it
    finally:
        trained.eval()
    assert list(tmp_path.iterdir()) == []  # neither the output folder nor a staging folder is left


def test_onnx_classifier_refuses_int8_folder(trained, tokenizer, tmp_path):
    pytest.importorskip("onnxruntime")
    save_quantized(quantize_dynamic(trained), tmp_path / "int8", tokenizer=tokenizer)
    with pytest.raises(ExportFormatError, match="not 'textgru-onnx'"):
        OnnxTextClassifier(tmp_path / "int8")


def test_missing_onnxruntime_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r'pip install "textgru\[export\]"'):
        require_onnxruntime()


def test_packed_and_padded_inference_agree(trained, tokenizer, test_texts):
    """The model packs only batches with enough padding: both paths must give the same logits."""
    texts, _ = test_texts
    encoder = trained.textgru
    previous = encoder.packed_min_fill
    try:
        encoder.packed_min_fill = 1.01  # always pack
        always_packed = TextClassifier(trained, tokenizer).predict(texts, batch_size=16)
        encoder.packed_min_fill = 0.0  # never pack
        never_packed = TextClassifier(trained, tokenizer).predict(texts, batch_size=16)
    finally:
        encoder.packed_min_fill = previous
    np.testing.assert_allclose(always_packed, never_packed, atol=1e-5)


def test_encode_texts_right_pads(tokenizer):
    ids, mask = encode_texts(fast_backend(tokenizer), ["good film", "", "good"], pad_id=0)
    assert ids.shape == mask.shape and ids.shape[0] == 3
    assert mask.sum(1).tolist() == [len(tokenizer("good film")["input_ids"]), 0, len(tokenizer("good")["input_ids"])]
    assert (ids[mask == 0] == 0).all()


def test_predictors_tokenise_as_the_tokenizer_does(tokenizer, test_texts):
    """predict tokenises without offsets (encode_batch_fast where tokenizers has it): same ids as the tokenizer,
    truncation included, for texts with markup, odd whitespace and non-ASCII characters."""
    backend = fast_backend(tokenizer)
    backend.enable_truncation(12)
    texts = test_texts[0][:20] + ["", "  good<br />film\t\n", "Café — naïve ☺ " * 10]
    ids, mask = encode_texts(backend, texts, pad_id=0)
    for row, text in enumerate(texts):
        expected = tokenizer(text, truncation=True, max_length=12)["input_ids"]
        assert ids[row, : mask[row].sum()].tolist() == expected
    assert mask.sum(1).max() == 12


@pytest.mark.parametrize("fmt", ["int8", "onnx", "onnx-int8"])
def test_cli_export_end_to_end(fmt, model_dir, trained, tokenizer, test_texts, tmp_path, capsys):
    if fmt.startswith("onnx"):
        pytest.importorskip("onnxruntime")
    out = tmp_path / fmt
    assert main(["export", str(model_dir), str(out), "--format", fmt, "--check-text", "a good film"]) == 0
    assert "a good film" in capsys.readouterr().out
    texts, _ = test_texts
    exported = load_classifier(out).predict(texts)
    reference = TextClassifier(trained, tokenizer).predict(texts)
    assert (exported.argmax(-1) == reference.argmax(-1)).mean() >= 0.97
    # a second export to the same folder needs --overwrite
    assert main(["export", str(model_dir), str(out), "--format", fmt]) == 2
    assert main(["export", str(model_dir), str(out), "--format", fmt, "--overwrite"]) == 0


def test_load_classifier_loads_a_save_pretrained_folder_where_told(model_dir, trained, tokenizer, test_texts):
    texts, _ = test_texts
    reference = TextClassifier(trained, tokenizer).predict(texts)
    for device in (None, "cpu", torch.device("cpu")):
        predictor = load_classifier(model_dir, device=device)
        assert next(predictor.model.parameters()).device.type == "cpu"
        np.testing.assert_allclose(predictor.predict(texts), reference, atol=1e-6)


def test_cli_export_bad_model_dir_is_a_clean_error(tmp_path, caplog):
    assert main(["export", str(tmp_path / "nope"), str(tmp_path / "out"), "--format", "int8"]) == 2
    assert "save_pretrained" in caplog.text
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_int8_and_onnx_agree_with_fp32_on_sst2(shared_data, tmp_path):
    """A model trained briefly on real SST-2 sentences: int8 labels (PyTorch and ONNX) agree with fp32 on >= 97%,
    native int8 labels on >= 99.5% with logits within 0.1."""
    pytest.importorskip("onnxruntime")
    import pandas as pd

    train = pd.read_parquet(shared_data / "sst2" / "train.parquet")
    test = pd.read_parquet(shared_data / "sst2" / "test.parquet").head(600)
    tokenizer = train_tokenizer(train.text.tolist(), vocab_size=4000, show_progress=False)
    torch.manual_seed(0)
    model = TextGRUForSequenceClassification(TextGRUConfig(vocab_size=len(tokenizer), num_labels=2))
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    order = np.random.default_rng(0).permutation(len(train))
    for step in range(150):
        rows = train.iloc[order[step * 32 : (step + 1) * 32]]
        enc = tokenizer(rows.text.tolist(), padding=True, return_tensors="pt")
        model(**enc, labels=torch.tensor(rows.label.values)).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    texts = test.text.tolist()
    fp32 = TextClassifier(model, tokenizer).predict(texts)
    assert (fp32.argmax(-1) == test.label.values).mean() > 0.6  # it learned something
    int8 = TextClassifier(quantize_dynamic(model), tokenizer).predict(texts)
    assert (int8.argmax(-1) == fp32.argmax(-1)).mean() >= 0.97
    export_onnx(model, tokenizer, tmp_path / "onnx")
    np.testing.assert_allclose(OnnxTextClassifier(tmp_path / "onnx").predict(texts), fp32, atol=1e-4)
    export_onnx(model, tokenizer, tmp_path / "onnx-int8", int8=True)
    onnx_int8 = OnnxTextClassifier(tmp_path / "onnx-int8").predict(texts)
    assert (onnx_int8.argmax(-1) == fp32.argmax(-1)).mean() >= 0.97
    from textgru.kernels import KernelUnavailableError
    from textgru.native_format import export_native

    try:
        native = load_classifier(export_native(model, tokenizer, tmp_path / "native")).predict(texts)
    except KernelUnavailableError as err:
        pytest.skip(f"native int8 kernels unavailable: {err}")
    assert (native.argmax(-1) == fp32.argmax(-1)).mean() >= 0.995  # the bar, on real sentences
    assert np.abs(native - fp32).max() < 0.1
