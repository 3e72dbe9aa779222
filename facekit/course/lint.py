"""Structure checks for the course's chapters: what every chapter must contain, and what its prose may state.

Each check takes an nbformat notebook (read one with :func:`read_notebook`, which also reads the py:percent
sources through Jupytext) and returns a list of :class:`Problem`; an empty list means the chapter passes.
``python -m facekit.course.lint notebooks/01_*.py`` prints the problems of the given chapters (add ``--verdicts``
for the opt-in verdict check). The checks live in :mod:`facekit.course.structure` (required parts, cell length)
and :mod:`facekit.course.prose` (numbers, references, verdicts, prose share); this module gathers them.

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

import sys

from facekit.course.notebook import Problem, read_notebook
from facekit.course.prose import (EXTERNAL_REFERENCES, VERDICT_WORDS, ProseShare, number_problems, prose_share,
                                  reference_problems, verdict_problems)
from facekit.course.structure import (HEADINGS, MAX_CODE_LINES, MAX_EXERCISES, MAX_OUTCOMES, MIN_EXERCISES,
                                      MIN_OUTCOMES, SOLUTION_TAG, Exercise, cell_length_problems, exercises,
                                      structure_problems)

__all__ = ["HEADINGS", "MAX_CODE_LINES", "MIN_OUTCOMES", "MAX_OUTCOMES", "MIN_EXERCISES", "MAX_EXERCISES",
           "SOLUTION_TAG", "EXTERNAL_REFERENCES", "VERDICT_WORDS", "Problem", "Exercise", "ProseShare",
           "read_notebook", "number_problems", "reference_problems", "cell_length_problems", "structure_problems",
           "verdict_problems", "exercises", "lint", "prose_share"]


def lint(nb, *, verdicts: bool = False) -> list[Problem]:
    """All checks: numbers in prose, references outside the course, code cell length, required parts; and, with
    ``verdicts=True``, verdict words in typed prose (:func:`verdict_problems`)."""
    problems = number_problems(nb) + reference_problems(nb) + cell_length_problems(nb) + structure_problems(nb)
    return problems + (verdict_problems(nb) if verdicts else [])


def main(argv=None) -> int:
    """``python -m facekit.course.lint [--verdicts] NOTEBOOK...``: print every problem; exit status 1 if any."""
    args = list(sys.argv[1:] if argv is None else argv)
    verdicts = "--verdicts" in args
    paths = [a for a in args if a != "--verdicts"]
    if not paths:
        print("usage: python -m facekit.course.lint [--verdicts] notebooks/NN_name.py ...", file=sys.stderr)
        return 2
    total = ProseShare(0, 0)
    bad = 0
    for path in paths:
        nb = read_notebook(path)
        problems = lint(nb, verdicts=verdicts)
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
