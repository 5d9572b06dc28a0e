"""Evaluate a trained model: accuracy on the MNIST test set and on the canvas-style test set,
per-class accuracy, confusion matrices (printed and saved as PNG), expected calibration error,
single-image inference speed, uploads (the upload test set of :mod:`digits.data.uploadset`: accuracy and
refusals per variant) and real pen digits ("UJI dev writers", :mod:`digits.data.uji`: accuracy per class
and ECE).

    python manage.py evaluate [--model NAME] [--data-dir ../shared/data/mnist] [--out docs/eval]
                              [--uji-dir ../shared/data/uji-pen] [--upload-count 300]
    python -m digits.evaluation.evaluate ...            (the same, without Django)

The canvas-style sets are built deterministically (:func:`digits.data.canvas_style.build_dataset`, grid
mode: several brush widths, sizes and canvas positions) from the MNIST test set and, for model
selection, from the validation split of the training part. Selection uses only the validation
figures ("selection" in the output); the test figures are for reporting.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from digits.data import uji, uploadset
from digits.data.canvas_style import CACHE_DIR, FORMAT_VERSION, build_dataset
from digits.data.mnist import load_split
from digits.data.splits import TEST_SEED, VAL_SEED, stratified_split
from digits.evaluation.metrics import confusion_png, format_confusion, summarize
from digits.inference.images import BadImage, decode_upload, image_to_mnist
from digits.inference.predictor import Predictor, load_predictor
from digits.inference.refusal import assess
from digits.paths import EVAL_DIR, MNIST_DIR, MODELS_DIR

DEFAULT_DATA_DIR = MNIST_DIR
DEFAULT_MODELS = MODELS_DIR
DEFAULT_OUT = EVAL_DIR
DEFAULT_UJI_DIR = uji.DEFAULT_DIR


# --------------------------------------------------------------------------- speed


def inference_speed(predictor: Predictor, image: np.ndarray, runs: int = 500, warmup: int = 50) -> dict:
    """Single-image latency of ``predictor.predict`` on 1 CPU thread (median and p90, ms)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        batch = np.asarray(image, dtype=np.float32)[None]
        for _ in range(warmup):
            predictor.predict(batch)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            predictor.predict(batch)
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        torch.set_num_threads(threads)
    times.sort()
    return {
        "threads": 1,
        "runs": runs,
        "median_ms": round(statistics.median(times), 4),
        "p90_ms": round(times[int(0.9 * (len(times) - 1))], 4),
    }


# --------------------------------------------------------------------------- data


def validation_split(card: dict, labels: np.ndarray) -> np.ndarray:
    """Indices of the validation split the model was selected on (from its card)."""
    seed = int(card.get("training", {}).get("seed", 1))
    frac = float(card.get("training", {}).get("val_fraction", 0.1))
    return stratified_split(labels, frac, seed)[1]


def load_sets(
    data_dir: Path, card: dict, progress: bool = True, cache_dir: Path | None = CACHE_DIR
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The evaluation sets as (uint8 images, labels): val, canvas_val, test, canvas_test."""
    tr_img, tr_lab = load_split(data_dir, "train")
    te_img, te_lab = load_split(data_dir, "test")
    val = validation_split(card, tr_lab)
    v_img, v_lab = tr_img[val], tr_lab[val]
    return {
        "val": (v_img, v_lab),
        "canvas_val": (
            build_dataset(v_img, VAL_SEED, mode="grid", cache_dir=cache_dir, progress=progress, desc="canvas-style val"),
            v_lab,
        ),
        "test": (te_img, te_lab),
        "canvas_test": (
            build_dataset(te_img, TEST_SEED, mode="grid", cache_dir=cache_dir, progress=progress, desc="canvas-style test"),
            te_lab,
        ),
    }


def predict_all(predictor: Predictor, images: np.ndarray) -> np.ndarray:
    return predictor.predict(images.astype(np.float32) / 255.0)


# --------------------------------------------------------------------------- uploads and pen digits


def upload_input(data: bytes) -> np.ndarray:
    """The model's input for an uploaded file, as the service makes it (worker.pipeline.prepare_upload:
    decode, find the digit, 28x28, stored as bytes); raises BadImage when the service refuses it."""
    return np.rint(image_to_mnist(decode_upload(data)) * 255.0).astype(np.float32) / 255.0


def upload_report(predictor: Predictor, uploads: Iterable[uploadset.Upload]) -> dict[str, dict]:
    """Per variant: count, accuracy (a refused upload counts as not read), refused (the service's
    400: no digit found, unreadable...), uncertain (read but flagged as such) and the refusal codes."""
    by_variant: dict[str, list[uploadset.Upload]] = {}
    for u in uploads:
        by_variant.setdefault(u.variant, []).append(u)
    report = {}
    for name, items in by_variant.items():
        images, labels = [], []
        codes: dict[str, int] = {}
        for u in items:
            try:
                images.append(upload_input(u.data))
                labels.append(u.label)
            except BadImage as exc:
                codes[exc.code] = codes.get(exc.code, 0) + 1
        right = uncertain = 0
        if images:
            batch = np.stack(images)
            probs = predictor.predict(batch)
            right = int((probs.argmax(axis=1) == np.asarray(labels)).sum())
            uncertain = sum(assess(image, p)[0] for image, p in zip(batch, probs))
        report[name] = {
            "count": len(items),
            "accuracy": round(right / len(items), 6),
            "refused": len(items) - len(images),
            "uncertain": int(uncertain),
            "refusal_codes": codes,
        }
    return report


def upload_digits(data_dir: Path, card: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The validation split the model was selected on (never trained on; never the MNIST test set):
    (images, labels, indices in the training part)."""
    training = card.get("training", {})
    return uploadset.validation_digits(
        data_dir, seed=int(training.get("seed", 1)), val_fraction=float(training.get("val_fraction", 0.1))
    )


def upload_set(data_dir: Path, card: dict, count: int) -> Iterator[uploadset.Upload]:
    """The upload test set built from the model's validation split (:func:`upload_digits`)."""
    return uploadset.build(*upload_digits(data_dir, card), count=count)


def direct_accuracy(predictor: Predictor, data_dir: Path, card: dict, count: int) -> float:
    """The model's accuracy on the upload set's source digits read directly (no upload path)."""
    images, labels, _ = upload_digits(data_dir, card)
    pick = uploadset.choose(count, len(images))
    return round(float((predict_all(predictor, images[pick]).argmax(axis=1) == labels[pick]).mean()), 6)


def uji_report(predictor: Predictor, digits: Sequence[uji.PenDigit], temperature: float) -> dict:
    """Accuracy, per-class accuracy, confusion and ECE on pen digits drawn on the page's canvas, plus
    how many the service would flag as uncertain."""
    images = uji.render(digits)
    probs = predictor.predict(images)
    out = summarize(probs, uji.labels(digits), temperature)
    out["uncertain"] = int(sum(assess(image, p)[0] for image, p in zip(images, probs)))
    out["writers"] = len(uji.writers(digits))
    return out


# --------------------------------------------------------------------------- command


def evaluate(
    model: str | None = None,
    *,
    models_dir: Path = DEFAULT_MODELS,
    data_dir: Path = DEFAULT_DATA_DIR,
    out: Path | None = DEFAULT_OUT,
    write_card: bool = False,
    speed_runs: int = 500,
    progress: bool = True,
    cache_dir: Path | None = CACHE_DIR,
    uji_dir: Path | None = DEFAULT_UJI_DIR,
    upload_count: int = uploadset.DEFAULT_COUNT,
    log: Callable[[str], None] = print,
) -> dict:
    """Evaluate ``model`` (default: the current one); returns the report dict (also saved as JSON).

    ``upload_count`` validation digits go into each upload variant (0: no upload figures);
    ``uji_dir=None`` leaves out the UJI pen digits.
    """
    predictor = load_predictor(Path(models_dir), model)
    card = predictor.card
    buffer = getattr(getattr(predictor, "_model", None), "temperature", None)  # saved with the weights
    temperature = float(buffer) if buffer is not None else float(card.get("calibration", {}).get("temperature", 1.0))
    sets = load_sets(Path(data_dir), card, progress, cache_dir)
    report: dict = {
        "model": predictor.name,
        "version": card.get("version"),
        "weights_bytes": card.get("weights", {}).get("bytes"),
        "temperature": temperature,
        "data_dir": str(data_dir),
        "canvas_style": {"test_seed": TEST_SEED, "val_seed": VAL_SEED, "mode": "grid", "format_version": FORMAT_VERSION},
        "evaluated": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    for name, (images, labels) in sets.items():
        probs = predict_all(predictor, images)
        report[name] = summarize(probs, labels.astype(np.int64), temperature)
    report["inference"] = inference_speed(predictor, sets["test"][0][0].astype(np.float32) / 255.0, runs=speed_runs)
    if upload_count > 0:
        report["uploads"] = upload_report(predictor, upload_set(Path(data_dir), card, upload_count))
        report["upload_set"] = {
            "seed": uploadset.SEED,
            "per_variant": upload_count,
            "source": "validation split of the training part",
            "direct_accuracy": direct_accuracy(predictor, Path(data_dir), card, upload_count),
        }
    if uji_dir is not None:
        report["uji_dev"] = uji_report(predictor, uji.load_dev(Path(uji_dir)), temperature)
        report["uji"] = {"dir": str(uji_dir), "canvas": list(uji.CANVAS), "brush": uji.BRUSH, "fill": uji.FILL}
    report["selection"] = {
        "val_accuracy": report["val"]["accuracy"],
        "canvas_val_accuracy": report["canvas_val"]["accuracy"],
    }

    log(f"model {predictor.name} (version {card.get('version')}, temperature {temperature:.4f}, {report['weights_bytes']} bytes)")
    titles = {
        "val": "validation (training part)",
        "canvas_val": "canvas-style validation",
        "test": "MNIST test",
        "canvas_test": "canvas-style test",
    }
    for name, title in titles.items():
        r = report[name]
        extra = f"  (uncalibrated {r['ece_uncalibrated']:.2%})" if "ece_uncalibrated" in r else ""
        log(f"{title:<28} accuracy {r['accuracy']:.2%}  ({r['errors']} errors / {r['count']})  ECE {r['ece']:.2%}{extra}")
    for name in ("test", "canvas_test"):
        r = report[name]
        log(f"\nper-class accuracy, {titles[name]}: " + "  ".join(f"{d}: {a:.2%}" for d, a in r["per_class_accuracy"].items()))
        log(f"confusion matrix, {titles[name]}:\n{format_confusion(r['confusion'])}")
    inf = report["inference"]
    log(f"\ninference, 1 thread, single image: median {inf['median_ms']:.3f} ms, p90 {inf['p90_ms']:.3f} ms")
    if "uploads" in report:
        log(
            f"\nuploads ({upload_count} validation digits per variant, read directly at "
            f"{report['upload_set']['direct_accuracy']:.2%}; refused = the service's 400):"
        )
        log(f"{'variant':<24} {'accuracy':>9} {'refused':>8} {'uncertain':>10}")
        for name, r in report["uploads"].items():
            log(f"{name:<24} {r['accuracy']:>9.2%} {r['refused']:>8} {r['uncertain']:>10}")
    if "uji_dev" in report:
        r = report["uji_dev"]
        extra = f"  (uncalibrated {r['ece_uncalibrated']:.2%})" if "ece_uncalibrated" in r else ""
        log(
            f"\nUJI dev writers ({r['writers']} writers, pen strokes on the 280 px canvas): accuracy "
            f"{r['accuracy']:.2%}  ({r['errors']} errors / {r['count']})  ECE {r['ece']:.2%}{extra}  "
            f"uncertain {r['uncertain']}"
        )
        log("per-class accuracy, UJI dev writers: " + "  ".join(f"{d}: {a:.2%}" for d, a in r["per_class_accuracy"].items()))
        log(f"confusion matrix, UJI dev writers:\n{format_confusion(r['confusion'])}")

    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        for name in ("test", "canvas_test"):
            png = out / f"{predictor.name}-confusion-{name.replace('_', '-')}.png"
            title = f"{predictor.name}: {titles[name]}, accuracy {report[name]['accuracy']:.2%}"
            png.write_bytes(confusion_png(report[name]["confusion"], title))
            report[name]["confusion_png"] = png.name
        (out / f"{predictor.name}.json").write_text(json.dumps(report, indent=2) + "\n")
        log(f"wrote {out / (predictor.name + '.json')} and confusion PNGs")
    if write_card:
        update_card(Path(models_dir), predictor.name, report)
        log(f"updated metrics in {Path(models_dir) / (predictor.name + '.json')}")
    return report


def update_card(models_dir: Path, name: str, report: dict) -> None:
    path = models_dir / f"{name}.json"
    card = json.loads(path.read_text())
    metrics = card.setdefault("metrics", {})
    metrics.update(
        {
            "val_accuracy": report["val"]["accuracy"],
            "canvas_val_accuracy": report["canvas_val"]["accuracy"],
            "test_accuracy": report["test"]["accuracy"],
            "canvas_test_accuracy": report["canvas_test"]["accuracy"],
            "test_per_class_accuracy": report["test"]["per_class_accuracy"],
            "canvas_test_per_class_accuracy": report["canvas_test"]["per_class_accuracy"],
            "val_ece": report["val"]["ece"],
            "test_ece": report["test"]["ece"],
            "canvas_test_ece": report["canvas_test"]["ece"],
            "inference_median_ms_1_thread": report["inference"]["median_ms"],
            "evaluated_with": "python manage.py evaluate --write-card",
        }
    )
    if "ece_uncalibrated" in report["val"]:
        metrics["val_ece_uncalibrated"] = report["val"]["ece_uncalibrated"]
    if "uploads" in report:
        metrics["uploads"] = {
            "per_variant": report["upload_set"]["per_variant"],
            "seed": report["upload_set"]["seed"],
            "direct_accuracy": report["upload_set"]["direct_accuracy"],
            "variants": {name: {"accuracy": r["accuracy"], "refused": r["refused"]} for name, r in report["uploads"].items()},
        }
    if "uji_dev" in report:
        r = report["uji_dev"]
        metrics.update(
            {
                "uji_dev_accuracy": r["accuracy"],
                "uji_dev_per_class_accuracy": r["per_class_accuracy"],
                "uji_dev_ece": r["ece"],
            }
        )
    path.write_text(json.dumps(card, indent=2) + "\n")


def build_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(prog="python -m digits.evaluation.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="model name (default: the current one)")
    p.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS)
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the JSON report and PNGs go")
    p.add_argument("--write-card", action="store_true", help="record the figures in the model card")
    p.add_argument("--speed-runs", type=int, default=500)
    p.add_argument("--cache-dir", type=Path, default=CACHE_DIR, help="canvas-style data cache")
    p.add_argument("--uji-dir", type=Path, default=DEFAULT_UJI_DIR, help="UJI pen digits (uji-digits-dev.json)")
    p.add_argument(
        "--upload-count",
        type=int,
        default=uploadset.DEFAULT_COUNT,
        help="validation digits per upload variant (0: no upload figures)",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    return evaluate(
        args.model,
        models_dir=args.models_dir,
        data_dir=args.data_dir,
        out=args.out,
        write_card=args.write_card,
        speed_runs=args.speed_runs,
        progress=args.progress,
        cache_dir=args.cache_dir,
        uji_dir=args.uji_dir,
        upload_count=args.upload_count,
    )


if __name__ == "__main__":
    main()
