"""A blind reading by a person: which of the models' canvas-style errors could a person read?

    python -m digits.evaluation.blind_reading sheet [--models cnn-v4,cnn-v5] [--out docs/eval/blind-canvas-val]
    (read the numbered sheet and write one answer per image, in sheet order, into
     <out>/readings.txt: a digit, or ? where you cannot tell)
    python -m digits.evaluation.blind_reading score [--out docs/eval/blind-canvas-val]

The sheet shuffles the canvas-style validation images that the models (probabilities summed)
misread together with randomly chosen ones they read right, numbered and without labels, so the
reader cannot tell which is which. The score says how many of the models' errors the reader read
as their label (errors a person would not make) and how often the reader was right on the images
the models got right (a check on the reader). The images the reader cannot read as their label
bound the accuracy a person-like reader reaches on the set. Validation split only: the
canvas-style test set is never looked at.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from digits.evaluation.evaluate import DEFAULT_DATA_DIR, DEFAULT_MODELS, load_sets
from digits.inference.predictor import load_predictor
from digits.paths import REPO_ROOT

DEFAULT_OUT = REPO_ROOT / "docs" / "eval" / "blind-canvas-val"
UNSURE = "?"


def sheet_items(errors: np.ndarray, correct: np.ndarray, n_correct: int, seed: int) -> np.ndarray:
    """All of ``errors`` and ``n_correct`` of ``correct`` (indices), shuffled by ``seed``."""
    rng = np.random.default_rng(seed)
    filler = rng.choice(correct, size=min(n_correct, len(correct)), replace=False)
    return rng.permutation(np.concatenate([errors, filler]).astype(np.int64))


def contact_sheet(images: np.ndarray, path: Path, columns: int = 10, scale: int = 5) -> None:
    """Save uint8 (N, 28, 28) images (255 = ink) as a numbered grid, dark ink on white."""
    cell_w, cell_h = 28 * scale + 6, 28 * scale + 16
    rows = (len(images) + columns - 1) // columns
    sheet = Image.new("L", (columns * cell_w, rows * cell_h), 160)
    draw = ImageDraw.Draw(sheet)
    for k, image in enumerate(images):
        x, y = (k % columns) * cell_w, (k // columns) * cell_h
        tile = Image.fromarray(255 - np.asarray(image, dtype=np.uint8)).resize(
            (28 * scale, 28 * scale), Image.Resampling.BILINEAR
        )
        sheet.paste(tile, (x, y + 14))
        draw.text((x + 2, y + 1), str(k), fill=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def parse_readings(text: str, count: int) -> list[str]:
    """One answer per image: a digit or ``?``, separated by white space; ``#`` starts a comment."""
    tokens = [t for line in text.splitlines() for t in line.split("#", 1)[0].split()]
    bad = [t for t in tokens if t != UNSURE and not (len(t) == 1 and t.isdigit())]
    if bad:
        raise ValueError(f"answers must be a digit or {UNSURE!r}, got {bad[:5]}")
    if len(tokens) != count:
        raise ValueError(f"expected {count} answers, got {len(tokens)}")
    return tokens


def score(readings: list[str], labels: np.ndarray, is_error: np.ndarray) -> dict:
    """How the reader did on the models' errors and on the images the models read right."""
    right = np.array([r == str(int(label)) for r, label in zip(readings, labels)])
    is_error = np.asarray(is_error, dtype=bool)
    return {
        "model_errors": int(is_error.sum()),
        "model_errors_read_right": int(right[is_error].sum()),
        "model_right": int((~is_error).sum()),
        "model_right_read_right": int(right[~is_error].sum()),
        "unsure": int(sum(r == UNSURE for r in readings)),
    }


def make_sheet(
    models: list[str],
    out: Path,
    *,
    models_dir: Path = DEFAULT_MODELS,
    data_dir: Path = DEFAULT_DATA_DIR,
    n_correct: int = 39,
    seed: int = 0,
) -> dict:
    """Write ``sheet.png`` and ``items.json`` (indices, labels, which are errors) to ``out``."""
    predictors = [load_predictor(models_dir, name) for name in models]
    splits = {json.dumps(p.card["data"].get("validation_split")) for p in predictors}
    if len(splits) != 1:
        raise ValueError(f"the models were selected on different validation splits: {sorted(splits)}")
    images, labels = load_sets(data_dir, predictors[0].card, progress=False)["canvas_val"]
    probs = np.sum([p.predict(images.astype(np.float32) / 255.0) for p in predictors], axis=0)
    wrong = probs.argmax(axis=1) != labels
    items = sheet_items(np.flatnonzero(wrong), np.flatnonzero(~wrong), n_correct, seed)
    contact_sheet(images[items], out / "sheet.png")
    meta = {
        "set": "canvas-style validation (digits.evaluation.evaluate.load_sets)",
        "models": models,
        "set_size": len(labels),
        "items": items.tolist(),
        "labels": labels[items].tolist(),
        "model_error": wrong[items].tolist(),
    }
    (out / "items.json").write_text(json.dumps(meta) + "\n")
    return meta


def score_dir(out: Path) -> dict:
    """Score ``out/readings.txt`` against ``out/items.json``; writes and returns ``out/result.json``."""
    meta = json.loads((out / "items.json").read_text())
    readings = parse_readings((out / "readings.txt").read_text(), len(meta["items"]))
    result = {
        "set": meta["set"],
        "models": meta["models"],
        "set_size": meta["set_size"],
        **score(readings, np.array(meta["labels"]), np.array(meta["model_error"])),
    }
    unreadable = result["model_errors"] - result["model_errors_read_right"]
    result["person_like_ceiling"] = round(1 - unreadable / meta["set_size"], 6)
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m digits.evaluation.blind_reading", description=__doc__.split("\n")[0])
    p.add_argument("step", choices=["sheet", "score"])
    p.add_argument("--models", default="cnn-v4,cnn-v5", help="comma-separated model names")
    p.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS)
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.step == "sheet":
        meta = make_sheet(args.models.split(","), args.out, models_dir=args.models_dir, data_dir=args.data_dir)
        print(f"{args.out / 'sheet.png'}: {len(meta['items'])} images; write your answers to {args.out / 'readings.txt'}")
        return meta
    result = score_dir(args.out)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
