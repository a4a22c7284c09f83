"""TextGRU on a CUDA GPU: the same values as on the CPU, the same exactness under padding, and every tool around the
model (Trainer with mixed precision, recipe, pipeline, predictor, explanations, ONNX export) working there.

On a GPU the model runs other code than on the CPU: cuDNN's GRU on padded or packed batches instead of textgru's
stepwise recurrence, and `nn.Dropout` instead of `TextGRUDropout`'s cheaper CPU mask. So every check compares with
the CPU or with the model's own unpadded runs. The parity checks switch TF32 off (cuDNN and cuBLAS may use it for
fp32 work), so fp32 is compared with fp32.

Skipped where no CUDA device is visible (CI has none). On a GPU machine: `pytest tests/test_cuda.py`.
"""

import copy
import warnings

import numpy as np
import pytest
import torch
from test_modeling import POOLINGS, RESIDUALS, make_model, make_rows, pad, path
from test_recipes import TINY, run_text_classification, sentiment_frame, write
from test_trainer import BATCH, MARKER, build_word_tokenizer, losses, make_dataset
from tiny_models import tiny_classifier
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, pipeline

from textgru import TextGRUForSequenceClassification

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none is visible)")

CUDA = torch.device("cuda")
ATOL = 2e-5  # fp32 CPU against fp32 cuDNN (TF32 off): observed differences are ~1e-6
TEXTS = [
    "a wonderful film with a great cast",
    "the plot was dull",
    "i loved the music and the acting , not the boring script",
    "",
    "fine",
]


@pytest.fixture(autouse=True)
def _fp32_without_tf32():
    previous = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = previous


def on_cuda(model):
    return copy.deepcopy(model).to(CUDA)


def outputs(model, ids, mask):
    """Logits and every layer's hidden states, on the CPU."""
    device = next(model.parameters()).device
    out = model(ids.to(device), attention_mask=mask.to(device), output_hidden_states=True)
    return out.logits.float().cpu(), [h.float().cpu() for h in out.hidden_states]


# ---------------------------------------------------------------------------------------------------------------------
# The model


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("run", ["train", "packed", "padded_no_grad"])
@pytest.mark.parametrize("residual", RESIDUALS)
def test_cuda_outputs_equal_the_cpu_outputs(residual, run, side):
    """Every layer's states and the logits: the CPU runs its stepwise recurrence (train) or nn.GRU, CUDA cuDNN."""
    cpu = make_model(residual=residual)
    gpu = on_cuda(cpu)
    ids, mask, _ = pad(make_rows(), side)
    with path(cpu, run), path(gpu, run):
        cpu_logits, cpu_states = outputs(cpu, ids, mask)
        gpu_logits, gpu_states = outputs(gpu, ids, mask)
    torch.testing.assert_close(gpu_logits, cpu_logits, rtol=0, atol=ATOL)
    for layer, (g, c) in enumerate(zip(gpu_states, cpu_states)):
        torch.testing.assert_close(g, c, rtol=0, atol=ATOL, msg=f"layer {layer}")


@pytest.mark.parametrize("side", ["right", "left", "scattered"])
@pytest.mark.parametrize("run", ["train", "packed", "padded_no_grad"])
@pytest.mark.parametrize("pooling", POOLINGS)
def test_cuda_padding_invariance(pooling, run, side):
    """A row in a padded CUDA batch gives what it gives alone, and padding positions stay exactly zero."""
    model = on_cuda(make_model(pooling=pooling, residual="add"))
    rows = make_rows()
    ids, mask, positions = pad(rows, side)
    with path(model, run):
        logits, states = outputs(model, ids, mask)
        for i, (row, where) in enumerate(zip(rows, positions)):
            alone_logits, alone_states = outputs(model, row[None], torch.ones(1, len(row), dtype=torch.long))
            torch.testing.assert_close(logits[i], alone_logits[0], rtol=0, atol=ATOL)
            padding = torch.ones(ids.shape[1], dtype=torch.bool)
            padding[where] = False
            for layer, (padded, single) in enumerate(zip(states, alone_states)):
                torch.testing.assert_close(padded[i, where], single[0], rtol=0, atol=ATOL, msg=f"layer {layer}")
                assert torch.all(padded[i, padding] == 0), f"layer {layer}: padding must stay exactly zero"


@pytest.mark.parametrize("residual", RESIDUALS)
def test_cuda_gradients_equal_the_cpu_stepwise_gradients(residual):
    """The CPU trains through textgru's own backward (`_StepwiseGRU`), CUDA through cuDNN's: same gradients."""
    cpu = make_model(residual=residual)
    gpu = on_cuda(cpu)
    ids, mask, _ = pad(make_rows(), "right")
    labels = torch.tensor([0, 2, 1, 2])
    for model in (cpu, gpu):
        model.train()
        device = next(model.parameters()).device
        model(ids.to(device), attention_mask=mask.to(device), labels=labels.to(device)).loss.backward()
    gpu_grads = dict(gpu.named_parameters())
    errors = {}
    for name, param in cpu.named_parameters():
        assert param.grad is not None and gpu_grads[name].grad is not None, f"{name}: no gradient"
        got, want = gpu_grads[name].grad.cpu(), param.grad
        errors[name] = float((got - want).norm() / want.norm().clamp(min=1e-12))  # relative, per parameter
    assert max(errors.values()) < 1e-4, {name: f"{e:.1e}" for name, e in errors.items()}


def test_eval_mode_gradients_on_cuda_equal_the_cpu_and_leave_the_mode_alone():
    """cuDNN's GRU backward needs a training-mode forward; eval-mode gradients (what explanations and gradient
    probes take) still work on CUDA, give the CPU's values, and leave every module in eval mode."""
    cpu = make_model().eval()
    gpu = on_cuda(cpu).eval()
    ids, mask, _ = pad(make_rows(), "right")
    grads = []
    for model in (cpu, gpu):
        device = next(model.parameters()).device
        embeds = model.textgru.embeddings(ids.to(device)).detach().requires_grad_()
        logits = model(inputs_embeds=embeds, attention_mask=mask.to(device)).logits
        (grad,) = torch.autograd.grad(logits[:, 0].sum(), embeds)
        grads.append(grad.cpu())
    error = float((grads[1] - grads[0]).norm() / grads[0].norm())  # elementwise, cuDNN differs by up to ~5e-6
    assert error < 1e-4, f"relative difference {error:.2e}"
    assert not any(module.training for module in gpu.modules())


def test_cuda_inference_warns_about_nothing():
    """The packed path runs each direction's nn.GRU on its own flattened weights (no per-call compaction)."""
    model = on_cuda(make_model()).eval()
    ids, mask, _ = pad(make_rows(), "right")
    for run in ("packed", "padded_no_grad", "train"):
        with warnings.catch_warnings(), path(model, run):
            warnings.simplefilter("error")
            model(ids.to(CUDA), attention_mask=mask.to(CUDA))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("pooling", POOLINGS)
def test_autocast_trains_and_keeps_padding_exact(pooling, dtype):
    """Mixed precision (what `Trainer(bf16=True)` / `fp16=True` turn on): finite loss and gradients, logits near
    fp32, padding still exactly zero, and empty rows still pool to zero (no NaN from an all-masked softmax)."""
    model = on_cuda(make_model(pooling=pooling))
    ids, mask, positions = pad(make_rows(lengths=(5, 1, 9, 3, 0)), "left")  # the last row is empty
    ids, mask = ids.to(CUDA), mask.to(CUDA)
    model.eval()
    with torch.no_grad():
        reference = model(ids, attention_mask=mask).logits
    model.train()
    with torch.autocast("cuda", dtype=dtype):
        out = model(ids, attention_mask=mask, labels=torch.tensor([0, 1, 2, 0, 1], device=CUDA),
                    output_hidden_states=True)  # fmt: skip
    assert torch.isfinite(out.loss), out.loss
    out.loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    torch.testing.assert_close(out.logits.float(), reference, rtol=0, atol=0.05)
    for layer, states in enumerate(out.hidden_states):
        for i, where in enumerate(positions):
            padding = torch.ones(ids.shape[1], dtype=torch.bool)
            padding[where] = False
            assert torch.all(states[i, padding.to(CUDA)] == 0), f"layer {layer}, row {i}"
    model.eval()
    with torch.no_grad(), torch.autocast("cuda", dtype=dtype):
        pooled = model.textgru(ids, attention_mask=mask).pooler_output
    assert torch.all(pooled[-1] == 0), "an empty row pools to zeros"


# ---------------------------------------------------------------------------------------------------------------------
# Around the model


def test_trainer_bf16_on_cuda_learns_and_its_checkpoint_loads_on_the_cpu(tmp_path):
    """test_trainer's marker task, trained by the Trainer on CUDA in bf16; the saved model loads on the CPU and
    gives the GPU model's fp32 logits."""
    tokenizer = build_word_tokenizer()
    model = tiny_classifier(tokenizer, 0, num_labels=2)
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        max_steps=80,
        per_device_train_batch_size=BATCH,
        learning_rate=5e-3,
        warmup_steps=5,
        logging_steps=10,
        save_strategy="no",
        train_sampling_strategy="group_by_length",
        use_cpu=False,
        bf16=True,
        report_to="none",
        disable_tqdm=True,
        seed=0,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=make_dataset(640, seed=0),
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
    )
    trainer.train()
    assert next(trainer.model.parameters()).device.type == "cuda"
    logged = losses(trainer)
    assert logged[80] < 0.5 * logged[10], f"training loss did not fall clearly: {logged}"

    trainer.save_model(str(tmp_path / "saved"))
    loaded = TextGRUForSequenceClassification.from_pretrained(tmp_path / "saved").eval()
    saved = loaded.state_dict()
    for name, tensor in trainer.model.state_dict().items():  # the fp32 master weights, bit for bit
        assert tensor.dtype == torch.float32 and torch.equal(tensor.cpu(), saved[name]), name
    test = make_dataset(64, seed=1)
    ids = torch.zeros(64, 24, dtype=torch.long)
    mask = torch.zeros(64, 24, dtype=torch.long)
    for i, row in enumerate(test["input_ids"]):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    # a fresh CUDA copy: after bf16 training, accelerate leaves trainer.model's forward wrapped in autocast
    trained = on_cuda(loaded).eval()
    with torch.no_grad():
        gpu_logits = trained(ids.to(CUDA), attention_mask=mask.to(CUDA)).logits.cpu()
        cpu_logits = loaded(ids, attention_mask=mask).logits
    torch.testing.assert_close(cpu_logits, gpu_logits, rtol=0, atol=1e-4)
    accuracy = (cpu_logits.argmax(-1) == torch.tensor(test["labels"])).float().mean().item()
    assert accuracy >= 0.9, f"marker task (token {MARKER}) not learnt on CUDA: accuracy {accuracy:.2f}"


def test_recipe_trains_on_cuda_with_bf16(tmp_path):
    """`--use_cpu false --bf16 true`: the recipe's own CPU default overridden, as docs/recipes.md says."""
    train = write(sentiment_frame(400), tmp_path / "train.csv")
    test = write(sentiment_frame(100, seed=1), tmp_path / "test.csv")
    out = tmp_path / "model"
    results = run_text_classification(
        ["--train_file", train, "--test_file", test, "--output_dir", str(out), *TINY,
         "--use_cpu", "false", "--bf16", "true"]
    )  # fmt: skip
    assert results["test"]["test_accuracy"] >= 0.85, results["test"]
    model = TextGRUForSequenceClassification.from_pretrained(out)  # a CPU load of what CUDA trained
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_pipeline_on_cuda_matches_the_cpu(tiny_tokenizer):
    model = tiny_classifier(tiny_tokenizer, 0, num_labels=3).eval()
    on_cpu = pipeline("text-classification", model=model, tokenizer=tiny_tokenizer, device="cpu")
    on_gpu = pipeline("text-classification", model=on_cuda(model), tokenizer=tiny_tokenizer, device="cuda")
    assert on_gpu.model.device.type == "cuda"
    texts = [t for t in TEXTS if t]
    for a, b in zip(on_cpu(texts, top_k=None, batch_size=4), on_gpu(texts, top_k=None, batch_size=4)):
        assert {d["label"]: d["score"] for d in b} == pytest.approx({d["label"]: d["score"] for d in a}, abs=1e-5)


def test_predictor_on_cuda_and_load_classifier_device(tiny_tokenizer, tmp_path):
    from textgru.inference import TextClassifier, load_classifier

    model = tiny_classifier(tiny_tokenizer, 0, num_labels=3).eval()
    model.save_pretrained(tmp_path / "model")
    tiny_tokenizer.save_pretrained(tmp_path / "model")
    expected = TextClassifier(model, tiny_tokenizer).predict(TEXTS)
    direct = TextClassifier(on_cuda(model), tiny_tokenizer)
    loaded = load_classifier(tmp_path / "model", device="cuda")
    assert next(loaded.model.parameters()).device.type == "cuda"
    for predictor in (direct, loaded):
        for batch_size in (1, 4):
            got = predictor.predict(TEXTS, batch_size=batch_size)
            assert got.dtype == np.float32
            np.testing.assert_allclose(got, expected, atol=ATOL)


def test_explain_on_cuda_matches_the_cpu(tiny_tokenizer):
    from textgru.explain import explain

    model = tiny_classifier(tiny_tokenizer, 0, num_labels=3).eval()
    for method in ("integrated_gradients", "occlusion", "attention"):
        cpu = explain(model, tiny_tokenizer, TEXTS, method=method)
        gpu = explain(on_cuda(model), tiny_tokenizer, TEXTS, method=method)
        for a, b in zip(cpu, gpu):
            assert b.tokens == a.tokens and b.label == a.label, method
            np.testing.assert_allclose(b.scores, a.scores, atol=1e-4, err_msg=method)


def test_onnx_export_of_a_cuda_model_leaves_it_on_cuda(tiny_tokenizer, tmp_path):
    pytest.importorskip("onnxruntime")
    from textgru.export import export_onnx
    from textgru.inference import OnnxTextClassifier, TextClassifier

    model = on_cuda(tiny_classifier(tiny_tokenizer, 0, num_labels=3)).train()
    export_onnx(model, tiny_tokenizer, tmp_path / "onnx", check_texts=TEXTS)
    assert all(p.device.type == "cuda" for p in model.parameters()), "export moved the caller's model"
    assert model.training, "export changed the caller's mode"
    exported = OnnxTextClassifier(tmp_path / "onnx").predict(TEXTS)
    np.testing.assert_allclose(exported, TextClassifier(model, tiny_tokenizer).predict(TEXTS), atol=1e-4)
