"""Pure comparison of a student's result with the expected one: returns data, no wording beyond
a short reason and a pytest-approx-style detail. Checks go from basic to strict and stop at the
first failure: present -> type -> shape -> dtype -> values within tolerance."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Comparison:
    passed: bool
    reason: str                 # "ok", "wrong type", "wrong shape", "wrong dtype", "values differ", ...
    detail: str = ""
    max_abs: float | None = None
    max_rel: float | None = None
    mismatched: int = 0
    total: int = 0


def compare_arrays(expected: np.ndarray, actual, atol: float, rtol: float) -> Comparison:
    if not isinstance(actual, np.ndarray):
        return Comparison(False, "wrong type", "expected an array or tensor of numbers")
    if actual.shape != expected.shape:
        return Comparison(False, "wrong shape", f"shape {tuple(actual.shape)}, expected {tuple(expected.shape)}")
    if actual.dtype.kind not in "fc" and expected.dtype.kind == "f":
        return Comparison(False, "wrong dtype", f"dtype {actual.dtype}, expected floating point")
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    close = np.isclose(a, e, atol=atol, rtol=rtol, equal_nan=True)
    total = int(close.size)
    if close.all():
        return Comparison(True, "ok", total=total)
    diff = np.abs(a - e)
    finite = np.isfinite(diff)
    max_abs = float(diff[finite].max()) if finite.any() else float("inf")
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = diff / np.abs(e)
    max_rel = float(np.nanmax(rel[finite])) if finite.any() else float("inf")
    bad = np.argwhere(~close)
    rows = [f"  {tuple(int(i) for i in idx)!s:<16} {a[tuple(idx)]: .6g} {e[tuple(idx)]: .6g}" for idx in bad[:5]]
    detail = (f"Mismatched elements: {len(bad)} / {total}; max abs diff {max_abs:.3g}, max rel diff "
              f"{max_rel:.3g} (atol {atol:g}, rtol {rtol:g})\n  Index            Obtained    Expected\n"
              + "\n".join(rows))
    return Comparison(False, "values differ", detail, max_abs, max_rel, len(bad), total)


def compare_dict(expected: dict, actual, atol: float, integer: bool = False) -> Comparison:
    if not isinstance(actual, dict):
        return Comparison(False, "wrong type", "expected a dict")
    missing = [k for k in expected if k not in actual]
    if missing:
        return Comparison(False, "wrong keys", f"missing keys {missing}; got {sorted(actual)[:6]}")
    bad = []
    for key, want in expected.items():
        got = actual[key]
        if got is None:
            return Comparison(False, "wrong type", f"value of {key!r} is not a number")
        if integer and got != int(got):
            return Comparison(False, "wrong type", f"value of {key!r} is not an integer: {got}")
        if abs(got - want) > atol:
            bad.append(f"{key}: got {got:.6g}, expected {want:.6g}")
    if bad:
        return Comparison(False, "values differ", "; ".join(bad), mismatched=len(bad), total=len(expected))
    return Comparison(True, "ok", total=len(expected))


def compare(expected, actual, atol: float, rtol: float, integer: bool = False) -> Comparison:
    if isinstance(expected, dict):
        return compare_dict(expected, actual, atol, integer)
    return compare_arrays(np.asarray(expected), actual, atol, rtol)


def matches(expected, actual, atol: float, rtol: float) -> bool:
    """Whether `actual` equals `expected` within tolerance (used to recognise known mistakes)."""
    return compare(expected, actual, atol, rtol).passed
