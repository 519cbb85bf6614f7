"""The user's source as compiled: a ``.py`` file as it is, or a notebook's definitions, and where each of its
lines came from (a notebook's errors name the cell and the line in it).

A notebook (``.ipynb``, nbformat v4, read with `json`) is never run as a whole: its top-level cells load
DeepFloyd from the hub, compute embeddings, download images and display results, which would fail here (no
network, no weights) and be slow. From its code cells, in order, only these top-level statements are kept:

- ``import`` and ``from ... import``;
- ``def``, ``async def`` and ``class`` (with their decorators);
- assignments (``=``, annotated) of a literal constant (`ast.literal_eval` reads it: numbers, strings, tuples,
  lists, dicts, sets, None, True, False) to names;

everything else (calls, loops, ``if``, ``try``, ``with``, other assignments) is left out. IPython syntax is
blanked before parsing, keeping line numbers: a line whose first non-blank character is ``!`` or ``%``
(``!pip install``, ``%matplotlib inline``, ``x = !cmd`` and ``x = %magic`` too), its backslash continuations,
``obj?`` / ``?obj`` help lines, and a whole cell that starts with a ``%%`` cell magic. Cells are numbered as
the notebook shows them in order, markdown cells included, from 1 (VS Code's "Cell N"; the cell's index in
the file plus one).
"""

from __future__ import annotations

import ast
import bisect
import json
import re
import types
from dataclasses import dataclass, field
from pathlib import Path

from harness.impl.calling import ImplError

HELP = re.compile(r"^(\?{1,2}[\w.]+|[\w.]+\?{1,2})$")  # obj? / ?obj / obj??
ASSIGNED_MAGIC = re.compile(r"^[\w, ]+=\s*[!%]")  # x = !cmd, x = %magic
DEFINITIONS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


@dataclass(frozen=True)
class Cell:
    """A code cell: its number (see the module docstring), its first line in the compiled code, its lines."""

    number: int
    first: int
    lines: list[str]


@dataclass(frozen=True)
class Source:
    """The user's file compiled (``code``); ``cells``: a notebook's code cells (empty for a .py file)."""

    path: Path
    code: types.CodeType
    cells: tuple[Cell, ...] = ()
    firsts: list[int] = field(default_factory=list, repr=False)

    @property
    def notebook(self) -> bool:
        return bool(self.cells)

    def cell_at(self, lineno: int) -> tuple[Cell, int] | None:
        """The notebook cell of a line of the compiled code, and the line in it (None for a .py file)."""
        if not self.cells:
            return None
        cell = self.cells[bisect.bisect_right(self.firsts, lineno) - 1]
        return cell, lineno - cell.first + 1

    def where(self, lineno: int) -> str:
        """'my_proj5.py line 42' or 'my_proj5.ipynb cell 7 line 12'."""
        at = self.cell_at(lineno)
        return f"{self.path.name} line {lineno}" if at is None else f"{self.path.name} cell {at[0].number} line {at[1]}"

    def text(self, lineno: int) -> str | None:
        """A notebook line's text (None for a .py file: the traceback reads it from the file)."""
        at = self.cell_at(lineno)
        if at is None:
            return None
        cell, line = at
        return cell.lines[line - 1].strip() if 0 < line <= len(cell.lines) else ""


def compile_file(path: Path) -> Source:
    """The file's code: a .py file as it is, a notebook's definitions; a syntax error is one line naming its line."""
    if path.suffix == ".ipynb":
        return _compile_notebook(path)
    try:
        return Source(path, compile(path.read_text(encoding="utf-8"), str(path), "exec"))
    except SyntaxError as e:
        raise ImplError(f"{path.name} line {e.lineno}: syntax error: {e.msg}; fix it (notebook exports: remove "
                        f"the !pip and %magic lines, or pass the .ipynb itself)") from None


def code_cells(path: Path) -> list[tuple[int, str]]:
    """(cell number, source) of each code cell of a notebook; an unreadable notebook is a one-line error."""
    try:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        return [(n, c["source"] if isinstance(c["source"], str) else "".join(c["source"]))
                for n, c in enumerate(cells, 1) if c.get("cell_type") == "code"]
    except (ValueError, KeyError, TypeError) as e:
        raise ImplError(f"{path.name}: not a Jupyter notebook (nbformat 4: {type(e).__name__}: {e}); save it "
                        f"again from Jupyter or Colab, or pass a .py file") from None


def _compile_notebook(path: Path) -> Source:
    """The notebook's definitions (see the module docstring) as one module, each cell at its own lines."""
    body, cells, first = [], [], 1
    for number, text in code_cells(path):
        lines = blank_ipython(text.splitlines())
        try:
            tree = ast.parse("\n".join(lines), str(path))
        except SyntaxError as e:
            raise ImplError(f"{path.name} cell {number} line {e.lineno}: syntax error: {e.msg}; fix it") from None
        ast.increment_lineno(tree, first - 1)
        body += [node for node in tree.body if is_definition(node)]
        cells.append(Cell(number, first, lines))
        first += max(len(lines), 1)
    code = compile(ast.Module(body=body, type_ignores=[]), str(path), "exec")
    return Source(path, code, tuple(cells), [c.first for c in cells])


def is_definition(node: ast.stmt) -> bool:
    """Whether a notebook's top-level statement is kept: an import, a def or class, a literal given to names."""
    if isinstance(node, DEFINITIONS):
        return True
    if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return all(_names(t) for t in targets) and _literal(node.value)
    return False


def _names(target: ast.expr) -> bool:
    if isinstance(target, (ast.Tuple, ast.List)):
        return all(_names(t) for t in target.elts)
    return isinstance(target, ast.Name)


def _literal(value: ast.expr) -> bool:
    try:
        ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def blank_ipython(lines: list[str]) -> list[str]:
    """The cell's lines with IPython syntax replaced by ``pass`` at the same indent (see the module docstring)."""
    if lines and next((ln.strip() for ln in lines if ln.strip()), "").startswith("%%"):
        return [""] * len(lines)
    out, continued = [], False
    for line in lines:
        stripped = line.strip()
        magic = continued or stripped[:1] in ("!", "%") or HELP.match(stripped) or ASSIGNED_MAGIC.match(stripped)
        indent = line[:len(line) - len(line.lstrip())]
        out.append("" if continued else indent + "pass" if magic else line)
        continued = bool(magic) and stripped.endswith("\\")
    return out
