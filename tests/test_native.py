"""The native int8 path: kernels against plain integer arithmetic, parity with eager PyTorch on every architecture
option, padding and batch independence, the export folder (round trip, corrupt files, CLI), and clear errors."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_export import make_texts, model_dir, tokenizer, trained  # noqa: F401 (fixtures)

from textgru import TextGRUConfig, TextGRUForSequenceClassification, TextGRUModel, kernels
from textgru.cli import main
from textgru.export import MANIFEST_NAME, ExportFormatError
from textgru.inference import TextClassifier, load_classifier
from textgru.kernels import VARIANTS
from textgru.native import NativeInt8Model, _QLinear, quantize_weight, state_arrays
from textgru.native_format import NATIVE_WEIGHTS_NAME, NativeTextClassifier, export_native, load_native


@pytest.fixture(scope="module", autouse=True)
def compiled():
    try:
        return [kernels.load(variant) for variant in VARIANTS]
    except kernels.KernelUnavailableError as err:
        pytest.skip(f"the native kernels cannot be built here: {err}")


def _batch(lengths, vocab_size, seed=0, pad_id=0):
    rng = np.random.default_rng(seed)
    width = max(max(lengths), 1)
    ids = rng.integers(1, vocab_size, (len(lengths), width))
    mask = (np.arange(width)[None] < np.array(lengths)[:, None]).astype(np.int64)
    return ids * mask + pad_id * (1 - mask), mask


def _eager(model, ids, mask):
    with torch.no_grad():
        return model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.numpy()


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("m,k,n", [(1, 4, 16), (7, 30, 50), (64, 128, 384), (5, 256, 768)])
def test_qgemm_is_the_integer_product_dequantised(variant, m, k, n):
    """y = s_a * s_w * (u8 . w - 128 * colsum) + bias, for shapes that need padding (K to 4, N to 16)."""
    rng = np.random.default_rng(m * k)
    weight = rng.normal(size=(n, k)).astype(np.float32)
    q, scale = quantize_weight(weight)
    bias = rng.normal(size=n).astype(np.float32)
    layer = _QLinear(kernels.load(variant), [q], [scale], [bias])
    a = rng.integers(0, 256, (m, layer.kp)).astype(np.uint8)
    a_scale = rng.uniform(0.01, 0.1, m).astype(np.float32)
    got = layer(a, a_scale)[:, :n]
    exact = (a[:, :k].astype(np.int64) - 128) @ q.astype(np.int64).T  # the +128 offset cancels exactly
    np.testing.assert_allclose(got, a_scale[:, None] * scale[None] * exact + bias, rtol=1e-5, atol=1e-4)


def test_quantize_weight_is_per_output_feature_and_bounded():
    weight = np.array([[0.5, -1.0, 0.25], [0.0, 0.0, 0.0], [100.0, 1.0, -50.0]], np.float32)
    q, scale = quantize_weight(weight)
    assert q.dtype == np.int8 and np.abs(q).max() <= 127
    np.testing.assert_allclose(scale, [1 / 127, 1, 100 / 127])  # an all-zero row gets scale 1, not 0
    np.testing.assert_allclose(q * scale[:, None], weight, atol=scale.max() / 2 + 1e-6)


ARCHITECTURES = [
    {},
    {"residual": "gated"},
    {"residual": "none", "pooling": "mean"},
    {"pooling": "max", "bidirectional": False},
    {"pooling": "last", "hidden_size": 20, "embedding_size": 24},  # widths that are not multiples of 16
    {"pooling": "attention", "num_attention_heads": 3, "layer_norm": False, "num_hidden_layers": 3},
    {"attention_hidden_size": 300, "embedding_size": 64},  # scratch of over 1 KiB; a layer-0 projection of 64 -> 64
]


@pytest.mark.parametrize("table", [True, False])
@pytest.mark.parametrize("overrides", ARCHITECTURES, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "-")
def test_every_architecture_matches_eager(overrides, table):
    """Random weights, mixed lengths with an empty row: logits within 2% of their range of eager PyTorch, with
    layer 0 from its fp32 table or through the int8 products."""
    config = {"vocab_size": 120, "hidden_size": 32, "embedding_size": 32, "num_labels": 3, **overrides}
    torch.manual_seed(0)
    model = TextGRUForSequenceClassification(TextGRUConfig(**config)).eval()
    native = NativeInt8Model.from_model(model, **({} if table else {"table_max_bytes": 0}))
    assert (native.table is not None) == table
    ids, mask = _batch([5, 0, 12, 1, 7, 30], 120)
    ref, got = _eager(model, ids, mask), native(ids, mask)
    assert got.dtype == np.float32 and got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=0.02 * np.abs(ref).max() + 1e-4)
    np.testing.assert_array_equal(got[1], model.classifier.bias.detach().numpy())  # empty row: pooled zeros


def test_every_kernel_variant_gives_the_same_logits():
    """The builds compute the same integer sums; only the gate math's exp differs (polynomial or libm)."""
    torch.manual_seed(1)
    model = TextGRUForSequenceClassification(TextGRUConfig(vocab_size=90, hidden_size=48, num_labels=2)).eval()
    ids, mask = _batch([9, 3, 17, 1], 90)
    best = NativeInt8Model.from_model(model)(ids, mask)
    for variant in VARIANTS:
        np.testing.assert_allclose(NativeInt8Model.from_model(model, kernel=variant)(ids, mask), best, atol=1e-4)


def test_logits_do_not_depend_on_padding_or_on_the_rest_of_the_batch():
    """Each token and state row is quantised on its own and padding is never computed, so a row's logits are the
    same (up to the fp32 classifier's rounding) alone, in any batch, right- or left-padded, or with extra padding
    columns."""
    torch.manual_seed(2)
    model = TextGRUForSequenceClassification(TextGRUConfig(vocab_size=100, hidden_size=32, num_labels=2)).eval()
    native = NativeInt8Model.from_model(model)
    ids, mask = _batch([4, 11, 1, 8], 100, seed=3)
    batched = native(ids, mask)
    for row in range(len(ids)):
        alone = native(ids[row : row + 1, : mask[row].sum()], mask[row : row + 1, : mask[row].sum()])
        np.testing.assert_allclose(alone[0], batched[row], rtol=0, atol=1e-6)
    wide = np.concatenate([ids, np.zeros((4, 5), np.int64)], 1), np.concatenate([mask, np.zeros((4, 5), np.int64)], 1)
    np.testing.assert_allclose(native(*wide), batched, rtol=0, atol=1e-6)
    left = np.zeros_like(ids), np.zeros_like(mask)
    for row, n in enumerate(mask.sum(1)):
        left[0][row, ids.shape[1] - n :], left[1][row, ids.shape[1] - n :] = ids[row, :n], 1
    np.testing.assert_allclose(native(*left), batched, rtol=0, atol=1e-6)


def test_bad_inputs_are_clear_errors():
    torch.manual_seed(0)
    model = TextGRUForSequenceClassification(TextGRUConfig(vocab_size=50, hidden_size=16, num_labels=2)).eval()
    native = NativeInt8Model.from_model(model)
    with pytest.raises(ValueError, match=r"Token ids must be in \[0, 50\)"):
        native(np.array([[1, 50]]), np.array([[1, 1]]))
    with pytest.raises(ValueError, match="same 2-D shape"):
        native(np.array([[1, 2]]), np.array([[1, 1, 1]]))
    with pytest.raises(ValueError, match="TextGRUForSequenceClassification"):
        state_arrays(TextGRUModel(model.config))
    all_empty = native(np.zeros((2, 3), np.int64), np.zeros((2, 3), np.int64))
    np.testing.assert_array_equal(all_empty, np.tile(model.classifier.bias.detach().numpy(), (2, 1)))


def test_trained_model_agrees_with_eager(trained, tokenizer):  # noqa: F811
    texts, _ = make_texts(200, seed=3)
    reference = TextClassifier(trained, tokenizer).predict(texts)
    native = NativeInt8Model.from_model(trained)
    classifier = TextClassifier(trained, tokenizer)
    classifier._logits = native  # the same tokenisation and batching, the native forward pass
    got = classifier.predict(texts)
    assert (got.argmax(-1) == reference.argmax(-1)).mean() >= 0.99
    assert np.abs(got - reference).max() < 0.1


def test_export_round_trip_and_manifest(trained, tokenizer, tmp_path):  # noqa: F811
    texts, _ = make_texts(100, seed=4)
    folder = export_native(trained, tokenizer, tmp_path / "native", check_texts=["a good film"])
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    assert manifest["format"] == "textgru-native-int8" and manifest["label_agreement"] >= 0.9
    assert 0 < manifest["max_abs_diff"] <= 0.25
    classifier = load_classifier(folder)
    assert isinstance(classifier, NativeTextClassifier)
    expected = TextClassifier(trained, tokenizer)
    expected._logits = NativeInt8Model.from_model(trained)
    np.testing.assert_array_equal(classifier.predict(texts), expected.predict(texts))
    assert classifier.classify(["a good film"])[0]["label"] in {"negative", "positive"}
    assert trained.training is False and next(trained.parameters()).dtype == torch.float32  # left as it was


def test_export_refuses_a_large_error_and_leaves_nothing(trained, tokenizer, tmp_path):  # noqa: F811
    with pytest.raises(ValueError, match="nothing was written"):
        export_native(trained, tokenizer, tmp_path / "out", atol=1e-9)
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []


def test_corrupt_or_mismatched_folders_are_refused(trained, tokenizer, tmp_path):  # noqa: F811
    folder = export_native(trained, tokenizer, tmp_path / "native")
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    weights = broken / NATIVE_WEIGHTS_NAME
    weights.write_bytes(weights.read_bytes()[:-100])  # truncated
    with pytest.raises(ExportFormatError, match="corrupt"):
        load_classifier(broken)
    mismatched = tmp_path / "mismatched"
    shutil.copytree(folder, mismatched)
    config = json.loads((mismatched / "config.json").read_text())
    (mismatched / "config.json").write_text(json.dumps({**config, "pooling": "mean"}))
    with pytest.raises(ExportFormatError, match="config.json is corrupt"):  # the config is checksummed too
        load_native(mismatched)
    arrays = dict(np.load(folder / NATIVE_WEIGHTS_NAME))
    arrays["layers.1.forward.ih.qweight"] = arrays["layers.1.forward.ih.qweight"][:, :-4]  # a wrong input width
    with pytest.raises(ValueError, match="do not fit the config's sizes"):
        NativeInt8Model(trained.config.to_dict(), arrays)
    with pytest.raises(ExportFormatError, match="not a textgru export"):
        load_native(tmp_path)
    with pytest.raises(ValueError, match="CPU only"):
        load_classifier(folder, device="cuda")


def test_cli_export_native(model_dir, trained, tokenizer, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "native"
    assert main(["export", str(model_dir), str(out), "--format", "native-int8", "--check-text", "a good film"]) == 0
    assert "native-int8 " in capsys.readouterr().out
    texts, _ = make_texts(100, seed=5)
    reference = TextClassifier(trained, tokenizer).predict(texts)
    assert (load_classifier(out).predict(texts).argmax(-1) == reference.argmax(-1)).mean() >= 0.99
    assert main(["export", str(model_dir), str(out), "--format", "native-int8"]) == 2  # exists: needs --overwrite


def test_no_compiler_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TEXTGRU_CACHE", str(tmp_path))
    monkeypatch.setattr(kernels.shutil, "which", lambda name: None)
    with pytest.raises(kernels.KernelUnavailableError, match="no C compiler.*onnx-int8"):
        kernels._build("best")


def test_kernels_are_built_once_per_cache_key(monkeypatch, tmp_path):
    monkeypatch.setenv("TEXTGRU_CACHE", str(tmp_path))
    first = kernels._build("generic")
    inode = first.stat().st_ino  # a rebuild would replace the file (a new inode)
    assert kernels._build("generic") == first and first.stat().st_ino == inode
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temporary files left behind


def test_stale_builds_are_pruned_and_fresh_ones_kept(monkeypatch, tmp_path):
    """A new build deletes this source's builds unused for STALE_DAYS days, keeps recent ones and other sources'."""
    import os
    import time

    monkeypatch.setenv("TEXTGRU_CACHE", str(tmp_path))
    folder = kernels._cache_dir()
    folder.mkdir(parents=True)
    old_stamp = time.time() - (kernels.STALE_DAYS + 1) * 86400
    stale, recent, other = folder / "int8_gru-0000.so", folder / "int8_gru-1111.so", folder / "gru_train-2222.so"
    for path in (stale, recent, other):
        path.write_bytes(b"")
    for path in (stale, other):
        os.utime(path, (old_stamp, old_stamp))
    built = kernels._build("generic")
    assert built.is_file() and recent.is_file() and other.is_file() and not stale.exists()
    os.utime(built, (old_stamp, old_stamp))
    assert kernels._build("generic") == built and built.stat().st_mtime > old_stamp  # looked up: in use again


def test_each_variant_runs_the_code_it_names():
    """So that the variant tests above exercise the AVX2 and plain-C paths where the CPU has better ones."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(next((line for line in f if line.startswith("flags")), "").split())
    except OSError:
        flags = set()
    isa = {variant: kernels.load(variant).textgru_kernel_isa() for variant in VARIANTS}
    assert isa["generic"] == 0
    if "avx2" in flags and "fma" in flags:
        assert isa["avx2"] == 1
    if {"avx512_vnni", "avx512bw"} <= flags:
        assert isa["best"] == 2


def test_loading_the_kernels_leaves_the_floating_point_mode_alone():
    """Linked with -ffast-math, gcc < 13 adds crtfastmath.o, which turns on flush-to-zero for the whole process at
    load time: torch's and numpy's results would change (and a padded BiGRU's training got 2.5x faster on IMDB)."""
    code = (
        "import numpy as np, torch; from textgru import kernels; [kernels.load(v) for v in kernels.VARIANTS]; "
        "[kernels.load_training(v) for v in kernels.VARIANTS]; "
        "print(float(np.float32(1e-39) * np.float32(1)), float(torch.tensor([1e-39]) * 1))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert [float(v) for v in out] == [pytest.approx(1e-39, rel=1e-3)] * 2  # a denormal survives


def test_the_c_source_ships_with_the_package():
    """The kernels compile at first use on the user's machine, so the wheel must carry int8_gru.c."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    package_data = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"]["textgru"]
    assert "kernels/*.c" in package_data and kernels.SOURCE.is_file()
