"""Training and fine-tuning, the top layer of :mod:`digits` (it may import evaluation, data and
inference): the recipe and its options (``recipe``), augmentation (``augment``), the loop
(``loop``), distillation (``distill``), temperature scaling (``calibration``), model cards
(``card``), collected drawings and their hold-out (``collected``), and the two programs over them
(``train``, ``finetune``)."""
