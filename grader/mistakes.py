"""Known mistakes, each a small implementation run in the trusted parent on the check's inputs.
When a student's output matches one (and not the right answer), the feedback names it and says
how to fix it. Logit-level mistakes are written the lab's way (`run_with_hooks`); dataset-level
ones reuse the reference's per-example effects and average them the wrong way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from reference import data, patching


@dataclass(frozen=True)
class Mistake:
    name: str
    fix: str
    run: Callable[..., Any]     # same positional arguments as the graded function


def _hooked(model, tokens, hooks):
    return model.run_with_hooks(tokens, fwd_hooks=hooks)


def _replace_all(cache):
    return lambda act, hook: cache[hook.name]


def _replace_at(cache, index):
    def hook(act, hook):
        act = act.clone()
        act[index] = cache[hook.name][index]
        return act
    return hook


CLEAN_RUN = "patched with the clean run (no corruption reaches the model)"
CLEAN_FIX = "take the replacement from `corrupted_cache`, not from the clean run"


def _clean(model, clean_tokens, *rest):
    return model(clean_tokens)


def _dataset_mistakes(effects_fn) -> list[Mistake]:
    """Averaging and normalisation mistakes for any dataset-level effect map."""
    def per_example(model, dataset, n_samples=20):
        return effects_fn(model, [data.IOIExample(e.clean, e.corrupted, e.answer, e.wrong_answer)
                                  for e in dataset[:n_samples]])

    def by_n_samples(model, dataset, n_samples=20):
        eff = per_example(model, dataset, n_samples)
        return eff.effects[eff.clean_ld > 0].sum(axis=0) / len(dataset[:n_samples])

    def no_skip(model, dataset, n_samples=20):
        return per_example(model, dataset, n_samples).effects.mean(axis=0)

    def raw(model, dataset, n_samples=20):
        eff = per_example(model, dataset, n_samples)
        gap = (eff.clean_ld - eff.corrupted_ld + 1e-10).reshape(-1, *[1] * (eff.effects.ndim - 1))
        used = eff.clean_ld > 0
        return (eff.effects * gap)[used].mean(axis=0)

    return [
        Mistake("divided by n_samples instead of the number of examples actually used", "count the "
                "examples you keep (clean logit diff > 0) and divide by that count", by_n_samples),
        Mistake("averaged over examples the model gets wrong too", "skip examples whose clean logit "
                "difference is <= 0 before averaging", no_skip),
        Mistake("no normalisation: raw change in logit difference", "divide by (clean - corrupted) "
                "with `compute_patching_effect`", raw),
        Mistake(CLEAN_RUN, CLEAN_FIX, lambda model, dataset, n_samples=20:
                np.zeros_like(per_example(model, dataset, n_samples).mean())),
    ]


def _position_effects(model, example, hook_suffix: str) -> np.ndarray:
    """Effects of patching `hook_suffix` at one (layer, position), via the batched core."""
    eff = patching.resid_position_effects(model, [example]) if hook_suffix == "hook_resid_post" else None
    if eff is not None:
        return eff.effects[0]
    clean = model.to_tokens(example.clean)
    a, w = model.to_single_token(example.answer), model.to_single_token(example.wrong_answer)
    clean_logits, clean_cache = model.run_with_cache(clean)
    corr_logits, corr_cache = model.run_with_cache(model.to_tokens(example.corrupted))
    ld = lambda logits: (logits[..., a] - logits[..., w])
    c, k = ld(clean_logits[0, -1]), ld(corr_logits[0, -1])
    out = np.zeros((model.cfg.n_layers, clean.shape[1]))
    for layer in range(model.cfg.n_layers):
        name = f"blocks.{layer}.{hook_suffix}"
        masks = patching.position_masks(clean.shape[1], [[p] for p in range(clean.shape[1])])
        logits = patching.patched_logits(model, clean_cache, corr_cache[name], name, masks)
        out[layer] = ((c - ld(logits[:, 0])) / (c - k + 1e-10)).double().numpy()
    return out


def _end_attention(cache, layer, head, positions, key_query=False, shift=0, order=("IO", "S1", "S2")):
    pattern = cache["pattern", layer][0, head]
    end = positions["END"] + shift
    row = (lambda p: pattern[p, end]) if key_query else (lambda p: pattern[end, p])
    return {k: row(positions[src] + shift).item() for k, src in zip(("IO", "S1", "S2"), order)}


def _name_movers(model, dataset, heads, n_samples=20, **kw):
    out = np.zeros((len(heads), 3))
    for ex in dataset[:n_samples]:
        _, cache = model.run_with_cache(model.to_tokens(ex.clean))
        pos = data.name_positions(model, ex)
        for i, (l, h) in enumerate(heads):
            out[i] += list(_end_attention(cache, l, h, pos, **kw).values())
    return out / len(dataset[:n_samples])


def _z_head_as_position(model, clean_tokens, corrupted_cache, layer, head):
    return _hooked(model, clean_tokens, [(f"blocks.{layer}.attn.hook_z", _replace_at(corrupted_cache, (slice(None), head)))])


def _head(model, clean_tokens, corrupted_cache, layer, head):
    idx = (slice(None), slice(None), head)
    return _hooked(model, clean_tokens, [(f"blocks.{layer}.attn.hook_z", _replace_at(corrupted_cache, idx))])


MISTAKES: dict[str, list[Mistake]] = {
    "patch_mlp_layer": [
        Mistake(CLEAN_RUN, CLEAN_FIX, _clean),
        Mistake("patched the attention output (hook_attn_out) instead of the MLP output",
                "use the hook name f\"blocks.{layer}.hook_mlp_out\"",
                lambda m, t, c, l: _hooked(m, t, [(f"blocks.{l}.hook_attn_out", _replace_all(c))])),
        Mistake("patched resid_post instead of the MLP output", "use f\"blocks.{layer}.hook_mlp_out\"",
                lambda m, t, c, l: _hooked(m, t, [(f"blocks.{l}.hook_resid_post", _replace_all(c))])),
    ],
    "compute_mlp_patching_effects": _dataset_mistakes(patching.mlp_effects),
    "find_name_positions": [
        Mistake("forgot the BOS token: every position is one too small", "index into "
                "model.to_tokens(...)[0], which starts with BOS (or add 1)",
                lambda m, e: {k: v - 1 for k, v in data.name_positions(m, e).items()}),
        Mistake("S1 and S2 swapped", "S1 is the subject's first mention, S2 its second",
                lambda m, e: {**data.name_positions(m, e), "S1": data.name_positions(m, e)["S2"],
                              "S2": data.name_positions(m, e)["S1"]}),
        Mistake("END is the sequence length, one past the last token", "END = len(tokens) - 1",
                lambda m, e: {**data.name_positions(m, e), "END": data.name_positions(m, e)["END"] + 1}),
    ],
    "patch_residual_at_positions": [
        Mistake(CLEAN_RUN, CLEAN_FIX, _clean),
        Mistake("patched resid_pre instead of resid_post", "use f\"blocks.{layer}.hook_resid_post\"",
                lambda m, t, c, l, p: _hooked(m, t, [(f"blocks.{l}.hook_resid_pre", _replace_at(c, (slice(None), p)))])),
        Mistake("patched every position, not only the listed ones", "replace only activation[:, positions, :]",
                lambda m, t, c, l, p: _hooked(m, t, [(f"blocks.{l}.hook_resid_post", _replace_all(c))])),
    ],
    "compute_position_patching_effects": [
        Mistake("patched resid_pre instead of resid_post", "use f\"blocks.{layer}.hook_resid_post\"",
                lambda m, e: _position_effects(m, e, "hook_resid_pre")),
        Mistake("transposed output: [seq, n_layers] instead of [n_layers, seq]", "return an array indexed [layer, position]",
                lambda m, e: _position_effects(m, e, "hook_resid_post").T),
    ],
    "get_end_attention": [
        Mistake("read the pattern as [key, query]: attention *to* END, not *from* END",
                "cache['pattern', layer][0, head] is [query_pos, key_pos]: use pattern[END, position]",
                lambda c, l, h, p: _end_attention(c, l, h, p, key_query=True)),
        Mistake("forgot the BOS token: positions one too small", "use the positions as given, BOS included",
                lambda c, l, h, p: _end_attention(c, l, h, p, shift=-1)),
    ],
    "compute_name_mover_scores": [
        Mistake("read the pattern as [key, query]", "use pattern[END, position]",
                lambda m, d, hs, n=20: _name_movers(m, d, hs, n, key_query=True)),
        Mistake("columns in the wrong order", "return the columns as (IO, S1, S2)",
                lambda m, d, hs, n=20: _name_movers(m, d, hs, n, order=("IO", "S2", "S1"))),
    ],
    "path_patch_head_to_final_resid": [
        Mistake("path patching without freezing the other heads: this is plain head patching",
                "also hook every later layer's hook_z and return its clean value from clean_cache",
                lambda m, t, cc, kc, l, h: _head(m, t, kc, l, h)),
        Mistake("patched z[:, head] (a position) instead of z[:, :, head] (a head)",
                "hook_z is [batch, pos, head, d_head]: index the head as z[:, :, head]",
                lambda m, t, cc, kc, l, h: _hooked(m, t, [(f"blocks.{l}.attn.hook_z", _replace_at(kc, (slice(None), h)))]
                                                  + [(f"blocks.{x}.attn.hook_z", _replace_all(cc)) for x in range(l + 1, m.cfg.n_layers)])),
        Mistake(CLEAN_RUN, CLEAN_FIX, lambda m, t, cc, kc, l, h: m(t)),
    ],
    "compute_path_patching_effects": [
        Mistake("path patching without freezing the other heads: this is plain head patching",
                "freeze every later head's hook_z to its clean value",
                lambda m, d, n=10: patching.head_effects(m, [data.IOIExample(e.clean, e.corrupted, e.answer, e.wrong_answer)
                                                             for e in d[:n]]).mean()),
        *_dataset_mistakes(patching.path_effects),
    ],
    "compute_logit_diff": [
        Mistake("subtracted the other way round (wrong - answer)", "logit(answer) - logit(wrong)",
                lambda lg, a, w, p=-1: (lg[0, p, w] - lg[0, p, a]).item()),
        Mistake("ignored `position` and used the last position", "index logits[0, position, ...]",
                lambda lg, a, w, p=-1: (lg[0, -1, a] - lg[0, -1, w]).item()),
    ],
    "compute_patching_effect": [
        Mistake("no normalisation: clean - patched", "divide by (clean - corrupted)",
                lambda c, k, p: c - p),
        Mistake("measured recovery, (patched - corrupted) / (clean - corrupted), not damage",
                "effect = (clean - patched) / (clean - corrupted)", lambda c, k, p: (p - k) / (c - k)),
    ],
    "patch_residual_stream": [
        Mistake(CLEAN_RUN, CLEAN_FIX, _clean),
        Mistake("patched resid_pre instead of resid_post", "use f\"blocks.{layer}.hook_resid_post\"",
                lambda m, t, c, l, p=None: _hooked(m, t, [(f"blocks.{l}.hook_resid_pre",
                                                           _replace_all(c) if p is None else _replace_at(c, (slice(None), p)))])),
    ],
    "patch_attention_head": [
        Mistake("patched z[:, head] (a position) instead of z[:, :, head] (a head)",
                "hook_z is [batch, pos, head, d_head]: index the head as z[:, :, head]", _z_head_as_position),
        Mistake(CLEAN_RUN, CLEAN_FIX, _clean),
    ],
    "run_patching_experiment": _dataset_mistakes(patching.head_effects),
}


def as_plain(value: Any) -> Any:
    """A reference or mistake output as the same plain data the worker sends back."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, dict):
        return {str(k): float(v) for k, v in value.items()}
    return np.asarray(value)
