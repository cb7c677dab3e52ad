"""Grade a cohort: discover submissions, grade them in parallel on warm workers, resumably, then
write the gradebook and the cohort dashboard from what is on disk.

Resumable by construction: each student's result is written atomically (temp file + rename) to
`results/<id>.json` with the submission's SHA-256; a rerun skips every student whose result
matches the current file, and the gradebook is rebuilt from the result files, so an interrupted
run (Ctrl-C or kill -9) loses at most the submissions in flight and never duplicates one.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
import statistics
import tempfile
import threading
import time
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from .ingest import MAX_BYTES
from .pipeline import Reference, grade_notebook
from .report import write_html
from .sandbox.isolation import Cgroups
from .sandbox.pool import Zygote

log = logging.getLogger(__name__)

_ID = re.compile(r"[^A-Za-z0-9._@+-]+")


@dataclass(frozen=True)
class Submission:
    student_id: str
    path: Path


def _student_id(name: str) -> str:
    return _ID.sub("_", name).strip("._") or "unnamed"


def _extract_zip(archive: Path, dest: Path) -> Path:
    """Extract safely: no absolute paths or '..', no links, each file capped just past the
    notebook size limit (so a zip bomb costs nothing and a huge notebook is still reported)."""
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            name = Path(info.filename)
            if info.is_dir() or name.is_absolute() or ".." in name.parts or info.filename.startswith("__MACOSX"):
                continue
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                out.write(src.read(MAX_BYTES + 1))
    entries = [p for p in dest.iterdir() if not p.name.startswith(".")]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else dest


def discover(source: Path, staging: Path) -> list[Submission]:
    """A folder of .ipynb (id = file name), a folder of per-student folders (id = folder name,
    their first notebook), or a zip of either."""
    source = Path(source)
    if source.is_file() and zipfile.is_zipfile(source):
        source = _extract_zip(source, staging)
    if not source.is_dir():
        raise FileNotFoundError(f"{source} is neither a folder nor a zip of submissions")
    found: dict[str, Submission] = {}
    for entry in sorted(source.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and entry.suffix == ".ipynb":
            sid, path = _student_id(entry.stem), entry
        elif entry.is_dir():
            notebooks = sorted(p for p in entry.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
            if not notebooks:
                continue
            sid, path = _student_id(entry.name), notebooks[0]
        else:
            continue
        if sid in found:
            sid = f"{sid}-{len(found)}"
        found[sid] = Submission(sid, path)
    return list(found.values())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class CohortRun:
    graded: int = 0
    skipped: int = 0
    seconds: float = 0.0
    student_ids: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # student id -> grader error (a bug of ours)


def grade_cohort(source: Path, out: Path, ref: Reference, workers: int = 2, force: bool = False,
                 reveal: str = "full", progress: bool = True) -> CohortRun:
    out = Path(out)
    (out / "results").mkdir(parents=True, exist_ok=True)
    (out / "reports").mkdir(parents=True, exist_ok=True)
    for stale in (out / "results").glob("*.tmp"):
        stale.unlink()  # a previous run was killed mid-write
    Cgroups.reap_stale()
    run = CohortRun()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="patchgrade-cohort-") as staging:
        subs = discover(source, Path(staging))
        run.student_ids = [s.student_id for s in subs]
        todo = [s for s in subs if force or not _is_done(out, s)]
        run.skipped = len(subs) - len(todo)
        if todo:
            zygote = Zygote(ref.model_name, ref.config.limits)
            try:
                run.failed = _grade_all(todo, out, ref, zygote, workers, reveal, progress)
                run.graded = len(todo) - len(run.failed)
            finally:
                zygote.close()
    write_gradebook(out, run.student_ids, ref, run.failed)
    write_cohort_html(out, run.student_ids)
    run.seconds = time.perf_counter() - start
    return run


def _is_done(out: Path, sub: Submission) -> bool:
    path = out / "results" / f"{sub.student_id}.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return data.get("extra_data", {}).get("submission_sha256") == _sha256(sub.path)


def _grade_all(todo: list[Submission], out: Path, ref: Reference, zygote: Zygote, workers: int,
               reveal: str, progress: bool) -> dict[str, str]:
    """Grades every submission; one that breaks the grader itself is logged and left ungraded
    (so a rerun retries it) instead of stopping the cohort."""
    from tqdm import tqdm

    bar = tqdm(total=len(todo), unit="sub", disable=not progress, desc="grading")
    lock = threading.Lock()

    def one(sub: Submission) -> None:
        result = grade_notebook(sub.path, ref, factory=zygote.fork)
        result.write_json(out / "results" / f"{sub.student_id}.json")
        write_html(result, out / "reports" / f"{sub.student_id}.html", reveal=reveal)
        with lock:
            bar.update(1)
            bar.set_postfix_str(f"{sub.student_id}: {result.score:g}/{result.max_score:g}")

    failed: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(one, s): s for s in todo}
        for future in as_completed(futures):
            sub = futures[future]
            try:
                future.result()
            except Exception as exc:  # our bug, not the student's: keep grading the others
                log.exception("grader error on %s", sub.student_id)
                failed[sub.student_id] = f"{type(exc).__name__}: {exc}"
                (out / "results" / f"{sub.student_id}.json").unlink(missing_ok=True)
                with lock:
                    bar.update(1)
    bar.close()
    return failed


def load_results(out: Path, student_ids: list[str]) -> dict[str, dict]:
    results = {}
    for sid in student_ids:
        try:
            results[sid] = json.loads((out / "results" / f"{sid}.json").read_text())
        except (OSError, ValueError):
            continue
    return results


def write_gradebook(out: Path, student_ids: list[str], ref: Reference,
                    failed: dict[str, str] | None = None) -> Path:
    """gradebook.csv: one row per student, total and points per check, written atomically."""
    failed = failed or {}
    results = load_results(out, student_ids)
    checks = [f"{pc.number} {pc.name}" for pc in ref.checks]
    path = out / "gradebook.csv"
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["student_id", "total", "max_score", "problems", *checks])
        for sid in student_ids:
            data = results.get(sid)
            if data is None:
                why = f"grader error, not graded (rerun to retry): {failed[sid]}" if sid in failed else "not graded yet"
                w.writerow([sid, "", "", why, *[""] * len(checks)])
                continue
            points = {f"{t['number']} {t['name']}": t["score"] for t in data["tests"]}
            errors = [t["extra_data"]["reason"] for t in data["tests"]
                      if t["extra_data"]["reason"] in ("timeout", "crashed", "unreadable notebook")]
            problems = "; ".join(data["extra_data"]["problems"] + sorted(set(errors)))
            w.writerow([sid, data["score"], data["max_score"], problems, *[points.get(c, 0) for c in checks]])
    tmp.replace(path)
    return path


def cohort_stats(results: dict[str, dict]) -> dict:
    """What the dashboard shows, as data."""
    per_check: dict[str, list[int]] = {}
    diagnoses: Counter = Counter()
    errored, timings = [], []
    for sid, data in results.items():
        for t in data["tests"]:
            key = f"{t['number']} {t['name']}"
            per_check.setdefault(key, []).append(t["status"] == "passed")
            if t["extra_data"].get("diagnosis"):
                diagnoses[f"{t['name'].split(':')[0]}: {t['extra_data']['diagnosis']}"] += 1
        reasons = {t["extra_data"]["reason"] for t in data["tests"]} & {"timeout", "crashed", "unreadable notebook"}
        if reasons or data["extra_data"]["problems"]:
            errored.append((sid, ", ".join(sorted(reasons)) or "", data["extra_data"]["problems"][:2]))
        timings.append((sid, data["extra_data"].get("execution_seconds", 0.0),
                        data["extra_data"].get("student_seconds", 0.0)))
    scores = [d["score"] for d in results.values()]
    return {
        "scores": scores,
        "mean": statistics.mean(scores) if scores else None,
        "median": statistics.median(scores) if scores else None,
        "max_score": max((d["max_score"] for d in results.values()), default=0),
        "pass_rates": {k: sum(v) / len(v) for k, v in per_check.items()},
        "diagnoses": diagnoses.most_common(15),
        "errored": errored,
        "slowest": sorted(timings, key=lambda x: -x[1])[:10],
    }


def write_cohort_html(out: Path, student_ids: list[str]) -> Path:
    from .report import render_cohort

    results = load_results(out, student_ids)
    path = out / "cohort.html"
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(render_cohort(cohort_stats(results), len(student_ids)), encoding="utf-8")
    tmp.replace(path)
    return path
