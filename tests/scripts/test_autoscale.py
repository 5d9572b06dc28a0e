"""scripts/autoscale.py's decisions without processes: samples of busy clocks and depths over a
made-up clock, bounds, hysteresis and cool-downs; and the AUTOSCALE parsing."""

from __future__ import annotations

import pytest

from scripts.autoscale import DEFAULT_AUTOSCALE, Policy, QueueScaler, env_bounds, parse_autoscale

POLICY = Policy(
    up_utilisation=0.6,
    up_depth=4,
    up_after_s=1.0,
    cooldown_s=5.0,
    down_utilisation=0.4,
    idle_s=30.0,
    window_s=3.0,
    interval_s=0.5,
)


class Clocks:
    """Workers' busy clocks advancing at given utilisations, sampled every 0.5 s by a QueueScaler."""

    def __init__(self, scaler: QueueScaler, workers: int) -> None:
        self.scaler, self.now, self.workers = scaler, 0.0, workers
        self.busy = {f"w{i}": 0.0 for i in range(workers)}

    def run(self, seconds: float, utilisation: float, depth: int = 0, live: int | None = None) -> list[tuple[float, int]]:
        """Sample for `seconds`; `live` workers beat (the others boot); the decisions taken, and when.
        A +1 or -1 is applied at once, as the stack would (a new worker boots until `live` says)."""
        decisions = []
        for _ in range(int(seconds / 0.5)):
            self.now += 0.5
            beating = sorted(self.busy)[: live if live is not None else self.workers]
            for w in beating:
                self.busy[w] += 0.5 * utilisation
            delta = self.scaler.step(self.now, {w: self.busy[w] for w in beating}, depth, self.workers)
            if delta:
                decisions.append((self.now, delta))
                self.workers += delta
                if delta > 0:
                    self.busy[f"w{len(self.busy)}"] = 0.0
                else:
                    self.busy.pop(sorted(self.busy)[-1])
        return decisions


def test_utilisation_is_the_busy_clocks_rate_averaged_over_the_workers() -> None:
    scaler = QueueScaler((1, 4), POLICY)
    scaler.step(0.0, {"a": 10.0, "b": 0.0}, 0, 2)
    scaler.step(2.0, {"a": 11.0, "b": 2.0}, 0, 2)  # a: 50 %, b: 100 %
    assert scaler.utilisation() == pytest.approx(0.75)


def test_a_worker_seen_only_at_one_end_of_the_window_does_not_count() -> None:
    scaler = QueueScaler((1, 4), POLICY)
    scaler.step(0.0, {"a": 0.0}, 0, 2)
    scaler.step(2.0, {"a": 0.4, "b": 2.0}, 0, 2)
    assert scaler.utilisation() == pytest.approx(0.2)


def test_one_worker_is_added_once_the_queue_stays_hot_for_up_after_s() -> None:
    clocks = Clocks(QueueScaler((1, 4), POLICY), workers=1)
    decisions = clocks.run(4.0, utilisation=0.9)
    assert [d for _, d in decisions] == [1]
    # sampled at 0.5 s and 1 s: hot from 1 s (two samples make a rate), for up_after_s
    assert decisions[0][0] == pytest.approx(1.0 + POLICY.up_after_s)


def test_a_short_burst_adds_nothing() -> None:
    clocks = Clocks(QueueScaler((1, 4), POLICY), workers=1)
    clocks.run(10.0, utilisation=0.1)
    assert clocks.run(0.5, utilisation=1.0) == []  # over the 3 s window still under 0.6
    assert clocks.run(10.0, utilisation=0.1) == []


def test_no_second_worker_while_the_first_added_one_is_booting() -> None:
    clocks = Clocks(QueueScaler((1, 4), POLICY), workers=1)
    assert [d for _, d in clocks.run(2.0, utilisation=1.0)] == [1]
    assert clocks.run(20.0, utilisation=1.0, live=1) == []  # the new one never beats: wait for it


def test_adding_goes_on_at_the_cool_down_pace_up_to_the_upper_bound() -> None:
    clocks = Clocks(QueueScaler((1, 3), POLICY), workers=1)
    decisions = clocks.run(30.0, utilisation=1.0)
    assert [d for _, d in decisions] == [1, 1]
    assert decisions[1][0] - decisions[0][0] >= POLICY.cooldown_s
    assert clocks.workers == 3


def test_while_a_standby_loads_nothing_is_added_and_its_cpu_is_not_taken_for_load() -> None:
    scaler = QueueScaler((1, 2), POLICY)
    busy, now = 0.0, 0.0
    for _ in range(20):  # 10 s of a standby loading while the worker seems 90 % busy (it waits for the CPU)
        now, busy = now + 0.5, busy + 0.45
        assert scaler.step(now, {"w0": busy}, 0, 1, settling=True) == 0
    decisions = []
    for _ in range(8):  # loaded: the worker is 20 % busy, and that alone counts
        now, busy = now + 0.5, busy + 0.1
        decisions.append(scaler.step(now, {"w0": busy}, 0, 1))
        assert scaler.utilisation() in (None, pytest.approx(0.2))
    assert decisions == [0] * 8


def test_a_deep_queue_is_hot_even_when_its_workers_seem_idle() -> None:
    clocks = Clocks(QueueScaler((1, 2), POLICY), workers=1)
    assert clocks.run(3.0, utilisation=0.0, depth=POLICY.up_depth) == []  # up to up_depth per worker: fine
    assert [d for _, d in clocks.run(3.0, utilisation=0.0, depth=POLICY.up_depth + 1)] == [1]


def test_an_idle_worker_is_retired_after_idle_s_and_not_below_the_lower_bound() -> None:
    clocks = Clocks(QueueScaler((1, 4), POLICY), workers=3)
    decisions = clocks.run(120.0, utilisation=0.0)
    assert [d for _, d in decisions] == [-1, -1]
    assert decisions[0][0] >= POLICY.idle_s
    assert decisions[1][0] - decisions[0][0] >= POLICY.idle_s  # each retirement waits a whole idle_s
    assert clocks.workers == 1


def test_idle_is_judged_over_the_whole_idle_s_so_short_spikes_do_not_restart_the_wait() -> None:
    # two workers, a 1 s spike to 80 % every 6 s, else 2 %: over 30 s one alone would be ~30 % busy
    clocks = Clocks(QueueScaler((1, 2), POLICY), workers=2)
    decisions = []
    for _ in range(8):
        decisions += clocks.run(1.0, utilisation=0.8) + clocks.run(5.0, utilisation=0.02)
    assert [d for _, d in decisions] == [-1]
    assert POLICY.idle_s <= decisions[0][0] <= POLICY.idle_s + 6


def test_nothing_is_retired_while_messages_wait() -> None:
    clocks = Clocks(QueueScaler((1, 4), POLICY), workers=2)
    assert clocks.run(60.0, utilisation=0.0, depth=1) == []


def test_hysteresis_no_retirement_that_would_make_the_queue_hot_again() -> None:
    # two workers at 30 %: one alone would be at 60 %, hot: keep both
    clocks = Clocks(QueueScaler((1, 4), POLICY), workers=2)
    assert clocks.run(90.0, utilisation=0.3) == []
    # at 15 % one alone would be at 30 %, under down_utilisation: retire one
    assert [d for _, d in clocks.run(40.0, utilisation=0.15)] == [-1]


def test_after_adding_the_queue_waits_idle_s_before_retiring() -> None:
    clocks = Clocks(QueueScaler((1, 2), POLICY), workers=1)
    added = clocks.run(2.0, utilisation=1.0)
    assert [d for _, d in added] == [1]
    retired = clocks.run(60.0, utilisation=0.0)
    assert [d for _, d in retired] == [-1]
    assert retired[0][0] - added[0][0] >= POLICY.idle_s


def test_the_count_is_brought_back_within_its_bounds() -> None:
    assert QueueScaler((2, 3), POLICY).step(0.0, {}, 0, 1) == 1
    assert QueueScaler((1, 2), POLICY).step(0.0, {"a": 0.0, "b": 0.0, "c": 0.0}, 0, 3) == -1


def test_parse_autoscale() -> None:
    assert parse_autoscale("inference:1-4,preprocess:1-2") == {"inference": (1, 4), "preprocess": (1, 2)}
    assert parse_autoscale(" inference:2 ") == {"inference": (2, 2)}
    assert parse_autoscale("off") == parse_autoscale("") == {}
    for bad, why in (
        ("inference", "is not queue:low-high"),
        ("inference:0-2", "needs 1 <= low <= high"),
        ("inference:3-2", "needs 1 <= low <= high"),
        ("inference:a-b", "is not queue:low-high"),
        (":1-2", "is not queue:low-high"),
    ):
        with pytest.raises(ValueError, match=why):
            parse_autoscale(bad)
    with pytest.raises(ValueError, match="unknown queue"):
        parse_autoscale("gpu:1-2", ("inference", "preprocess"))


def test_make_run_autoscales_by_default_except_queues_given_a_fixed_count() -> None:
    assert env_bounds({}) == DEFAULT_AUTOSCALE
    assert env_bounds({"INFERENCE_WORKERS": "3"}) == "preprocess:1-1"
    assert env_bounds({"AUTOSCALE": "off", "INFERENCE_WORKERS": "3"}) == "off"


def test_policy_from_env() -> None:
    policy = Policy.from_env({"AUTOSCALE_IDLE_S": "4", "AUTOSCALE_UP_UTILISATION": "0.5"})
    assert (policy.idle_s, policy.up_utilisation, policy.cooldown_s) == (4.0, 0.5, Policy().cooldown_s)


def test_with_rabbitmq_as_the_broker_the_depth_is_its_queues_ready_messages() -> None:
    """The machine's RabbitMQ (as in tests/integration/test_rabbitmq.py): a queue of this test's own."""
    import uuid
    from types import SimpleNamespace

    from kombu import Connection, Queue

    from scripts.autoscale import Autoscaler
    from tests.conftest import TEST_REDIS_URL

    url = "amqp://guest:guest@127.0.0.1:5672//"
    name, missing = f"test-autoscale-{uuid.uuid4().hex[:8]}", f"test-absent-{uuid.uuid4().hex[:8]}"
    stack = SimpleNamespace(effective_env=lambda: {"BROKER_URL": url}, redis_url=TEST_REDIS_URL)
    scaler = Autoscaler(stack, {name: (1, 2), missing: (1, 2)})  # type: ignore[arg-type]  # only what __init__ reads
    with Connection(url) as conn:
        queue = Queue(name, auto_delete=False, durable=False)(conn.default_channel)
        queue.declare()
        producer = conn.Producer()
        try:
            for _ in range(3):
                producer.publish(b"job", routing_key=name)
            assert scaler._depths() == {name: 3, missing: 0}
        finally:
            queue.delete()
            scaler.stop()
