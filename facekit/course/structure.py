"""What every chapter must contain: the required sections, exercises with hidden solutions, short code cells.

The rules are in :mod:`facekit.course.lint`; this module implements them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from facekit.course.notebook import _LIST_ITEM, _YEAR, Problem, _find, _sections, _source, _tags

__all__ = ["HEADINGS", "MAX_CODE_LINES", "MIN_OUTCOMES", "MAX_OUTCOMES", "MIN_EXERCISES", "MAX_EXERCISES",
           "SOLUTION_TAG", "Exercise", "exercises", "structure_problems", "cell_length_problems"]

HEADINGS = ("Learning outcomes", "Prerequisites", "Exercises", "Summary", "Pitfalls", "Further reading")  # in order
MAX_CODE_LINES = 40  # lines per code cell, blank and comment lines included
MIN_OUTCOMES, MAX_OUTCOMES = 3, 5  # list items under "Learning outcomes"
MIN_EXERCISES, MAX_EXERCISES = 4, 8
SOLUTION_TAG = "solution"


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
