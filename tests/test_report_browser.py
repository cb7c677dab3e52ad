"""The HTML report in a real browser (Debian's headless Chromium through Playwright): it loads
with no console errors and no network requests, and the summary, the check rows and the heatmap
images are visible. Screenshots land in the test's tmp dir (and in $PATCHGRADE_SCREENSHOTS)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from grader.config import AssignmentConfig
from grader.pipeline import grade_notebook, prepare
from grader.report import render_html, write_html
from tests.grading_helpers import notebook
from tests.test_grader_mistakes import MISTAKES_B, MISTAKES_C

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def results(model, tmp_path_factory):
    ref = prepare("embedded", AssignmentConfig(), model=model)
    tmp = tmp_path_factory.mktemp("reports")
    return {name: grade_notebook(notebook(tmp / f"{name}.ipynb", cells), ref)
            for name, cells in (("solution", []), ("mistakes_b", [MISTAKES_B]), ("mistakes_c", [MISTAKES_C]))}


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _open(browser, path: Path, shot: Path):
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    errors, requests = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("PATCHGRADE_SCREENSHOTS"):
        dest = Path(os.environ["PATCHGRADE_SCREENSHOTS"])
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, dest / shot.name)
    return page, errors, requests


@pytest.mark.parametrize("name", ["solution", "mistakes_b", "mistakes_c"])
def test_report_loads_cleanly_and_shows_summary_rows_and_heatmaps(results, browser, tmp_path, name):
    result = results[name]
    path = tmp_path / f"{name}.html"
    write_html(result, path)
    page, errors, requests = _open(browser, path, tmp_path / f"{name}.png")
    assert errors == [] and requests == []
    summary = page.locator("#summary")
    assert summary.is_visible()
    assert f"{result.score:g} / {result.max_score:g}" in summary.inner_text()
    rows = page.locator("tr.check")
    assert rows.count() == len(result.tests)
    assert all(rows.nth(i).is_visible() for i in range(rows.count()))
    images = page.locator(".pictures img")
    assert images.count() >= 3
    for i in range(images.count()):
        img = images.nth(i)
        assert img.is_visible() and img.get_attribute("alt")
        assert page.evaluate("(el) => el.complete && el.naturalWidth > 100", img.element_handle())
    failed = page.locator("tr.check.failed")
    assert failed.count() == sum(t.status == "failed" for t in result.tests)
    if name != "solution":
        assert page.locator(".diag").first.is_visible()
    page.close()


def test_reveal_policy_hides_expected_values(results):
    result = results["mistakes_c"]
    full, summary, status = (render_html(result, r) for r in ("full", "summary", "status"))
    assert "reference" in full and "difference (yours - reference)" in full
    assert "alt=\"reference for" not in summary and "alt=\"yours for" in summary
    assert "<img" not in status and "Expected" not in status
    assert "Looks like:" in status  # diagnoses stay: they teach without revealing values
