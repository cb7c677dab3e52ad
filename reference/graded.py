"""The graded functions of `shared/spec/graded_functions.md`, with the spec's names and
signatures, computed by the batched core in `patching.py`. These are the grader's expected
values; a lab-style loop in the tests checks each one.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from transformer_lens import ActivationCache, HookedTransformer

from . import patching
from .data import IOIExample, create_ioi_dataset, name_positions  # noqa: F401  (re-exported)


def compute_logit_diff(logits: torch.Tensor, answer_token: int, wrong_token: int,
                       position: int = -1) -> float:
    return (logits[0, position, answer_token] - logits[0, position, wrong_token]).item()


def compute_patching_effect(clean_logit_diff: float, corrupted_logit_diff: float,
                            patched_logit_diff: float) -> float:
    return (clean_logit_diff - patched_logit_diff) / (clean_logit_diff - corrupted_logit_diff + 1e-10)


@torch.no_grad()
def _single_patch(model: HookedTransformer, clean_tokens: torch.Tensor, corrupted_cache,
                  hook_name: str, masks: torch.Tensor, clean_cache=None,
                  frozen: Sequence[str] = ()) -> torch.Tensor:
    """Full logits `[batch, seq, d_vocab]` of one patch, via the batched core."""
    layer = patching.hook_layer(hook_name)
    if clean_cache is None:
        needed = {f"blocks.{layer}.hook_resid_pre", f"blocks.{layer}.hook_resid_post", *frozen}
        _, clean_cache = model.run_with_cache(clean_tokens, names_filter=lambda n: n in needed)
    logits = patching.patched_logits(
        model, clean_cache, corrupted_cache[hook_name], hook_name, masks, readout="all",
        frozen={name: clean_cache[name] for name in frozen})
    return logits[0]


def patch_residual_stream(model: HookedTransformer, clean_tokens: torch.Tensor, corrupted_cache,
                          layer: int, position: Optional[int] = None) -> torch.Tensor:
    positions = None if position is None else [[position]]
    masks = patching.position_masks(clean_tokens.shape[1], positions, clean_tokens.device)
    return _single_patch(model, clean_tokens, corrupted_cache, f"blocks.{layer}.hook_resid_post", masks)


def patch_attention_head(model: HookedTransformer, clean_tokens: torch.Tensor, corrupted_cache,
                         layer: int, head: int) -> torch.Tensor:
    masks = patching.head_masks(clean_tokens.shape[1], model.cfg.n_heads, device=clean_tokens.device)[head:head + 1]
    return _single_patch(model, clean_tokens, corrupted_cache, f"blocks.{layer}.attn.hook_z", masks)


def run_patching_experiment(model: HookedTransformer, dataset: Sequence[IOIExample],
                            n_samples: int = 20) -> np.ndarray:
    return patching.head_effects(model, dataset[:n_samples]).mean()


def patch_mlp_layer(model: HookedTransformer, clean_tokens: torch.Tensor, corrupted_cache,
                    layer: int) -> torch.Tensor:
    masks = torch.ones(1, 1, 1, dtype=torch.bool, device=clean_tokens.device)
    return _single_patch(model, clean_tokens, corrupted_cache, f"blocks.{layer}.hook_mlp_out", masks)


def compute_mlp_patching_effects(model: HookedTransformer, dataset: Sequence[IOIExample],
                                 n_samples: int = 20) -> np.ndarray:
    return patching.mlp_effects(model, dataset[:n_samples]).mean()


def find_name_positions(model: HookedTransformer, example: IOIExample) -> dict[str, int]:
    return name_positions(model, example)


def patch_residual_at_positions(model: HookedTransformer, clean_tokens: torch.Tensor,
                                corrupted_cache, layer: int, positions: Sequence[int]) -> torch.Tensor:
    masks = patching.position_masks(clean_tokens.shape[1], [list(positions)], clean_tokens.device)
    return _single_patch(model, clean_tokens, corrupted_cache, f"blocks.{layer}.hook_resid_post", masks)


def compute_position_patching_effects(model: HookedTransformer, example: IOIExample) -> np.ndarray:
    return patching.resid_position_effects(model, [example]).effects[0]


def get_end_attention(cache: ActivationCache, layer: int, head: int,
                      positions: dict[str, int]) -> dict[str, float]:
    row = cache["pattern", layer][0, head, positions["END"]]
    return {key: row[positions[key]].item() for key in ("IO", "S1", "S2")}


def compute_name_mover_scores(model: HookedTransformer, dataset: Sequence[IOIExample],
                              heads: Sequence[tuple[int, int]], n_samples: int = 20) -> np.ndarray:
    return patching.end_attention(model, dataset[:n_samples], heads).mean(axis=0)


def path_patch_head_to_final_resid(model: HookedTransformer, clean_tokens: torch.Tensor,
                                   clean_cache, corrupted_cache, layer: int, head: int) -> torch.Tensor:
    masks = patching.head_masks(clean_tokens.shape[1], model.cfg.n_heads, device=clean_tokens.device)[head:head + 1]
    frozen = [f"blocks.{l}.attn.hook_z" for l in range(layer + 1, model.cfg.n_layers)]
    return _single_patch(model, clean_tokens, corrupted_cache, f"blocks.{layer}.attn.hook_z", masks,
                         clean_cache=clean_cache, frozen=frozen)


def compute_path_patching_effects(model: HookedTransformer, dataset: Sequence[IOIExample],
                                  n_samples: int = 10) -> np.ndarray:
    return patching.path_effects(model, dataset[:n_samples]).mean()
