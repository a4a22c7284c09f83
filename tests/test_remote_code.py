"""A saved model carries its own code: it loads with `trust_remote_code=True` in a process where textgru is not
importable, and gives the same outputs. Where textgru is importable, the installed classes are used."""

import json
import os
import textwrap

import pytest
import torch
from no_textgru import PREAMBLE, run_script
from transformers import AutoModelForSequenceClassification

import textgru
from textgru import TextGRUConfig, TextGRUForSequenceClassification

BLOCKED_LOAD = PREAMBLE + textwrap.dedent(
    """

    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    folder, inputs, outputs = sys.argv[1:4]
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    classifier = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)
    encoder = AutoModel.from_pretrained(folder, trust_remote_code=True)
    batch = torch.load(inputs)
    with torch.no_grad():
        logits = classifier(**batch).logits
        pooled = encoder(**batch).pooler_output
    torch.save({"logits": logits, "pooled": pooled}, outputs)
    # a training step too: the compiled recurrence is textgru's, so the copied code must train without it
    classifier.train()
    classifier(**batch, labels=torch.tensor([0, 1, 2])).loss.backward()
    gru_grads = [p.grad for name, p in classifier.named_parameters() if "_gru." in name]
    print(json.dumps({
        "trained": bool(gru_grads) and all(g is not None and bool(g.abs().sum() > 0) for g in gru_grads),
        "modules": [type(obj).__module__ for obj in (config, classifier, encoder)],
        "classes": [type(obj).__name__ for obj in (config, classifier, encoder)],
        "textgru_loaded": [name for name in sys.modules if name == "textgru" or name.startswith("textgru.")
                           if sys.modules[name] is not None],
    }))
    """
)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A small trained-looking classifier saved with its config, plus a batch and the reference outputs."""
    folder = tmp_path_factory.mktemp("remote") / "model"
    torch.manual_seed(0)
    config = TextGRUConfig(
        vocab_size=100,
        embedding_size=24,
        hidden_size=16,
        attention_hidden_size=16,
        residual="gated",
        num_attention_heads=2,
        num_labels=3,
        id2label={0: "a", 1: "b", 2: "c"},
        label2id={"a": 0, "b": 1, "c": 2},
    )
    model = TextGRUForSequenceClassification(config)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.2)  # move away from the initial values
    model.eval().save_pretrained(folder)
    batch = {
        "input_ids": torch.randint(1, 100, (3, 7)),
        "attention_mask": torch.tensor([[1] * 7, [0, 0, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0, 0]]),
    }
    with torch.no_grad():
        expected = {"logits": model(**batch).logits, "pooled": model.textgru(**batch).pooler_output}
    torch.save(batch, folder.parent / "inputs.pt")
    return folder, batch, expected


def test_saved_folder_carries_code_and_full_auto_map(saved):
    folder, _, _ = saved
    assert (folder / "configuration_textgru.py").is_file()
    assert (folder / "modeling_textgru.py").is_file()
    # the copied code is self-contained: only relative imports of itself
    modeling = (folder / "modeling_textgru.py").read_text()
    assert "from .configuration_textgru import" in modeling and "import textgru" not in modeling
    auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
    assert auto_map == {
        "AutoConfig": "configuration_textgru.TextGRUConfig",
        "AutoModel": "modeling_textgru.TextGRUModel",
        "AutoModelForSequenceClassification": "modeling_textgru.TextGRUForSequenceClassification",
    }


def test_config_alone_saves_its_auto_map(tmp_path):
    TextGRUConfig(vocab_size=100).save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["auto_map"]["AutoConfig"] == (
        "configuration_textgru.TextGRUConfig"
    )
    assert (tmp_path / "configuration_textgru.py").is_file()


def test_loads_with_trust_remote_code_where_textgru_is_not_installed(saved, tmp_path):
    folder, _, expected = saved
    outputs = tmp_path / "outputs.pt"
    result = run_script(
        BLOCKED_LOAD,
        [str(folder), str(folder.parent / "inputs.pt"), str(outputs)],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        cwd=tmp_path,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["classes"] == ["TextGRUConfig", "TextGRUForSequenceClassification", "TextGRUModel"]
    assert all(module.startswith("transformers_modules.") for module in report["modules"]), report["modules"]
    assert report["textgru_loaded"] == []
    assert report["trained"]  # every GRU weight got a gradient, on the PyTorch loop

    got = torch.load(outputs)
    torch.testing.assert_close(got["logits"], expected["logits"], rtol=0, atol=1e-6)
    torch.testing.assert_close(got["pooled"], expected["pooled"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("trust_remote_code", [None, True])
def test_installed_package_wins_where_importable(saved, trust_remote_code):
    folder, batch, expected = saved
    model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=trust_remote_code)
    assert type(model) is textgru.TextGRUForSequenceClassification
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, expected["logits"], rtol=0, atol=0)
