"""Structure checks for the course's chapters: what every chapter must contain, and what its prose may state.

Each check takes an nbformat notebook (read one with :func:`read_notebook`, which also reads the py:percent
sources through Jupytext) and returns a list of :class:`Problem`; an empty list means the chapter passes.
``python -m facekit.course.lint notebooks/01_*.py`` prints the problems of the given chapters.

The required parts (:func:`structure_problems`)
-----------------------------------------------
Level-2 markdown headings, with exactly these names, in this order (other ``##`` sections go between
Prerequisites and Exercises; the chapter title is the ``#`` heading above them all)::

    ## Learning outcomes     3-5 list items ("1. ..." or "- ..."): what the learner can do after the chapter
    ## Prerequisites         some text: the chapters and concepts the chapter builds on ("None" is fine)
    ...                      the chapter's own sections
    ## Exercises             4-8 exercises, see below
    ## Summary               at least one code cell calling fk.notebook.say(f"...") with the computed numbers
    ## Pitfalls              at least one list item
    ## Further reading       at least one list item with a year (the sources that citations refer to)

**Exercises.** Each exercise starts a markdown line with ``**Exercise N`` (bold, e.g.
``**Exercise 2 ★★ (change a parameter and explain).**``) or is a heading ``### Exercise N``, numbered 1, 2, 3, ...
Between one exercise and the next there must be at least one cell tagged ``solution`` whose source is hidden
(cell metadata ``tags: [solution]`` and ``jupyter: {source_hidden: true}``; in py:percent:
``# %% tags=["solution"] jupyter={"source_hidden": true}``). When the exercise has code cells for the learner
(an attempt or a check cell), at least one of its solution cells must be a code cell, so nbval runs it. An open
question may be answered by a markdown cell tagged ``solution``.

Prose states only computed numbers (:func:`number_problems`)
------------------------------------------------------------
In a markdown cell, a number with a decimal point (``0.87``, ``.5``) or a percent sign (``87%``, ``87 %``) is a
problem unless it is

- inside a formula (``$...$`` or ``$$...$$``), inline code or a fenced code block: write parameters and settings
  as code, e.g. ``n_val=0.2``, ``torch 2.11``;
- a **citation**: followed in the same sentence by a bracketed source, ``(...)`` or ``[...]``, holding an
  author or work name and a year, where that name and that year both appear in the chapter's "Further reading"
  section, e.g. ``99.63% on LFW (Deng et al., 2019)`` with Deng's 2019 paper listed under Further reading;
- inside a list item of "Further reading" that carries a year (the item is the source);
- a section number at the start of a heading (``### 3.1 Anchors``) or after "section"/"§" (``section 3.1``);
- an identifier: ``arXiv:1502.00046``, a DOI, a URL or a link target;
- a confidence level before "interval" or "CI" (``a 95% interval``);
- part of a metric's name with its operating point: ``AP@0.5``, ``TAR@FAR=0.1``.

Every result belongs in a code cell: ``fk.notebook.say(f"The test accuracy is {acc:.3f}.")`` renders it as
Markdown from the value the code computed, so the prose can never drift from the run.

No references outside the course (:func:`reference_problems`)
-------------------------------------------------------------
Markdown may not mention what a reader cannot see: the words in :data:`EXTERNAL_REFERENCES` ("issue",
"an earlier version", "earlier session", "pull request", "commit abc1234", "TODO", ...). Say "problem" for a
difficulty.

Verdicts (:func:`verdict_problems`, opt-in: ``lint(nb, verdicts=True)``)
------------------------------------------------------------------------
Words that state a comparison's outcome (:data:`VERDICT_WORDS`: "better than", "outperforms", "a real effect",
"significant", "no difference", ...) in typed prose. Verdicts are rendered with ``fk.notebook.say(v.text)``
from :mod:`facekit.stats`. General statements use the same words, so this check is a list to read, not a gate.

Code cells (:func:`cell_length_problems`)
-----------------------------------------
No code cell, the ``parameters`` cell and solutions included, has more than :data:`MAX_CODE_LINES` lines (blank
and comment lines count; split long experiments with prose that says what to look for).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["HEADINGS", "MAX_CODE_LINES", "MIN_OUTCOMES", "MAX_OUTCOMES", "MIN_EXERCISES", "MAX_EXERCISES",
           "EXTERNAL_REFERENCES", "VERDICT_WORDS", "Problem", "Exercise", "ProseShare", "read_notebook",
           "number_problems", "reference_problems", "cell_length_problems", "structure_problems", "verdict_problems",
           "exercises", "lint", "prose_share"]

HEADINGS = ("Learning outcomes", "Prerequisites", "Exercises", "Summary", "Pitfalls", "Further reading")  # in order
MAX_CODE_LINES = 40  # lines per code cell, blank and comment lines included
MIN_OUTCOMES, MAX_OUTCOMES = 3, 5  # list items under "Learning outcomes"
MIN_EXERCISES, MAX_EXERCISES = 4, 8
SOLUTION_TAG = "solution"
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


# ---- numbers in prose -------------------------------------------------------------------------------------------

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
_NUMBER = re.compile(r"(?<![\w.])(?:\d+(?:,\d{3})*\.\d+|\.\d+|\d+(?:,\d{3})*(?:\.\d+)?\s?%)")
# from the number to an opening bracket in the same sentence ('.' only as a decimal point or abbreviation)
_TO_BRACKET = re.compile(r"^(?:[^.!?;()\[\]\n]|\.(?=\S))*?[(\[]([^()\[\]]{1,200})[)\]]")
_NAME = re.compile(r"\b[A-Z][A-Za-z\u00C0-\u017F'\-]{2,}")
_NOT_NAMES = {"The", "And", "For", "See", "Table", "Fig", "Figure", "Section", "Chapter", "Eq", "Equation", "Also",
              "Page", "Appendix"}


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


# ---- code cell length -------------------------------------------------------------------------------------------

def cell_length_problems(nb, max_lines: int = MAX_CODE_LINES) -> list[Problem]:
    """Code cells longer than ``max_lines`` lines (trailing blank lines not counted)."""
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        lines = _source(cell).rstrip().splitlines()
        if len(lines) > max_lines:
            first = next((line.strip() for line in lines if line.strip()), "")[:60]
            problems.append(Problem("length", f"code cell of {len(lines)} lines (limit {max_lines}), starting "
                                    f"{first!r}: split it, with prose that says what to look for", i))
    return problems


# ---- required parts ---------------------------------------------------------------------------------------------

_EXERCISE = re.compile(r"^\s{0,3}(?:\*\*|###\s+)Exercise\s+(\d+)\b")


@dataclass(frozen=True)
class Exercise:
    """One exercise: its number, the cell that states it, its solution cells and the learner's code cells."""

    number: int
    cell: int  # index of the markdown cell that states it
    solutions: tuple[int, ...]  # cells tagged "solution"
    code_solutions: tuple[int, ...]  # those of them that are code cells
    hidden: bool  # every solution cell has its source hidden
    learner_code: tuple[int, ...]  # untagged code cells (attempt, check)


def exercises(nb) -> list[Exercise]:
    """The exercises of the "Exercises" section, in order, with their solution cells."""
    section = _find(_sections(nb), "Exercises")
    if section is None:
        return []
    starts = []  # (number, cell)
    for cell, line in section.lines:
        m = _EXERCISE.match(line)
        if m:
            starts.append((int(m.group(1)), cell))
    cells = section.cells
    out = []
    for k, (number, start) in enumerate(starts):
        stop = starts[k + 1][1] if k + 1 < len(starts) else cells[-1] + 1
        span = [c for c in cells if start <= c < stop and c != start]
        if k + 1 < len(starts) and stop == start:  # two exercises in one markdown cell
            span = []
        solutions = [c for c in span if SOLUTION_TAG in _tags(nb.cells[c])]
        out.append(Exercise(
            number, start, tuple(solutions),
            tuple(c for c in solutions if nb.cells[c].cell_type == "code"),
            all(nb.cells[c].get("metadata", {}).get("jupyter", {}).get("source_hidden", False) for c in solutions),
            tuple(c for c in span if nb.cells[c].cell_type == "code" and c not in solutions)))
    return out


def structure_problems(nb) -> list[Problem]:
    """Missing or misordered required parts (see the module docstring for the exact headings and rules)."""
    sections = _sections(nb)
    titles = [s.title for s in sections]
    problems = []
    found = {}
    for name in HEADINGS:
        hits = [k for k, t in enumerate(titles) if t.lower() == name.lower()]
        if not hits:
            problems.append(Problem("structure", f"no '## {name}' section (required: "
                                    + ", ".join(f"'## {h}'" for h in HEADINGS) + ", in this order)"))
        elif len(hits) > 1:
            problems.append(Problem("structure", f"'## {name}' appears {len(hits)} times"))
        else:
            found[name] = hits[0]
    order = [found[h] for h in HEADINGS if h in found]
    if order != sorted(order):
        problems.append(Problem("structure", "the required sections are out of order; expected "
                                + " < ".join(HEADINGS)))
    text = {name: [line for _, line in sections[k].lines[1:]] for name, k in found.items()}

    if "Learning outcomes" in found:
        n = sum(1 for line in text["Learning outcomes"] if _LIST_ITEM.match(line))
        if not MIN_OUTCOMES <= n <= MAX_OUTCOMES:
            problems.append(Problem("structure", f"'## Learning outcomes' has {n} list items; "
                                    f"write {MIN_OUTCOMES}-{MAX_OUTCOMES} ('After this chapter you can ...')"))
    if "Prerequisites" in found and not any(line.strip() for line in text["Prerequisites"]):
        problems.append(Problem("structure", "'## Prerequisites' is empty: name the chapters and concepts needed"))
    if "Exercises" in found:
        problems += _exercise_problems(nb)
    if "Summary" in found:
        s = sections[found["Summary"]]
        if not any(nb.cells[c].cell_type == "code" and "say(" in _source(nb.cells[c]) for c in s.cells):
            problems.append(Problem("structure", "'## Summary' has no code cell calling fk.notebook.say(f'...'): "
                                    "its numbers must be rendered from computed values"))
    if "Pitfalls" in found and not any(_LIST_ITEM.match(line) for line in text["Pitfalls"]):
        problems.append(Problem("structure", "'## Pitfalls' has no list items"))
    if "Further reading" in found and not any(_YEAR.search(line) for line in text["Further reading"]):
        problems.append(Problem("structure", "'## Further reading' lists no source with a year"))
    return problems


def _exercise_problems(nb) -> list[Problem]:
    found = exercises(nb)
    problems = []
    if not MIN_EXERCISES <= len(found) <= MAX_EXERCISES:
        problems.append(Problem("structure", f"{len(found)} exercises (lines starting '**Exercise N'); "
                                f"write {MIN_EXERCISES}-{MAX_EXERCISES}"))
    numbers = [e.number for e in found]
    if numbers != list(range(1, len(found) + 1)):
        problems.append(Problem("structure", f"exercises are numbered {numbers}; number them 1, 2, 3, ..."))
    for e in found:
        if not e.solutions:
            problems.append(Problem("structure", f"exercise {e.number} has no cell tagged 'solution'", e.cell))
        elif e.learner_code and not e.code_solutions:
            problems.append(Problem("structure", f"exercise {e.number} has code cells but no code cell tagged "
                                    "'solution' (nbval must run the solution)", e.cell))
        if e.solutions and not e.hidden:
            problems.append(Problem("structure", f"exercise {e.number}: solution cells must be collapsed "
                                    "(metadata jupyter.source_hidden = true)", e.cell))
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


def lint(nb, *, verdicts: bool = False) -> list[Problem]:
    """All checks: numbers in prose, references outside the course, code cell length, required parts; and, with
    ``verdicts=True``, verdict words in typed prose (:func:`verdict_problems`)."""
    problems = number_problems(nb) + reference_problems(nb) + cell_length_problems(nb) + structure_problems(nb)
    return problems + (verdict_problems(nb) if verdicts else [])


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


def main(argv=None) -> int:
    """``python -m facekit.course.lint NOTEBOOK...``: print every problem; exit status 1 if any."""
    paths = list(sys.argv[1:] if argv is None else argv)
    if not paths:
        print("usage: python -m facekit.course.lint notebooks/NN_name.py ...", file=sys.stderr)
        return 2
    total = ProseShare(0, 0)
    bad = 0
    for path in paths:
        nb = read_notebook(path)
        problems = lint(nb)
        share = prose_share(nb)
        total = total + share
        bad += len(problems)
        print(f"{path}: {len(problems)} problem(s), {len(exercises(nb))} exercises, prose {share.share:.0%} "
              f"({share.markdown} of {share.markdown + share.code} non-blank lines)")
        for p in problems:
            print(f"  {p}")
    if len(paths) > 1:
        print(f"all: prose {total.share:.1%} ({total.markdown} of {total.markdown + total.code} non-blank lines)")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
