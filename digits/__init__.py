"""Pure ML core of the digit recogniser: no Django imports anywhere in this package.

Modules: ``mnist`` (IDX loading), ``render`` (strokes -> ink), ``normalize`` (MNIST-style 28x28),
``images`` (uploaded photos -> ink), ``strokes`` (MNIST digits -> polylines), ``network`` (the CNN),
``predictor`` (loading weights, batched inference), ``train`` (the training command).
"""
