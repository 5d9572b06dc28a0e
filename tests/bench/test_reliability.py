"""bench/reliability.py's three scenarios (bench/scenarios/), small, on the real stack: each verdict holds (issue 12's
targets), so this fails when the service breaks one of those promises or the bench stops measuring.

soak and fuzz share the session's stack (its clients all come from 127.0.0.1, limits off); flood
needs the service's default per-address limits, so it gets a stack of its own on the same database.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.scenarios.flood import flood
from bench.scenarios.frames import GENERATORS
from bench.scenarios.fuzz import fuzz
from bench.scenarios.soak import soak
from bench.scenarios.uploads import BODY_KINDS
from scripts.stack import UNTHROTTLED, Stack
from tests.conftest import stack_of_its_own

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_soak_small_loses_nothing_leaks_nothing_and_stores_every_acknowledged_submit(stack: Stack, mnist_dir: Path) -> None:
    report = soak(stack, clients=3, seconds=8, warmup_s=2, sample_s=2, submit_every=3, data_dir=mnist_dir)
    text = "\n".join(report.lines())
    assert report.failures == [], text
    s = report.load.stats
    assert s.latencies and s.errors == [] and s.lost == 0, text
    assert s.submits >= 2 and len(s.stored_ids) == s.submits and report.rows == report.acked == s.submits, text
    assert len(report.rss) >= 3 and {"web", "redis"} <= set(report.rss[-1][1]), text  # every process sampled
    assert len(report.redis_end.kept) <= len(report.redis_start.kept), text
    assert text.splitlines()[-1].startswith("verdict: PASS")


def test_fuzz_small_every_hostile_input_is_refused_and_nothing_crashes(stack: Stack) -> None:
    report = fuzz(stack, frames=60, sockets=3, upload_rounds=0, body_mb=8)  # uploads: the warm-up pass
    text = "\n".join(report.lines())
    assert report.failures == [], text
    assert len(report.tallies) == len(GENERATORS) and all(t.total >= 3 for t in report.tallies.values()), text
    assert all(t.error + t.closed == t.total for t in [*report.tallies.values(), *report.uploads.values()]), text
    assert [b.status for b in report.bodies] == [400] * 2 * len(BODY_KINDS), text
    assert report.sockets_ok == report.sockets_used, text
    assert text.splitlines()[-1].startswith("verdict: PASS")


@pytest.fixture(scope="module")
def limited(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The service with its default per-address limits."""
    env = {k: v for k, v in stack.env.items() if k not in UNTHROTTLED}
    with stack_of_its_own("flood", env, tmp_path_factory.mktemp("flood")) as service:
        yield service


def test_flood_from_one_address_is_throttled_and_others_keep_being_served(limited: Stack, mnist_dir: Path) -> None:
    report = flood(limited, clients=5, seconds=5, threads=6, data_dir=mnist_dir)
    text = "\n".join(report.lines())
    assert report.crashes == [], text
    for run in (report.quiet, report.flooded):
        assert run.stats.latencies and run.stats.errors == [] and run.stats.lost == 0, text
    # throttled: at most the default limits' worth served (uploads 5/s and 60/min, health 20/s), the rest 429
    assert report.flood["upload 429"] > 0 and report.flood["health 429"] > 0, text
    assert report.flood["upload 200"] <= 60 and report.flood["health 200"] <= 20 * (report.flood_s + 1), text
    # refused at accept and held, the flooder gets about one answer per thread per hold (1 s) plus what
    # its limits allow (~10/s in the bench); answered at once it was 335/s, and 5,779/s without the hold
    assert sum(report.flood.values()) <= 40 * (report.flood_s + 2), text
    # Generous: 5 s is few drawings for a p95, and the flooder's own threads take CPU from the service
    # on a 2-core VM (the bench's target is 2x; 0.87x measured with 20 s, 2026-11-25); unthrottled, a
    # flood of uploads made others 15x slower (issue 12).
    assert report.ratio <= 10.0, text
