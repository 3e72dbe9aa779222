"""What chapter prose may state: no typed results, no references outside the course, no typed verdicts.

The rules are in :mod:`facekit.course.lint`; this module implements them, and counts the prose share.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from facekit.course.notebook import (_HEADING, _LIST_ITEM, _YEAR, Problem, _find, _Section, _sections, _source,
                                     _strip_markup)

__all__ = ["EXTERNAL_REFERENCES", "VERDICT_WORDS", "number_problems", "reference_problems", "verdict_problems",
           "ProseShare", "prose_share"]

# Words that point outside the course: a reader cannot see issues, sessions, commits or earlier versions.
EXTERNAL_REFERENCES = (
    r"(?<![-\w])issues?\b",  # not "re-issue" (a template is re-issued)
    r"\b(?:an?|the)\s+(?:earlier|previous|older|old|last|former)\s+(?:version|revision|draft|iteration)s?\b",
    r"\b(?:earlier|previous|last|this|another)\s+session\b",
    r"\bpull\s+request\b",
    r"\bPR\s*#?\d+",
    r"\bcommit\s+[0-9a-f]{7,40}\b",
    r"\bTODO\b",
    r"\bFIXME\b",
    r"\bticket\b",
)

# Words that state the outcome of a comparison; opt-in check (see verdict_problems).
VERDICT_WORDS = (
    r"\b(?:better|worse|higher|lower|faster|slower)\s+than\b",
    r"\bout(?:performs?|performed|performing)\b",
    r"\b(?:beats?|beat|wins?|won|winner)\b",
    r"\b(?:a\s+)?real\s+(?:effect|gain|improvement|difference)\b",
    r"\b(?:statistically\s+)?significant(?:ly)?\b",
    r"\bno\s+(?:real|detectable|significant)?\s*difference\b",
)


# ---- numbers in prose -------------------------------------------------------------------------------------------

_NUMBER = re.compile(r"(?<![\w.])(?:\d+(?:,\d{3})*\.\d+|\.\d+|\d+(?:,\d{3})*(?:\.\d+)?\s?%)")
# from the number to an opening bracket in the same sentence ('.' only as a decimal point or abbreviation)
_TO_BRACKET = re.compile(r"^(?:[^.!?;()\[\]\n]|\.(?=\S))*?[(\[]([^()\[\]]{1,200})[)\]]")
_NAME = re.compile(r"\b[A-Z][A-Za-z\u00C0-\u017F'\-]{2,}")
_NOT_NAMES = {"The", "And", "For", "See", "Table", "Fig", "Figure", "Section", "Chapter", "Eq", "Equation", "Also",
              "Page", "Appendix"}


def _is_citation(after: str, reading: str) -> bool:
    m = _TO_BRACKET.match(after)
    if not m:
        return False
    inside = m.group(1)
    years = _YEAR.findall(inside)
    names = [n for n in _NAME.findall(inside) if n not in _NOT_NAMES]
    return any(y in reading for y in years) and any(n in reading for n in names)


def _cited_items(section: _Section | None) -> set[tuple[int, str]]:
    """(cell, line) of the list items of Further reading that carry a year, continuation lines included."""
    out, current_has_year, current = set(), False, []
    for cell, line in (section.lines if section else []):
        if _LIST_ITEM.match(line) or not line.strip() or _HEADING.match(line):
            if current_has_year:
                out.update(current)
            current, current_has_year = [], False
        if line.strip() and not _HEADING.match(line):
            current.append((cell, line))
            current_has_year = current_has_year or bool(_YEAR.search(line))
    if current_has_year:
        out.update(current)
    return out


def number_problems(nb) -> list[Problem]:
    """Numbers typed into markdown that are neither in a formula or code nor a citation (see the module doc)."""
    sections = _sections(nb)
    reading_section = _find(sections, "Further reading")
    reading = "\n".join(line for _, line in reading_section.lines) if reading_section else ""
    cited = _cited_items(reading_section)
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        raw = _source(cell)
        clean = _strip_markup(raw)
        raw_lines, clean_lines = raw.splitlines(), clean.splitlines()
        for n, line in enumerate(clean_lines):
            if (i, raw_lines[n]) in cited:
                continue
            for m in _NUMBER.finditer(line):
                rest = line[m.end():] + " " + " ".join(clean_lines[n + 1:n + 3])  # a sentence may wrap
                if _is_citation(rest, reading):
                    continue
                problems.append(Problem("number", f"typed number {m.group(0).strip()!r} in "
                                        f"{raw_lines[n].strip()[:90]!r}: render it with fk.notebook.say(f'...') "
                                        "from the computed value, write it as code or a formula, or cite its source "
                                        "(name and year listed under Further reading)", i))
    return problems


# ---- references outside the course ------------------------------------------------------------------------------

def reference_problems(nb, patterns=EXTERNAL_REFERENCES) -> list[Problem]:
    """Markdown that refers to things a reader cannot see (issues, earlier versions, sessions, commits)."""
    compiled = [re.compile(p, re.I if not p.endswith(("TODO\\b", "FIXME\\b")) else 0) for p in patterns]
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        text = _source(cell)
        for pattern in compiled:
            for m in pattern.finditer(text):
                problems.append(Problem("reference", f"{m.group(0)!r} refers to something outside the course; "
                                        "say what it is about in the chapter's own terms", i))
    return problems


def verdict_problems(nb, patterns=VERDICT_WORDS) -> list[Problem]:
    """Markdown that states a comparison's outcome ("better than", "outperforms", "a real effect", ...).

    A verdict belongs in a code cell: ``fk.notebook.say(v.text)`` with ``v`` from :mod:`facekit.stats`, so the
    prose names a winner only when the noise rule does. Text in formulas and code is ignored. Not part of
    :func:`lint` by default (``lint(nb, verdicts=True)``): general statements ("a margin is meant to do better
    than softmax on unseen people") use the same words, so read each hit.
    """
    compiled = [re.compile(p, re.I) for p in patterns]
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        text = _strip_markup(_source(cell))
        for pattern in compiled:
            for m in pattern.finditer(text):
                problems.append(Problem("verdict", f"{m.group(0)!r} states a verdict in typed prose: render it with "
                                        "fk.notebook.say(v.text) from facekit.stats (compare_*, verdict)", i))
    return problems


# ---- prose share ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProseShare:
    """Non-blank lines of markdown and of code in a notebook (or a course, summed with ``+``)."""

    markdown: int
    code: int

    @property
    def share(self) -> float:
        """markdown / (markdown + code); 0 for an empty notebook."""
        total = self.markdown + self.code
        return self.markdown / total if total else 0.0

    def __add__(self, other: "ProseShare") -> "ProseShare":
        return ProseShare(self.markdown + other.markdown, self.code + other.code)


def prose_share(nb) -> ProseShare:
    """Non-blank markdown and code lines of a notebook; ``.share`` is the prose share (the course aims at 30%+)."""
    counts = {"markdown": 0, "code": 0}
    for cell in nb.cells:
        if cell.cell_type in counts:
            counts[cell.cell_type] += sum(1 for line in _source(cell).splitlines() if line.strip())
    return ProseShare(counts["markdown"], counts["code"])
