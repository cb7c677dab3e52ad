"""Read a submitted notebook into plain code-cell sources. Runs nothing.

Every way a file can be wrong (too big, empty, not UTF-8, not JSON, not a notebook, an nbformat
too old to upgrade) becomes an IngestError with a sentence a student can act on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import nbformat

MAX_BYTES = 20 << 20


class IngestError(ValueError):
    """The file cannot be graded; the message says why, for the student."""


@dataclass(frozen=True)
class Submission:
    path: str
    code_cells: tuple[str, ...]       # sources, in notebook order (index = code cell number - 1)
    nbformat_version: str
    upgraded: bool


def read_notebook(path: Path, max_bytes: int = MAX_BYTES) -> Submission:
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise IngestError(f"cannot read {path.name}: {exc.strerror}") from exc
    if size == 0:
        raise IngestError(f"{path.name} is empty: submit the .ipynb file saved from Jupyter")
    if size > max_bytes:
        raise IngestError(f"{path.name} is {size / 2**20:.1f} MB, over the {max_bytes / 2**20:.0f} MB limit: "
                          f"clear the outputs (Kernel > Restart & Clear Output) and save again")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IngestError(f"{path.name} is not UTF-8 text (byte {exc.start}): is it really a notebook?") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise IngestError(f"{path.name} is not valid JSON ({exc}); a notebook file is JSON: "
                          f"was it saved as .py or .html, or truncated?") from exc
    if not isinstance(data, dict) or "nbformat" not in data:
        raise IngestError(f"{path.name} is JSON but not a Jupyter notebook (no 'nbformat' field)")
    version = f"{data.get('nbformat')}.{data.get('nbformat_minor', 0)}"
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as exc:  # nbformat raises several types for old or broken files
        raise IngestError(f"{path.name} uses notebook format {version}, which cannot be read or "
                          f"upgraded ({type(exc).__name__}); open it in Jupyter and save it again") from exc
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError:
        pass  # invalid metadata or outputs do not matter: we read only code cell sources
    cells = tuple(c.source if isinstance(c.source, str) else "".join(c.source)
                  for c in nb.get("cells", []) if c.get("cell_type") == "code")
    return Submission(str(path), cells, version, upgraded=not version.startswith("4."))
