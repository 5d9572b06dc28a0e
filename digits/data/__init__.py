"""The data sets, above :mod:`digits.inference` (whose rendering they use) and below evaluation and
training: MNIST and the UJI pen digits (``mnist``, ``uji``), digits traced into strokes (``strokes``)
and redrawn like canvas drawings (``canvas_style``) or in writing styles MNIST lacks
(``stroke_styles``, ``stroke_geometry``, ``style_pool``), uploads made from digits (``uploadset``,
``upload_renditions``, ``hostile_corpus``), the validation split and the shared seeds (``splits``)
and the process pool that builds them (``parallel``)."""
