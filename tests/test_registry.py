"""Dataset resolution: root=, $FACEKIT_DATA, <repo>/data, <repo>/../shared/datasets; load_dataset by name."""

import pytest

from conftest_data import save_image, write_lfw
from facekit.config import ConfigError
from facekit.data import roots
from facekit.data.folders import ImageFolderFaces
from facekit.data.registry import DatasetNotFound, available_datasets, find_data_root, load_dataset


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No real datasets visible: an empty fake checkout and FACEKIT_DATA unset."""
    monkeypatch.setattr(roots, "REPO_ROOT", tmp_path / "checkout" / "repo")
    monkeypatch.delenv("FACEKIT_DATA", raising=False)
    return tmp_path


def _orl(folder, subjects=2, images=2):
    for s in range(1, subjects + 1):
        for i in range(1, images + 1):
            save_image(folder / f"s{s}" / f"{i}.pgm", mode="L", seed=s * 10 + i)
    return folder


def test_root_argument_accepts_the_folder_or_its_parent(isolated):
    folder = _orl(isolated / "sets" / "att_faces")
    assert find_data_root("orl", folder) == folder
    assert find_data_root("orl", isolated / "sets") == folder
    with pytest.raises(DatasetNotFound):
        find_data_root("orl", isolated / "elsewhere")  # an explicit root is not silently replaced


def test_facekit_data_env(isolated, monkeypatch):
    lfw = write_lfw(isolated / "env" / "lfw-deepfunneled")
    _orl(isolated / "env" / "orl")
    monkeypatch.setenv("FACEKIT_DATA", str(isolated / "env"))
    assert find_data_root("lfw") == lfw
    assert find_data_root("orl") == isolated / "env" / "orl"
    assert available_datasets() == {"lfw": lfw, "orl": isolated / "env" / "orl", "dlib": None}


def test_repo_data_then_shared(isolated):
    shared = _orl(isolated / "checkout" / "shared" / "datasets" / "att_faces")
    assert find_data_root("orl") == shared
    local = _orl(isolated / "checkout" / "repo" / "data" / "att_faces")
    assert find_data_root("orl") == local


def test_not_found_lists_every_place_and_the_fixes(isolated, monkeypatch):
    monkeypatch.setenv("FACEKIT_DATA", str(isolated / "mine"))
    with pytest.raises(DatasetNotFound) as info:
        find_data_root("lfw")
    message = str(info.value)
    for place in (isolated / "mine", isolated / "checkout" / "repo" / "data", isolated / "checkout" / "shared" / "datasets"):
        assert str(place) in message
    assert "FACEKIT_DATA" in message and "root=" in message and "download_lfw" in message
    assert isinstance(info.value, FileNotFoundError)


def test_unknown_names_are_config_errors(isolated):
    with pytest.raises(ConfigError, match="accepted: synthetic, orl, lfw, lfw_pairs, dlib"):
        load_dataset("imagenet")
    with pytest.raises(ConfigError, match="did you mean 'orl'"):
        find_data_root("orll")


def test_load_dataset_by_name_and_by_path(isolated, face_folder):
    _orl(isolated / "sets" / "att_faces", subjects=40, images=10)
    orl = load_dataset("orl", root=isolated / "sets", image_size=8)
    assert len(orl) == 400 and orl[0][0].shape == (3, 8, 8)
    folder = load_dataset(str(face_folder), image_size=8)
    assert isinstance(folder, ImageFolderFaces) and folder.classes == ["s1", "s2", "s10"]
    lfw_root = write_lfw(isolated / "sets" / "lfw")
    assert len(load_dataset("lfw_pairs", root=lfw_root)) == 8
    assert load_dataset("lfw", root=lfw_root).num_classes == 4
    with pytest.raises(ConfigError, match="takes no root"):
        load_dataset("synthetic", root=isolated)


def test_orl_layout_warning(isolated):
    folder = _orl(isolated / "att_faces", subjects=3, images=2)
    with pytest.warns(UserWarning, match="40 x 10"):
        ds = load_dataset("orl", root=folder)
    assert ds.num_classes == 3


def test_synthetic_is_built_lazily(monkeypatch):
    synthetic = pytest.importorskip("facekit.data.synthetic")
    calls = []
    monkeypatch.setattr(synthetic, "SyntheticFaces", lambda **kw: calls.append(kw) or "made")
    assert load_dataset("synthetic", num_identities=3) == "made" and calls == [{"num_identities": 3}]
