"""Result objects (frozen) and their Gradescope-compatible JSON. No grading logic here."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class CheckResult:
    number: str                  # "1.2": section number, check number
    name: str                    # "patch_mlp_layer: layer 0 logits"
    function: str
    section: str
    score: float
    max_score: float
    status: str                  # "passed" | "failed"
    reason: str                  # short: "ok", "missing", "values differ", "timeout", ...
    output: str                  # the message for the student
    diagnosis: str | None = None
    fix: str | None = None
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)   # max_abs, mismatched, total, ...
    arrays: dict[str, Any] = field(default_factory=dict)    # small matrices for the HTML report


@dataclass(frozen=True)
class SubmissionResult:
    submission: str
    score: float
    max_score: float
    tests: tuple[CheckResult, ...]
    sections: dict[str, dict[str, float]]
    problems: tuple[str, ...]            # notebook-level: unreadable file, syntax errors, ...
    provenance: dict[str, Any]
    execution_seconds: float = 0.0
    submission_sha256: str = ""
    student_seconds: float = 0.0         # time spent inside the student's functions

    def to_json(self) -> dict[str, Any]:
        """Gradescope's results.json fields, plus our own under extra_data."""
        return {
            "score": round(self.score, 4),
            "max_score": self.max_score,
            "execution_time": round(self.execution_seconds),
            "output": summary_text(self),
            "visibility": "visible",
            "stdout_visibility": "hidden",
            "tests": [{
                "name": t.name, "number": t.number, "score": round(t.score, 4), "max_score": t.max_score,
                "status": t.status, "output": t.output, "visibility": "visible",
                "tags": [t.section, t.function],
                "extra_data": {"reason": t.reason, "diagnosis": t.diagnosis, "fix": t.fix,
                               "seconds": round(t.seconds, 4), **t.details},
            } for t in self.tests],
            "extra_data": {"submission": self.submission, "submission_sha256": self.submission_sha256,
                           "execution_seconds": round(self.execution_seconds, 3),
                           "student_seconds": round(self.student_seconds, 3), "sections": self.sections,
                           "problems": list(self.problems), "provenance": self.provenance},
        }

    def write_json(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1))
        tmp.replace(path)


def summary_text(result: SubmissionResult) -> str:
    lines = [f"Score: {result.score:g} / {result.max_score:g}"]
    lines += [f"Problem: {p}" for p in result.problems]
    return "\n".join(lines)
