"""Response time of every control of every exploration: the median (and 90th percentile) of 20 redraws.

A redraw is what a moved slider costs in JupyterLab: the pure drawing function on the precomputed state and
the PNG the widget receives. Both the wall time and the CPU time of this process are reported: on a busy machine
the wall time includes waiting for a core, the CPU time does not. The models are the chapters' architectures at their cpu-profile sizes with their
initial weights (the time does not depend on training), except the detector, whose face prior is raised so that
hundreds of anchors pass the lowest score threshold (the worst case for NMS and matching).

    OMP_NUM_THREADS=2 .venv/bin/python scripts/explore_timing.py [--threads 2] [--repeats 20] [--out timings.csv]
"""

from __future__ import annotations

import argparse
import os
import time

import matplotlib

matplotlib.use("Agg")

import numpy as np
import torch


def build(name: str):
    from facekit import explore as ex

    g = torch.Generator().manual_seed(0)
    if name == "ch0 generator":
        return ex.explore_generator()
    if name == "ch1 convolution":
        from facekit.models import ArticleCNN

        face = ex.identity_grid(0, 1, 64)[0]
        return ex.explore_conv(ArticleCNN(40, image_size=64), face)
    if name == "ch2 attention":
        from facekit.models import VisionTransformer

        face = ex.identity_grid(0, 1, 64)[0]
        return ex.explore_attention(VisionTransformer(40, image_size=64, patch_size=8, dim=192, depth=6, num_heads=3),
                                    face)
    if name == "ch3 detection":
        from facekit.data import DlibFaceBoxes, available_datasets
        from facekit.detection import FaceDetector

        det = FaceDetector().eval()
        for head in det.heads:
            head.bias.data.view(det.config.anchors.anchors_per_cell, -1)[:, 0] = -0.4
        if available_datasets().get("dlib"):
            image, target = DlibFaceBoxes(split="testing")[0]
            return ex.explore_detection(det, image, target["boxes"], target["ignore"])
        return ex.explore_detection(det, torch.rand(3, 332, 500, generator=g), torch.tensor([[50.0, 50, 120, 130]]))
    if name == "ch4 threshold":
        scores = torch.cat([torch.randn(3000, generator=g) * 0.15 + 0.6, torch.randn(3000, generator=g) * 0.15 + 0.1])
        return ex.explore_threshold(scores.numpy(), np.r_[np.ones(3000, bool), np.zeros(3000, bool)])
    if name == "ch4 margins":
        labels = torch.arange(160) % 8
        directions = torch.stack([torch.cos(torch.arange(8) * 0.785), torch.sin(torch.arange(8) * 0.785)], 1)
        return ex.explore_margins(directions, directions[labels] + 0.3 * torch.randn(160, 2, generator=g), labels)
    if name == "ch8 quantisation":
        people = torch.randn(600, 128, generator=g)
        emb = torch.cat([people, people + 0.7 * torch.randn(600, 128, generator=g)])
        a = np.r_[np.arange(600), np.arange(600)]
        b = np.r_[np.arange(600) + 600, (np.arange(600) + 1) % 600 + 600]
        return ex.explore_bits(emb, a, b, np.r_[np.ones(600, bool), np.zeros(600, bool)], folds=10)
    if name == "ch9 privacy":
        measured = [(float("inf"), 0.9), (20.0, 0.7), (5.0, 0.5), (1.5, 0.3)]
        return ex.explore_privacy(600, 64, 1e-5, measured=measured, grad_norms=torch.rand(64, generator=g) * 3)
    raise KeyError(name)


NAMES = ("ch0 generator", "ch1 convolution", "ch2 attention", "ch3 detection", "ch4 threshold", "ch4 margins",
         "ch8 quantisation", "ch9 privacy")


def main() -> None:
    from facekit.explore import update_times

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", default="", help="also write the table as CSV here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, torch threads {torch.get_num_threads()}")
    for name in NAMES:
        t0 = time.perf_counter()
        exploration = build(name)
        prep = time.perf_counter() - t0
        for control in exploration.controls:
            t = np.array(update_times(exploration, control, args.repeats)) * 1000  # (n, 2): wall, CPU
            wall, cpu = t[:, 0], t[:, 1]
            rows.append((name, control, float(np.median(wall)), float(np.percentile(wall, 90)), float(np.median(cpu)),
                         float(np.percentile(cpu, 90)), prep))
            print(f"{name:18s} {control:16s} wall median {rows[-1][2]:5.0f} ms p90 {rows[-1][3]:5.0f} | CPU median "
                  f"{rows[-1][4]:5.0f} ms p90 {rows[-1][5]:5.0f} (built in {prep:.1f} s)", flush=True)
    if args.out:
        import csv

        with open(args.out, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["exploration", "control", "wall_median_ms", "wall_p90_ms", "cpu_median_ms", "cpu_p90_ms",
                        "build_s"])
            w.writerows(rows)


if __name__ == "__main__":
    main()
