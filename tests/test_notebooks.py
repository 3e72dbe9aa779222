"""The py:percent sources and their paired .ipynb stay in sync; committed notebooks stay lean.

nbval itself runs every notebook (``pytest --nbval-lax notebooks`` in ``make test``).
"""

from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))


def _cells(nb):
    return [(c.cell_type, c.source.strip(), sorted(c.metadata.get("tags", []))) for c in nb.cells]


def test_there_are_notebooks():
    assert len(SOURCES) >= 2, "expected at least the data tour and chapter 1"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_pair_in_sync(source):
    ipynb = source.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.name} is missing: run `make sync` (jupytext --sync notebooks/*.py)"
    from_py = jupytext.read(source)
    from_ipynb = nbformat.read(ipynb, as_version=4)
    assert _cells(from_py) == _cells(from_ipynb), (
        f"{source.name} and {ipynb.name} have drifted apart: edit the .py, then run `make sync`"
    )


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_committed_notebook_is_lean_and_parameterised(source):
    nb = nbformat.read(source.with_suffix(".ipynb"), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.get("outputs") for c in code), f"{source.name}: clear outputs before committing"
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, f"{source.name}: needs exactly one cell tagged 'parameters'"
    assert 'profile = "auto"' in params[0].source, f"{source.name}: the parameters cell must default profile to 'auto'"
    assert source.with_suffix(".ipynb").stat().st_size < 200_000


def test_no_stray_ipynb():
    for ipynb in NOTEBOOKS.glob("*.ipynb"):
        assert ipynb.with_suffix(".py").exists(), f"{ipynb.name} has no py:percent source"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_every_parameter_is_seen_by_papermill(source):
    """Papermill skips an assignment it cannot parse (e.g. a second '=' in the comment), and then
    `facekit report -p NAME=...` would reject that parameter as unknown."""
    import ast

    from facekit.reports.runner import notebook_parameters

    nb = nbformat.read(source.with_suffix(".ipynb"), as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assigned = [t.id for node in ast.parse(cell.source).body if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)]
    seen = notebook_parameters(source.with_suffix(".ipynb"))
    assert list(seen) == assigned, f"{source.name}: papermill sees {list(seen)}, the cell assigns {assigned}"
