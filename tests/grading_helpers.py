"""Build real notebooks on disk for grader tests: the solution, with cells added or removed."""

from __future__ import annotations

from pathlib import Path

import nbformat

from student_template import build


def notebook(path: Path, extra_cells: list[str] = (), drop_functions: list[str] = (),
             base: Path = build.SOLUTION) -> Path:
    """The solution notebook plus `extra_cells` at the end (later definitions win), minus the
    definitions of `drop_functions` (their whole cells are removed)."""
    nb = nbformat.read(base, as_version=4)
    if drop_functions:
        nb.cells = [c for c in nb.cells
                    if not any(f"def {f}(" in c.source for f in drop_functions)]
    nb.cells += [nbformat.v4.new_code_cell(src) for src in extra_cells]
    nbformat.write(nb, path)
    return path


def by_number(result) -> dict:
    return {t.number: t for t in result.tests}
