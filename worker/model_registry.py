"""The model each worker process serves, and its switch to a newly chosen one without a restart.

Which model to serve (the wanted model, recognizer.model_choice) is the admin's choice in the
database, else `models/current.json`. A worker loads it as it starts; then a `ModelWatcher` thread reads the choice
every WATCH_S, loads a newly chosen model in the background and swaps the predictor reference.
A batch takes the predictor once (`get_predictor()`), so it runs wholly on one model and names
that model in its answers; the live path never reads the database nor waits for a load.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from django.conf import settings
from django.db import Error as DatabaseError  # InterfaceError (a closed connection) included
from django.db import connection

from digitsite.periodic import Periodic
from recognizer.model_choice import wanted_model_name

if TYPE_CHECKING:
    from digits.inference.predictor import Predictor

log = logging.getLogger(__name__)

WATCH_S = 1.0  # how often a worker reads the choice: a switch takes about this plus one load (~0.1-0.3 s)
RETRY_FAILED_S = 30.0  # a model that failed to load is tried again after this, not every second

_lock = threading.Lock()
_loaded: tuple[int, Predictor] | None = None  # (pid, predictor): a forked child loads its own


def _load(name: str | None) -> Predictor:
    import torch

    from digits.inference.predictor import load_predictor

    torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "1")))
    return load_predictor(Path(settings.MODELS_DIR), name or wanted_model_name())


def get_predictor() -> Predictor:
    """This process's predictor, loaded on first use. Take it once per batch."""
    global _loaded
    loaded = _loaded  # one read: the watcher may swap it meanwhile
    if loaded is not None and loaded[0] == os.getpid():
        return loaded[1]
    with _lock:
        if _loaded is None or _loaded[0] != os.getpid():
            _loaded = (os.getpid(), _load(None))
        return _loaded[1]


def warm_up(predictor: Predictor, sizes: tuple[int, ...] = (1, 4, 16)) -> None:
    """A forward pass at a few batch sizes, so that the first jobs do not pay for PyTorch's first calls
    (~7 ms at each new batch size here, against ~0.5 ms warm)."""
    for n in sizes:
        predictor.predict(np.zeros((n, 28, 28), np.float32))


def served_model_name() -> str | None:
    """The model this process serves now (None before it has loaded one); no I/O."""
    loaded = _loaded
    return loaded[1].name if loaded is not None and loaded[0] == os.getpid() else None


def swap_predictor(predictor: Predictor) -> None:
    """Serve `predictor` from the next batch on (a batch in flight keeps the one it took)."""
    global _loaded
    with _lock:
        _loaded = (os.getpid(), predictor)


class ModelWatcher:
    """The thread that keeps this process on the chosen model.

    Each tick reads the choice (one indexed query); when it names another model than the one
    served, the new model is loaded here, off the live path, and swapped in. A model that fails
    to load (missing, corrupt) leaves the old one serving. Nothing happens before the process has
    loaded a model (a preprocess worker loads one on its first heat map or stored drawing)."""

    def __init__(
        self,
        wanted: Callable[[], str] = wanted_model_name,
        load: Callable[[str], Predictor] = _load,
        interval_s: float = WATCH_S,
    ) -> None:
        self._wanted, self._load = wanted, load
        self._failed: tuple[str, float] | None = None  # (name, when) of the last load that failed
        self._thread = Periodic("model-watcher", interval_s, self._tick, on_exit=self._close_connection)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._thread.stop()

    def check(self) -> bool:
        """One tick: switch if the choice changed. True if it switched."""
        served = served_model_name()
        if served is None:
            return False
        try:
            wanted = self._wanted()
        except DatabaseError as exc:  # a dropped connection: a new one next tick
            log.warning("model watcher: the choice could not be read: %s", exc)
            connection.close()
            return False
        if wanted == served:
            self._failed = None
            return False
        if self._failed and self._failed[0] == wanted and time.monotonic() - self._failed[1] < RETRY_FAILED_S:
            return False
        started = time.perf_counter()
        try:
            predictor = self._load(wanted)
        except Exception:
            log.exception("model watcher: %s could not be loaded; still serving %s", wanted, served)
            self._failed = (wanted, time.monotonic())
            return False
        swap_predictor(predictor)
        self._failed = None
        # warning: the workers log at that level, and a switch is worth seeing there
        log.warning("switched from %s to %s (loaded in %.0f ms)", served, wanted, 1000 * (time.perf_counter() - started))
        return True

    @staticmethod
    def _close_connection() -> None:
        connection.close()  # the watcher thread's own (the proxy resolves to the calling thread's)

    def _tick(self) -> None:
        try:
            self.check()
        except Exception:  # the watcher never dies: a switch must stay possible
            log.exception("model watcher failed; trying again")
