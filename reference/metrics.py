"""Metrics: the lab's logit difference and normalised patching effect, batched."""

from __future__ import annotations

import torch
from torch import Tensor


def logit_diff(last_logits: Tensor, answers: Tensor, wrongs: Tensor) -> Tensor:
    """logit(answer) - logit(wrong) for logits `[..., B, d_vocab]` at one position; returns
    `[..., B]`. `answers` / `wrongs` hold one token id per example."""
    idx = answers.expand(*last_logits.shape[:-1])
    wdx = wrongs.expand(*last_logits.shape[:-1])
    return (last_logits.gather(-1, idx[..., None]) - last_logits.gather(-1, wdx[..., None]))[..., 0]


def patching_effect(clean_ld: Tensor, corrupted_ld: Tensor, patched_ld: Tensor) -> Tensor:
    """The lab's `(clean - patched) / (clean - corrupted + 1e-10)`, in float64 like the lab's
    Python floats: 0 = no effect, 1 = fully corrupted behaviour."""
    c, k, p = (t.double() for t in (clean_ld, corrupted_ld, patched_ld))
    return ((c - p) / (c - k + 1e-10)).cpu()
