"""Slice a notebook down to the graded functions and what they need, as source text.

Only simple top-level statements are candidates: imports (all kept), function and class
definitions, and assignments. For each graded function the last definition wins, and with it
every top-level name it reads, transitively (helpers, dataclasses, constants such as
`n_layers = model.cfg.n_layers`). Loops, plots and experiment calls that the functions do not
need are left out, so they never run. `model` is the harness's: a notebook's own model load is
never extracted. Free names are found with `symtable`, the compiler's own scope analysis.
"""

from __future__ import annotations

import ast
import re
import symtable
from dataclasses import dataclass, field

HARNESS_NAMES = frozenset({"model"})
KEEP_CELL_MAGICS = ("%%time", "%%timeit", "%%capture")
_MAGIC_LINE = re.compile(r"^(\s*)([%!].*)$")


@dataclass(frozen=True)
class CellProblem:
    cell: int          # 1-based code cell number
    line: int
    message: str


@dataclass(frozen=True)
class Statement:
    cell: int
    line: int
    source: str
    binds: frozenset[str]
    uses: frozenset[str]
    is_import: bool


@dataclass(frozen=True)
class Extraction:
    chunks: list[dict]                      # [{"label", "source"}] in notebook order
    defined: frozenset[str]                 # graded functions the notebook defines
    syntax_errors: list[CellProblem] = field(default_factory=list)
    magics_removed: int = 0


def neutralise_magics(source: str) -> tuple[str, int]:
    """IPython-only lines become `pass`; a non-Python cell magic empties the cell."""
    lines = source.splitlines()
    first = next((l.strip() for l in lines if l.strip()), "")
    removed = 0
    if first.startswith("%%"):
        if not first.startswith(KEEP_CELL_MAGICS):
            return "", 1
        lines.remove(next(l for l in lines if l.strip()))
        removed += 1
    out = []
    for line in lines:
        m = _MAGIC_LINE.match(line)
        if m:
            out.append(f"{m.group(1)}pass  # patchgrade: IPython line removed")
            removed += 1
        else:
            out.append(line)
    return "\n".join(out), removed


def _binds(node: ast.stmt) -> set[str]:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in node.names}
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    names = set()
    for t in targets:
        for sub in ast.walk(t):
            if isinstance(sub, ast.Name):
                names.add(sub.id)
    return names


def _globals_read(source: str) -> set[str]:
    """Names a top-level statement reads from the module namespace, through any nesting."""
    names: set[str] = set()

    def visit(table: symtable.SymbolTable, top: bool) -> None:
        for sym in table.get_symbols():
            if sym.is_referenced() and (top and not sym.is_assigned() or sym.is_global()):
                names.add(sym.get_name())
            elif top and sym.is_referenced():
                names.add(sym.get_name())  # read at module level (x = f(x)): needs the old x
        for child in table.get_children():
            visit(child, False)

    visit(symtable.symtable(source, "<statement>", "exec"), True)
    return names


SIMPLE = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
          ast.Assign, ast.AnnAssign, ast.AugAssign)


def statements(cells: list[str]) -> tuple[list[Statement], list[CellProblem], int]:
    out, problems, magics = [], [], 0
    for number, raw in enumerate(cells, start=1):
        source, removed = neutralise_magics(raw)
        magics += removed
        try:
            tree = ast.parse(source)
        except SyntaxError as exc:
            problems.append(CellProblem(number, exc.lineno or 0, f"{exc.msg}"))
            continue
        lines = source.splitlines()
        for node in tree.body:
            if not isinstance(node, SIMPLE):
                continue
            if isinstance(node, (ast.AnnAssign, ast.AugAssign)) and not isinstance(node.target, ast.Name):
                continue
            start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            text = "\n".join(lines[start - 1: node.end_lineno])
            out.append(Statement(number, start, text, frozenset(_binds(node)),
                                 frozenset(_globals_read(text)),
                                 isinstance(node, (ast.Import, ast.ImportFrom))))
    return out, problems, magics


def extract(cells: list[str], graded: list[str]) -> Extraction:
    stmts, problems, magics = statements(cells)
    last: dict[str, int] = {}
    for i, st in enumerate(stmts):
        for name in st.binds:
            last[name] = i
    chosen = {i for i, st in enumerate(stmts) if st.is_import and not st.binds & HARNESS_NAMES}
    defined = frozenset(g for g in graded if g in last and isinstance(last[g], int))
    queue = list(defined)
    seen: set[str] = set()
    for i in list(chosen):
        queue.extend(stmts[i].uses)
    while queue:
        name = queue.pop()
        if name in seen or name in HARNESS_NAMES or name not in last:
            continue
        seen.add(name)
        i = last[name]
        if i not in chosen:
            chosen.add(i)
            queue.extend(stmts[i].uses)
    chunks = [{"label": f"code cell {stmts[i].cell}, line {stmts[i].line}", "source": stmts[i].source}
              for i in sorted(chosen)]
    return Extraction(chunks, defined, problems, magics)
