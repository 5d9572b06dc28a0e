"""A worker switches models without a restart: the watcher reads the choice, loads the new model off
the live path and swaps it in between batches; answers after the switch name the new model; a
model that fails to load leaves the old one serving; the heartbeat says which model is served."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from django.db import OperationalError

from contract.heartbeats import HEARTBEAT_TTL_S, heartbeat_key, worker_report
from contract.jobs import Answer, Batch, DrawingJob, PredictionAnswer, Strokes
from recognizer import model_choice
from recognizer.models import ServingModel
from tests.conftest import TEST_REDIS_URL
from tests.support.digit_paths import digit_strokes
from worker import model_registry, tasks
from worker.heartbeat import Heartbeat, beat
from worker.model_registry import ModelWatcher, get_predictor, served_model_name, swap_predictor


@dataclass
class FakePredictor:
    name: str


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    """Each test starts with no model loaded in this process, and leaves none behind."""
    saved = model_registry._loaded
    model_registry._loaded = None
    yield
    model_registry._loaded = saved


class Loader:
    def __init__(self, fail: frozenset[str] = frozenset()) -> None:
        self.calls: list[str] = []
        self.fail = fail

    def __call__(self, name: str) -> FakePredictor:
        self.calls.append(name)
        if name in self.fail:
            raise OSError(f"{name}.pt: no such file")
        return FakePredictor(name)


def test_a_new_choice_is_loaded_and_served_from_the_next_batch_on() -> None:
    swap_predictor(FakePredictor("a"))  # type: ignore[arg-type]
    in_flight = get_predictor()  # a batch that took its model before the switch
    wanted = ["a"]
    load = Loader()
    watcher = ModelWatcher(wanted=lambda: wanted[0], load=load)
    assert watcher.check() is False and load.calls == []  # same model: nothing loaded
    wanted[0] = "b"
    assert watcher.check() is True and load.calls == ["b"]
    assert get_predictor().name == "b" and served_model_name() == "b"
    assert in_flight.name == "a"  # the batch in flight finishes on the model it took
    assert watcher.check() is False and load.calls == ["b"]


def test_nothing_is_watched_before_the_process_has_loaded_a_model() -> None:
    def never() -> str:
        raise AssertionError("the choice was read with no model loaded")

    assert ModelWatcher(wanted=never, load=Loader()).check() is False
    assert served_model_name() is None


def test_a_model_that_fails_to_load_leaves_the_old_one_serving_and_is_not_retried_every_tick() -> None:
    swap_predictor(FakePredictor("a"))  # type: ignore[arg-type]
    load = Loader(fail=frozenset({"broken"}))
    watcher = ModelWatcher(wanted=lambda: "broken", load=load)
    assert watcher.check() is False
    assert watcher.check() is False
    assert load.calls == ["broken"]  # tried once, then left alone for RETRY_FAILED_S
    assert get_predictor().name == "a"


def test_an_unreadable_choice_keeps_the_model_and_the_watcher_alive() -> None:
    swap_predictor(FakePredictor("a"))  # type: ignore[arg-type]

    def down() -> str:
        raise OperationalError("server closed the connection unexpectedly")

    assert ModelWatcher(wanted=down, load=Loader()).check() is False
    assert get_predictor().name == "a"


def test_batches_are_never_held_up_by_a_model_loading_in_the_background() -> None:
    swap_predictor(FakePredictor("a"))  # type: ignore[arg-type]
    release, loading = threading.Event(), threading.Event()

    def slow_load(name: str) -> FakePredictor:
        loading.set()
        assert release.wait(30)
        return FakePredictor(name)

    watcher = ModelWatcher(wanted=lambda: "b", load=slow_load, interval_s=0.01)
    watcher.start()
    try:
        assert loading.wait(10), "the watcher never started loading"
        served: list[str] = []
        batch = threading.Thread(target=lambda: served.extend(get_predictor().name for _ in range(100)))
        batch.start()
        batch.join(10)  # generous: a batch waiting for the load would wait for `release` (never, here)
        assert not batch.is_alive() and served == ["a"] * 100
        release.set()
        deadline = time.monotonic() + 10
        while served_model_name() != "b":
            assert time.monotonic() < deadline, "the loaded model was never swapped in"
            time.sleep(0.01)
    finally:
        release.set()
        watcher.stop()


@pytest.mark.django_db
def test_the_choice_is_the_newest_row_else_current_json(settings, tmp_path: Path) -> None:
    (tmp_path / "current.json").write_text('{"model": "from-file"}')
    settings.MODELS_DIR = tmp_path
    assert model_choice.wanted_model_name() == "from-file"
    ServingModel.objects.create(name="first")
    ServingModel.objects.create(name="second")
    assert model_choice.wanted_model_name() == "second"


def test_with_the_database_down_current_json_names_the_model(settings, tmp_path: Path, monkeypatch) -> None:
    from recognizer import selectors

    (tmp_path / "current.json").write_text('{"model": "from-file"}')
    settings.MODELS_DIR = tmp_path

    def down(**_: object) -> str:
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(selectors, "serving_model_name", down)
    assert model_choice.wanted_model_name() == "from-file"


def test_answers_after_a_switch_name_the_new_model_real_models(monkeypatch) -> None:
    """Two real model versions through the real predict task: the batch after the switch is
    answered by, and names, the new one."""
    sent: list[list[Answer]] = []
    monkeypatch.setattr(tasks, "send_answers", lambda jobs, answers, batch="": sent.append(list(answers)))
    swap_predictor(model_registry._load("cnn-v6"))
    jobs = [
        DrawingJob(
            id=f"j{d}",
            client="c",
            reply="r",
            strokes=Strokes([[list(p) for p in s] for s in digit_strokes(d)], (280.0, 280.0), 16.0),
        )
        for d in (3, 7)
    ]
    tasks.predict(Batch("b1", jobs).to_wire(time.time()))
    assert ModelWatcher(wanted=lambda: "cnn-v5").check() is True
    tasks.predict(Batch("b2", jobs).to_wire(time.time()))
    before, after = sent
    assert all(isinstance(a, PredictionAnswer) for a in before + after)
    assert [a.prediction.model for a in before] == ["cnn-v6", "cnn-v6"]
    assert [a.prediction.model for a in after] == ["cnn-v5", "cnn-v5"]
    assert [a.prediction.digit for a in after] == [3, 7]


# ---------------------------------------------------------------- the heartbeat says what is served


@pytest.fixture
def client_and_key() -> Iterator[tuple[redis.Redis, str]]:
    client = redis.Redis.from_url(TEST_REDIS_URL)
    key = heartbeat_key(f"test-switch-{uuid.uuid4().hex[:8]}:")
    yield client, key
    client.delete(key, f"{key}:models")


def test_the_report_names_the_model_each_live_worker_serves(client_and_key) -> None:
    client, key = client_and_key
    now = time.time()
    beat(client, key, ["w1@inference"], now=now - 1, worker="w1", model="cnn-v5")
    beat(client, key, ["w1@inference"], now=now, worker="w1", model="cnn-v6")  # switched (no `was`): the newest counts
    beat(client, key, ["w2@preprocess"], now=now, worker="w2", model="cnn-v5")
    beat(client, key, ["w3@inference"], now=now - HEARTBEAT_TTL_S - 1, worker="w3", model="cnn-v4")  # dead
    beat(client, key, ["w4@preprocess"], now=now)  # no model loaded yet
    assert worker_report(client, key, now=now) == ({"inference": 1, "preprocess": 2}, {"cnn-v6": 1, "cnn-v5": 1})


def test_a_running_heartbeat_reports_a_switch_and_forgets_its_model_when_stopped(client_and_key) -> None:
    client, key = client_and_key
    serving = ["cnn-v6"]
    hb = Heartbeat(TEST_REDIS_URL, key, "w9", ["inference"], serving=lambda: serving[0])
    hb.start()
    try:
        for expected in ("cnn-v6", "cnn-v5"):
            serving[0] = expected
            deadline = time.monotonic() + 5
            while worker_report(client, key)[1] != {expected: 1}:
                assert time.monotonic() < deadline, f"the heartbeat never reported {expected}: {worker_report(client, key)}"
                time.sleep(0.05)
            assert client.zcard(f"{key}:models") == 1  # the old stamp is dropped at once, not left to age
    finally:
        hb.stop()
    assert worker_report(client, key) == ({}, {})
