"""Pure ML core of the digit recogniser: no Django, Channels or Celery, and none of the service's
packages (recognizer, review, worker, contract, edge, digitsite), anywhere in this package.

Four layers, highest first; a layer imports only the layers below it (``make lint`` checks this
with import-linter, settings in pyproject.toml):

- ``digits.training``: trains and fine-tunes networks and writes their weights and model cards
  (imports evaluation, data, inference);
- ``digits.evaluation``: the figures of a trained model on the test, canvas-style, upload and pen
  sets, and the metrics themselves (imports data, inference);
- ``digits.data``: the data sets: MNIST, UJI pen digits, canvas-style and styled copies, upload
  renditions, the validation split and the seeds of the shared sets (imports inference);
- ``digits.inference``: what the service runs: the network, loading weights, rendering strokes and
  uploads into the model's 28x28 input, refusal (imports nothing above it).

Outside the layers: ``digits.paths`` (where the checkout, its models and the data live; imported by
every layer) and the command lines ``python -m digits.train`` and ``python -m digits.finetune`` (the
commands the model cards and the Makefile record).
"""
