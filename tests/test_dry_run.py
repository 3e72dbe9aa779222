"""Dry runs (facekit.profiles): the gpu profile's configuration on the CPU with every loop and count capped.

The fast tests check the capping rules; the ``slow`` ones run every notebook of the course that way
(``facekit report NN --profile gpu --dry-run``), so that a shape error, a missing key or an API missing from
the pinned torch fails here and not on the GPU. They run only when selected: ``pytest -m slow tests/test_dry_run.py``
(``make test`` skips them, saying so).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from facekit import profiles
from facekit.config import ConfigError

REPO = Path(__file__).resolve().parent.parent
# FACEKIT_TEST_NOTEBOOKS: run another copy of the notebooks (e.g. a `git archive` of a commit)
NOTEBOOKS = Path(os.environ.get("FACEKIT_TEST_NOTEBOOKS") or Path(__file__).resolve().parent.parent / "notebooks")
CELL_TIMEOUT_S = 1200  # one cell of a dry run on a loaded 2-core machine


def require_slow_selection(request, what: str) -> None:
    """Skip unless the run selected slow tests explicitly (``-m slow``): these run whole notebooks for minutes
    each, too long for ``make test``."""
    if "slow" not in (request.config.getoption("markexpr", "") or ""):
        pytest.skip(f"{what}: select it with `pytest -m slow {request.node.path.name}`")


@dataclasses.dataclass(frozen=True)
class Sizes:
    image_size: int
    train_identities: int
    train_per_id: int
    pairs_per_fold: int
    test_fold: int
    lfw_min_images: int
    epochs: int
    batch_size: int
    text_steps: int
    lfw_max_people: int  # 0 = all
    embedding_dim: int
    folds: tuple
    vit: str
    people: int = profiles.count(floor=40)
    widths: int = profiles.count(None)
    calls: int = profiles.count("steps")


GPU = Sizes(image_size=112, train_identities=1000, train_per_id=20, pairs_per_fold=600, test_fold=9,
            lfw_min_images=100, epochs=30, batch_size=256, text_steps=500, lfw_max_people=0, embedding_dim=512,
            folds=tuple(range(10)), vit="vit_s", people=500, widths=5000, calls=100)


@pytest.fixture()
def dry(monkeypatch):
    monkeypatch.setenv(profiles.MAX_STEPS_VAR, "2")
    monkeypatch.delenv(profiles.DRY_ITEMS_VAR, raising=False)


def test_pick_caps_counts_but_not_configuration(dry, capsys):
    name, s = profiles.pick("gpu", smoke=GPU, cpu=GPU, gpu=GPU)
    assert name == "gpu"
    counts = {"train_identities": 32, "train_per_id": 20, "pairs_per_fold": 32, "text_steps": 2, "people": 40,
              "calls": 2}
    assert {k: getattr(s, k) for k in counts} == counts
    config = ("image_size", "test_fold", "lfw_min_images", "epochs", "batch_size", "embedding_dim", "folds", "vit",
              "widths", "lfw_max_people")  # epochs: fit caps them itself; 0 (= all) is left alone
    assert {k: getattr(s, k) for k in config} == {k: getattr(GPU, k) for k in config}
    out = capsys.readouterr().out
    assert out.startswith("dry run ($FACEKIT_MAX_STEPS=2): gpu sizes capped: train_identities 1000 -> 32")


def test_no_dry_run_no_change(monkeypatch, capsys):
    monkeypatch.delenv(profiles.MAX_STEPS_VAR, raising=False)
    assert profiles.pick("gpu", smoke=GPU, cpu=GPU, gpu=GPU) == ("gpu", GPU)
    assert profiles.capped(5000) == 5000 and capsys.readouterr().out == ""


def test_dry_items_and_capped(dry, monkeypatch):
    assert profiles.capped(5000) == 32 and profiles.capped(10) == 10 and profiles.capped(5000, floor=100) == 100
    assert profiles.capped(5000, "steps") == 2 and profiles.capped(0) == 0
    monkeypatch.setenv(profiles.DRY_ITEMS_VAR, "8")
    assert profiles.pick("gpu", smoke=GPU, cpu=GPU, gpu=GPU)[1].train_per_id == 8
    monkeypatch.setenv(profiles.DRY_ITEMS_VAR, "many")
    with pytest.raises(ConfigError, match="FACEKIT_DRY_ITEMS"):
        profiles.capped(5000)
    with pytest.raises(ConfigError, match="kind"):
        profiles.capped(5, "epochs")
    with pytest.raises(ConfigError, match="count"):
        profiles.count("people")


def test_every_notebook_size_field_has_a_deliberate_kind():
    """Each notebook's sizes: the fields capped as items or steps are counts (a regression guard on the name rule)."""
    import re

    configuration = re.compile(r"(size|dim|batch|epochs|patience|min_images|folds?|vit|backbone|cnn|student|"
                               r"models|pretrained|far|lr|widths|bits|sweep|depth|amounts|strengths|blocks|target|"
                               r"multipliers|clients|losses|align|seq|matmul_n|copy_mib|workers|lfw|unfolded|shots|"
                               r"seconds)")
    sources = sorted((REPO / "notebooks").glob("*.py"))
    assert sources
    for path in sources:
        body = re.search(r"class Sizes:\n((?:    .*\n)+)", path.read_text())
        if body is None:
            continue
        for line in body.group(1).splitlines():
            name = line.split(":")[0].strip()
            if not name.isidentifier():
                continue
            kind = profiles.count_kind(name)
            if kind is not None:
                assert not configuration.fullmatch(name.split("_")[-1]) or name.endswith(("per_fold", "_steps")), \
                    f"{path.name}: {name} looks like configuration but is capped as {kind}"


def _course() -> list[str]:
    return sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("stem", _course())
def test_gpu_profile_dry_run(stem, tmp_path, monkeypatch, request):
    """Every notebook runs at the gpu profile with FACEKIT_MAX_STEPS=2 on this machine (a dependency runs first)."""
    from facekit.reports import run_reports

    require_slow_selection(request, "a gpu-profile dry run of a whole notebook (minutes)")
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    summary = run_reports([stem], profile="gpu", max_steps=2, reports_dir=tmp_path, notebooks_dir=NOTEBOOKS,
                          html=False, progress=False, execution_timeout=CELL_TIMEOUT_S)
    failures = {e.name: (e.status, e.error, e.skip_reason) for e in summary.entries if e.status != "ok"}
    assert not failures, f"dry run of {stem} at the gpu profile: {failures}"
    assert summary.entries[-1].figures, f"{stem}: no figures in the dry run"


# --- scripts/gpu_check.sh: what can be checked without a GPU ------------------------------------------------

SCRIPT = REPO / "scripts" / "gpu_check.sh"


def _script(*args, timeout=600):
    import subprocess
    import sys

    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})


def test_gpu_check_script_syntax_and_usage_errors():
    import subprocess
    import sys

    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    assert _script("--help").returncode == 0 and "wheels DIR" in _script("--help").stdout
    out = _script("launch")
    assert out.returncode == 2 and "unknown command launch" in out.stderr
    out = _script("wheels")
    assert out.returncode == 2 and "give the folder to fill" in out.stderr
    out = _script("run", "--python", sys.executable, "--budget-s", "5")
    assert out.returncode == 2 and "--budget-s 5" in out.stderr
    out = _script("run", "--python", sys.executable, "--cell-timeout", "soon")
    assert out.returncode == 2 and "--cell-timeout soon" in out.stderr
    out = _script("run", "--python", sys.executable, "--wheels", "/nonexistent")
    assert out.returncode == 2 and "no requirements.txt" in out.stderr


def test_gpu_check_without_cuda_stops_unless_asked_to_rehearse():
    import sys

    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the no-CUDA refusal cannot be seen here")
    out = _script("run", "--python", sys.executable)
    assert out.returncode == 2 and "CUDA is not available" in out.stderr and "--allow-cpu" in out.stderr


@pytest.mark.slow
def test_gpu_check_cpu_rehearsal_writes_report_folders(tmp_path):
    """The whole `run` path on tiny notebooks: chapter 07 and the dry run of every chapter, as report folders."""
    import json
    import sys

    from test_reports import make_notebook

    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the rehearsal would run the real chapter 07")
    nbs = tmp_path / "notebooks"
    cell = ("import os\nfrom facekit.reports import record\n"
            "record('max_steps', int(os.environ.get('FACEKIT_MAX_STEPS', 0)))\nrecord('profile_seen', profile)")
    make_notebook(nbs / "00_tiny.ipynb", 'profile = "auto"', cell)
    make_notebook(nbs / "07_bench.ipynb", 'profile = "auto"', cell)
    out = _script("run", "--allow-cpu", "--python", sys.executable, "--out", str(tmp_path / "reports"),
                  "--notebooks-dir", str(nbs), "--budget-s", "300", "--steps", "1")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "CPU rehearsal" in out.stderr
    runs = sorted((tmp_path / "reports").glob("*/summary.json"))
    summaries = [json.loads(p.read_text()) for p in runs]
    assert sorted(len(s["notebooks"]) for s in summaries) == [1, 2]  # chapter 07; then every chapter
    for s in summaries:
        assert s["profile"] == "gpu" and s["options"]["max_steps"] == 1
        assert all(e["status"] == "ok" and e["metrics"] == {"max_steps": 1, "profile_seen": "gpu"}
                   for e in s["notebooks"])
    assert (tmp_path / "reports" / "README.md").is_file()
