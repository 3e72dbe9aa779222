"""scripts/verdict_table.py finds every verdict sentence that facekit.stats renders in an executed notebook."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat

from facekit.stats import Interval
from facekit.stats.verdict import verdict

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "verdict_table.py"


def _load():
    spec = importlib.util.spec_from_file_location("verdict_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_rendered_verdict_is_listed_once(tmp_path):
    won = verdict(Interval(0.031, 0.012, 0.050), ("ArcFace", "softmax"), n=3000, unit="pairs",
                  method="paired bootstrap", metric="AUC")
    none = verdict(Interval(-0.004, -0.046, 0.039), ("weight decay 5e-4", "baseline"), n=3, unit="seeds",
                   method="paired t", p_value=0.75, min_n=3)
    pruned = verdict(Interval(0.005, 0.002, 0.008), ("fp32", "pruned 70% (global magnitude)"), n=6000, unit="pairs",
                     method="McNemar exact test and paired bootstrap (people resampled)", p_value=0.001)
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("...")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"- {won.text}\n"),
                    nbformat.v4.new_output("display_data", data={"text/markdown": f"So **{none.text}**; again: {won.text}."}),
                    nbformat.v4.new_output("stream", name="stdout", text=f"k-fold 98.20% ({pruned.text})\n")]
    nb.cells.append(cell)
    nbformat.write(nb, tmp_path / "01_demo.ipynb")
    rows = _load().verdicts(tmp_path / "01_demo.ipynb")
    assert [(r["A"], r["B"], r["verdict"]) for r in rows] == [
        ("ArcFace", "softmax", "ArcFace better"), ("weight decay 5e-4", "baseline", "no detectable difference"),
        ("fp32", "pruned 70% (global magnitude)", "fp32 better")]
    assert rows[0]["A - B"] == "+0.031 [+0.012, +0.050]" and rows[1]["metric"] == ""
    table = _load().table(tmp_path)
    assert "3 verdicts in 1 notebooks" in table
