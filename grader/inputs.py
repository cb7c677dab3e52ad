"""How a check's recipe (plain JSON: prompts, layer, head, ...) becomes the arguments of a graded
function. The parent builds the reference's arguments and the sandboxed worker builds the
student's from the same recipe with this same code, so both see identical inputs; nothing here
computes an answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

# The spec's parameter lists (shared/spec/graded_functions.md), in order.
SIGNATURES: dict[str, list[str]] = {
    "compute_logit_diff": ["logits", "answer_token", "wrong_token", "position"],
    "compute_patching_effect": ["clean_logit_diff", "corrupted_logit_diff", "patched_logit_diff"],
    "patch_residual_stream": ["model", "clean_tokens", "corrupted_cache", "layer", "position"],
    "patch_attention_head": ["model", "clean_tokens", "corrupted_cache", "layer", "head"],
    "run_patching_experiment": ["model", "dataset", "n_samples"],
    "patch_mlp_layer": ["model", "clean_tokens", "corrupted_cache", "layer"],
    "compute_mlp_patching_effects": ["model", "dataset", "n_samples"],
    "find_name_positions": ["model", "example"],
    "patch_residual_at_positions": ["model", "clean_tokens", "corrupted_cache", "layer", "positions"],
    "compute_position_patching_effects": ["model", "example"],
    "get_end_attention": ["cache", "layer", "head", "positions"],
    "compute_name_mover_scores": ["model", "dataset", "heads", "n_samples"],
    "path_patch_head_to_final_resid": ["model", "clean_tokens", "clean_cache", "corrupted_cache", "layer", "head"],
    "compute_path_patching_effects": ["model", "dataset", "n_samples"],
}


OPTIONAL = {"position", "n_samples"}  # parameters with a default in the spec


@dataclass
class Example:
    """Same fields as the lab's IOIExample; student code only reads the attributes."""
    clean: str
    corrupted: str
    answer: str
    wrong_answer: str


def build_args(model, function: str, recipe: dict[str, Any], example_cls=Example) -> list[Any]:
    """Positional arguments for `function` from `recipe`, in the spec's order."""
    ex = example_cls(**recipe["example"]) if "example" in recipe else None
    memo: dict[str, Any] = {}

    def cached(kind: str):
        if kind not in memo:
            text = ex.clean if kind == "clean" else ex.corrupted
            memo[kind] = model.run_with_cache(model.to_tokens(text))
        return memo[kind]

    def value(name: str) -> Any:
        if name == "model":
            return model
        if name == "clean_tokens":
            return model.to_tokens(ex.clean)
        if name in ("clean_cache", "cache"):
            return cached("clean")[1]
        if name == "corrupted_cache":
            return cached("corrupted")[1]
        if name == "logits":
            return cached(recipe.get("logits_of", "clean"))[0]
        if name == "answer_token":
            return model.to_single_token(ex.answer)
        if name == "wrong_token":
            return model.to_single_token(ex.wrong_answer)
        if name == "dataset":
            return [example_cls(**d) for d in recipe["dataset"]]
        if name == "example":
            return ex
        if name == "heads":
            return [tuple(h) for h in recipe["heads"]]
        return recipe[name]

    params = SIGNATURES[function]
    while params[-1] in OPTIONAL and params[-1] not in recipe:
        params = params[:-1]  # left out: the function's own default applies
    return [value(p) for p in params]


def tensors_in(args: list[Any]) -> list[torch.Tensor]:
    """Every tensor an argument holds (tokens, cache entries), to check nothing was modified."""
    found: list[torch.Tensor] = []
    for a in args:
        if isinstance(a, torch.Tensor):
            found.append(a)
        elif hasattr(a, "cache_dict"):
            found.extend(a.cache_dict.values())
    return found
