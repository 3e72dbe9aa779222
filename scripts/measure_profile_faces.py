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
4. **LFW photos turned by a planar homography** (``--turn``): a random LFW photo seen as a flat picture
   rotated about its vertical axis by a fixed angle (perspective from a camera two image widths away), paired
   with an untouched photo of the same person (genuine) and of another person (impostor): frontal-to-turned
   pairs, with the no-face rate and accuracy per chain. A flat picture turned is not a head turned (no
   self-occlusion, the nose does not stand out), so this is a lower bound on how hard real profiles are.

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


def turn_homography(width: int, height: int, angle_deg: float, distance: float) -> tuple:
    """PIL PERSPECTIVE coefficients (output pixel -> input pixel) of a flat image turned about its vertical axis.

    A point at ``u`` pixels right of the centre on a plane ``distance`` pixels from the camera, turned by
    ``theta``, is seen at ``u' = d u cos(theta) / (d + u sin(theta))``; inverted, with ``D = 1 - u' tan(theta) / d``:
    ``u = u' / cos(theta) / D`` and ``v = v' / D``.
    """
    theta = np.radians(angle_deg)
    cx, cy, g0 = width / 2, height / 2, -np.tan(theta) / distance
    k = 1 - g0 * cx
    a, c = (cx * g0 + 1 / np.cos(theta)) / k, (cx * k - cx / np.cos(theta)) / k
    d, e, f = cy * g0 / k, 1 / k, (cy * k - cy) / k
    return (a, 0.0, c, d, e, f, g0 / k, 0.0)


def measure_turned(lfw: Path, angles, count: int, seed: int, n_boot: int, chains) -> dict:
    from PIL import Image

    from facekit.verify import verify_pairs

    people = {d.name: sorted(d.glob("*.jpg")) for d in sorted(lfw.iterdir()) if d.is_dir()}
    people = {k: v for k, v in people.items() if len(v) >= 2}
    names = sorted(people)
    rng = np.random.default_rng(seed + 7)
    chosen = [names[i] for i in rng.choice(len(names), size=count, replace=False)]
    work = Path(tempfile.mkdtemp(prefix="turned-"))
    out = {}
    for angle in angles:
        rows = []
        for person in chosen:
            photo, partner = people[person][0], people[person][1]
            with Image.open(photo) as im:
                im = im.convert("RGB")
                turned = im.transform(im.size, Image.PERSPECTIVE, turn_homography(*im.size, angle, 2.0 * im.width),
                                      Image.BICUBIC)
            dest = work / f"turn{angle}" / person / photo.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            turned.save(dest, quality=95)
            other = names[(names.index(person) + 1 + rng.integers(len(names) - 1)) % len(names)]
            rows += [(dest, partner, 1), (dest, people[other][0], 0)]
        pair_file = work / f"turn{angle}.csv"
        pair_file.write_text("path1,path2,same\n" + "".join(f"{a},{b},{s}\n" for a, b, s in rows))
        out[str(angle)] = {}
        for model, options in [("dlib", {"detectors": c}) for c in chains] + [("facenet", {})]:
            r = verify_pairs(pair_file, model, n_boot=n_boot, **options)
            name = f"{model}:{'+'.join(options.get('detectors', ('mtcnn',)))}"
            turned_stage = r.image_stages[[str(p).startswith(str(work)) for p in r.images]]
            out[str(angle)][name] = {
                "accuracy": r.kfold.mean, "accuracy_interval": [r.intervals["accuracy"].low,
                                                                r.intervals["accuracy"].high],
                "auc": r.report.auc, "turned_no_face_rate": float(np.mean(turned_stage == "center")),
                "turned_stages": {s: int((turned_stage == s).sum()) for s in np.unique(turned_stage)},
                "stages": r.stage_table().to_dict(orient="records")}
            print(f"turned {angle} deg, {name}: accuracy {r.intervals['accuracy']}, AUC {r.report.auc:.3f}, no face on "
                  f"{out[str(angle)][name]['turned_no_face_rate']:.1%} of the turned photos, stages "
                  f"{out[str(angle)][name]['turned_stages']}")
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
    parser.add_argument("--turn", type=int, nargs="*", default=(45, 65), help="angles of the turned LFW photos")
    parser.add_argument("--turn-count", type=int, default=80, help="people (turned photos) per angle")
    parser.add_argument("--skip", nargs="*", default=(), choices=("lfw", "groups", "synthetic", "turned"))
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
    if "turned" not in args.skip and args.turn and (args.data / "lfw").is_dir():
        result["turned"] = measure_turned(args.data / "lfw", args.turn, args.turn_count, args.seed, args.n_boot,
                                          CHAINS[:3])
    if args.out:
        write_json(args.out, result)
        print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
