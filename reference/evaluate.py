"""How well a model does IOI, and what its patching maps look like: the numbers of the model card.

    python -m reference.evaluate [--model embedded]
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
from typing import Sequence

import numpy as np
import torch
from transformer_lens import HookedTransformer

from . import data, patching
from .data import IOIExample


def heldout_pair_dataset(n_samples: int = 200, seed: int = 1) -> list[IOIExample]:
    """Prompts built only from name pairs the embedded model never saw in training."""
    pairs = [p for p in itertools.permutations(data.EXTRA_NAMES, 2) if data.is_heldout_pair(*p)]
    rng = random.Random(seed)
    out = []
    for i in range(n_samples):
        io, s = rng.choice(pairs)
        template = rng.choice(data.TEMPLATES[:data.TRAIN_TEMPLATE_COUNT])
        out.append(data.make_ioi_example(template, io, s, rng.choice(data.PLACES), rng.choice(data.OBJECTS),
                                         "ABBA" if i % 2 else "BABA"))
    return out


def accuracy(model: HookedTransformer, examples: Sequence[IOIExample]) -> dict[str, float]:
    """Top-1 accuracy on the clean prompts and mean clean / corrupted logit differences."""
    groups = patching.tokenize_groups(model, examples)
    correct, clean_ld, corr_ld = 0, [], []
    for g in groups:
        clean = model(g.clean_tokens)[:, -1]
        corr = model(g.corrupted_tokens)[:, -1]
        correct += (clean.argmax(-1) == g.answers).sum().item()
        clean_ld += (clean.gather(1, g.answers[:, None]) - clean.gather(1, g.wrongs[:, None]))[:, 0].tolist()
        corr_ld += (corr.gather(1, g.answers[:, None]) - corr.gather(1, g.wrongs[:, None]))[:, 0].tolist()
    return {"accuracy": correct / len(examples), "mean_clean_logit_diff": float(np.mean(clean_ld)),
            "mean_corrupted_logit_diff": float(np.mean(corr_ld)), "n": len(examples)}


def circuit_summary(model: HookedTransformer, examples: Sequence[IOIExample]) -> dict:
    """Head, MLP and path maps, and END attention of every head (on same-length prompts)."""
    heads = [(l, h) for l in range(model.cfg.n_layers) for h in range(model.cfg.n_heads)]
    head_map = patching.head_effects(model, examples).mean()
    attn = patching.end_attention(model, examples, heads).mean(axis=0)
    return {
        "head_effects": head_map.round(4).tolist(),
        "mlp_effects": patching.mlp_effects(model, examples).mean().round(4).tolist(),
        "path_effects": patching.path_effects(model, examples).mean().round(4).tolist(),
        "end_attention": {f"L{l}H{h}": dict(zip(("IO", "S1", "S2"), attn[k].round(3).tolist()))
                          for k, (l, h) in enumerate(heads)},
    }


def evaluate(model: HookedTransformer) -> dict:
    lab = data.create_ioi_dataset(100, seed=42)
    return {
        "lab_prompts": accuracy(model, lab),
        "heldout_pairs": accuracy(model, heldout_pair_dataset()),
        "heldout_templates": accuracy(model, data.make_heldout_dataset(
            200, seed=7, names=data.NAMES, templates=data.TEMPLATES[data.TRAIN_TEMPLATE_COUNT:])),
        "circuit_on_lab_prompts": circuit_summary(model, lab[:50]),
    }


def main() -> None:
    from .models import load_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    print(json.dumps(evaluate(load_model(args.model, device="cpu")), indent=1))


if __name__ == "__main__":
    main()
