"""The grader on real notebooks: the solution gets full marks, every known mistake loses points
on the right check and is named, missing functions / syntax errors / exceptions cost only their
checks, and malformed files get a report with score 0 and a reason."""

from __future__ import annotations

import json

import pytest

from grader.config import GIVEN_FUNCTIONS, AssignmentConfig
from grader.pipeline import grade_notebook, prepare
from tests.grading_helpers import by_number, notebook


@pytest.fixture(scope="module")
def ref(model):
    return prepare("embedded", AssignmentConfig(given_functions=GIVEN_FUNCTIONS), model=model)


def _failed(result) -> set[str]:
    return {t.number for t in result.tests if t.status == "failed"}


def test_solution_gets_full_marks(ref, tmp_path):
    result = grade_notebook(notebook(tmp_path / "solution.ipynb"), ref)
    assert _failed(result) == set(), [t.output for t in result.tests if t.status == "failed"]
    assert result.max_score == 38 and result.score == 46  # 8 bonus points for the challenge
    assert result.problems == ()
    assert any("landlock" in layer for layer in result.provenance["isolation"])


MISTAKES_A = '''
def patch_mlp_layer(model, clean_tokens, corrupted_cache, layer):
    return model(clean_tokens)  # forgot to patch

def find_name_positions(model, example):
    toks = [t.strip() for t in model.to_str_tokens(example.clean, prepend_bos=False)]
    s = [i for i, t in enumerate(toks) if t == example.wrong_answer.strip()]
    return {"IO": toks.index(example.answer.strip()), "S1": s[0], "S2": s[1], "END": len(toks) - 1}

def patch_attention_head(model, clean_tokens, corrupted_cache, layer, head):
    def hook(z, hook):
        z[:, head] = corrupted_cache[hook.name][:, head]
        return z
    return model.run_with_hooks(clean_tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", hook)])
'''

MISTAKES_B = '''
def compute_mlp_patching_effects(model, dataset, n_samples=20):
    effects = np.zeros(model.cfg.n_layers)
    for ex in dataset[:n_samples]:
        clean_tokens = model.to_tokens(ex.clean)
        a, w = model.to_single_token(ex.answer), model.to_single_token(ex.wrong_answer)
        corrupted_logits, corrupted_cache = model.run_with_cache(model.to_tokens(ex.corrupted))
        clean_diff = compute_logit_diff(model(clean_tokens), a, w)
        corrupted_diff = compute_logit_diff(corrupted_logits, a, w)
        if clean_diff <= 0:
            continue
        for layer in range(model.cfg.n_layers):
            patched = compute_logit_diff(patch_mlp_layer(model, clean_tokens, corrupted_cache, layer), a, w)
            effects[layer] += compute_patching_effect(clean_diff, corrupted_diff, patched)
    return effects / n_samples  # the lab's division

def patch_residual_at_positions(model, clean_tokens, corrupted_cache, layer, positions):
    def hook(act, hook):
        act[:, positions, :] = corrupted_cache[hook.name][:, positions, :]
        return act
    return model.run_with_hooks(clean_tokens, fwd_hooks=[(f"blocks.{layer}.hook_resid_pre", hook)])

def get_end_attention(cache, layer, head, positions):
    pattern = cache["pattern", layer][0, head]
    return {k: pattern[positions[k], positions["END"]].item() for k in ("IO", "S1", "S2")}

def path_patch_head_to_final_resid(model, clean_tokens, clean_cache, corrupted_cache, layer, head):
    return patch_attention_head(model, clean_tokens, corrupted_cache, layer, head)  # no freezing
'''

MISTAKES_C = '''
_solution_position_effects = compute_position_patching_effects
def compute_position_patching_effects(model, example):
    clean_tokens = model.to_tokens(example.clean)
    a, w = model.to_single_token(example.answer), model.to_single_token(example.wrong_answer)
    corrupted_logits, corrupted_cache = model.run_with_cache(model.to_tokens(example.corrupted))
    c = compute_logit_diff(model(clean_tokens), a, w)
    k = compute_logit_diff(corrupted_logits, a, w)
    out = np.zeros((clean_tokens.shape[1], model.cfg.n_layers))  # [seq, layers]: transposed
    for layer in range(model.cfg.n_layers):
        for pos in range(clean_tokens.shape[1]):
            p = compute_logit_diff(patch_residual_at_positions(model, clean_tokens, corrupted_cache, layer, [pos]), a, w)
            out[pos, layer] = compute_patching_effect(c, k, p)
    return out

def compute_name_mover_scores(model, dataset, heads, n_samples=20):
    scores = np.zeros((len(heads), 3))
    for ex in dataset[:n_samples]:
        _, cache = model.run_with_cache(model.to_tokens(ex.clean))
        pos = find_name_positions(model, ex)
        for i, (l, h) in enumerate(heads):
            att = get_end_attention(cache, l, h, pos)
            scores[i] += [att["IO"], att["S2"], att["S1"]]
    return scores / len(dataset[:n_samples])
'''

MISTAKES_D = '''
def compute_patching_effect(clean_logit_diff, corrupted_logit_diff, patched_logit_diff):
    return clean_logit_diff - patched_logit_diff
'''


@pytest.mark.parametrize("cells,expected", [
    (MISTAKES_A, {"1.1": "clean run", "1.2": "clean run", "2.1": "BOS", "2.2": "BOS",
                  "5.6": "z[:, head] (a position)"}),
    (MISTAKES_B, {"1.3": "divided by n_samples", "2.3": "resid_pre", "2.4": "resid_pre",
                  "3.1": "[key, query]", "3.2": "[key, query]", "4.1": "without freezing",
                  "4.2": "without freezing", "4.3": "without freezing"}),
    (MISTAKES_C, {"2.5": "transposed", "3.3": "wrong order"}),
    # One wrong helper: the given function and the dataset averages built on it are named.
    (MISTAKES_D, {"5.3": "no normalisation", "1.3": "no normalisation", "4.3": "no normalisation"}),
], ids=["A", "B", "C", "D"])
def test_known_mistakes_lose_points_on_the_right_check_and_are_named(ref, tmp_path, cells, expected):
    result = grade_notebook(notebook(tmp_path / "mistakes.ipynb", [cells]), ref)
    tests = by_number(result)
    for number, phrase in expected.items():
        t = tests[number]
        assert t.status == "failed" and t.score == 0, (number, t.output)
        assert t.diagnosis and phrase in t.diagnosis, (number, t.diagnosis, t.output)
        assert t.fix and f"Looks like: {t.diagnosis}" in t.output
    # The mistakes also break checks that build on them (MISTAKES_C's effect breaks the sweeps);
    # everything that does not depend on a mistaken function still passes.
    untouched = {"A": {"2.3", "2.4", "2.5", "3.1", "3.2"}, "B": {"1.1", "1.2", "1.4", "2.1", "2.2"},
                 "C": {"1.1", "1.2", "2.1", "2.2", "3.1", "3.2", "4.1", "4.2"},
                 "D": {"1.1", "1.2", "2.1", "2.2", "2.3", "2.4", "3.1", "3.2", "3.3", "4.1", "4.2"}}
    key = {id(MISTAKES_A): "A", id(MISTAKES_B): "B", id(MISTAKES_C): "C", id(MISTAKES_D): "D"}[id(cells)]
    assert all(tests[n].status == "passed" for n in untouched[key]), \
        {n: tests[n].output for n in untouched[key] if tests[n].status != "passed"}


def test_missing_functions_syntax_errors_and_exceptions_cost_only_their_checks(ref, tmp_path):
    cells = ["def broken(:\n    pass",  # a syntax error in a cell of its own
             "def get_end_attention(cache, layer, head, positions):\n    raise ValueError('oops')"]
    path = notebook(tmp_path / "partial.ipynb", cells, drop_functions=["patch_mlp_layer"])
    result = grade_notebook(path, ref)
    tests = by_number(result)
    assert tests["1.1"].reason == "missing" and "patch_mlp_layer is not defined" in tests["1.1"].output
    assert tests["1.3"].reason == "missing"  # its cell held both Exercise 1 functions
    assert tests["3.1"].reason == "exception" and "ValueError: oops" in tests["3.1"].output
    assert "get_end_attention" in tests["3.1"].output  # the student's own traceback frame
    assert any("invalid syntax" in p and "skipped" in p for p in result.problems)
    assert all(tests[n].status == "passed" for n in ("2.1", "2.3", "2.5", "4.1", "4.3"))


def test_the_unchanged_student_template_scores_zero_with_not_implemented(ref):
    from student_template.build import STUDENT

    result = grade_notebook(STUDENT, ref)
    exercise = [t for t in result.tests if t.section != "given"]
    assert all(t.reason == "not implemented" for t in exercise)
    assert all(t.status == "passed" for t in result.tests if t.section == "given")
    assert result.score == 10


@pytest.mark.parametrize("content,phrase", [
    (b"", "is empty"),
    (b"\xff\xfe\x00garbage", "not UTF-8"),
    (b"{not json", "not valid JSON"),
    (b'{"cells": []}', "not a Jupyter notebook"),
    (b'{"nbformat": 99, "nbformat_minor": 0, "cells": []}', "cannot be read or upgraded"),
])
def test_malformed_files_get_a_report_with_score_zero(ref, tmp_path, content, phrase):
    path = tmp_path / "bad.ipynb"
    path.write_bytes(content)
    result = grade_notebook(path, ref)
    assert result.score == 0 and len(result.tests) == len(ref.checks)
    assert phrase in result.problems[0]
    assert all(t.reason == "unreadable notebook" for t in result.tests)
    out = tmp_path / "bad.json"
    result.write_json(out)
    assert json.loads(out.read_text())["score"] == 0


def test_an_old_nbformat_3_notebook_is_upgraded_and_graded(ref, tmp_path):
    import nbformat
    from nbformat.v3 import new_code_cell, new_notebook, new_worksheet, writes_json as writes

    sol = nbformat.read(notebook(tmp_path / "s.ipynb"), as_version=4)
    cells = [new_code_cell(input=c.source) for c in sol.cells if c.cell_type == "code"]
    path = tmp_path / "v3.ipynb"
    path.write_text(writes(new_notebook(worksheets=[new_worksheet(cells=cells)])))
    result = grade_notebook(path, ref)
    assert _failed(result) == set()
