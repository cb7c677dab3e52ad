"""Batched activation patching: one generic core and a thin function per patching kind.

The core runs many patches in one forward pass. Row `p * B + b` of the batch is example `b`
with patch `p` applied: inside the hooked activation, the elements where `masks[p]` is True are
taken from the corrupted run. Three savings make it fast on a CPU as well as a GPU:
- start at the patched layer (`start_at_layer`) from the clean run's cached residual stream;
  a `hook_resid_post` patch at layer L starts directly at layer L+1 with no hook at all;
- unembed only the last position unless the full logits are asked for;
- chunk rows to bound memory (`max_rows`), in a fixed order, so results are bit-for-bit
  reproducible in float32 on one device.

Effects follow the lab: `(clean_ld - patched_ld) / (clean_ld - corrupted_ld + 1e-10)`, with
logit differences in float32 and the ratio in float64, as the lab's `.item()` calls do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import numpy as np
import torch
from torch import Tensor
from transformer_lens import ActivationCache, HookedTransformer

from .data import IOIExample, name_positions
from .metrics import logit_diff, patching_effect

Readout = Literal["last", "all"]
_LAYER = re.compile(r"blocks\.(\d+)\.")


def hook_layer(hook_name: str) -> int:
    match = _LAYER.match(hook_name)
    if not match:
        raise ValueError(f"not a per-block hook name: {hook_name!r}")
    return int(match.group(1))


@torch.no_grad()  # never build autograd graphs, whatever the caller's grad mode
def patched_logits(
    model: HookedTransformer,
    clean_cache: ActivationCache | dict,
    source: Tensor,
    hook_name: str,
    masks: Tensor,
    *,
    frozen: dict[str, Tensor] | None = None,
    readout: Readout = "last",
    max_rows: int = 256,
) -> Tensor:
    """The generic core: logits of the clean run with `masks[p]` of `hook_name` taken from `source`.

    clean_cache: the clean run's cache for the same B examples; must hold the residual stream
        where the run starts (`blocks.L.hook_resid_pre`, or `hook_resid_post` for such patches).
    source: [B, *act] the activation to patch in (usually from the corrupted run).
    masks: [P, *act] bool (broadcastable): which elements patch p replaces.
    frozen: hook name -> [B, *act] values forced on every row (path patching freezes heads).
    Returns [P, B, d_vocab] for readout "last", [P, B, seq, d_vocab] for "all".
    """
    layer = hook_layer(hook_name)
    n_patch, n_ex = masks.shape[0], source.shape[0]
    direct = hook_name.endswith(("hook_resid_pre", "hook_resid_post"))
    skip_attention = (hook_name == f"blocks.{layer}.attn.hook_z" and readout == "last"
                      and _linear_attention_output(model, layer, clean_cache))
    if direct:
        start_layer = layer + 1 if hook_name.endswith("hook_resid_post") else layer
        base = clean_cache[hook_name]
    elif skip_attention:
        start_layer = layer + 1
        base = clean_cache[f"blocks.{layer}.hook_resid_mid"]
    else:
        start_layer = layer
        base = clean_cache[f"blocks.{layer}.hook_resid_pre"]
    frozen = {k: v for k, v in (frozen or {}).items() if hook_layer(k) >= start_layer}
    masks = masks.to(source.device)

    outputs = []
    for r0 in range(0, n_patch * n_ex, max_rows):
        rows = torch.arange(r0, min(r0 + max_rows, n_patch * n_ex), device=source.device)
        p_idx, b_idx = rows // n_ex, rows % n_ex
        row_masks, row_source = masks[p_idx], source[b_idx]
        resid = base[b_idx]
        hooks: list[tuple[str, Callable]] = []
        if direct:
            resid = torch.where(row_masks, row_source, resid)
        elif skip_attention:
            resid = _after_patched_heads(model, layer, resid, clean_cache[hook_name][b_idx], row_masks, row_source)
        else:
            hooks.append((hook_name, lambda act, hook, m=row_masks, s=row_source: torch.where(m, s, act)))
        for name, value in frozen.items():
            hooks.append((name, lambda act, hook, v=value[b_idx]: v))
        with model.hooks(fwd_hooks=hooks):
            resid = model(resid, start_at_layer=start_layer, stop_at_layer=model.cfg.n_layers)
            if readout == "last":
                resid = resid[:, -1:, :]
            if model.cfg.normalization_type is not None:
                resid = model.ln_final(resid)
            logits = model.unembed(resid)
        outputs.append(logits[:, 0] if readout == "last" else logits)
    out = torch.cat(outputs)
    return out.reshape(n_patch, n_ex, *out.shape[1:])


def _linear_attention_output(model: HookedTransformer, layer: int, cache) -> bool:
    """A hook_z patch only changes attn_out = z @ W_O + b_O, so the patched layer's attention
    need not be recomputed, when the block is the usual sequential one and we have what we need."""
    block = model.blocks[layer]
    return (not model.cfg.parallel_attn_mlp and not model.cfg.attn_only and not model.cfg.use_attn_result
            and hasattr(block, "ln2") and hasattr(block, "apply_mlp")
            and f"blocks.{layer}.hook_resid_mid" in cache and f"blocks.{layer}.attn.hook_z" in cache)


def _after_patched_heads(model, layer, resid_mid, clean_z, masks, source) -> Tensor:
    """resid_post of `layer` when some heads' z is replaced: the clean resid_mid plus the change
    those heads write through W_O, then the block's MLP (and its hooks) as usual."""
    block = model.blocks[layer]
    delta = torch.where(masks, source, clean_z) - clean_z
    resid_mid = resid_mid + torch.einsum("bphd,hdm->bpm", delta, block.attn.W_O)
    mlp_out = block.hook_mlp_out(block.apply_mlp(block.ln2(resid_mid)))
    return block.hook_resid_post(resid_mid + mlp_out)


# --- Masks for each patching kind ------------------------------------------------------------

def position_masks(seq: int, positions: Sequence[Sequence[int]] | None,
                   device: torch.device | str = "cpu") -> Tensor:
    """[P, seq, 1] masks over positions (None: one patch of every position)."""
    if positions is None:
        return torch.ones(1, seq, 1, dtype=torch.bool, device=device)
    masks = torch.zeros(len(positions), seq, 1, dtype=torch.bool, device=device)
    for p, pos in enumerate(positions):
        masks[p, list(pos)] = True
    return masks


def head_masks(seq: int, n_heads: int, by_position: bool = False,
               device: torch.device | str = "cpu") -> Tensor:
    """[n_heads (* seq), seq, n_heads, 1] masks selecting one head (and one position)."""
    if not by_position:
        eye = torch.eye(n_heads, dtype=torch.bool, device=device)
        return eye[:, None, :, None].expand(n_heads, seq, n_heads, 1)
    masks = torch.zeros(n_heads, seq, seq, n_heads, 1, dtype=torch.bool, device=device)
    for h in range(n_heads):
        for s in range(seq):
            masks[h, s, s, h] = True
    return masks.reshape(n_heads * seq, seq, n_heads, 1)


# --- Runs over a dataset --------------------------------------------------------------------

@dataclass(frozen=True)
class Group:
    """Examples of one token length, batched: indices into the dataset and their caches."""
    indices: list[int]
    clean_tokens: Tensor
    corrupted_tokens: Tensor
    answers: Tensor
    wrongs: Tensor


def token_lists(model: HookedTransformer, texts: Sequence[str]) -> list[list[int]]:
    """`model.to_tokens(text)[0]` for many texts in one tokenizer call (no padding)."""
    cfg, tok = model.cfg, model.tokenizer
    if cfg.default_prepend_bos and not cfg.tokenizer_prepends_bos:
        texts = [tok.bos_token + t for t in texts]
    ids = tok(list(texts), truncation=True, max_length=cfg.n_ctx)["input_ids"]
    if not cfg.default_prepend_bos and cfg.tokenizer_prepends_bos:
        ids = [i[1:] if i and i[0] == tok.bos_token_id else i for i in ids]
    return ids


def tokenize_groups(model: HookedTransformer, examples: Sequence[IOIExample]) -> list[Group]:
    """Batch examples by token length, so no padding can leak into attention."""
    by_len: dict[int, list[int]] = {}
    ids = token_lists(model, [ex.clean for ex in examples] + [ex.corrupted for ex in examples])
    single: dict[str, int] = {}
    for name in {ex.answer for ex in examples} | {ex.wrong_answer for ex in examples}:
        single[name] = model.to_single_token(name)
    toks = []
    for i, ex in enumerate(examples):
        clean, corr = torch.tensor(ids[i]), torch.tensor(ids[len(examples) + i])
        if clean.shape != corr.shape:
            raise ValueError(f"clean and corrupted prompts differ in length: {ex.clean!r}")
        toks.append((clean, corr, single[ex.answer], single[ex.wrong_answer]))
        by_len.setdefault(len(clean), []).append(i)
    groups = []
    for idx in by_len.values():
        dev = model.cfg.device
        groups.append(Group(idx, torch.stack([toks[i][0] for i in idx]).to(dev),
                            torch.stack([toks[i][1] for i in idx]).to(dev),
                            torch.tensor([toks[i][2] for i in idx], device=dev),
                            torch.tensor([toks[i][3] for i in idx], device=dev)))
    return groups


def _names_filter(*suffixes: str) -> Callable[[str], bool]:
    return lambda name: name.endswith(suffixes)


@dataclass(frozen=True)
class Effects:
    """Per-example effects `[n_examples, *shape]` with the baselines they were normalised by."""
    effects: np.ndarray
    clean_ld: np.ndarray
    corrupted_ld: np.ndarray

    def mean(self) -> np.ndarray:
        """The spec's dataset average: skip examples with clean logit diff <= 0, divide by the
        number used; NaN where no example is used."""
        used = self.clean_ld > 0
        if not used.any():
            return np.full(self.effects.shape[1:], np.nan)
        return self.effects[used].mean(axis=0)


PatchPlan = Callable[[HookedTransformer, Group, int], list[tuple[str, Tensor, dict[str, Tensor] | None]]]


@torch.no_grad()  # never build autograd graphs, whatever the caller's grad mode
def run_effects(model: HookedTransformer, examples: Sequence[IOIExample], plan: PatchPlan,
                shape: Callable[[int], tuple[int, ...]], cache_hooks: tuple[str, ...],
                max_rows: int = 256) -> Effects:
    """Apply `plan` (one call per layer: a list of (hook, masks, frozen) patch sets) to every
    example; returns effects shaped `[n_examples, n_layers, *shape(seq)]`.

    Examples must share a token length when `shape` depends on it (position sweeps)."""
    groups = tokenize_groups(model, examples)
    n_layers = model.cfg.n_layers
    seqs = {g.clean_tokens.shape[1] for g in groups}
    out_shape = shape(max(seqs))
    if len(seqs) > 1 and shape(min(seqs)) != out_shape:
        raise ValueError("position sweeps need examples of one token length")
    effects = np.zeros((len(examples), n_layers, *out_shape))
    clean_ld = np.zeros(len(examples))
    corr_ld = np.zeros(len(examples))
    filt = _names_filter("hook_resid_pre", "hook_resid_mid", "hook_resid_post", *cache_hooks)
    for g in groups:
        clean_logits, clean_cache, corr_logits, corr_cache = _baseline_runs(model, g, filt)
        c_ld = logit_diff(clean_logits, g.answers, g.wrongs)
        k_ld = logit_diff(corr_logits, g.answers, g.wrongs)
        for layer in range(n_layers):
            parts = []
            for hook_name, masks, frozen in plan(model, g, layer):
                src = corr_cache[hook_name]
                frz = {k: clean_cache[k] for k in frozen} if frozen else None
                logits = patched_logits(model, clean_cache, src, hook_name, masks, frozen=frz,
                                        max_rows=max_rows)
                parts.append(logit_diff(logits, g.answers, g.wrongs))  # [P, B]
            patched = torch.cat(parts)  # [P, B]
            eff = patching_effect(c_ld, k_ld, patched)  # [P, B] float64
            effects[g.indices, layer] = eff.T.reshape(len(g.indices), *out_shape).numpy()
        clean_ld[g.indices] = c_ld.double().cpu().numpy()
        corr_ld[g.indices] = k_ld.double().cpu().numpy()
    return Effects(effects, clean_ld, corr_ld)


def _baseline_runs(model: HookedTransformer, g: Group, names_filter):
    """Clean and corrupted runs as one batch: last-position logits and the two caches."""
    n = len(g.indices)
    logits, cache = model.run_with_cache(torch.cat([g.clean_tokens, g.corrupted_tokens]),
                                         names_filter=names_filter)
    clean = {k: v[:n] for k, v in cache.items()}
    corrupted = {k: v[n:] for k, v in cache.items()}
    return logits[:n, -1], clean, logits[n:, -1], corrupted


def _seq(g: Group) -> int:
    return g.clean_tokens.shape[1]


def _dev(g: Group) -> torch.device:
    return g.clean_tokens.device


def resid_effects(model: HookedTransformer, examples: Sequence[IOIExample],
                  positions: Sequence[int] | None = None, **kw) -> Effects:
    """Patch `resid_post` of each layer at all positions (or at the set `positions`): [N, L]."""
    plan = lambda m, g, layer: [(f"blocks.{layer}.hook_resid_post",
                                 position_masks(_seq(g), None if positions is None else [positions], _dev(g)),
                                 None)]
    return run_effects(model, examples, plan, lambda seq: (), (), **kw)


def resid_position_effects(model: HookedTransformer, examples: Sequence[IOIExample], **kw) -> Effects:
    """Patch `resid_post` at one (layer, position) at a time: [N, L, seq] (one token length)."""
    plan = lambda m, g, layer: [(f"blocks.{layer}.hook_resid_post",
                                 position_masks(_seq(g), [[s] for s in range(_seq(g))], _dev(g)), None)]
    return run_effects(model, examples, plan, lambda seq: (seq,), (), **kw)


def head_effects(model: HookedTransformer, examples: Sequence[IOIExample],
                 by_position: bool = False, **kw) -> Effects:
    """Patch one head's `hook_z` (all positions, or one position): [N, L, H] or [N, L, H, seq]."""
    n_heads = model.cfg.n_heads
    plan = lambda m, g, layer: [(f"blocks.{layer}.attn.hook_z",
                                 head_masks(_seq(g), n_heads, by_position, _dev(g)), None)]
    shape = (lambda seq: (n_heads, seq)) if by_position else (lambda seq: (n_heads,))
    return run_effects(model, examples, plan, shape, ("hook_z",), **kw)


def mlp_effects(model: HookedTransformer, examples: Sequence[IOIExample], **kw) -> Effects:
    """Patch `hook_mlp_out` of each layer at all positions: [N, L]."""
    plan = lambda m, g, layer: [(f"blocks.{layer}.hook_mlp_out",
                                 torch.ones(1, 1, 1, dtype=torch.bool, device=_dev(g)), None)]
    return run_effects(model, examples, plan, lambda seq: (), ("hook_mlp_out",), **kw)


def path_effects(model: HookedTransformer, examples: Sequence[IOIExample], **kw) -> Effects:
    """Path patching sender head -> final residual stream: the head's `hook_z` from the
    corrupted run, every later head frozen to its clean `hook_z`, MLPs and LayerNorms
    recomputed: [N, L, H]."""
    n_heads, n_layers = model.cfg.n_heads, model.cfg.n_layers
    plan = lambda m, g, layer: [(f"blocks.{layer}.attn.hook_z", head_masks(_seq(g), n_heads, False, _dev(g)),
                                 [f"blocks.{l}.attn.hook_z" for l in range(layer + 1, n_layers)])]
    return run_effects(model, examples, plan, lambda seq: (n_heads,), ("hook_z",), **kw)


@torch.no_grad()  # never build autograd graphs, whatever the caller's grad mode
def end_attention(model: HookedTransformer, examples: Sequence[IOIExample],
                  heads: Sequence[tuple[int, int]]) -> np.ndarray:
    """Attention from END to (IO, S1, S2) of each head on each clean prompt: [N, len(heads), 3]."""
    out = np.zeros((len(examples), len(heads), 3))
    layers = sorted({l for l, _ in heads})
    filt = lambda name: name in {f"blocks.{l}.attn.hook_pattern" for l in layers}
    for g in tokenize_groups(model, examples):
        _, cache = model.run_with_cache(g.clean_tokens, names_filter=filt)
        for j, i in enumerate(g.indices):
            pos = name_positions(model, examples[i])
            for k, (layer, head) in enumerate(heads):
                row = cache[f"blocks.{layer}.attn.hook_pattern"][j, head, pos["END"]]
                out[i, k] = [row[pos[key]].item() for key in ("IO", "S1", "S2")]
    return out
