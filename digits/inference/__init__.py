"""What the service runs, and the bottom layer of :mod:`digits`: the network (``network``), loading
weights and model cards (``predictor``, ``cards``), strokes to the model's 28x28 input (``render``,
``normalize``), uploads decoded under bounded work and turned into ink (``upload_guard``, ``decode``,
``images``) and the refusal of what is not a digit (``refusal``). It imports no other layer."""
