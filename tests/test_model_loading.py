"""Model loading: the embedded model's checksum, `gpt2-small` from a local Hugging Face cache
(a `gpt2` snapshot built here: GPT-2 config, random weights, a tokenizer, read offline), a local
checkpoint folder, and a one-line error when the weights are not there."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reference.models import EMBEDDED_DIR, ModelUnavailableError, load_embedded, verify_embedded
from tests.conftest import ROOT

COMMIT = "0" * 40


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory) -> Path:
    """A Hugging Face cache holding a small GPT-2-architecture `gpt2` snapshot."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from reference.tokenizer import build_tokenizer

    home = tmp_path_factory.mktemp("hf_home")
    repo = home / "hub" / "models--gpt2"
    snap = repo / "snapshots" / COMMIT
    tok = build_tokenizer()
    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=128, n_ctx=128, vocab_size=len(tok),
                     bos_token_id=0, eos_token_id=0)
    GPT2LMHeadModel(cfg).save_pretrained(snap)
    tok.save_pretrained(snap)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return home


LOAD_AND_COMPARE = """
import sys, json, torch
from transformers import GPT2LMHeadModel
from reference.models import load_model
model = load_model(sys.argv[1], device="cpu")
hf = GPT2LMHeadModel.from_pretrained(sys.argv[2]).eval()
tokens = model.to_tokens("John and Mary went to the store. John gave a book to")
with torch.no_grad():
    ours = model(tokens).log_softmax(-1)
    theirs = hf(tokens).logits.log_softmax(-1)
print(json.dumps({"n_layers": model.cfg.n_layers, "d_model": model.cfg.d_model,
                  "max_diff": (ours - theirs).abs().max().item(),
                  "mary": model.to_single_token(" Mary")}))
"""


def _run(args, hf_home: Path, offline: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HOME": str(hf_home), "PYTHONPATH": str(ROOT)}
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return subprocess.run([sys.executable, "-c", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)


def test_gpt2_small_loads_from_a_local_cache_offline(hf_home):
    snap = hf_home / "hub" / "models--gpt2" / "snapshots" / COMMIT
    proc = _run([LOAD_AND_COMPARE, "gpt2-small", str(snap)], hf_home)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (out["n_layers"], out["d_model"]) == (2, 64)
    # TransformerLens folds LayerNorm and centres the unembedding: log-probs are unchanged.
    assert out["max_diff"] < 1e-4


def test_a_local_checkpoint_folder_loads(hf_home, tmp_path):
    folder = tmp_path / "my-gpt2"
    shutil.copytree(hf_home / "hub" / "models--gpt2" / "snapshots" / COMMIT, folder)
    proc = _run([LOAD_AND_COMPARE, str(folder), str(folder)], tmp_path / "empty_home")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["max_diff"] < 1e-4


def test_gpt2_small_without_cached_weights_is_a_one_line_error(tmp_path):
    code = ("from reference.models import load_model, ModelUnavailableError\n"
            "try:\n    load_model('gpt2-small', device='cpu')\n"
            "except ModelUnavailableError as e:\n    print('ERR', e)\n")
    proc = _run([code], tmp_path / "empty_home", offline=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = proc.stdout.strip()
    assert line.startswith("ERR gpt2-small: weights are not in the local Hugging Face cache")
    assert "\n" not in line and "--model embedded" in line


def test_unknown_model_name_is_rejected():
    from reference.models import load_model

    with pytest.raises(ModelUnavailableError, match="unknown model 'gpt5'"):
        load_model("gpt5", device="cpu")


def test_embedded_checksum_is_verified(tmp_path):
    assert "model.safetensors" in verify_embedded()
    bad = tmp_path / "embedded"
    shutil.copytree(EMBEDDED_DIR, bad)
    data = bytearray((bad / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (bad / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelUnavailableError, match="model.safetensors is missing or corrupt"):
        load_embedded("cpu", bad)


def test_embedded_model_behaves_like_gpt2_for_the_lab(model):
    assert model.to_single_token(" Mary") != model.to_single_token("Mary")
    assert model.to_str_tokens("John and Mary")[1:] == ["John", " and", " Mary"]
    assert model.tokenizer.decode(model.to_single_token(" Mary")) == " Mary"
    assert "blocks.0.hook_mlp_out" in model.hook_dict and "blocks.0.attn.hook_z" in model.hook_dict
    assert json.loads((EMBEDDED_DIR / "config.json").read_text())["d_mlp"] > 0  # has MLPs
