"""Build the student notebook and the solution notebook from one instructor source.

    python -m student_template.build           # rewrite both notebooks
    python -m student_template.build --check   # exit 1 if the committed notebooks are stale

The source is `source/lab.md` (jupytext Markdown: the lab's text, ```python cells are code cells).
Inside a code cell, `### BEGIN SOLUTION` ... `### END SOLUTION` marks what students write: the
solution notebook keeps it, the student notebook gets a `raise NotImplementedError(...)` naming
the function. `config.toml` lists given lab functions to blank out for students as well.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
import tomllib
from pathlib import Path

import jupytext
import nbformat

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "source" / "lab.md"
CONFIG = HERE / "config.toml"
STUDENT = HERE / "lab_c2_activation_patching_ioi.ipynb"
SOLUTION = HERE / "lab_c2_activation_patching_ioi_solution.ipynb"

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
_DEF = re.compile(r"^(\s*)def (\w+)\(")


def stub_line(indent: str, function: str) -> str:
    return (f'{indent}raise NotImplementedError("{function} is not implemented yet: replace this '
            f'line with your code (the docstring above says exactly what to return).")')


def strip_solutions(source: str) -> str:
    """Replace each solution region by a stub that names its enclosing function."""
    out, function, skipping = [], "this function", False
    for line in source.splitlines():
        if (m := _DEF.match(line)):
            function = m.group(2)
        stripped = line.strip()
        if stripped == BEGIN:
            out.append(stub_line(line[: len(line) - len(line.lstrip())], function))
            skipping = True
        elif stripped == END:
            skipping = False
        elif not skipping:
            out.append(line)
    if skipping:
        raise ValueError(f"{BEGIN} without {END} in cell:\n{source}")
    return "\n".join(out)


def keep_solutions(source: str) -> str:
    return "\n".join(l for l in source.splitlines() if l.strip() not in (BEGIN, END))


def blank_functions(source: str, names: set[str]) -> str:
    """Turn top-level definitions of `names` into stubs: signature and docstring stay."""
    try:
        tree = ast.parse(source)
    except SyntaxError:  # cells with IPython magics: nothing to blank there
        return source
    lines = source.splitlines()
    for node in sorted((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in names),
                       key=lambda n: -n.lineno):
        body = node.body[1:] if ast.get_docstring(node) is not None else node.body
        if not body:
            continue
        indent = " " * body[0].col_offset
        lines[body[0].lineno - 1: node.end_lineno] = [stub_line(indent, node.name)]
    return "\n".join(lines)


def load_config() -> dict:
    return tomllib.loads(CONFIG.read_text()) if CONFIG.exists() else {}


def build(config: dict | None = None) -> tuple[nbformat.NotebookNode, nbformat.NotebookNode]:
    """(student, solution) notebooks, outputs empty, cell ids stable so rebuilds are identical."""
    config = load_config() if config is None else config
    blank = set(config.get("blank_given", []))
    source = jupytext.read(SOURCE, fmt="md")
    student, solution = nbformat.v4.new_notebook(), nbformat.v4.new_notebook()
    for nb in (student, solution):
        nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                       "language_info": {"name": "python"}}
    for i, cell in enumerate(source.cells):
        if cell.cell_type == "code":
            sol = keep_solutions(cell.source)
            stu = blank_functions(strip_solutions(cell.source), blank)
            pairs = [(student, nbformat.v4.new_code_cell(stu)), (solution, nbformat.v4.new_code_cell(sol))]
        else:
            pairs = [(nb, nbformat.v4.new_markdown_cell(cell.source)) for nb in (student, solution)]
        for nb, new in pairs:
            new.id = f"cell-{i:03d}"
            nb.cells.append(new)
    return student, solution


def render(nb: nbformat.NotebookNode) -> str:
    nbformat.validate(nb)
    return nbformat.writes(nb) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the notebooks are stale")
    args = parser.parse_args(argv)
    student, solution = build()
    stale = []
    for path, nb in ((STUDENT, student), (SOLUTION, solution)):
        text = render(nb)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(HERE.parent)}")
    if stale:
        print(f"stale: {', '.join(stale)}; run python -m student_template.build", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
