"""Every reference computation equals a plain lab-style loop (tests/lab_loops.py) within 1e-4,
on the real embedded model, over all layers, heads and positions, and on a dataset that holds
examples the model gets wrong, so the averaging rule matters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reference import data, graded, patching
from tests import lab_loops

ATOL = 1e-4


@pytest.fixture(scope="module")
def dataset():
    lab = data.create_ioi_dataset(5, seed=11)
    heldout = data.make_heldout_dataset(4, seed=5, prefix_prob=0.5)
    # An example the model "gets wrong": answer and wrong answer swapped, so clean ld < 0.
    wrong = data.IOIExample(lab[0].clean, lab[0].corrupted, lab[0].wrong_answer, lab[0].answer)
    return [lab[0], wrong, *lab[1:], *heldout]


def test_dataset_has_examples_the_model_gets_wrong(model, dataset):
    eff = patching.mlp_effects(model, dataset)
    assert (eff.clean_ld <= 0).sum() >= 1 and (eff.clean_ld > 0).sum() >= 5
    # The rule changes the answer: a plain mean over all examples differs.
    assert not np.allclose(eff.mean(), eff.effects.mean(axis=0), atol=1e-3)


def test_head_sweep_matches_lab_loop(model, dataset):
    expected = lab_loops.head_sweep(model, dataset, n_samples=len(dataset))
    got = graded.run_patching_experiment(model, dataset, n_samples=len(dataset))
    assert got.shape == (model.cfg.n_layers, model.cfg.n_heads)
    np.testing.assert_allclose(got, expected, atol=ATOL)
    assert np.abs(got).max() > 0.1  # the model has structure: some head matters


def test_mlp_sweep_matches_lab_loop(model, dataset):
    expected = lab_loops.mlp_sweep(model, dataset, n_samples=7)
    np.testing.assert_allclose(graded.compute_mlp_patching_effects(model, dataset, n_samples=7), expected, atol=ATOL)


def test_path_sweep_matches_lab_loop(model, dataset):
    expected = lab_loops.path_sweep(model, dataset, n_samples=len(dataset))
    got = graded.compute_path_patching_effects(model, dataset, n_samples=len(dataset))
    np.testing.assert_allclose(got, expected, atol=ATOL)
    # Path patching differs from plain head patching wherever later heads relay the signal.
    assert not np.allclose(got[:-1], lab_loops.head_sweep(model, dataset, len(dataset))[:-1], atol=1e-3)


@pytest.mark.parametrize("which", [0, 6])
def test_position_sweep_matches_lab_loop(model, dataset, which):
    ex = dataset[which]
    expected = lab_loops.position_sweep(model, ex)
    got = graded.compute_position_patching_effects(model, ex)
    assert got.shape == (model.cfg.n_layers, model.to_tokens(ex.clean).shape[1])
    np.testing.assert_allclose(got, expected, atol=ATOL)


def test_head_by_position_matches_lab_loop(model, dataset):
    ex = dataset[2]
    got = patching.head_effects(model, [ex], by_position=True).effects[0]
    np.testing.assert_allclose(got, lab_loops.head_position_sweep(model, ex), atol=ATOL)


@pytest.mark.parametrize("positions", [None, [3], [1, 3, 9]])
def test_resid_layer_sweep_matches_lab_loop(model, dataset, positions):
    ex = dataset[3]
    got = patching.resid_effects(model, [ex], positions=positions).effects[0]
    np.testing.assert_allclose(got, lab_loops.resid_layer_sweep(model, ex, positions), atol=ATOL)


def test_name_mover_scores_match_lab_loop(model, dataset):
    valid = dataset[2:]  # the mislabelled example has no subject to find
    heads = [(l, h) for l in range(model.cfg.n_layers) for h in range(model.cfg.n_heads)]
    expected = lab_loops.end_attention(model, valid, heads, data.name_positions, n_samples=6)
    got = graded.compute_name_mover_scores(model, valid, heads, n_samples=6)
    np.testing.assert_allclose(got, expected, atol=ATOL)


def _single(model, ex):
    clean = model.to_tokens(ex.clean)
    _, clean_cache = model.run_with_cache(clean)
    _, corr_cache = model.run_with_cache(model.to_tokens(ex.corrupted))
    return clean, clean_cache, corr_cache


def test_single_patch_functions_return_the_lab_loops_full_logits(model, dataset):
    ex = dataset[5]
    clean, clean_cache, corr_cache = _single(model, ex)
    pos = graded.find_name_positions(model, ex)
    for layer in range(model.cfg.n_layers):
        pairs = [
            (graded.patch_residual_stream(model, clean, corr_cache, layer),
             lab_loops.patch_resid(model, clean, corr_cache, layer)),
            (graded.patch_residual_stream(model, clean, corr_cache, layer, position=-1),
             lab_loops.patch_resid(model, clean, corr_cache, layer, [-1])),
            (graded.patch_residual_at_positions(model, clean, corr_cache, layer, [pos["S2"], pos["END"]]),
             lab_loops.patch_resid(model, clean, corr_cache, layer, [pos["S2"], pos["END"]])),
            (graded.patch_mlp_layer(model, clean, corr_cache, layer),
             lab_loops.patch_mlp(model, clean, corr_cache, layer)),
        ]
        for head in range(model.cfg.n_heads):
            pairs.append((graded.patch_attention_head(model, clean, corr_cache, layer, head),
                          lab_loops.patch_head(model, clean, corr_cache, layer, head)))
            pairs.append((graded.path_patch_head_to_final_resid(model, clean, clean_cache, corr_cache, layer, head),
                          lab_loops.path_patch(model, clean, clean_cache, corr_cache, layer, head)))
        for got, expected in pairs:
            assert got.shape == expected.shape == (1, clean.shape[1], model.cfg.d_vocab)
            torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
    assert not model.hook_dict["blocks.0.attn.hook_z"]._forward_hooks  # no hook left behind


def test_get_end_attention_reads_the_cache(model, dataset):
    ex = dataset[0]
    _, cache = model.run_with_cache(model.to_tokens(ex.clean))
    pos = graded.find_name_positions(model, ex)
    got = graded.get_end_attention(cache, 1, 2, pos)
    pattern = cache["blocks.1.attn.hook_pattern"][0, 2, pos["END"]]
    assert got == {k: pattern[pos[k]].item() for k in ("IO", "S1", "S2")}


def test_results_are_bitwise_deterministic_and_chunking_only_moves_rounding(model, dataset):
    a = patching.head_effects(model, dataset).effects
    b = patching.head_effects(model, dataset).effects
    assert np.array_equal(a, b)
    c = patching.head_effects(model, dataset, max_rows=3).effects
    np.testing.assert_allclose(a, c, atol=1e-5)


def test_mean_is_nan_when_no_example_is_usable(model, dataset):
    eff = patching.mlp_effects(model, [dataset[1]])
    assert eff.clean_ld[0] <= 0 and np.isnan(eff.mean()).all()


def test_reference_ignores_the_callers_grad_mode(model, dataset):
    """Grad mode is per thread (batch grading uses threads): results must not depend on it."""
    expected = patching.path_effects(model, dataset).effects
    with torch.enable_grad():
        got = patching.path_effects(model, dataset).effects
        logits = graded.patch_mlp_layer(model, model.to_tokens(dataset[0].clean),
                                        model.run_with_cache(model.to_tokens(dataset[0].corrupted))[1], 0)
    assert np.array_equal(got, expected) and not logits.requires_grad
