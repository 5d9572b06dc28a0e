"""Inference figures for the current model: single-image latency on one thread, batch throughput.

    .venv/bin/python bench/inference.py [--models models] [--name cnn-v1] [--runs 2000]

Prints figures only (no assertions). Timings include the numpy -> torch -> softmax -> numpy path of
``Predictor.predict``; run it on a quiet machine, since other processes inflate the tail.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from digits.inference.predictor import load_predictor  # noqa: E402


def time_calls(fn, runs: int) -> list[float]:
    """Wall seconds of ``runs`` calls of ``fn``."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", type=Path, default=REPO / "models")
    p.add_argument("--name", default=None, help="model name (default: current.json)")
    p.add_argument("--runs", type=int, default=2000)
    args = p.parse_args()

    t0 = time.perf_counter()
    predictor = load_predictor(args.models, args.name)
    print(
        f"model {predictor.name}: loaded in {(time.perf_counter() - t0) * 1e3:.0f} ms "
        f"({predictor.card['weights']['bytes']} bytes, torch {torch.__version__})"
    )

    rng = np.random.default_rng(0)
    one = rng.random((1, 28, 28), dtype=np.float32)
    torch.set_num_threads(1)
    time_calls(lambda: predictor.predict(one), 200)  # warm-up
    ms = np.array(time_calls(lambda: predictor.predict(one), args.runs)) * 1e3
    print(
        f"single image, 1 thread: median {statistics.median(ms):.3f} ms  p95 {np.percentile(ms, 95):.3f} ms  "
        f"min {ms.min():.3f} ms  ({args.runs} runs)"
    )

    for threads in sorted({1, os.cpu_count() or 1}):
        torch.set_num_threads(threads)
        for batch in (64, 1000):
            images = rng.random((batch, 28, 28), dtype=np.float32)
            predictor.predict(images)
            secs = time_calls(lambda images=images: predictor.predict(images), 10)
            print(f"batch {batch:4d}, {threads} thread(s): {batch / statistics.median(secs):,.0f} images/s")


if __name__ == "__main__":
    main()
