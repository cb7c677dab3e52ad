"""Reference speed: a full head sweep and a full position sweep, timed three ways in one run.

    python bench/reference_speed.py [--device cpu|cuda] [--only embedded|gpt2] [--json PATH]

(a) the lab's loop: one example, one patch, one forward pass at a time (tests/lab_loops.py);
(b) TransformerLens `patching` with all prompts in one batch (what a competent user picks);
(c) the reference's batched core.
Prints each time, the ratios (a)/(c) and (b)/(c), and the largest difference between results.
Models: the embedded one (50 lab prompts) and a GPT-2-small-architecture model with random
weights (10 prompts). Machines are noisy: only ratios from one run mean anything.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from functools import partial
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformer_lens import HookedTransformer, HookedTransformerConfig  # noqa: E402
from transformer_lens import patching as tl_patching  # noqa: E402

from reference import data, patching  # noqa: E402
from reference.models import EMBEDDED_DIR, load_model, make_deterministic  # noqa: E402
from tests import lab_loops  # noqa: E402


def gpt2_architecture(device: str) -> HookedTransformer:
    """GPT-2 small's shapes with random weights, and our tokenizer (ids fit its vocabulary)."""
    from transformers import AutoTokenizer

    cfg = HookedTransformerConfig(n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072,
                                  n_ctx=1024, d_vocab=50257, act_fn="gelu_new",
                                  normalization_type="LN", seed=0, device=device)
    tok = AutoTokenizer.from_pretrained(str(EMBEDDED_DIR / "tokenizer"))
    return HookedTransformer(cfg, tokenizer=tok).eval()


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, np.asarray(out, dtype=np.float64)


def tl_metric(model, dataset):
    """TransformerLens needs one scalar per patch: the spec's mean effect over usable prompts."""
    clean = torch.cat([model.to_tokens(e.clean) for e in dataset])
    corr = torch.cat([model.to_tokens(e.corrupted) for e in dataset])
    a = torch.tensor([model.to_single_token(e.answer) for e in dataset], device=clean.device)
    w = torch.tensor([model.to_single_token(e.wrong_answer) for e in dataset], device=clean.device)
    ld = lambda logits: (logits[:, -1].gather(1, a[:, None]) - logits[:, -1].gather(1, w[:, None]))[:, 0]
    c_ld, k_ld = ld(model(clean)), ld(model(corr))
    used = c_ld > 0

    def metric(logits):
        return ((c_ld - ld(logits)) / (c_ld - k_ld + 1e-10))[used].mean()
    _, corr_cache = model.run_with_cache(corr)
    return clean, corr_cache, metric


def tl_heads(model, dataset):
    clean, corr_cache, metric = tl_metric(model, dataset)
    # TransformerLens patches the cache *into* the tokens' run: clean run, corrupted cache.
    return tl_patching.get_act_patch_attn_head_out_all_pos(model, clean, corr_cache, metric).cpu()


def tl_positions(model, dataset):
    clean, corr_cache, metric = tl_metric(model, dataset)
    return tl_patching.generic_activation_patch(
        model, clean, corr_cache, metric, patch_setter=tl_patching.layer_pos_patch_setter,
        activation_name="resid_post", index_axis_names=("layer", "pos")).cpu()


def lab_positions(model, dataset):
    """The lab's loop, per example, then the spec's averaging rule."""
    maps, used = [], []
    for ex in dataset:
        *_, c_ld, _ = lab_loops.per_example(model, ex)
        if c_ld > 0:
            maps.append(lab_loops.position_sweep(model, ex))
    return np.mean(maps, axis=0)


def normaliser(model, dataset) -> float:
    """The smallest |clean - corrupted| logit difference: effects divide by it, so float32
    rounding in the logits is amplified by 1/this in the effects."""
    eff = patching.mlp_effects(model, dataset)
    return float(np.abs(eff.clean_ld - eff.corrupted_ld).min())


def bench_model(label, model, dataset) -> dict:
    gap = normaliser(model, dataset)
    print(f"{label}: smallest |clean - corrupted| logit diff {gap:.3g} (effect rounding is amplified by 1/that)")
    rows = {"min_normaliser": gap}
    sweeps = {
        "head sweep": (lambda: lab_loops.head_sweep(model, dataset, len(dataset)),
                       lambda: tl_heads(model, dataset),
                       lambda: patching.head_effects(model, dataset).mean()),
        "position sweep": (lambda: lab_positions(model, dataset),
                           lambda: tl_positions(model, dataset),
                           lambda: patching.resid_position_effects(model, dataset).mean()),
    }
    for sweep, (lab_fn, tl_fn, ref_fn) in sweeps.items():
        ref_fn()  # warm-up: first-call allocations are not what we measure
        t_ref, r_ref = timed(ref_fn)
        t_tl, r_tl = timed(tl_fn)
        t_lab, r_lab = timed(lab_fn)
        diff = max(np.abs(r_ref - r_lab).max(), np.abs(r_ref - r_tl).max())
        rows[sweep] = dict(lab_s=t_lab, tl_s=t_tl, ref_s=t_ref, vs_lab=t_lab / t_ref,
                           vs_tl=t_tl / t_ref, max_abs_diff=float(diff))
        print(f"{label:<26} {sweep:<15} lab {t_lab:8.2f}s  TL {t_tl:8.2f}s  ref {t_ref:7.3f}s  "
              f"x{t_lab / t_ref:6.1f} vs lab  x{t_tl / t_ref:5.1f} vs TL  max|diff| {diff:.1e}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", choices=["embedded", "gpt2"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    make_deterministic()
    print(f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}")
    results = {}
    if args.only in (None, "embedded"):
        results["embedded"] = bench_model("embedded (50 prompts)", load_model("embedded", args.device),
                                          data.create_ioi_dataset(50))
    if args.only in (None, "gpt2"):
        results["gpt2_arch"] = bench_model("GPT-2 arch (10 prompts)", gpt2_architecture(args.device),
                                           data.create_ioi_dataset(10))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
