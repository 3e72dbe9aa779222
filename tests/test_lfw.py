"""LFW pairs parsing and datasets on a made-up LFW with 2 folds x (2 same + 2 different)."""

import shutil

import pytest
import torch

from conftest_data import LFW_PAIRS_LINES, write_lfw
from facekit.config import ConfigError
from facekit.data.lfw import LFWPairs, Pair, PairImageMissing, PairsFileError, lfw_people, read_pairs
from facekit.data.registry import DatasetNotFound


def test_fold_structure_and_labels(lfw_dir):
    parsed = read_pairs(lfw_dir / "pairs.txt")
    assert len(parsed.folds) == 2 and len(parsed) == 8 and parsed.skipped == []
    assert [[p.is_same for p in fold] for fold in parsed.folds] == [[True, True, False, False]] * 2
    first = parsed.folds[0][0]
    assert first == Pair(lfw_dir / "Ann_Lee/Ann_Lee_0001.jpg", lfw_dir / "Ann_Lee/Ann_Lee_0002.jpg", True, 0, 2)
    different = parsed.folds[1][2]
    assert (different.path_a.name, different.path_b.name, different.line) == ("Bob_Ray_0002.jpg", "Eve_Ash_0001.jpg", 8)
    assert all(p.fold == 1 for p in parsed.folds[1])


def test_single_fold_dev_header(lfw_dir):
    (lfw_dir / "dev.txt").write_text("2\n" + "\n".join(LFW_PAIRS_LINES[1:5]) + "\n")
    parsed = read_pairs(lfw_dir / "dev.txt", lfw_dir)
    assert len(parsed.folds) == 1 and [p.is_same for p in parsed.pairs] == [True, True, False, False]


def test_missing_image_names_file_line_and_path(lfw_dir):
    (lfw_dir / "Bob_Ray" / "Bob_Ray_0003.jpg").unlink()
    with pytest.raises(PairImageMissing) as info:
        read_pairs(lfw_dir / "pairs.txt")
    message = str(info.value)
    assert "pairs.txt" in message and "line 3" in message and "Bob_Ray_0003.jpg" in message
    assert isinstance(info.value, FileNotFoundError)
    parsed = read_pairs(lfw_dir / "pairs.txt", on_missing="skip")
    assert len(parsed) == 7 and [line for line, _ in parsed.skipped] == [3]


@pytest.mark.parametrize(
    ("line_index", "replacement", "expected"),
    [
        (1, "Ann_Lee\t1", "line 2: expected 3 fields"),
        (1, "Ann_Lee\tone\t2", "line 2: image number 'one'"),
        (1, "Ann_Lee\t0\t2", "line 2: image number '0'"),
        (3, "Ann_Lee\t1\t2", "line 4: a same-person pair where"),
        (0, "ten\t300", "line 1: header"),
    ],
)
def test_malformed_lines(tmp_path, line_index, replacement, expected):
    lines = list(LFW_PAIRS_LINES)
    lines[line_index] = replacement
    folder = write_lfw(tmp_path / "lfw", lines)
    with pytest.raises(PairsFileError, match=expected) as info:
        read_pairs(folder / "pairs.txt")
    assert "pairs.txt" in str(info.value)


def test_header_disagreeing_with_line_count(tmp_path):
    folder = write_lfw(tmp_path / "lfw", LFW_PAIRS_LINES[:-1])
    with pytest.raises(PairsFileError, match="8 pairs, but the file has 7"):
        read_pairs(folder / "pairs.txt")
    with pytest.raises(ConfigError, match="on_missing"):
        read_pairs(folder / "pairs.txt", on_missing="ignore")


def test_lfw_pairs_dataset(lfw_dir):
    ds = LFWPairs(lfw_dir, image_size=16, channels=1)
    assert len(ds) == 8 and ds.folds == [[0, 1, 2, 3], [4, 5, 6, 7]]
    img_a, img_b, same = ds[2]
    assert img_a.shape == img_b.shape == (1, 16, 16) and img_a.dtype == torch.float32 and same is False
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=8)))
    assert batch[2].tolist() == [True, True, False, False] * 2
    with pytest.raises(ConfigError, match="split"):
        LFWPairs(lfw_dir, split="test")
    with pytest.raises(DatasetNotFound, match="pairsDevTest.txt"):
        LFWPairs(lfw_dir, split="dev_test")


@pytest.mark.parametrize("variant", ["lfw", "lfw-deepfunneled", "lfw_funneled", "lfw-funneled"])
def test_root_may_be_a_parent_with_pairs_in_it(tmp_path, variant):
    folder = write_lfw(tmp_path / variant)
    shutil.move(folder / "pairs.txt", tmp_path / "pairs.txt")
    ds = LFWPairs(tmp_path)
    assert ds.images_dir == folder and ds.pairs_file == tmp_path / "pairs.txt" and len(ds) == 8


def test_lfw_people_min_images(lfw_dir):
    assert lfw_people(lfw_dir, min_images=2).classes == ["Ann_Lee", "Bob_Ray", "Cy_Tan", "Eve_Ash"]
    three = lfw_people(lfw_dir, min_images=3, image_size=8)
    assert three.classes == ["Ann_Lee", "Bob_Ray"] and len(three) == 7 and three[0][0].shape == (3, 8, 8)


# ---------------------------------------------------------------- the protocol: subsets, people outside folds, one evaluator
def test_pair_subset_people_and_bad_folds(lfw_dir):
    import numpy as np

    from facekit.data.lfw import lfw_pair_subset

    sub = lfw_pair_subset(lfw_dir, folds=[1], pairs_per_fold=2)
    assert sub.is_same.tolist() == [True, False] and [f.tolist() for f in sub.folds] == [[0, 1]]
    assert sub.people == {"Cy_Tan", "Bob_Ray", "Eve_Ash"}
    assert isinstance(sub.is_same, np.ndarray)
    with pytest.raises(ValueError, match=r"folds=\[0, 2\]: \[2\] not in \[0, 2\)"):
        lfw_pair_subset(lfw_dir, folds=[0, 2])


def test_people_outside_the_evaluated_folds(lfw_dir):
    from facekit.data.lfw import people_outside_folds

    outside = people_outside_folds(lfw_dir, folds=[0])  # fold 0: Ann_Lee, Bob_Ray, Cy_Tan, Dee_Oh, Eve_Ash
    assert outside == {}
    (lfw_dir / "Zed_Free").mkdir()
    for i in (1, 2):
        shutil.copy(lfw_dir / "Ann_Lee" / "Ann_Lee_0001.jpg", lfw_dir / "Zed_Free" / f"Zed_Free_000{i}.jpg")
    (lfw_dir / "Solo_One").mkdir()
    shutil.copy(lfw_dir / "Ann_Lee" / "Ann_Lee_0001.jpg", lfw_dir / "Solo_One" / "Solo_One_0001.jpg")
    assert sorted(people_outside_folds(lfw_dir)) == ["Solo_One", "Zed_Free"]
    assert list(people_outside_folds(lfw_dir, min_images=2)) == ["Zed_Free"]
    assert [p.name for p in people_outside_folds(lfw_dir)["Zed_Free"]] == ["Zed_Free_0001.jpg", "Zed_Free_0002.jpg"]


def test_evaluate_pairs_against_a_hand_computed_protocol(lfw_dir):
    import numpy as np

    from facekit.data.lfw import evaluate_pairs, lfw_pair_subset
    from facekit.metrics import kfold_accuracy

    sub = lfw_pair_subset(lfw_dir)
    rng = np.random.default_rng(0)
    table = {p: rng.normal(size=4) for p in sub.images}
    calls = []

    def embed(paths):
        calls.append(list(paths))
        return np.stack([table[p] for p in paths]), np.array([True] * (len(paths) - 1) + [False])

    result = evaluate_pairs(sub, embed)
    assert calls == [sub.images] and len(set(calls[0])) == len(calls[0])  # each image embedded once
    dist = np.array([np.linalg.norm(table[a] - table[b]) for a, b in zip(sub.paths_a, sub.paths_b)])
    np.testing.assert_allclose(result.distances, dist)
    expected = kfold_accuracy(-dist, sub.is_same, folds=sub.folds)
    assert result.kfold.mean == expected.mean and result.num_without_face == 1 and result.kept.all()
    cos = evaluate_pairs(sub, lambda paths: np.stack([table[p] for p in paths]), distance="cosine")
    np.testing.assert_allclose(cos.distances, [1 - table[a] @ table[b] / np.linalg.norm(table[a]) / np.linalg.norm(
        table[b]) for a, b in zip(sub.paths_a, sub.paths_b)])
    skip = sub.images[0]  # a faceless photo (NaN embedding): its pairs leave the k-fold rule, counted in `kept`
    nan_result = evaluate_pairs(sub, lambda paths: np.stack([table[p] * (np.nan if p == skip else 1) for p in paths]))
    gone = np.array([skip in (a, b) for a, b in zip(sub.paths_a, sub.paths_b)])
    assert (~nan_result.kept == gone).all() and gone.any()
    with pytest.raises(ValueError, match=r"returned shape \(2, 4\) for 12 images; expected \(12, D\)"):
        evaluate_pairs(sub, lambda paths: np.zeros((2, 4)))
    with pytest.raises(ConfigError, match="distance"):
        evaluate_pairs(sub, embed, distance="manhattan")
