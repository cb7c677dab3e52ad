"""The HTML feedback report: one self-contained file (inline CSS and PNGs, no network fetches).

How much of the hidden checks' expected values it shows is a policy:
- "full" (default; formative work): the student's picture, the reference's, and their difference;
- "summary": the student's picture and the diagnosis, no expected values;
- "status": pass/fail, points and diagnoses only; messages lose their Obtained/Expected tables.
"""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
from jinja2 import Environment, FileSystemLoader, select_autoescape

from reference import plots

from .checks import SECTION_TITLES
from .results import CheckResult, SubmissionResult

REVEAL = ("full", "summary", "status")
_env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                   autoescape=select_autoescape(["html", "j2"]))


def _b64(png: bytes) -> str:
    return base64.b64encode(png).decode()


AXES = {"compute_position_patching_effects": ("position", "layer"),
        "compute_name_mover_scores": ("key", "head"),
        "compute_path_patching_effects": ("head", "layer"),
        "run_patching_experiment": ("head", "layer")}


def _pictures(t: CheckResult, reveal: str) -> list[dict]:
    """A passing check shows the student's own map; a failing one also the reference's and
    the difference (under the "full" policy)."""
    if reveal == "status" or "expected" not in t.arrays:
        return []
    expected = np.asarray(t.arrays["expected"], dtype=float)
    actual = np.asarray(t.arrays["actual"], dtype=float) if "actual" in t.arrays else None
    labels = t.arrays.get("xlabels")
    shown = [("yours", actual)] if actual is not None else []
    if reveal == "full" and t.status == "failed":
        shown.append(("reference", expected))
        if actual is not None:
            shown.append(("difference (yours - reference)", actual - expected))
    out = []
    for caption, m in shown:
        title = f"{t.function}: {caption}"
        if m.ndim == 1:
            png = plots.bars(m.tolist(), [f"L{i}" for i in range(len(m))], title, "effect")
        else:
            xlabel, ylabel = AXES.get(t.function, ("column", "row"))
            png = plots.heatmap(m, title, xlabel, ylabel, labels, yticklabels=t.arrays.get("ylabels"))
        out.append({"png": _b64(png), "caption": caption,
                    "alt": f"{caption} for {t.function}, {'x'.join(map(str, m.shape))} values"})
    return out


def _message(t: CheckResult, reveal: str) -> str:
    if t.status == "passed":
        return ""
    text = t.output
    if t.diagnosis:  # shown in its own box
        text = "\n".join(text.splitlines()[1:])
    if reveal == "status":
        text = text.split("\n  Index")[0].split(", expected")[0]
    return text


def render_html(result: SubmissionResult, reveal: str = "full") -> str:
    if reveal not in REVEAL:
        raise ValueError(f"reveal must be one of {REVEAL}")
    groups: dict[str, list[dict]] = {}
    for t in result.tests:
        groups.setdefault(t.section, []).append({
            "number": t.number, "function": t.function, "label": t.name.split(": ", 1)[-1],
            "status": t.status, "reason": t.reason, "score": t.score, "max_score": t.max_score,
            "diagnosis": t.diagnosis, "fix": t.fix, "message": _message(t, reveal),
            "pictures": _pictures(t, reveal)})
    view = {"submission_name": Path(result.submission).name, "score": result.score,
            "max_score": result.max_score, "sections": result.sections, "problems": result.problems,
            "provenance": result.provenance, "execution_seconds": result.execution_seconds}
    return _env.get_template("report.html.j2").render(
        r=view, groups=list(groups.items()), titles=SECTION_TITLES, reveal=reveal)


def write_html(result: SubmissionResult, path: Path, reveal: str = "full") -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(render_html(result, reveal), encoding="utf-8")
    tmp.replace(path)


def render_cohort(stats: dict, n_students: int) -> str:
    """The cohort dashboard: score histogram, pass rate per check, common mistakes, errors, slowest."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.6))
    ax.hist(stats["scores"], bins=min(20, max(5, len(stats["scores"]))), color="#4393c3", edgecolor="white")
    ax.set_xlabel(f"score (max {stats['max_score']:g}, bonus can exceed it)")
    ax.set_ylabel("students")
    histogram = _b64(plots._png(fig))
    return _env.get_template("cohort.html.j2").render(s=stats, n_students=n_students, histogram=histogram)
