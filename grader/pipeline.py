"""Grade one notebook: ingest -> extract -> sandboxed calls -> compare in this process -> result.

The reference (expected values, known-mistake outputs) is computed here, in the trusted process,
once per model and config (`prepare`), and never sent to the sandbox.
"""

from __future__ import annotations

import hashlib
import logging
import importlib.metadata
import platform
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reference import graded as reference_graded
from reference.models import load_model

from . import checks as checks_mod
from .checks import CheckSpec, Inputs
from .compare import compare, matches
from .config import AssignmentConfig
from .extract import extract
from .ingest import IngestError, read_notebook
from .inputs import SIGNATURES, Example, build_args
from .mistakes import MISTAKES, as_plain
from .results import CheckResult, SubmissionResult
from .sandbox.runner import RawResult, SandboxSession

log = logging.getLogger(__name__)


@dataclass
class PreparedCheck:
    spec: CheckSpec
    number: str
    recipe: dict[str, Any]
    expected: Any
    timeout_s: float
    labels: dict[str, list[str]] = field(default_factory=dict)  # axis labels for the report's pictures
    mistake_outputs: list | None = None   # computed on the first failure, then reused

    @property
    def name(self) -> str:
        return f"{self.spec.function}: {self.spec.label}"


@dataclass
class Reference:
    """Everything the grader knows and the sandbox never sees, for one model and config."""
    model: Any
    model_name: str
    config: AssignmentConfig
    checks: list[PreparedCheck] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)  # mistakes hook the shared model

    def mistakes_for(self, pc: PreparedCheck) -> list:
        with self.lock, torch.no_grad():  # grad mode is per thread: batch threads start with it on
            return self._mistakes_for(pc)

    def _mistakes_for(self, pc: PreparedCheck) -> list:
        if pc.mistake_outputs is None:
            pc.mistake_outputs = []
            for mistake in MISTAKES.get(pc.spec.function, []):
                try:
                    args = build_args(self.model, pc.spec.function, pc.recipe)
                    pc.mistake_outputs.append((mistake, as_plain(mistake.run(*args))))
                except Exception:  # a mistake that cannot apply to these inputs is skipped
                    log.debug("mistake %r not applicable to %s", mistake.name, pc.name, exc_info=True)
        return pc.mistake_outputs


@torch.no_grad()
def prepare(model_name: str = "embedded", config: AssignmentConfig | None = None, model=None) -> Reference:
    config = config or AssignmentConfig()
    model = model or load_model(model_name, device="cpu")
    inputs = Inputs(model, config.seed)
    ref = Reference(model, model_name, config)
    forward_s = _time_forward(model, inputs)
    per_section: dict[str, int] = {}
    for spec in config.checks():
        section_no = checks_mod.SECTIONS.index(spec.section) + 1
        per_section[spec.section] = per_section.get(spec.section, 0) + 1
        recipe = spec.recipe(inputs)
        args = build_args(model, spec.function, recipe)
        expected = as_plain(getattr(reference_graded, spec.function)(*args))
        passes = checks_mod.forward_passes(spec.function, recipe, model.cfg.n_layers, model.cfg.n_heads)
        timeout = max(MIN_TIMEOUT_S, DEADLINE_FACTOR * passes * forward_s) * config.timeout_scale
        ref.checks.append(PreparedCheck(spec, f"{section_no}.{per_section[spec.section]}", recipe, expected,
                                        timeout, _axis_labels(model, spec.function, recipe)))
    return ref


def _axis_labels(model, function: str, recipe: dict) -> dict[str, list[str]]:
    """Computed here, once: tokenizing during grading would race with the threads of `grade batch`
    (TransformerLens flips `cfg.default_prepend_bos` while a mistake runs on the shared model)."""
    if function == "compute_position_patching_effects":
        return {"xlabels": [f"{i}:{t}" for i, t in enumerate(model.to_str_tokens(recipe["example"]["clean"], prepend_bos=True))]}
    if function == "compute_name_mover_scores":
        return {"xlabels": ["IO", "S1", "S2"], "ylabels": [f"L{l}H{h}" for l, h in recipe["heads"]]}
    return {}


MIN_TIMEOUT_S = 8.0
DEADLINE_FACTOR = 25  # a check may take 25x what a plain lab-style loop needs on this machine


def _time_forward(model, inputs: Inputs) -> float:
    """Seconds for one hooked forward pass of a held-out prompt: deadlines scale with the model."""
    tokens = model.to_tokens(inputs.examples[0].clean)
    hook = [("blocks.0.hook_resid_post", lambda act, hook: act)]
    model.run_with_hooks(tokens, fwd_hooks=hook)
    start = time.perf_counter()
    for _ in range(5):
        model.run_with_hooks(tokens, fwd_hooks=hook)
    return (time.perf_counter() - start) / 5


def _signature(function: str) -> str:
    return f"{function}({', '.join(SIGNATURES[function])})"


def _evaluate(ref: Reference, pc: PreparedCheck, raw: RawResult, timeout: float) -> CheckResult:
    spec = pc.spec
    base = dict(number=pc.number, name=pc.name, function=spec.function, section=spec.section,
                max_score=spec.points, seconds=raw.seconds)

    def fail(reason: str, output: str, **extra) -> CheckResult:
        return CheckResult(score=0.0, status="failed", reason=reason, output=output, **base, **extra)

    if raw.status == "missing":
        return fail("missing", f"{spec.function} is not defined. Define {_signature(spec.function)}.")
    if raw.status == "not_callable":
        return fail("not callable", f"{spec.function} is a {raw.type_name}, not a function.")
    if raw.status == "timeout":
        return fail("timeout", f"stopped after {timeout:.0f} s without an answer: an endless loop, a "
                               f"blocking call, or far more work than the task needs.")
    if raw.status == "crashed":
        return fail("crashed", f"the sandbox process died during this call: {raw.message}.")
    if raw.status == "error":
        err = raw.error or {}
        if err.get("type") == "NotImplementedError":
            return fail("not implemented", f"{spec.function} still raises NotImplementedError: write its body.")
        return fail("exception", f"raised {err.get('type')}: {err.get('message')}\n{err.get('traceback', '')}".strip())
    if raw.status != "ok":
        return fail(raw.status, raw.message or f"the result could not be used ({raw.status}).")
    if raw.violations:
        return fail("side effect", "the result may be right, but the call changed its surroundings: "
                    + "; ".join(raw.violations))
    result = compare(pc.expected, raw.value, spec.atol, spec.rtol, spec.integer)
    details = {k: v for k, v in (("max_abs_diff", result.max_abs), ("mismatched", result.mismatched),
                                 ("total", result.total)) if v}
    arrays = _small_arrays(pc.expected, raw.value)
    if arrays:
        arrays.update(pc.labels)
    if result.passed:
        return CheckResult(score=spec.points, status="passed", reason="ok", output="correct", details=details,
                           arrays=arrays, **base)
    if result.reason in ("wrong type", "wrong shape") and raw.type_name:
        result_detail = f"{result.detail} (returned {raw.type_name})"
    else:
        result_detail = result.detail
    diagnosis = fix = None
    for mistake, output in ref.mistakes_for(pc):
        if matches(output, raw.value, spec.atol, spec.rtol):
            diagnosis, fix = mistake.name, mistake.fix
            break
    text = f"{result.reason}: {result_detail}"
    if diagnosis:
        text = f"Looks like: {diagnosis}. Fix: {fix}.\n{text}"
    return fail(result.reason, text, diagnosis=diagnosis, fix=fix, details=details, arrays=arrays)


def _small_arrays(expected, actual) -> dict:
    """Matrices small enough to draw in the report (effect maps, positions), as lists."""
    if isinstance(expected, np.ndarray) and 1 <= expected.ndim <= 2 and expected.size <= 2000:
        out = {"expected": expected.tolist()}
        if isinstance(actual, np.ndarray) and actual.shape == expected.shape:
            out["actual"] = actual.astype(float).tolist()
        return out
    return {}


def _section_totals(tests: list[CheckResult], bonus: tuple[str, ...]) -> tuple[float, float, dict]:
    sections: dict[str, dict[str, float]] = {}
    for t in tests:
        s = sections.setdefault(t.section, {"score": 0.0, "max_score": 0.0, "bonus": t.section in bonus})
        s["score"] += t.score
        s["max_score"] += t.max_score
    score = sum(s["score"] for s in sections.values())
    max_score = sum(s["max_score"] for s in sections.values() if not s["bonus"])
    return score, max_score, sections


def provenance(ref: Reference, isolation: list[str], restarts: int) -> dict[str, Any]:
    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "unknown"
    return {"grader_version": version("patchgrade"), "model": ref.model_name,
            "model_hash": getattr(ref.model, "patchgrade_hash", "unknown"), "seed": ref.config.seed,
            "sections": list(ref.config.sections), "bonus_sections": list(ref.config.bonus_sections),
            "python": platform.python_version(), "torch": torch.__version__,
            "transformer_lens": version("transformer-lens"), "numpy": np.__version__,
            "isolation": isolation, "worker_restarts": restarts}


def grade_notebook(path: Path, ref: Reference, factory=None) -> SubmissionResult:
    """Grade one notebook against a prepared reference. Never raises for a bad submission.
    `factory` makes sandbox workers (a warm pool's fork); by default each is a fresh process."""
    start = time.perf_counter()
    problems: list[str] = []
    tests: list[CheckResult] = []
    isolation: list[str] = []
    restarts = 0
    try:
        submission = read_notebook(Path(path))
    except IngestError as exc:
        problems.append(str(exc))
        tests = [CheckResult(pc.number, pc.name, pc.spec.function, pc.spec.section, 0.0, pc.spec.points,
                             "failed", "unreadable notebook", f"not graded: {exc}") for pc in ref.checks]
    else:
        extraction = extract(list(submission.code_cells), ref.config.graded_functions)
        problems += [f"code cell {p.cell}, line {p.line}: {p.message}; this cell was skipped"
                     for p in extraction.syntax_errors]
        session = SandboxSession(ref.model_name, extraction.chunks, ref.config.graded_functions,
                                 limits=ref.config.limits, factory=factory)
        try:
            for i, pc in enumerate(ref.checks):
                timeout = pc.timeout_s
                if pc.spec.function not in extraction.defined:
                    raw = RawResult("missing")
                else:
                    raw = session.call(pc.spec.function, pc.recipe, timeout, f"check{i}")
                tests.append(_evaluate(ref, pc, raw, timeout))
        finally:
            session.close()
        problems += [f"{e['label']}: raised {e['type']}: {e['message']} when run; anything that needs it "
                     f"will fail" for e in session.load_errors]
        problems += [f"{extraction.chunks[i]['label']}: ended the sandbox when run ({why}); it was skipped"
                     for i, why in session.excluded.items()]
        isolation, restarts = session.isolation, session.restarts
    score, max_score, sections = _section_totals(tests, ref.config.bonus_sections)
    try:
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        digest = ""
    return SubmissionResult(str(path), score, max_score, tuple(tests), sections, tuple(problems),
                            provenance(ref, isolation, restarts), time.perf_counter() - start,
                            submission_sha256=digest, student_seconds=sum(t.seconds for t in tests))
