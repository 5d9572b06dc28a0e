"""The figures of a trained model, above :mod:`digits.data` and :mod:`digits.inference` and below
training: the metrics of a set of predictions (``metrics``: accuracy, confusion, calibration error;
numpy and PIL only), the evaluation report of a model on every set (``evaluate``) and the scoring
of blind readings of contact sheets (``blind_reading``)."""
