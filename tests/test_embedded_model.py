"""The shipped embedded model does IOI, and its training script is reproducible to the bit."""

from __future__ import annotations

import random

import pytest
import torch

from reference import data, evaluate
from reference.models import sha256_file
from reference.training import TrainConfig, make_batch, train


def test_accuracy_on_the_labs_prompts(model):
    result = evaluate.accuracy(model, data.create_ioi_dataset(100, seed=42))
    assert result["accuracy"] >= 0.99
    assert result["mean_clean_logit_diff"] > 0 > result["mean_corrupted_logit_diff"]


def test_accuracy_on_name_pairs_never_seen_in_training(model):
    heldout = evaluate.heldout_pair_dataset(200)
    assert all(data.is_heldout_pair(e.answer.strip(), e.wrong_answer.strip()) for e in heldout)
    result = evaluate.accuracy(model, heldout)
    assert result["accuracy"] >= 0.95
    assert result["mean_clean_logit_diff"] > 0 > result["mean_corrupted_logit_diff"]


def test_training_batches_have_one_bos_and_no_heldout_pair(model):
    tokens, last, targets = make_batch(model, random.Random(0), TrainConfig(batch_size=64))
    bos = model.tokenizer.bos_token_id
    assert (tokens[:, 0] == bos).all() and (tokens[:, 1] != bos).all()
    assert (tokens[torch.arange(64), last] == model.to_single_token(" to")).all()
    for row, t in zip(tokens, targets):
        words = [model.tokenizer.decode(int(i)).strip() for i in row]
        answer = model.tokenizer.decode(int(t)).strip()
        subject = next(w for w in words if w in data.NAMES and words.count(w) == 2)
        assert answer in words and answer != subject
        assert not data.is_heldout_pair(answer, subject)


def test_training_is_bitwise_reproducible(tmp_path):
    cfg = TrainConfig(steps=30, batch_size=16)
    a = train(cfg, tmp_path / "a", log_every=0)
    b = train(cfg, tmp_path / "b", log_every=0)
    assert a["losses"] == b["losses"]
    assert sum(a["losses"][-5:]) < sum(a["losses"][:5])  # it learns
    assert sha256_file(tmp_path / "a" / "model.safetensors") == sha256_file(tmp_path / "b" / "model.safetensors")
    assert (tmp_path / "a" / "SHA256SUMS").read_text() == (tmp_path / "b" / "SHA256SUMS").read_text()
