"""The student and solution notebooks: built from one source, not stale, the solution runs top to
bottom on the embedded model and agrees with reference/, the student notebook stops at the
first stub with a helpful NotImplementedError."""

from __future__ import annotations

import ast
import os

import nbformat
import numpy as np
import pytest
import torch
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from reference import data, graded
from student_template import build
from tests.conftest import ROOT

EXERCISE_FUNCTIONS = {"patch_mlp_layer", "compute_mlp_patching_effects", "find_name_positions",
                      "patch_residual_at_positions", "compute_position_patching_effects",
                      "get_end_attention", "compute_name_mover_scores",
                      "path_patch_head_to_final_resid", "compute_path_patching_effects"}

AGREEMENT_CELL = """
import numpy as np
from reference import data as _data
_ds = _data.make_heldout_dataset(6, seed=99)
_ex = _ds[0]
_clean = model.to_tokens(_ex.clean)
_, _clean_cache = model.run_with_cache(_clean)
_, _corr_cache = model.run_with_cache(model.to_tokens(_ex.corrupted))
_pos = find_name_positions(model, _ex)
np.savez(r"{out}",
    mlp_logits=patch_mlp_layer(model, _clean, _corr_cache, 1).numpy(),
    mlp_effects=compute_mlp_patching_effects(model, _ds, n_samples=6),
    positions=np.array([_pos[k] for k in ("IO", "S1", "S2", "END")]),
    at_positions=patch_residual_at_positions(model, _clean, _corr_cache, 0, [_pos["S2"], _pos["END"]]).numpy(),
    position_effects=compute_position_patching_effects(model, _ex),
    end_attention=np.array(list(get_end_attention(_clean_cache, 1, 0, _pos).values())),
    name_movers=compute_name_mover_scores(model, _ds, [(0, 1), (2, 3)], n_samples=6),
    path_logits=path_patch_head_to_final_resid(model, _clean, _clean_cache, _corr_cache, 0, 2).numpy(),
    path_effects=compute_path_patching_effects(model, _ds, n_samples=6),
    head_effects=run_patching_experiment(model, _ds, n_samples=6),
)
"""


def _execute(nb, allow_errors=False):
    os.environ["PATCHGRADE_MODEL"] = "embedded"  # the kernel inherits it: no download
    client = NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=allow_errors,
                            resources={"metadata": {"path": str(ROOT)}})
    client.execute()
    return nb


def test_committed_notebooks_are_built_from_the_source():
    assert build.main(["--check"]) == 0, "run: python -m student_template.build"


def test_solution_runs_top_to_bottom_and_agrees_with_the_reference(tmp_path, model):
    nb = nbformat.read(build.SOLUTION, as_version=4)
    out = tmp_path / "solution_values.npz"
    nb.cells.append(nbformat.v4.new_code_cell(AGREEMENT_CELL.format(out=out)))
    _execute(nb)
    got = np.load(out)

    ds = data.make_heldout_dataset(6, seed=99)
    ex = ds[0]
    clean = model.to_tokens(ex.clean)
    _, clean_cache = model.run_with_cache(clean)
    _, corr_cache = model.run_with_cache(model.to_tokens(ex.corrupted))
    pos = graded.find_name_positions(model, ex)
    expected = {
        "mlp_logits": graded.patch_mlp_layer(model, clean, corr_cache, 1),
        "mlp_effects": graded.compute_mlp_patching_effects(model, ds, 6),
        "positions": [pos[k] for k in ("IO", "S1", "S2", "END")],
        "at_positions": graded.patch_residual_at_positions(model, clean, corr_cache, 0, [pos["S2"], pos["END"]]),
        "position_effects": graded.compute_position_patching_effects(model, ex),
        "end_attention": list(graded.get_end_attention(clean_cache, 1, 0, pos).values()),
        "name_movers": graded.compute_name_mover_scores(model, ds, [(0, 1), (2, 3)], 6),
        "path_logits": graded.path_patch_head_to_final_resid(model, clean, clean_cache, corr_cache, 0, 2),
        "path_effects": graded.compute_path_patching_effects(model, ds, 6),
        "head_effects": graded.run_patching_experiment(model, ds, 6),
    }
    for key, value in expected.items():
        value = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        np.testing.assert_allclose(got[key], value, atol=1e-4, err_msg=key)
    # Every plotting cell after an exercise produced a figure.
    figures = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith("# Check")]
    assert len(figures) == 4
    for cell in figures:
        assert any("application/vnd.plotly.v1+json" in o.get("data", {}) for o in cell.outputs), cell.source[:40]


def test_student_notebook_runs_until_the_first_stub():
    nb = nbformat.read(build.STUDENT, as_version=4)
    with pytest.raises(CellExecutionError) as info:
        _execute(nb)
    assert info.value.ename == "NotImplementedError"
    assert "compute_mlp_patching_effects is not implemented yet" in info.value.evalue
    code = [c for c in nb.cells if c.cell_type == "code"]
    failed = next(i for i, c in enumerate(code) if any(o.get("ename") for o in c.get("outputs", [])))
    assert code[failed].source.startswith("# Check Exercise 1")
    assert all(c.execution_count for c in code[:failed])  # everything before it ran


def _stub_namespace():
    import typing

    from transformer_lens import HookedTransformer
    ns = {"np": np, "torch": torch, "HookedTransformer": HookedTransformer,
          "IOIExample": data.IOIExample, **{k: getattr(typing, k) for k in ("List", "Dict", "Tuple", "Optional")}}
    return ns


def _stubs(nb):
    ns = _stub_namespace()
    for cell in nb.cells:
        if cell.cell_type == "code" and "NotImplementedError" in cell.source:
            defs = [n for n in ast.parse(cell.source).body if isinstance(n, ast.FunctionDef)]
            exec(compile(ast.Module(body=defs, type_ignores=[]), "<stub>", "exec"), ns)
            for node in defs:
                yield node.name, ns[node.name], len(node.args.args)


def test_every_stub_raises_a_helpful_not_implemented_error():
    seen = set()
    for name, fn, n_args in _stubs(nbformat.read(build.STUDENT, as_version=4)):
        with pytest.raises(NotImplementedError, match=f"{name} is not implemented yet"):
            fn(*[None] * n_args)
        assert fn.__doc__ and "Returns" in fn.__doc__
        seen.add(name)
    assert seen == EXERCISE_FUNCTIONS


def test_stub_signatures_match_the_spec():
    spec = (ROOT.parent / "shared" / "spec" / "graded_functions.md").read_text()
    for name, fn, _ in _stubs(nbformat.read(build.STUDENT, as_version=4)):
        import inspect
        params = ", ".join(p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default}"
                           for p in inspect.signature(fn).parameters.values())
        assert f"`{name}` | `({params})`" in spec, (name, params)


def test_instructor_can_blank_out_given_functions():
    student, solution = build.build({"blank_given": ["patch_residual_stream", "compute_logit_diff"]})
    stubs = {name for name, *_ in _stubs(student)}
    assert {"patch_residual_stream", "compute_logit_diff"} <= stubs
    cell = next(c for c in student.cells if "def patch_residual_stream" in c.source)
    assert "Patch the residual stream at a specific layer." in cell.source  # docstring kept
    assert "patch_hook" not in cell.source.split("# Test patching layer 5")[0]
    assert "# Test patching layer 5" in cell.source  # the rest of the cell stays
    sol_cell = next(c for c in solution.cells if "def patch_residual_stream" in c.source)
    assert "def patch_hook" in sol_cell.source
