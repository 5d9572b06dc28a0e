"""What a browser enforces for the site: the page and the admin work under their
Content-Security-Policy (no inline script runs), and a page on another site cannot make its
visitors' browsers upload here."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import ConsoleMessage, Page, expect

from tests.browser.pad import Pad, digit_png

pytestmark = pytest.mark.browser


def violations_of(page: Page) -> list[str]:
    """Every CSP violation the page reports from now on (Chromium logs each to the console)."""
    seen: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            seen.append(message.text)

    page.on("console", on_console)
    return seen


def test_the_page_draws_uploads_and_connects_under_its_content_security_policy(page: Page) -> None:
    seen = violations_of(page)
    response = page.goto("/")
    assert response is not None
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    pad = Pad(page)
    page.goto("/")
    expect(page.locator("#status")).to_have_attribute("data-state", "open")  # the socket: connect-src
    pad.draw(3)
    pad.expect_digit(3)
    with page.expect_response("**/api/predict") as answer:  # the preview is a blob: image
        page.set_input_files("#file", files=[{"name": "two.png", "mimeType": "image/png", "buffer": digit_png(2)}])
    assert answer.value.status == 200
    expect(page.locator("#digit")).to_have_text("2")
    assert seen == []
    # and it is enforced: markup that found its way into the page runs no script
    ran = page.evaluate("""() => new Promise((done) => {
        window.injected = false;
        const s = document.createElement('script');
        s.textContent = 'window.injected = true';
        document.body.append(s);
        setTimeout(() => done(window.injected), 100);
    })""")
    assert ran is False and any("script-src" in v for v in seen), seen


def test_the_admin_login_runs_under_the_policy(page: Page) -> None:
    seen = violations_of(page)
    response = page.goto("/admin/login/")
    assert response is not None and "content-security-policy" in response.headers
    expect(page.locator("#id_username")).to_be_visible()
    assert seen == []


@pytest.fixture
def elsewhere() -> Iterator[str]:
    """Another site: a plain page served from another origin (another port of this machine)."""

    class Page_(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<!doctype html><title>elsewhere</title>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page_)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_a_page_on_another_site_cannot_make_the_browser_upload_here(page: Page, stack, elsewhere: str) -> None:
    # a page of another origin, with no policy of ours, posts a multipart form here: a "simple"
    # request, which the browser sends without a CORS preflight
    page.goto(elsewhere)
    post = """async ([url, b64]) => {
        const form = new FormData();
        form.append('image', new Blob([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], {type: 'image/png'}), 'd.png');
        try { await fetch(url, {method: 'POST', body: form, mode: 'no-cors', credentials: 'include'}); } catch (e) {}
    }"""
    png = base64.b64encode(digit_png(4)).decode()
    with page.expect_response(f"{stack.url}/api/predict") as answer:
        page.evaluate(post, [f"{stack.url}/api/predict", png])
    assert answer.value.status == 403  # refused, before any limit (tests/integration/test_limits_per_address.py)
    # the site's own page makes the same upload
    page.goto("/")
    with page.expect_response(f"{stack.url}/api/predict") as answer:
        page.evaluate(post, ["/api/predict", png])
    assert answer.value.status == 200
