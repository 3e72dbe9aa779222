"""Reading a chapter for the structure checks: its cells, its level-2 sections, its markdown without markup."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Problem", "read_notebook"]


@dataclass(frozen=True)
class Problem:
    """One thing a chapter gets wrong: which check, which cell (index in ``nb.cells``) and what to do."""

    check: str  # "number", "reference", "length", "structure" or "verdict"
    message: str
    cell: int | None = None  # index in nb.cells, None for the whole notebook

    def __str__(self) -> str:
        where = f"cell {self.cell}" if self.cell is not None else "notebook"
        return f"[{self.check}] {where}: {self.message}"


def read_notebook(path):
    """An nbformat notebook from a ``.ipynb`` or a Jupytext source (``.py`` in py:percent), by its suffix."""
    import jupytext

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no notebook at {path}")
    return jupytext.read(path)


# ---- reading markdown -------------------------------------------------------------------------------------------

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_LIST_ITEM = re.compile(r"^\s{0,3}(?:[-*+]|\d+[.)])\s+\S")
_YEAR = re.compile(r"\b(1[89]\d\d|20\d\d)[a-z]?\b")


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def _tags(cell) -> list:
    return list(cell.get("metadata", {}).get("tags", []) or [])


def _markdown_lines(text: str):
    """(line, in_fence) for each line of a markdown text."""
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            yield line, True
            continue
        yield line, fenced


@dataclass
class _Section:
    title: str  # the level-2 heading ("" before the first one)
    cells: list = field(default_factory=list)  # cell indices with content in this section
    lines: list = field(default_factory=list)  # (cell index, markdown line) in this section


def _sections(nb) -> list[_Section]:
    """The notebook cut at its level-2 headings; a markdown cell may hold several headings."""
    sections = [_Section("")]
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            for line, fenced in _markdown_lines(_source(cell)):
                m = None if fenced else _HEADING.match(line)
                if m and len(m.group(1)) == 2:
                    sections.append(_Section(m.group(2).strip()))
                if not sections[-1].cells or sections[-1].cells[-1] != i:
                    sections[-1].cells.append(i)
                sections[-1].lines.append((i, line))
        else:
            sections[-1].cells.append(i)
    return sections


def _find(sections, title: str) -> _Section | None:
    for s in sections:
        if s.title.lower() == title.lower():
            return s
    return None


# ---- markdown without formulas, code, links and identifiers ----------------------------------------------

_STRIP = [
    re.compile(r"\$\$.*?\$\$", re.S),  # display math
    re.compile(r"(?<![\\$])\$(?!\$)(?:\\.|[^$\\\n])+\$"),  # inline math
    re.compile(r"``.+?``|`[^`\n]+`"),  # inline code
    re.compile(r"\]\([^)]*\)"),  # link targets
    re.compile(r"<?https?://[^\s>)]+>?"),  # URLs
    re.compile(r"\barXiv:\s*\d{4}\.\d{4,5}(?:v\d+)?", re.I),
    re.compile(r"\b(?:doi:\s*)?10\.\d{4,9}/\S+", re.I),
    re.compile(r"(?:\bsections?|§)\s*\d+(?:\.\d+)+(?:\s*(?:,|and|or|-|–)\s*\d+(?:\.\d+)*)*", re.I),
    re.compile(r"\b\d{2}(?:\.\d+)?\s?%\s+(?:confidence\s+)?(?:intervals?|CIs?)\b", re.I),
    re.compile(r"\b[A-Za-z]+@[^\s,;)]+"),  # metric names with their operating point: AP@0.5, TAR@FAR=0.1
]
_HEADING_NUMBER = re.compile(r"^(\s*#{1,6}\s+)\d+(?:\.\d+)*\.?")


def _blank_number(m: re.Match) -> str:
    return m.group(1) + " " * (len(m.group(0)) - len(m.group(1)))


def _strip_markup(text: str) -> str:
    """The markdown with formulas, code, links, identifiers and section numbers blanked out (same length)."""
    lines = []
    for line, fenced in _markdown_lines(text):
        lines.append(" " * len(line) if fenced else _HEADING_NUMBER.sub(_blank_number, line))
    text = "\n".join(lines)
    for pattern in _STRIP:
        text = pattern.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)
    return text
