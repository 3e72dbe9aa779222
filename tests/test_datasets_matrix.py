"""Every documented value of a chapter's ``dataset`` parameter runs, at the smoke profile, within its budget.

For each notebook whose parameters cell has ``dataset``: ``synthetic``, ``orl``, ``lfw`` and an ImageFolder path
(``root/<person>/<image>``, made here from ORL as PNGs in a temporary folder). The real-data cases skip with a
reason when the datasets are not on disk. Marked ``slow`` and run only when selected (about a minute per case
on 2 idle cores): ``pytest -m slow tests/test_datasets_matrix.py -s`` shows each case's duration.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

# FACEKIT_TEST_NOTEBOOKS: run another copy of the notebooks (e.g. a `git archive` of a commit)
NOTEBOOKS = Path(os.environ.get("FACEKIT_TEST_NOTEBOOKS") or Path(__file__).resolve().parent.parent / "notebooks")
SMOKE_BUDGET_S = 60.0  # the smoke profile's budget per notebook on 2 idle CPU cores (README, Profiles)
# a loaded machine runs slower: FACEKIT_BUDGET_FACTOR scales the budget (default 2: a shared CI runner)
BUDGET_FACTOR = float(os.environ.get("FACEKIT_BUDGET_FACTOR", "2"))
DATASETS = ("synthetic", "orl", "lfw", "folder")
FOLDER_PEOPLE = 40  # ORL's 40 people, 10 images each


def require_slow_selection(request, what: str) -> None:
    """Skip unless the run selected slow tests explicitly (``-m slow``): these run whole notebooks for minutes
    each, too long for ``make test``."""
    if "slow" not in (request.config.getoption("markexpr", "") or ""):
        pytest.skip(f"{what}: select it with `pytest -m slow {request.node.path.name}`")


def _with_dataset_parameter() -> list[str]:
    from facekit.reports.runner import notebook_parameters

    return [p.stem for p in sorted(NOTEBOOKS.glob("*.ipynb")) if "dataset" in notebook_parameters(p)]


def _real_root():
    from facekit.data.roots import available_datasets

    return available_datasets(None)


@pytest.fixture(scope="module")
def orl_folder(tmp_path_factory) -> Path:
    """ORL as a generic ImageFolder: <person>/<n>.png, person names that are not ORL's."""
    from PIL import Image

    found = _real_root().get("orl")
    if not found:
        pytest.skip("ORL (att_faces/) not found: set FACEKIT_DATA or put it in ../shared/datasets")
    root = tmp_path_factory.mktemp("imagefolder")
    for person in sorted(Path(found).glob("s*"), key=lambda p: int(p.name[1:])):
        out = root / f"person_{int(person.name[1:]):02d}"
        out.mkdir()
        for image in sorted(person.glob("*.pgm")):
            Image.open(image).save(out / f"{image.stem}.png")
    assert len(list(root.iterdir())) == FOLDER_PEOPLE
    return root


@pytest.mark.slow
@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("stem", _with_dataset_parameter())
def test_chapter_runs_with_dataset(stem, dataset, request, tmp_path):
    from facekit.reports import run_reports

    require_slow_selection(request, "a whole notebook at the smoke profile (about a minute)")
    if dataset in ("orl", "lfw") and not _real_root().get(dataset):
        pytest.skip(f"{dataset} not found: set FACEKIT_DATA or put it in ../shared/datasets")
    value = str(request.getfixturevalue("orl_folder")) if dataset == "folder" else dataset
    start = time.monotonic()
    summary = run_reports([stem], profile="smoke", parameters={"dataset": value}, reports_dir=tmp_path,
                          notebooks_dir=NOTEBOOKS, html=False, progress=False,
                          execution_timeout=SMOKE_BUDGET_S * BUDGET_FACTOR * 5)
    took = time.monotonic() - start
    entry = summary.entries[-1]
    print(f"\n{stem} dataset={dataset}: {entry.status} in {took:.0f} s")
    error = entry.error or {}
    assert entry.status == "ok", f"{stem} with dataset={dataset}: {error.get('ename')}: {error.get('evalue')}"
    assert entry.duration_s <= SMOKE_BUDGET_S * BUDGET_FACTOR, \
        f"{stem} with dataset={dataset} took {entry.duration_s:.0f} s, budget {SMOKE_BUDGET_S * BUDGET_FACTOR:.0f} s"
