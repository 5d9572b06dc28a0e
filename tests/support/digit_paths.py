"""The tests' own hand-made digit paths: scripts/digit_paths.py, shared with the screenshot scripts."""

from scripts.digit_paths import Point, digit_strokes

__all__ = ["Point", "digit_strokes"]
