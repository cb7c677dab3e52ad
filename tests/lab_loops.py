"""Plain lab-style implementations of the spec: one example, one patch, one forward pass, with
`run_with_hooks`, exactly as a student following the lab would write them. The reference's
batched code must agree with these; the benchmark times them as its first baseline."""

from __future__ import annotations

import numpy as np
import torch


def logit_diff(logits, answer, wrong, position=-1) -> float:
    return (logits[0, position, answer] - logits[0, position, wrong]).item()


def effect(clean, corrupted, patched) -> float:
    return (clean - patched) / (clean - corrupted + 1e-10)


def patch_resid(model, clean_tokens, corrupted_cache, layer, positions=None):
    def hook(act, hook):
        if positions is None:
            return corrupted_cache[hook.name]
        act[:, positions, :] = corrupted_cache[hook.name][:, positions, :]
        return act
    return model.run_with_hooks(clean_tokens, fwd_hooks=[(f"blocks.{layer}.hook_resid_post", hook)])


def patch_head(model, clean_tokens, corrupted_cache, layer, head, position=None):
    def hook(act, hook):
        if position is None:
            act[:, :, head, :] = corrupted_cache[hook.name][:, :, head, :]
        else:
            act[:, position, head, :] = corrupted_cache[hook.name][:, position, head, :]
        return act
    return model.run_with_hooks(clean_tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", hook)])


def patch_mlp(model, clean_tokens, corrupted_cache, layer):
    def hook(act, hook):
        return corrupted_cache[hook.name]
    return model.run_with_hooks(clean_tokens, fwd_hooks=[(f"blocks.{layer}.hook_mlp_out", hook)])


def path_patch(model, clean_tokens, clean_cache, corrupted_cache, layer, head):
    def sender(act, hook):
        act[:, :, head, :] = corrupted_cache[hook.name][:, :, head, :]
        return act

    def freeze(act, hook):
        return clean_cache[hook.name]
    hooks = [(f"blocks.{layer}.attn.hook_z", sender)]
    hooks += [(f"blocks.{l}.attn.hook_z", freeze) for l in range(layer + 1, model.cfg.n_layers)]
    return model.run_with_hooks(clean_tokens, fwd_hooks=hooks)


def per_example(model, ex):
    clean = model.to_tokens(ex.clean)
    corr = model.to_tokens(ex.corrupted)
    a, w = model.to_single_token(ex.answer), model.to_single_token(ex.wrong_answer)
    clean_logits, clean_cache = model.run_with_cache(clean)
    corr_logits, corr_cache = model.run_with_cache(corr)
    return clean, clean_cache, corr_cache, a, w, logit_diff(clean_logits, a, w), logit_diff(corr_logits, a, w)


def dataset_average(model, dataset, n_samples, shape, patch_fn):
    """The spec's rule: skip clean logit diff <= 0, divide by the number used."""
    total, used = np.zeros(shape), 0
    for ex in dataset[:n_samples]:
        clean, clean_cache, corr_cache, a, w, c_ld, k_ld = per_example(model, ex)
        if c_ld <= 0:
            continue
        used += 1
        for index in np.ndindex(*shape):
            logits = patch_fn(clean, clean_cache, corr_cache, *index)
            total[index] += effect(c_ld, k_ld, logit_diff(logits, a, w))
    return total / used


def head_sweep(model, dataset, n_samples=20):
    shape = (model.cfg.n_layers, model.cfg.n_heads)
    return dataset_average(model, dataset, n_samples, shape,
                           lambda t, cc, kc, l, h: patch_head(model, t, kc, l, h))


def mlp_sweep(model, dataset, n_samples=20):
    return dataset_average(model, dataset, n_samples, (model.cfg.n_layers,),
                           lambda t, cc, kc, l: patch_mlp(model, t, kc, l))


def path_sweep(model, dataset, n_samples=10):
    shape = (model.cfg.n_layers, model.cfg.n_heads)
    return dataset_average(model, dataset, n_samples, shape,
                           lambda t, cc, kc, l, h: path_patch(model, t, cc, kc, l, h))


def position_sweep(model, ex):
    clean, clean_cache, corr_cache, a, w, c_ld, k_ld = per_example(model, ex)
    out = np.zeros((model.cfg.n_layers, clean.shape[1]))
    for layer, pos in np.ndindex(*out.shape):
        out[layer, pos] = effect(c_ld, k_ld, logit_diff(patch_resid(model, clean, corr_cache, layer, [pos]), a, w))
    return out


def end_attention(model, dataset, heads, positions_fn, n_samples=20):
    out = np.zeros((len(heads), 3))
    for ex in dataset[:n_samples]:
        _, cache = model.run_with_cache(model.to_tokens(ex.clean))
        pos = positions_fn(model, ex)
        for k, (layer, head) in enumerate(heads):
            pattern = cache["pattern", layer][0, head]
            out[k] += [pattern[pos["END"], pos[key]].item() for key in ("IO", "S1", "S2")]
    return out / len(dataset[:n_samples])


def head_position_sweep(model, ex):
    clean, clean_cache, corr_cache, a, w, c_ld, k_ld = per_example(model, ex)
    out = np.zeros((model.cfg.n_layers, model.cfg.n_heads, clean.shape[1]))
    for layer, head, pos in np.ndindex(*out.shape):
        logits = patch_head(model, clean, corr_cache, layer, head, pos)
        out[layer, head, pos] = effect(c_ld, k_ld, logit_diff(logits, a, w))
    return out


def resid_layer_sweep(model, ex, positions=None):
    clean, clean_cache, corr_cache, a, w, c_ld, k_ld = per_example(model, ex)
    return np.array([effect(c_ld, k_ld, logit_diff(patch_resid(model, clean, corr_cache, l, positions), a, w))
                     for l in range(model.cfg.n_layers)])
