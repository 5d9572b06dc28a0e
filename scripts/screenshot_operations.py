"""Take docs/operations.png: the admin's operations page (review.operations) with the stack under
a little load.

Starts the whole service as scripts.screenshot does (default database, a free port, Redis keys under
a prefix of its own), makes a superuser for the shot (removed afterwards), keeps a few WebSocket
clients drawing digits and sends an upload now and then (DrawingLoad, also used by
tests/browser/test_operations.py), logs in through the admin's form, waits until the page has
rates, percentiles and the workers with their model, and saves the screenshot.

    .venv/bin/python -m scripts.screenshot_operations [--out docs/operations.png] [--clients 3]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from types import TracebackType

import requests
from PIL import Image, ImageDraw
from playwright.sync_api import Page, expect, sync_playwright
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from digitsite.secret import use_checkout_key
from scripts.digit_paths import digit_strokes
from scripts.screenshot import CHROMIUM, CHROMIUM_ARGS, free_port, small_png
from scripts.stack import ROOT, Stack, redis_prefix_clear

PASSWORD = "operations-screenshot-password"
NONZERO = re.compile(r"^(0\.\d*[1-9]\d*|[1-9][\d,]*(\.\d+)?)$")  # a rate as the page writes it, not 0
DURATION = re.compile(r"^\d+(\.\d+)? (ms|s)$")


class DrawingLoad:
    """`clients` WebSocket clients drawing digit after digit as the page does (points in small
    batches), each waiting for its prediction before the next digit, until stopped; with
    `uploads_from`, one of them also posts that PNG to /api/predict every `upload_every` digits."""

    def __init__(
        self, base_url: str, clients: int = 2, pause: float = 0.02, uploads_from: bytes | None = None, upload_every: int = 10
    ) -> None:
        self.base_url = base_url
        self.pause = pause
        self.uploads_from = uploads_from
        self.upload_every = upload_every
        self.predictions = 0
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), name=f"load-{i}", daemon=True) for i in range(clients)]

    def __enter__(self) -> DrawingLoad:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def _run(self, index: int) -> None:
        url = self.base_url.replace("http://", "ws://") + "/ws/recognize/"
        try:
            with connect(url, origin=Origin(self.base_url), open_timeout=10) as socket:
                self._draw(socket, index)
        except Exception as exc:  # reported to whoever waits on the load
            if not self._stop.is_set():
                self.errors.append(exc)

    def _draw(self, socket: ClientConnection, index: int) -> None:
        n = seq = 0
        while not self._stop.is_set():
            for k, stroke in enumerate(digit_strokes(n % 10)):  # as the page sends: a few points at a time
                for i in range(0, len(stroke), 6):
                    seq += 1
                    socket.send(
                        json.dumps(
                            {
                                "type": "stroke",
                                "seq": seq,
                                "drawing": f"load-{index}-{n}",
                                "stroke": k,
                                "points": [list(p) for p in stroke[i : i + 6]],
                                "final": i + 6 >= len(stroke),
                                "canvas": [280, 280],
                                "brush": 16,
                            }
                        )
                    )
                    time.sleep(self.pause)
            while True:  # the prediction of the whole digit (saliency and older answers pass by)
                message = json.loads(socket.recv(timeout=15))
                if message["type"] == "prediction" and message["seq"] >= seq:
                    break
            with self._lock:
                self.predictions += 1
            if index == 0 and self.uploads_from is not None and n % self.upload_every == 0:
                requests.post(
                    f"{self.base_url}/api/predict", timeout=30, files={"image": ("digit.png", self.uploads_from, "image/png")}
                ).raise_for_status()
            n += 1


def digit_png(digit: int, side: int = 280, width: int = 18) -> bytes:
    """A PNG of the digit's paths, dark ink on white (an upload)."""
    image = Image.new("L", (side, side), 255)
    ink = ImageDraw.Draw(image)
    for stroke in digit_strokes(digit, scale=side / 280):
        ink.line([(x, y) for x, y in stroke], fill=0, width=width, joint="curve")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def wait_until_filled(page: Page, model: str | None, timeout_ms: int = 20000) -> None:
    """The page has read the figures twice under load: the workers' answers at a rate, percentiles of
    the inference phase and a worker serving `model` (any model when None) with its utilisation."""
    expect(page.locator("#content-main")).to_have_attribute("data-state", "live", timeout=timeout_ms)
    answers = page.locator("#rates tbody tr", has_text="answers from workers").filter(has_text="prediction, ok")
    expect(answers.locator("td.rate")).to_have_text(NONZERO, timeout=timeout_ms)
    expect(page.locator('#latency tr[data-key="inference"] td.p50')).to_have_text(DURATION, timeout=timeout_ms)
    worker = page.locator("#workers tbody tr", has=page.locator("td.model", has_text=model or re.compile(r"\w")))
    expect(worker.first).to_be_visible(timeout=timeout_ms)
    expect(page.locator("#workers td.ops-busy .ops-pct").first).to_have_text(re.compile(r"^\d+ %$"), timeout=timeout_ms)


def log_in(page: Page, username: str, password: str, next_url: str = "/review/operations/") -> None:
    page.goto(f"/admin/login/?next={next_url}")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.press("#id_password", "Enter")
    expect(page.locator("#content-main.ops")).to_be_visible()


def shoot(stack: Stack, out: Path, username: str, clients: int, width: int, height: int) -> None:
    if not os.access(CHROMIUM, os.X_OK):
        sys.exit(f"chromium not found at {CHROMIUM}: `make browser` or `apt-get install -y chromium`")
    with sync_playwright() as pw, DrawingLoad(stack.url, clients=clients, uploads_from=digit_png(7)) as load:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                base_url=stack.url,
                viewport={"width": width, "height": height},
                device_scale_factor=1,
                color_scheme="light",
                locale="en-US",
                reduced_motion="reduce",
            )
            page = context.new_page()
            log_in(page, username, PASSWORD)
            if page.locator("#toggle-nav-sidebar").is_visible():  # the admin's app list aside: more room
                page.click("#toggle-nav-sidebar")
            wait_until_filled(page, None)
            page.wait_for_timeout(4500)  # two more readings: the errors' window and the rates settle
            page.mouse.move(width - 5, height - 5)
            png = page.screenshot(full_page=True)
        finally:
            browser.close()
        if load.errors:
            raise RuntimeError(f"the load failed: {load.errors[0]!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(small_png(png))
    print(f"wrote {out} ({out.stat().st_size // 1024} KB), {load.predictions} predictions under load")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "operations.png")
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "digitsite.settings.local")
    use_checkout_key()  # as the stack's processes do: the same key for the login's session
    import django

    django.setup()
    from django.contrib.auth.models import User

    username = f"ops-shot-{uuid.uuid4().hex[:6]}"
    User.objects.create_superuser(username, f"{username}@example.org", PASSWORD)
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"screenshot-{uuid.uuid4().hex[:8]}:"
    stack = Stack(
        port=free_port(),
        redis_url=redis_url,
        env={"REDIS_PREFIX": prefix, "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost"},
        log_dir=Path(tempfile.mkdtemp(prefix="screenshot-logs-")),
    )
    try:
        stack.start(timeout=120)
        shoot(stack, args.out, username, args.clients, args.width, args.height)
    except Exception:
        print(f"logs in {stack.log_dir}", file=sys.stderr)
        raise
    finally:
        stack.stop()
        User.objects.filter(username=username).delete()
        redis_prefix_clear(redis_url, prefix)  # leave Redis as we found it


if __name__ == "__main__":
    main()
