"""Every verdict a run's executed notebooks state, as one Markdown table.

Usage: python scripts/verdict_table.py reports/<run> [--out FILE]

A verdict is the sentence ``facekit.stats.Verdict.text`` renders ("A better than B: ..." or "no detectable
difference between A and B at this size: ...") wherever it appears in an output (printed, displayed or inside a
rendered ``say`` paragraph). Each distinct sentence is listed once per chapter, in the order it first appears.
"""
from __future__ import annotations

import argparse
import html
import re
import sys
from pathlib import Path

import nbformat

_DIFF = r"[+\-−]\d[\d.,]*\s*\[[+\-−]\d[\d.,]*,\s*[+\-−]\d[\d.,]*\]"
_DETAILS = r"\((?:[^()]|\([^()]*\))*\)"  # "(paired bootstrap (people resampled) over 400 pairs, 95%)"
_NAME = r"(?:[^\n:;|.]|\.(?=\S)){1,80}?"  # a model's name: a dot only inside it (x0.1), not ending a sentence
BETTER = re.compile(rf"(?P<a>{_NAME}) better than (?P<b>{_NAME}): (?P<m>[\w@=.\- ]*?)\s*"
                    rf"(?P<d>{_DIFF})\s*(?P<how>{_DETAILS})")
NONE = re.compile(rf"no detectable difference between (?P<a>{_NAME}) and (?P<b>{_NAME}) at this "
                  rf"size: (?P<m>[\w@=.\- ]*?)\s*(?P<d>{_DIFF})\s*(?P<how>{_DETAILS})")
TAG = re.compile(r"<[^>]+>")


def _texts(nb) -> list[str]:
    """The plain text of every output of every code cell, markup stripped."""
    out = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                out.append(o.get("text", ""))
            data = o.get("data", {})
            for mime in ("text/markdown", "text/plain", "text/html"):
                if mime in data:
                    text = data[mime]
                    text = "".join(text) if isinstance(text, list) else text
                    if mime == "text/html":
                        text = html.unescape(TAG.sub(" ", text))
                    out.append(text.replace("**", "").replace("`", ""))
                    break
    return out


def _name(text: str) -> str:
    """A model's name as the sentence gives it, without a list bullet or emphasis before it, nor the text before an
    unclosed parenthesis that opens the verdict ("k-fold 98.20% (fp32 better than ..." names fp32)."""
    text = text.strip().lstrip("-*•> ").strip()
    opened = []
    for i, ch in enumerate(text):
        if ch == "(":
            opened.append(i)
        elif ch == ")" and opened:
            opened.pop()
    return text[opened[-1] + 1:].strip() if opened else text


def verdicts(nb_path: Path) -> list[dict]:
    """The distinct verdict sentences of one executed notebook, in order."""
    nb = nbformat.read(nb_path, as_version=4)
    rows, seen = [], set()
    for text in _texts(nb):
        text = re.sub(r"[ \t]+", " ", text)
        for pattern in (BETTER, NONE):  # "A better than B: ..." names A; the other names no winner
            for m in pattern.finditer(text):
                a, b = _name(m["a"]), _name(m["b"])
                row = {"A": a, "B": b, "verdict": f"{a} better" if pattern is BETTER else "no detectable difference",
                       "metric": m["m"].strip(), "A - B": m["d"], "how": m["how"][1:-1]}
                if (a, b, row["A - B"]) not in seen:
                    seen.add((a, b, row["A - B"]))
                    rows.append(row)
    return rows


def table(run_dir: Path) -> str:
    notebooks = sorted(p for p in run_dir.glob("*.ipynb"))
    if not notebooks:
        raise SystemExit(f"{run_dir}: no executed notebooks (*.ipynb) in this folder")
    lines = ["| chapter | verdict | A | B | metric | A - B [95% interval] | how |", "|---|---|---|---|---|---|---|"]
    total = 0
    for nb in notebooks:
        for r in verdicts(nb):
            total += 1
            cells = [nb.stem[:2], r["verdict"], r["A"], r["B"], r["metric"], r["A - B"], r["how"]]
            lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    lines.append("")
    lines.append(f"{total} verdicts in {len(notebooks)} notebooks of `{run_dir.name}`.")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path, help="a report folder holding executed notebooks")
    ap.add_argument("--out", type=Path, help="write the table here instead of printing it")
    args = ap.parse_args(argv)
    if not args.run_dir.is_dir():
        raise SystemExit(f"run_dir {args.run_dir}: not a folder (expected reports/<run>)")
    text = table(args.run_dir)
    if args.out:
        args.out.write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
