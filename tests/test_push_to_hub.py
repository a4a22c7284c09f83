"""Pushing to the Hub and loading back, offline, against the in-memory Hub of `tests/hub_server.py`.

`huggingface_hub` reads `HF_ENDPOINT` when it is imported, so every client runs in a fresh subprocess.
"""

import json
import os
import textwrap

import pytest
import torch
from no_textgru import PREAMBLE, run_script

TEXTS = ["a wonderful film", "the plot was dull and far too long", "ok", "fine acting , weak script"]
REPO, TRAINER_REPO = "user/tiny-textgru", "user/tiny-textgru-trainer"

PUSH = textwrap.dedent(
    """
    import json, sys
    import torch
    from transformers import AutoTokenizer, Trainer, TrainingArguments
    from textgru import TextGRUConfig, TextGRUForSequenceClassification

    tokenizer_dir, work, texts, repo, trainer_repo = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), *sys.argv[4:6]
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    config = TextGRUConfig(
        vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, embedding_size=16, hidden_size=16,
        attention_hidden_size=16, num_labels=3, id2label={0: "neg", 1: "mid", 2: "pos"},
        label2id={"neg": 0, "mid": 1, "pos": 2},
    )
    model = TextGRUForSequenceClassification(config)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.3)
    model.eval()
    with torch.no_grad():
        logits = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
    torch.save(logits, f"{work}/expected.pt")

    model.push_to_hub(repo)
    tokenizer.push_to_hub(repo)
    args = TrainingArguments(
        output_dir=f"{work}/trainer", push_to_hub=True, hub_model_id=trainer_repo, use_cpu=True,
        report_to="none",
    )
    Trainer(model=model, args=args, processing_class=tokenizer).push_to_hub()
    """
)

LOAD = PREAMBLE + textwrap.dedent(
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    work, texts, repos = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3:]
    report = {}
    for repo in repos:
        model = AutoModelForSequenceClassification.from_pretrained(repo, trust_remote_code=True)
        # the repo's config.json has an auto_map, so loading the tokenizer reads remote config code too
        tokenizer = AutoTokenizer.from_pretrained(repo, trust_remote_code=True)
        with torch.no_grad():
            logits = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
        torch.save(logits, f"{work}/{repo.replace('/', '--')}.pt")
        report[repo] = {"module": type(model).__module__, "labels": model.config.id2label, "training": model.training}
    print(json.dumps(report))
    """
)

API = textwrap.dedent(
    """
    import json, os, sys
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

    folder = sys.argv[1]
    api = HfApi()
    out = {"whoami": api.whoami()["name"], "repo_id": api.create_repo("api-test").repo_id}
    api.create_repo("user/api-test", exist_ok=True)
    api.upload_folder(repo_id="user/api-test", folder_path=folder)
    out["files"] = sorted(api.list_repo_files("user/api-test"))
    out["top_level"] = sorted(entry.path for entry in api.list_repo_tree("user/api-test"))
    out["nested"] = open(hf_hub_download("user/api-test", "sub/b.txt")).read()
    snapshot = snapshot_download("user/api-test")
    out["snapshot"] = sorted(os.path.relpath(os.path.join(d, f), snapshot) for d, _, names in os.walk(snapshot)
                             for f in names)
    api.delete_file("sub/b.txt", repo_id="user/api-test")
    out["after_delete"] = sorted(api.list_repo_files("user/api-test"))
    out["exists"] = [api.file_exists("user/api-test", "a.txt"), api.file_exists("user/api-test", "sub/b.txt")]
    try:
        hf_hub_download("user/api-test", "missing.txt")
    except EntryNotFoundError:
        out["missing_file"] = "EntryNotFoundError"
    try:
        hf_hub_download("user/nobody", "a.txt")
    except RepositoryNotFoundError:
        out["missing_repo"] = "RepositoryNotFoundError"
    out["sha"] = api.model_info("user/api-test").sha
    print(json.dumps(out))
    """
)


def hub_env(hub, home) -> dict[str, str]:
    return {**os.environ, **hub.env(), "HF_HOME": str(home)}


def test_local_hub_serves_the_hub_api(local_hub, tmp_path):
    folder = tmp_path / "upload"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("alpha")
    (folder / "sub" / "b.txt").write_text("beta")
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# test\n")
    result = run_script(API, [str(folder)], hub_env(local_hub, tmp_path / "home"), tmp_path)
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["whoami"] == "user" and out["repo_id"] == "user/api-test"
    assert out["files"] == [".gitattributes", "README.md", "a.txt", "sub/b.txt"]
    assert out["top_level"] == [".gitattributes", "README.md", "a.txt", "sub"]
    assert out["nested"] == "beta"
    assert out["snapshot"] == [".gitattributes", "README.md", "a.txt", "sub/b.txt"]
    assert out["after_delete"] == [".gitattributes", "README.md", "a.txt"]
    assert out["exists"] == [True, False]
    assert out["missing_file"] == "EntryNotFoundError" and out["missing_repo"] == "RepositoryNotFoundError"

    repo = local_hub.repos["user/api-test"]
    assert out["sha"] == repo["sha"] and len(repo["commits"]) == 3  # created, uploaded, deleted
    assert local_hub.files("user/api-test")["a.txt"] == b"alpha"
    assert local_hub.files("user/api-test", revision=repo["commits"][1])["sub/b.txt"] == b"beta"  # history is kept


@pytest.fixture(scope="module")
def pushed(local_hub, tiny_tokenizer, tmp_path_factory):
    """Push a tiny model and tokenizer (model.push_to_hub, tokenizer.push_to_hub, Trainer.push_to_hub)."""
    work = tmp_path_factory.mktemp("push")
    tiny_tokenizer.save_pretrained(work / "tokenizer")
    args = [str(work / "tokenizer"), str(work), json.dumps(TEXTS), REPO, TRAINER_REPO]
    run_script(PUSH, args, hub_env(local_hub, work / "home"), work)
    return work


def test_push_uploads_model_code_tokenizer_and_card(local_hub, pushed):
    files = local_hub.files(REPO)
    for name in (
        "config.json",
        "model.safetensors",
        "configuration_textgru.py",
        "modeling_textgru.py",
        "tokenizer.json",
        "tokenizer_config.json",
        "README.md",
    ):
        assert name in files, f"{name} missing from {sorted(files)}"
    assert set(json.loads(files["config.json"])["auto_map"]) == {
        "AutoConfig",
        "AutoModel",
        "AutoModelForSequenceClassification",
    }
    trainer_files = local_hub.files(TRAINER_REPO)
    assert {"model.safetensors", "modeling_textgru.py", "tokenizer.json", "README.md"} <= set(trainer_files)
    assert not any(name.startswith("checkpoint-") for name in trainer_files)


def test_pushed_model_loads_back_without_textgru(local_hub, pushed, tmp_path):
    result = run_script(
        LOAD,
        [str(tmp_path), json.dumps(TEXTS), REPO, TRAINER_REPO],
        hub_env(local_hub, tmp_path / "fresh_home"),  # an empty cache: everything comes from the Hub
        tmp_path,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    expected = torch.load(pushed / "expected.pt")
    for repo in (REPO, TRAINER_REPO):
        assert report[repo]["module"].startswith("transformers_modules."), report[repo]
        assert report[repo]["labels"] == {"0": "neg", "1": "mid", "2": "pos"}
        assert report[repo]["training"] is False
        got = torch.load(tmp_path / f"{repo.replace('/', '--')}.pt")
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    downloaded = {path for method, path in local_hub.requests if method == "GET" and "/resolve/" in path}
    assert any(path.endswith("/modeling_textgru.py") for path in downloaded)
