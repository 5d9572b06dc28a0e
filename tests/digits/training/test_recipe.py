"""digits.training.recipe: one Recipe and one table of options; the fine-tune's derive from them."""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

from digits.training.recipe import OPTIONS, FinetuneConfig, Recipe, add_finetune_arguments, config_from, parse_args


def test_every_field_of_the_recipe_has_one_option_and_no_options_its_defaults() -> None:
    assert set(OPTIONS) == {f.name for f in fields(Recipe)}
    assert parse_args([]) == Recipe()
    recipe = parse_args(["--channels", "4,8,8,8", "--styles", "0.3", "--no-progress", "--swa"])
    assert recipe.channels == (4, 8, 8, 8) and recipe.styles == 0.3 and not recipe.progress and recipe.swa


def test_the_fine_tune_is_the_recipe_with_its_own_defaults() -> None:
    cfg = FinetuneConfig()
    assert isinstance(cfg, Recipe)
    assert (cfg.epochs, cfg.lr, cfg.canvas_fraction, cfg.outliers) == (3, 1e-3, 0.7, 0.1)
    assert (Recipe().epochs, Recipe().lr) == (20, 4e-3)


def test_the_fine_tune_options_fill_a_fine_tune_config() -> None:
    p = argparse.ArgumentParser()
    add_finetune_arguments(p, models_dir=Path("m"), styles=True)
    options = vars(p.parse_args(["--epochs", "5", "--styles", "0.4", "--teacher", "t", "--progress"]))
    assert set(options) <= {f.name for f in fields(FinetuneConfig)}  # manage.py retrain filters by them
    cfg = config_from(options, "c")
    assert (cfg.epochs, cfg.styles, cfg.teacher, cfg.progress, cfg.models_dir) == (5, 0.4, "t", True, Path("m"))
    assert cfg.name == "" and cfg.version == "" and cfg.command == "c"  # the defaults: <base>-ft<n>, <version>+<name>


def test_the_command_lines_the_cards_record_still_run() -> None:
    for module in ("digits.train", "digits.finetune"):
        run = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, check=True)
        assert run.stdout.startswith(f"usage: python -m {module}")
