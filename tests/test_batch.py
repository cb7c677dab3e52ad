"""Cohort grading: a mixed cohort (correct, buggy, malformed, hanging, hostile) gives the right
gradebook; a run killed with SIGKILL midway and restarted grades every student exactly once;
zips and per-student folders are understood; the dashboard renders."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from grader.batch import discover, grade_cohort
from grader.config import AssignmentConfig
from grader.pipeline import prepare
from tests.conftest import ROOT
from tests.grading_helpers import notebook
from tests.test_grader_mistakes import MISTAKES_A, MISTAKES_B

HANG = "def find_name_positions(model, example):\n    while True:\n        pass\n"
HOSTILE = "import os\ndef patch_mlp_layer(model, clean_tokens, corrupted_cache, layer):\n    os.kill(os.getppid(), 9)\n"


def _cohort(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    notebook(folder / "alice.ipynb")
    notebook(folder / "bob.ipynb", [MISTAKES_A])
    notebook(folder / "carol.ipynb", [MISTAKES_B])
    (folder / "dave.ipynb").write_text("{not json")
    notebook(folder / "erin.ipynb", [HANG])
    notebook(folder / "frank.ipynb", [HOSTILE])
    return folder


def _gradebook(out: Path) -> dict[str, dict]:
    with open(out / "gradebook.csv") as f:
        return {row["student_id"]: row for row in csv.DictReader(f)}


def test_mixed_cohort_gives_the_right_gradebook(model, tmp_path):
    ref = prepare("embedded", AssignmentConfig(timeout_scale=0.5), model=model)
    cohort, out = _cohort(tmp_path / "cohort"), tmp_path / "out"
    run = grade_cohort(cohort, out, ref, workers=2, progress=False)
    assert run.graded == 6 and run.skipped == 0
    book = _gradebook(out)
    assert list(book) == ["alice", "bob", "carol", "dave", "erin", "frank"]
    assert float(book["alice"]["total"]) == 36 and float(book["alice"]["max_score"]) == 28
    assert float(book["bob"]["total"]) < 36 and float(book["bob"]["1.1 patch_mlp_layer: layer 0 logits"]) == 0
    assert float(book["carol"]["1.3 compute_mlp_patching_effects: held-out prompts, averaging rule"]) == 0
    assert float(book["dave"]["total"]) == 0 and "not valid JSON" in book["dave"]["problems"]
    assert "timeout" in book["erin"]["problems"] and float(book["erin"]["1.1 patch_mlp_layer: layer 0 logits"]) == 2
    assert float(book["frank"]["1.1 patch_mlp_layer: layer 0 logits"]) == 0
    assert float(book["frank"]["2.1 find_name_positions: IO first, with a prefix"]) == 1.5
    for sid in book:
        assert (out / "reports" / f"{sid}.html").exists()
        data = json.loads((out / "results" / f"{sid}.json").read_text())
        assert "per-submission landlock" in " ".join(data["extra_data"]["provenance"]["isolation"]) or sid == "dave"
    html = (out / "cohort.html").read_text()
    assert "Most common diagnosed mistakes" in html and "clean run" in html and "erin" in html

    # Regrading changes nothing; a rerun without --force grades nobody.
    again = grade_cohort(cohort, out, ref, workers=2, progress=False)
    assert again.graded == 0 and again.skipped == 6
    forced_out = tmp_path / "forced"
    grade_cohort(cohort, forced_out, ref, workers=1, force=True, progress=False)
    forced = _gradebook(forced_out)
    assert {k: v["total"] for k, v in forced.items()} == {k: v["total"] for k, v in book.items()}


def test_zip_of_student_folders_and_changed_submissions(model, tmp_path):
    ref = prepare("embedded", model=model)
    src = tmp_path / "src"
    for sid, cells in (("s1", []), ("s2", [MISTAKES_A])):
        (src / "cohort" / sid).mkdir(parents=True)
        notebook(src / "cohort" / sid / "lab.ipynb", cells)
    archive = tmp_path / "cohort.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in src.rglob("*.ipynb"):
            zf.write(p, p.relative_to(src))
        zf.writestr("../evil.ipynb", "{}")  # a path that tries to escape: ignored
    assert [s.student_id for s in discover(archive, tmp_path / "staging")] == ["s1", "s2"]
    out = tmp_path / "out"
    assert grade_cohort(archive, out, ref, progress=False).graded == 2
    assert not (tmp_path / "evil.ipynb").exists()


def test_killed_run_resumes_and_grades_everyone_exactly_once(tmp_path):
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    for i in range(8):
        notebook(cohort / f"student{i:02d}.ipynb", [MISTAKES_A] if i % 2 else [])
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "grader.cli", "batch", str(cohort), "--out", str(out), "--workers", "2",
           "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and len(list((out / "results").glob("*.json"))) < 3:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # kill -9, mid-run
    proc.wait()
    done_before = {p.name for p in (out / "results").glob("*.json")}
    assert 3 <= len(done_before) < 8, "the run should have been killed midway"
    finished = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert f"{len(done_before)} already done" in finished.stdout
    results = sorted(p.name for p in (out / "results").iterdir())
    assert results == [f"student{i:02d}.json" for i in range(8)]  # each once, no temp files
    book = _gradebook(out)
    assert len(book) == 8 and all(row["total"] != "" for row in book.values())
    assert {float(book[f"student{i:02d}"]["total"]) for i in range(0, 8, 2)} == {36.0}


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs chromium")
def test_cohort_dashboard_renders_in_a_browser(model, tmp_path):
    from playwright.sync_api import sync_playwright

    ref = prepare("embedded", model=model)
    cohort = tmp_path / "c"
    cohort.mkdir()
    notebook(cohort / "a.ipynb")
    notebook(cohort / "b.ipynb", [MISTAKES_B])
    grade_cohort(cohort, tmp_path / "out", ref, progress=False)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--headless"])
        page = browser.new_page()
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto((tmp_path / "out" / "cohort.html").as_uri())
        assert page.locator("#histogram").is_visible() and page.locator("#pass-rates tr").count() > 10
        assert page.locator("#diagnoses").inner_text().count("divided by n_samples") == 1
        assert errors == []
        browser.close()


def test_report_labels_are_fixed_at_prepare_time(model, tmp_path):
    """Regression: labels were tokenized while grading, racing with `grade batch`'s other thread
    (TransformerLens flips `cfg.default_prepend_bos` inside `to_single_token`), which lost the BOS
    label and crashed the report. Grading must not depend on that shared state."""
    from grader.pipeline import grade_notebook
    from grader.report import render_html

    ref = prepare("embedded", model=model)
    model.cfg.default_prepend_bos = False  # what the other thread can leave visible mid-call
    try:
        result = grade_notebook(notebook(tmp_path / "s.ipynb"), ref)
    finally:
        model.cfg.default_prepend_bos = True
    position = [t for t in result.tests if t.function == "compute_position_patching_effects"]
    assert position and all(len(t.arrays["xlabels"]) == len(t.arrays["expected"][0]) for t in position)
    assert position[0].arrays["xlabels"][0] == "0:<|endoftext|>"
    assert 'alt="yours for compute_position_patching_effects' in render_html(result)


def test_a_grader_error_on_one_student_does_not_stop_the_cohort(model, tmp_path, monkeypatch):
    import grader.batch as batch

    ref = prepare("embedded", model=model)
    cohort, out = tmp_path / "cohort", tmp_path / "out"
    cohort.mkdir()
    notebook(cohort / "alice.ipynb")
    notebook(cohort / "bob.ipynb", [MISTAKES_A])
    real_write_html = batch.write_html

    def broken_for_bob(result, path, reveal="full"):
        if Path(path).stem == "bob":
            raise RuntimeError("simulated report bug")
        real_write_html(result, path, reveal=reveal)

    monkeypatch.setattr(batch, "write_html", broken_for_bob)
    run = grade_cohort(cohort, out, ref, workers=2, progress=False)
    assert run.graded == 1 and list(run.failed) == ["bob"] and "simulated report bug" in run.failed["bob"]
    book = _gradebook(out)
    assert float(book["alice"]["total"]) == 36
    assert book["bob"]["total"] == "" and "grader error" in book["bob"]["problems"]

    monkeypatch.setattr(batch, "write_html", real_write_html)  # the bug is fixed: a rerun retries bob only
    again = grade_cohort(cohort, out, ref, workers=2, progress=False)
    assert again.graded == 1 and again.skipped == 1 and not again.failed
    assert float(_gradebook(out)["bob"]["total"]) < 36
