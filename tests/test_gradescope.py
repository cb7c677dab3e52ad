"""Gradescope: the result JSON validates against the fields of Gradescope's autograder spec
(results.json), and the shipped run_autograder script produces it from a submission folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from grader.pipeline import grade_notebook, prepare
from tests.conftest import ROOT
from tests.grading_helpers import notebook

VISIBILITY = {"enum": ["hidden", "after_due_date", "after_published", "visible"]}
FORMAT = {"enum": ["text", "html", "simple_format", "md", "ansi"]}
TEST = {
    "type": "object",
    "required": ["score", "max_score", "name"],
    "properties": {
        "score": {"type": "number"}, "max_score": {"type": "number"},
        "status": {"enum": ["passed", "failed"]}, "name": {"type": "string"},
        "name_format": FORMAT, "number": {"type": "string"}, "output": {"type": "string"},
        "output_format": FORMAT, "tags": {"type": "array", "items": {"type": "string"}},
        "visibility": VISIBILITY, "extra_data": {"type": "object"},
    },
    "additionalProperties": False,
}
RESULTS = {  # Gradescope's documented top-level fields, plus our max_score
    "type": "object",
    "properties": {
        "score": {"type": "number"}, "max_score": {"type": "number"},
        "execution_time": {"type": "integer"}, "output": {"type": "string"},
        "output_format": FORMAT, "test_output_format": FORMAT, "test_name_format": FORMAT,
        "visibility": VISIBILITY, "stdout_visibility": VISIBILITY, "extra_data": {"type": "object"},
        "tests": {"type": "array", "items": TEST}, "leaderboard": {"type": "array"},
    },
    "additionalProperties": False,
    "anyOf": [{"required": ["score"]}, {"required": ["tests"]}],
}


@pytest.fixture(scope="module")
def ref(model):
    return prepare("embedded", model=model)


def test_result_json_validates_against_gradescopes_schema(ref, tmp_path):
    from tests.test_grader_mistakes import MISTAKES_A

    for cells in ([], [MISTAKES_A]):
        result = grade_notebook(notebook(tmp_path / "s.ipynb", cells), ref)
        data = json.loads(json.dumps(result.to_json()))
        jsonschema.validate(data, RESULTS)
        assert data["score"] == pytest.approx(sum(t["score"] for t in data["tests"]))
        assert all(t["name"].startswith(t["tags"][1] + ": ") for t in data["tests"])
        prov = data["extra_data"]["provenance"]
        assert {"grader_version", "model", "model_hash", "seed", "torch", "isolation"} <= set(prov)


@pytest.mark.parametrize("with_notebook", [True, False])
def test_run_autograder_writes_results_json(tmp_path, with_notebook):
    root = tmp_path / "autograder"
    (root / "submission").mkdir(parents=True)
    if with_notebook:
        notebook(root / "submission" / "lab.ipynb", [])
    env = {**os.environ, "AUTOGRADER_ROOT": str(root),
           "GRADE": shutil.which("grade") or str(Path(sys.executable).parent / "grade")}
    proc = subprocess.run(["bash", str(ROOT / "gradescope" / "run_autograder")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((root / "results" / "results.json").read_text())
    jsonschema.validate(data, RESULTS)
    if with_notebook:
        assert data["score"] == 36 and (root / "results" / "report.html").exists()
        assert "reference for" not in (root / "results" / "report.html").read_text()  # summary reveal
    else:
        assert data["score"] == 0 and "No .ipynb" in data["output"]
