"""On the real stack, a rate-limited person loading a page sees a page: the throttle's 429 and the
refusal at accept of an address serving its penalty are a small HTML page (status 429, Retry-After)
for a browser's page request, and stay JSON for the API and for clients that ask for JSON."""

from __future__ import annotations

import json

import pytest

from tests.conftest import stack_of_its_own
from tests.integration.test_limits_per_address import request

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

VISITOR = "127.0.0.20"
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
JSON = {"Accept": "application/json"}


@pytest.fixture(scope="module")
def limited(stack, tmp_path_factory):
    env = {**stack.env, "THROTTLE_HEALTH": "5/minute", "PENALTY_AFTER_REFUSALS": "2"}
    with stack_of_its_own("pages", env, tmp_path_factory.mktemp("pages")) as service:
        yield service


def _is_page(status: int, headers: dict[str, str], body: bytes) -> None:
    assert status == 429 and headers["content-type"].startswith("text/html"), (status, headers, body[:300])
    assert int(headers["retry-after"]) >= 1
    assert "Too many requests from your address — try again in" in body.decode()


def _is_json(status: int, headers: dict[str, str], body: bytes) -> None:
    assert status == 429 and headers["content-type"] == "application/json", (status, headers, body[:300])
    assert int(headers["retry-after"]) >= 1 and json.loads(body)["code"] == "rate_limited"


def test_a_limited_visitor_gets_a_page_and_json_clients_get_json(limited):
    assert [request(limited, VISITOR, "GET", "/livez", headers=JSON)[0] for _ in range(5)] == [200] * 5
    _is_page(*request(limited, VISITOR, "GET", "/livez", headers=BROWSER))  # the throttle's
    _is_json(*request(limited, VISITOR, "GET", "/livez", headers=JSON))
    _is_json(*request(limited, VISITOR, "GET", "/livez"))  # one refusal too many: refused at accept from now on
    _is_page(*request(limited, VISITOR, "GET", "/", headers=BROWSER))  # the page itself, refused at accept
    _is_json(*request(limited, VISITOR, "GET", "/", headers=JSON))
    _is_json(*request(limited, VISITOR, "GET", "/api/predict", headers=BROWSER))
    assert request(limited, "127.0.0.1", "GET", "/", headers=BROWSER)[0] == 200  # others are served
