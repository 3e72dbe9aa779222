"""Face finding on the most profile-like faces at hand: the no-face rate and the accuracy per detector stage.

Three sources, all read from the datasets folder (``--data``, default ``../shared/datasets``):

1. **LFW, strongest yaw.** A seeded sample of LFW photos of people with at least two photos; MTCNN's five
   points give a yaw proxy, ``|nose_x - eye_mid_x| / eye_distance`` (0 frontal, about 0.5 and more for a
   strongly turned head). The ``--top`` photos with the largest proxy, plus every photo where MTCNN found no
   face, are the *hard* set. Each hard photo gets one genuine pair (another photo of the same person) and one
   impostor pair (a photo of another sampled person); the pair list is verified with dlib's pipeline under
   several detector chains (and FaceNet's as a reference): per chain, the share of photos each stage found,
   the no-face rate (the centred fallback) and the held-out accuracy on the pairs whose later photo each stage
   found.
2. **dlib's group photos.** Each hand-labelled face (``training.xml`` + ``testing.xml``) cropped with a margin:
   the share each detector finds on its own.
3. **Synthetic faces turned sideways.** ``facekit.data`` renders faces at fixed yaw angles: the share each
   detector finds per angle (the generator's faces are drawings, so this measures the detectors' reaction to
   turning, not their accuracy on people).

Run from the repository root (about 10 minutes on 2 busy cores; caches in $FACEKIT_CACHE make reruns fast):

    .venv/bin/python scripts/measure_profile_faces.py --out reports/profile_faces.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CHAINS = (("hog",), ("hog", "mtcnn"), ("hog", "cnn"), ("hog", "cnn", "mtcnn"))
DETECTORS = ("hog", "cnn", "mtcnn")


def yaw_proxy(points: np.ndarray) -> float:
    """|nose x - eye midpoint x| / eye distance from ArcFace-order points (eyes, nose, mouth corners)."""
    eyes_mid = points[:2].mean(0)
    return float(abs(points[2, 0] - eyes_mid[0]) / max(np.linalg.norm(points[1] - points[0]), 1e-6))


def hard_lfw_photos(lfw: Path, sample: int, top: int, seed: int):
    from PIL import Image

    from facekit.pretrained.crops import detect_faces, select_face

    people = {d.name: sorted(d.glob("*.jpg")) for d in sorted(lfw.iterdir()) if d.is_dir()}
    people = {k: v for k, v in people.items() if len(v) >= 2}
    rng = np.random.default_rng(seed)
    pool = [p for photos in people.values() for p in photos]
    chosen = [pool[i] for i in rng.choice(len(pool), size=min(sample, len(pool)), replace=False)]
    faces = detect_faces(chosen, progress=True)
    yaw = np.full(len(chosen), np.nan)
    for i, (path, f) in enumerate(zip(chosen, faces)):
        if len(f.boxes):
            with Image.open(path) as im:
                yaw[i] = yaw_proxy(f.points[select_face(f, im.width, im.height, "center")])
    missed = [p for p, y in zip(chosen, yaw) if np.isnan(y)]
    order = np.argsort(-np.nan_to_num(yaw, nan=-1.0))
    turned = [chosen[i] for i in order[:top] if np.isfinite(yaw[i])]
    return turned + missed, people, chosen, yaw, len(missed)


def pair_rows(hard, people, chosen, seed: int):
    rng = np.random.default_rng(seed + 1)
    sampled_people = sorted({p.parent.name for p in chosen})
    rows = []
    for h in hard:
        person = h.parent.name
        others = [p for p in people[person] if p != h]
        rows.append((h, others[rng.integers(len(others))], 1))
        other = sampled_people[rng.integers(len(sampled_people))]
        while other == person:
            other = sampled_people[rng.integers(len(sampled_people))]
        rows.append((h, people[other][rng.integers(len(people[other]))], 0))
    return rows


def measure_lfw(lfw: Path, sample: int, top: int, seed: int, n_boot: int) -> dict:
    from facekit.verify import verify_pairs

    t0 = time.perf_counter()
    hard, people, chosen, yaw, n_missed = hard_lfw_photos(lfw, sample, top, seed)
    finite = yaw[np.isfinite(yaw)]
    rows = pair_rows(hard, people, chosen, seed)
    tmp = Path(tempfile.mkdtemp()) / "hard_pairs.csv"
    tmp.write_text("path1,path2,same\n" + "".join(f"{a.relative_to(lfw)},{b.relative_to(lfw)},{s}\n"
                                                  for a, b, s in rows))
    out = {"sampled_photos": len(chosen), "mtcnn_missed": n_missed, "hard_photos": len(hard),
           "pairs": len(rows), "yaw_proxy_threshold": float(np.sort(finite)[::-1][min(top, len(finite)) - 1]),
           "yaw_proxy_median_all": float(np.median(finite)), "chains": {}}
    runs = [("dlib", {"detectors": c}) for c in CHAINS] + [("facenet", {})]
    for model, options in runs:
        t = time.perf_counter()
        r = verify_pairs(tmp, model, images=lfw, n_boot=n_boot, **options)
        name = f"{model}:{'+'.join(options.get('detectors', ('mtcnn',)))}"
        table = r.stage_table()
        out["chains"][name] = {
            "accuracy": r.kfold.mean, "accuracy_interval": [r.intervals["accuracy"].low, r.intervals["accuracy"].high],
            "auc": r.report.auc, "no_face_rate": float(np.mean(r.image_stages == "center")),
            "stages": table.to_dict(orient="records"), "seconds": time.perf_counter() - t}
        print(f"\n{name}: accuracy {r.intervals['accuracy']}, AUC {r.report.auc:.3f}, no face "
              f"{out['chains'][name]['no_face_rate']:.1%} of {len(r.images)} photos")
        print(table.to_string(index=False))
    out["seconds"] = time.perf_counter() - t0
    return out


def detect_rate(images, finders) -> dict:
    return {name: float(np.mean([f(img).found for img in images])) for name, f in finders.items()}


def measure_group_photos(root: Path) -> dict:
    import xml.etree.ElementTree as ET

    from PIL import Image

    from facekit.pretrained.finding import FaceFinder

    crops = []
    for xml in ("training.xml", "testing.xml"):
        if not (root / xml).is_file():
            continue
        for image in ET.parse(root / xml).getroot().iter("image"):
            with Image.open(root / image.get("file")) as im:
                rgb = im.convert("RGB")
                for box in image.iter("box"):
                    top, left = int(box.get("top")), int(box.get("left"))
                    w, h = int(box.get("width")), int(box.get("height"))
                    m = max(w, h)  # a margin of one face width on every side
                    crop = rgb.crop((left - m, top - m, left + w + m, top + h + m))
                    crops.append(np.asarray(crop))
    finders = {d: FaceFinder((d,), fallback="none", max_side=None) for d in DETECTORS}
    return {"faces": len(crops), "found_share": detect_rate(crops, finders)}


def measure_synthetic(yaws=(0, 20, 40, 60, 80), per_angle: int = 20, seed: int = 0) -> dict:
    from facekit.data.synthetic import Nuisance, render_face, sample_identity
    from facekit.pretrained.finding import FaceFinder

    finders = {d: FaceFinder((d,), fallback="none", max_side=None) for d in DETECTORS}
    out = {}
    for yaw in yaws:
        faces = [(render_face(sample_identity(seed, i), Nuisance(yaw=float(yaw), seed=i), 160)[0] * 255
                  ).astype(np.uint8) for i in range(per_angle)]
        out[str(yaw)] = detect_rate(faces, finders)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "datasets")
    parser.add_argument("--sample", type=int, default=1500, help="LFW photos sampled to find the turned heads")
    parser.add_argument("--top", type=int, default=150, help="photos with the strongest yaw proxy kept")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-boot", type=int, default=500)
    parser.add_argument("--skip", nargs="*", default=(), choices=("lfw", "groups", "synthetic"))
    parser.add_argument("--out", type=Path, help="write the numbers as JSON here (atomically)")
    args = parser.parse_args(argv)
    from facekit.io import write_json

    result = {"command": " ".join(sys.argv), "sample": args.sample, "top": args.top, "seed": args.seed}
    if "groups" not in args.skip and (args.data / "dlib_faces").is_dir():
        result["group_photos"] = measure_group_photos(args.data / "dlib_faces")
        print("dlib group photos, share of labelled faces found:", result["group_photos"])
    if "synthetic" not in args.skip:
        result["synthetic"] = measure_synthetic()
        print("synthetic faces by yaw, share found:", result["synthetic"])
    if "lfw" not in args.skip and (args.data / "lfw").is_dir():
        result["lfw"] = measure_lfw(args.data / "lfw", args.sample, args.top, args.seed, args.n_boot)
    if args.out:
        write_json(args.out, result)
        print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
