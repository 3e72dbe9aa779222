"""facekit.verify on made-up photos and a made-up embedding model: pair lists in every accepted form, every bad
input with its error text, the evaluator against the metrics it reuses, stages, and identification."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from facekit.config import ConfigError
from facekit.data.lfw import evaluate_pairs
from facekit.metrics import kfold_accuracy
from facekit.verify import (PairListError, identify_folders, make_embedder, read_pair_list, verify_pairs,
                            write_pair_list)

PEOPLE = 12
PHOTOS = 3
DIM = 8


@pytest.fixture
def photos(tmp_path):
    """tmp/photos/<person>/<k>.png with a grey level per photo; the 'model' maps person -> a direction + noise."""
    root = tmp_path / "photos"
    for p in range(PEOPLE):
        for k in range(PHOTOS):
            path = root / f"p{p:02d}" / f"{k}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8), (p * 20, k * 40, 7)).save(path)
    return root


def fake_model(paths):
    """A made-up embedding: the person's direction (read back from the red channel) plus noise from the photo."""
    out = []
    for path in paths:
        r, g, _ = Image.open(path).getpixel((0, 0))
        person, photo = r // 20, g // 40
        v = np.zeros(DIM)
        v[person % DIM] = 1.0
        v[(person + 1) % DIM] = 0.3 * (person >= DIM)  # people 8-11 differ from 0-3 by a second axis
        rng = np.random.default_rng(100 * person + photo)
        out.append(v + 0.1 * rng.normal(size=DIM))
    return np.stack(out)


def write_csv(tmp_path, rows, header="path1,path2,same", name="pairs.csv"):
    path = tmp_path / name
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def all_rows(with_fold=False):
    rows = []
    for p in range(PEOPLE):
        fold = f",{p % 4}" if with_fold else ""
        rows.append(f"p{p:02d}/0.png,p{p:02d}/1.png,1{fold}")
        rows.append(f"p{p:02d}/1.png,p{p:02d}/2.png,yes{fold}")
        rows.append(f"p{p:02d}/0.png,p{(p + 1) % PEOPLE:02d}/2.png,0{fold}")
        rows.append(f"p{p:02d}/2.png,p{(p + 5) % PEOPLE:02d}/1.png,different{fold}")
    return rows


# ---------------------------------------------------------------- reading pair lists
def test_csv_tsv_and_fold_column(tmp_path, photos):
    csv_path = write_csv(tmp_path, all_rows())
    pl = read_pair_list(csv_path, photos, folds=4)
    assert len(pl) == 4 * PEOPLE and pl.subset.is_same.sum() == 2 * PEOPLE and not pl.folds_given
    assert sorted(np.concatenate(pl.subset.folds).tolist()) == list(range(len(pl)))
    for fold in pl.subset.folds:  # balanced: both classes in every fold
        assert 0 < pl.subset.is_same[fold].mean() < 1
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text(csv_path.read_text().replace(",", "\t"))
    assert read_pair_list(tsv, photos).subset.paths_a == pl.subset.paths_a
    given = read_pair_list(write_csv(tmp_path, all_rows(True), "fold,path1,path2,same".replace("fold,", "") + ",fold",
                                     "f.csv"), photos)
    assert given.folds_given and [len(f) for f in given.subset.folds] == [12] * 4
    assert given.lines.tolist() == list(range(2, 2 + 4 * PEOPLE))


def test_lfw_pairs_txt_is_recognised(lfw_dir):
    pl = read_pair_list(lfw_dir / "pairs.txt")
    assert pl.folds_given and len(pl) == 8 and [len(f) for f in pl.subset.folds] == [4, 4]


def test_write_pair_list_round_trip(tmp_path, photos):
    pl = read_pair_list(write_csv(tmp_path, all_rows(True)), photos)
    out = write_pair_list(pl.subset, tmp_path / "again.csv")
    again = read_pair_list(out, photos)
    assert again.subset.paths_b == pl.subset.paths_b and again.subset.is_same.tolist() == pl.subset.is_same.tolist()
    assert [f.tolist() for f in again.subset.folds] == [f.tolist() for f in pl.subset.folds]


# ---------------------------------------------------------------- every bad input: named with file and line, or skipped
@pytest.mark.parametrize("row, text", [
    ("p00/0.png,p00/1.png", r"pairs\.csv, line 3: 2 field\(s\) where the header has 3"),
    ("p00/0.png,p00/1.png,maybe", r"pairs\.csv, line 3: same='maybe' is not accepted; use 1/0, true/false"),
    ("p00/0.png,p09/9.png,0", r"pairs\.csv, line 3: image .*p09/9\.png not found \(images folder"),
])
def test_bad_lines_are_named_or_skipped_and_counted(tmp_path, photos, row, text):
    rows = all_rows()
    rows.insert(1, row)
    path = write_csv(tmp_path, rows)
    with pytest.raises(PairListError, match=text):
        read_pair_list(path, photos)
    pl = read_pair_list(path, photos, on_error="skip")
    assert len(pl) == 4 * PEOPLE and len(pl.errors) == 1 and pl.errors[0].line == 3
    assert pl.errors[0].kind == ("missing image" if "not found" in text else "malformed line")


def test_bad_fold_header_one_class_and_missing_list(tmp_path, photos):
    with pytest.raises(PairListError, match=r"fold='x' is not an integer"):
        read_pair_list(write_csv(tmp_path, ["p00/0.png,p00/1.png,1,x"], "path1,path2,same,fold"), photos)
    with pytest.raises(PairListError, match=r"line 1: the header .* lacks column\(s\) same"):
        read_pair_list(write_csv(tmp_path, ["p00/0.png,p00/1.png"], "path1,path2"), photos)
    with pytest.raises(PairListError, match=r"pairs\.csv: 2 usable pair\(s\), 2 genuine and 0 impostor; "
                                            r"verification needs both classes"):
        read_pair_list(write_csv(tmp_path, all_rows()[:2]), photos)
    with pytest.raises(PairListError, match=r"pair list .*nope\.csv not found"):
        read_pair_list(tmp_path / "nope.csv")


def test_an_unreadable_image_is_named_with_its_line_or_skipped(tmp_path, photos):
    (photos / "p03" / "1.png").write_bytes(b"this is not a png")
    path = write_csv(tmp_path, all_rows())
    with pytest.raises(PairListError, match=r"pairs\.csv, line 14: image .*p03/1\.png: not a recognised image "
                                            r"format.*on_error='skip'"):
        verify_pairs(path, fake_model, images=photos, n_boot=50)
    result = verify_pairs(path, fake_model, images=photos, on_error="skip", n_boot=50)
    assert len(result.kept) == 4 * PEOPLE - 3  # the pairs that use p03/1.png: two of p03's, one of p10's
    assert [e.kind for e in result.errors] == ["unreadable image"] * 3
    assert [e.line for e in result.errors] == [14, 15, 45]
    table = result.error_table()
    assert table["kind"].tolist() == ["unreadable image"] and table["count"].tolist() == [3]


# ---------------------------------------------------------------- the evaluator: the one LFW rule, intervals, stages
def test_verify_pairs_reuses_the_one_evaluator(tmp_path, photos):
    path = write_csv(tmp_path, all_rows(True))
    result = verify_pairs(path, fake_model, images=photos, n_boot=100)
    pl = read_pair_list(path, photos)
    direct = evaluate_pairs(pl.subset, fake_model, distance="cosine")
    np.testing.assert_array_equal(result.scores, direct.scores)
    assert result.kfold.mean == kfold_accuracy(direct.scores, pl.subset.is_same, pl.subset.folds).mean
    assert result.correct.mean() == pytest.approx(result.kfold.mean)  # equal folds: pooled = mean of folds
    assert result.intervals["accuracy"].estimate == pytest.approx(result.correct.mean())
    assert result.intervals["auc"].low <= result.report.auc <= result.intervals["auc"].high
    assert set(result.intervals) == {"accuracy", "auc", "eer", "tar@far=0.01"}
    assert result.stage_table()["stage"].tolist() == ["given"]
    worst_genuine, worst_impostor = result.hardest(True, 1)[0], result.hardest(False, 1)[0]
    genuine = result.scores[result.is_same]
    assert result.scores[worst_genuine] == genuine.min() and result.is_same[worst_genuine]
    assert result.scores[worst_impostor] == result.scores[~result.is_same].max()
    assert "48 of 48 pairs scored" in result.summary()


def test_model_names_and_options_are_checked():
    with pytest.raises(ConfigError, match=r"model='arcface' is not accepted; use one of dlib, facenet or a callable"):
        make_embedder("arcface")
    with pytest.raises(ConfigError, match=r"model 'facenet' does not take detectors; accepted: select"):
        make_embedder("facenet", detectors=("hog",))
    with pytest.raises(ConfigError, match="a callable model takes none"):
        make_embedder(fake_model, select="largest")
    with pytest.raises(ValueError, match=r"returned shape \(1, 8\) for 2 images"):
        make_embedder(lambda paths: np.zeros((1, DIM)))(["a", "b"])


# ---------------------------------------------------------------- identification
def test_identify_folders_closed_and_open_set(tmp_path, photos):
    gallery, probes = tmp_path / "gallery", tmp_path / "probes"
    for p in range(PEOPLE):
        for k in range(PHOTOS):
            src = photos / f"p{p:02d}" / f"{k}.png"
            if p < 6:  # people 0-5 enrolled with photo 0, queried with photos 1-2; people 6-11 unknown
                dest = (gallery if k == 0 else probes) / src.parent.name / src.name
            else:
                dest = probes / src.parent.name / src.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(src.read_bytes())
    result = identify_folders(gallery, probes, fake_model, far=0.25)
    assert (result.gallery_people, result.known_probes, result.unknown_probes) == (6, 12, 18)
    assert result.unknown_people == 6 and result.threshold_people == 3
    g_paths = sorted(gallery.glob("*/*.png"))
    q_paths = [p for p in sorted(probes.glob("*/*.png")) if (gallery / p.parent.name).is_dir()]
    g, q = fake_model(g_paths), fake_model(q_paths)
    cos = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (g / np.linalg.norm(g, axis=1, keepdims=True)).T
    naive = np.mean([g_paths[j].parent.name == p.parent.name for p, j in zip(q_paths, cos.argmax(1))])
    assert result.closed_set.rank1 == naive == 1.0  # one photo per gallery person: nearest photo = nearest person
    assert result.open_set.rank1 == 1.0 and result.open_set.num_unknown == 9
    assert 0 <= result.open_set.false_alarm_rate <= 1 and result.open_set.dir <= result.open_set.rank1
    with pytest.raises(FileNotFoundError, match=r"folder .*nowhere not found; expected root/<person>/<image>"):
        identify_folders(tmp_path / "nowhere", probes, fake_model)


def test_pairs_from_a_folder_of_people(tmp_path, photos):
    from facekit.verify import pairs_from_folder

    sub = pairs_from_folder(photos, num_same=20, num_diff=30, seed=1, folds=5)
    assert sub.is_same.sum() == 20 and (~sub.is_same).sum() == 30 and len(sub.folds) == 5
    same_person = np.array([a.parent == b.parent for a, b in zip(sub.paths_a, sub.paths_b)])
    assert (same_person == sub.is_same).all()
    again = read_pair_list(write_pair_list(sub, tmp_path / "drawn.csv"), photos)
    assert again.subset.paths_a == sub.paths_a and again.folds_given
    with pytest.raises(ValueError, match="num_same"):
        pairs_from_folder(photos, num_same=10_000, num_diff=1)


def test_a_single_fold_list_gets_balanced_folds(tmp_path, photos):
    path = write_csv(tmp_path, [r + ",0" for r in all_rows()], "path1,path2,same,fold")
    pl = read_pair_list(path, photos, folds=4)
    assert not pl.folds_given and len(pl.subset.folds) == 4
    assert all(0 < pl.subset.is_same[f].mean() < 1 for f in pl.subset.folds)
    result = verify_pairs(pl, fake_model, n_boot=50)
    assert [f.tolist() for f in result.folds] == [f.tolist() for f in pl.subset.folds]


def test_many_faceless_photos_warn(tmp_path, photos, monkeypatch):
    from facekit.verify import NoFaceWarning, evaluate
    from facekit.verify.models import Embedded

    def centred(paths):  # a model whose face finder found nothing in the photos of p00
        stages = np.array(["center" if "p00" in str(p) else "hog" for p in paths])
        return Embedded(fake_model(paths), stages, np.zeros(len(paths), int))

    monkeypatch.setattr(evaluate, "make_embedder", lambda model, **options: centred)
    with pytest.warns(NoFaceWarning, match=r"no face was detected in 3 of 36 photos \(8\.3%\)"):
        result = verify_pairs(write_csv(tmp_path, all_rows()), "dlib", images=photos, n_boot=50)
    table = result.stage_table().set_index("stage")
    assert table.loc["center", "images"] == 3 and table.loc["hog", "images"] == 33
    assert table.loc["center", "pairs"] == 6  # p00's four rows, p11's (p00/2.png) and p07's (p00/1.png)
