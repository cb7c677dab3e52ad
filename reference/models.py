"""Model loading in one place: the embedded default, `gpt2-small` from a local Hugging Face cache,
or a local checkpoint folder. Every path returns an eval-mode float32 HookedTransformer with
gradients off and TF32 disabled, so results are reproducible to the bit on one device.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformer_lens import HookedTransformer, HookedTransformerConfig

EMBEDDED_DIR = Path(__file__).parent / "embedded"
EMBEDDED = "embedded"
GPT2_ALIASES = {"gpt2-small": "gpt2", "gpt2": "gpt2"}


class ModelUnavailableError(RuntimeError):
    """The requested model cannot be loaded here; the message says why in one line."""


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def make_deterministic() -> None:
    """float32 must mean float32: TF32 matmuls on Ampere+ GPUs differ from the CPU by ~1e-3."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()




def build_hooked_transformer(cfg: dict, tokenizer_dir: Path, device: str = "cpu") -> HookedTransformer:
    """An untrained HookedTransformer with our tokenizer (loaded by path, as TransformerLens wants)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    config = HookedTransformerConfig(**{**cfg, "d_vocab": len(tokenizer), "device": device})
    return HookedTransformer(config, tokenizer=tokenizer, move_to_device=True)


def verify_embedded(folder: Path = EMBEDDED_DIR) -> dict[str, str]:
    """Check every shipped file against SHA256SUMS; raise if one differs or is missing."""
    sums = {}
    for line in (folder / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        sums[name] = digest
    for name, digest in sums.items():
        path = folder / name
        if not path.exists() or sha256_file(path) != digest:
            raise ModelUnavailableError(f"embedded model file {name} is missing or corrupt "
                                        f"(checksum mismatch); reinstall patchgrade")
    return sums


def load_embedded(device: str | None = None, folder: Path = EMBEDDED_DIR) -> HookedTransformer:
    """The small IOI model shipped in this repo (see reference/embedded/MODEL_CARD.md), or one
    trained by `reference.training` into `folder`."""
    folder = Path(folder)
    sums = verify_embedded(folder)
    device = device or default_device()
    cfg = json.loads((folder / "config.json").read_text())
    model = build_hooked_transformer(cfg, folder / "tokenizer", device)
    model.load_state_dict(load_file(str(folder / "model.safetensors"), device=device))
    model.cfg.model_name = EMBEDDED
    model.patchgrade_hash = sums["model.safetensors"]  # provenance for reports
    return model


def _gpt2_is_cached(repo: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(repo, "config.json"), str):
        return False
    return any(isinstance(try_to_load_from_cache(repo, f), str)
               for f in ("model.safetensors", "pytorch_model.bin"))


def _load_checkpoint_folder(folder: Path, device: str) -> HookedTransformer:
    """`from_pretrained` for a folder: TransformerLens 3.x's own `from_pretrained` insists on an
    official model name, but its config and weight converters accept a path, so use those with
    the same weight processing (fold LayerNorm, centre writing weights and unembedding)."""
    from transformer_lens import loading_from_pretrained as loading
    from transformers import AutoTokenizer

    cfg = loading.get_pretrained_model_config(str(folder), fold_ln=True, device=device)
    state = loading.get_pretrained_state_dict(str(folder), cfg)
    model = HookedTransformer(cfg, tokenizer=AutoTokenizer.from_pretrained(str(folder)),
                              move_to_device=False)
    model.load_and_process_state_dict(state, fold_ln=True, center_writing_weights=True,
                                      center_unembed=True, fold_value_biases=True)
    model.move_model_modules_to_device()
    return model


def load_model(name: str = EMBEDDED, device: str | None = None) -> HookedTransformer:
    """Load `embedded`, `gpt2-small` (from the local Hugging Face cache; never downloads), or a
    local Hugging Face checkpoint folder. Raises ModelUnavailableError with a one-line reason."""
    make_deterministic()
    torch.set_grad_enabled(False)
    device = device or default_device()
    if name == EMBEDDED:
        model = load_embedded(device)
    elif name in GPT2_ALIASES:
        repo = GPT2_ALIASES[name]
        if not _gpt2_is_cached(repo):
            raise ModelUnavailableError(
                f"{name}: weights are not in the local Hugging Face cache "
                f"({os.environ.get('HF_HOME', '~/.cache/huggingface')}); download them once on a "
                f"machine with internet (python -c \"import transformer_lens as t; "
                f"t.HookedTransformer.from_pretrained('gpt2')\") or use --model embedded")
        os.environ["HF_HUB_OFFLINE"] = "1"
        model = HookedTransformer.from_pretrained(name, device=device)
        model.patchgrade_hash = f"hf:{repo}"
    elif Path(name).is_dir():
        if not (Path(name) / "config.json").exists():
            raise ModelUnavailableError(f"{name}: not a Hugging Face checkpoint (no config.json)")
        model = _load_checkpoint_folder(Path(name).resolve(), device)
        model.patchgrade_hash = f"dir:{Path(name).resolve()}"
    else:
        raise ModelUnavailableError(
            f"unknown model {name!r}: use 'embedded', 'gpt2-small' or a checkpoint folder")
    model.eval()
    return model
