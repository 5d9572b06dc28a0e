"""Browser tests: Debian's chromium driven by Playwright against the real stack (tests/conftest.py).

Playwright's own browser download cannot work offline, so every launch uses /usr/bin/chromium
(override with CHROMIUM=/path). A missing chromium fails the tests with a clear message; they are
never skipped. A failing test leaves a screenshot under test-artifacts/browser/.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
from playwright.sync_api import Page, expect

from scripts.stack import Stack, web_command
from tests.conftest import ARTIFACTS

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
BROWSER_ARTIFACTS = ARTIFACTS / "browser"
NOT_OPEN = re.compile(r"^(closed|connecting)$")

T = TypeVar("T")


def pytest_configure(config: pytest.Config) -> None:
    # pytest-playwright's own artifact handling: a screenshot of every page of a failed test.
    # Only the defaults are changed, so --screenshot/--output on the command line still win.
    if config.getoption("--screenshot", default="off") == "off":
        config.option.screenshot = "only-on-failure"
    if config.getoption("--output", default="test-results") == "test-results":
        config.option.output = str(BROWSER_ARTIFACTS)


# ---------------------------------------------------------------- Playwright's event loop vs Django
#
# Playwright's sync API leaves its asyncio loop registered as running on the main thread for as long
# as the session-scoped `playwright` fixture lives, and Django then refuses database work on that
# thread (SynchronousOnlyOperation). Hence:
# - the stack (and so the test database) is set up before Playwright starts;
# - browser tests run after every other test, so that no other test runs next to that loop;
# - fixture teardown (pytest-django's flush of transactional tests, dropping the test database at the
#   end) may touch the database from the main thread: it runs with DJANGO_ALLOW_ASYNC_UNSAFE set, which
#   only Django in this process reads; nothing is started meanwhile, so no server process inherits it;
# - the tests themselves read rows through `orm()`, on a thread of its own.

BROWSER_DIR = Path(__file__).resolve().parent


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    browser = [item for item in items if BROWSER_DIR in Path(item.path).parents]
    if browser:
        items[:] = [item for item in items if item not in set(browser)] + browser


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    before = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        return (yield)
    finally:
        if before is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = before


@pytest.fixture(scope="session", autouse=True)
def _stack_before_playwright(stack: Stack) -> Stack:
    """Autouse, so that it (and the test database) comes before the Playwright fixtures."""
    return stack


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    path = Path(CHROMIUM)
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"chromium not found at {CHROMIUM}: the browser tests need Debian's chromium "
            "(`make browser`, or `apt-get install -y chromium`; set CHROMIUM=/path/to/chromium to use another)",
            pytrace=False,
        )
    return {**browser_type_launch_args, "executable_path": str(path), "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict[str, Any], stack: Stack) -> dict[str, Any]:
    return {
        **browser_context_args,
        "base_url": stack.url,
        "viewport": {"width": 1280, "height": 900},
        "color_scheme": "light",
        "locale": "en-US",
    }


# ---------------------------------------------------------------- the database from the test thread

_db_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="browser-tests-orm")


def orm(fn: Callable[[], T]) -> T:
    """Run Django ORM code off the main thread.

    Playwright's sync API keeps an asyncio loop registered on the main thread, so Django refuses ORM
    calls there (SynchronousOnlyOperation); a plain worker thread has no loop. Its connection is
    closed after each call so that nothing holds the test database open.
    """

    def run() -> T:
        from django.db import connections

        try:
            return fn()
        finally:
            connections.close_all()

    return _db_thread.submit(run).result(timeout=30)


# ---------------------------------------------------------------- restarting daphne under a live page


def _web_index(stack: Stack) -> int:
    return next(i for i, (name, _) in enumerate(stack.procs) if name == "web")


def stop_web(stack: Stack) -> None:
    """SIGTERM daphne (its whole process group) and wait for it to exit."""
    _, proc = stack.procs.pop(_web_index(stack))
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def start_web(stack: Stack, timeout: float = 60.0) -> None:
    """Start daphne again on the same port with the environment the stack gave it."""
    env = {**os.environ, **stack.env, "REDIS_URL": stack.redis_url, "PYTHONUNBUFFERED": "1"}
    # web_command names the container's `python`; here, this environment's
    stack._spawn("web", [sys.executable, *web_command(stack.host, stack.port)[1:]], env)
    stack.wait_healthy(timeout)


def restart_web_under(page: Page, stack: Stack) -> None:
    """Close every socket from the server side by stopping daphne; the page must notice, then the
    server comes back on the same port. The page is left to reconnect by itself."""
    expect(page.locator("#status")).to_have_attribute("data-state", "open")
    stop_web(stack)
    try:
        expect(page.locator("#status")).to_have_attribute("data-state", NOT_OPEN, timeout=5000)
    finally:
        start_web(stack)


def wait_until(
    page: Page, condition: Callable[[], Any], timeout: float = 15.0, what: str | Callable[[], str] = "condition"
) -> Any:
    """Poll `condition` while letting Playwright deliver events (page.wait_for_timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what() if callable(what) else what}")
        page.wait_for_timeout(25)


@pytest.fixture
def pad(page: Page):
    """The drawing page, open and connected, with its socket's traffic recorded (tests/browser/pad.py)."""
    from tests.browser.pad import Pad  # pad.py imports this module's helpers

    return Pad(page).open()
