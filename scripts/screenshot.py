"""Take docs/screenshot.png: the page at 1280x800 with a 3 drawn along the tests' paths.

Starts the whole service as `make run` does (scripts.stack, default database, on a free port, with
Redis keys under a prefix of its own so a running service is not disturbed), drives Debian's chromium
through Playwright, draws the digit with the mouse, waits for the final prediction and its bars, and
saves the screenshot (palette PNG when that keeps it small).

    .venv/bin/python -m scripts.screenshot [--digit 3] [--out docs/screenshot.png]
"""

from __future__ import annotations

import argparse
import io
import itertools
import math
import os
import re
import socket
import sys
import tempfile
import uuid
from pathlib import Path

from PIL import Image
from playwright.sync_api import Page, expect, sync_playwright

from scripts.digit_paths import digit_strokes
from scripts.stack import ROOT, Stack, redis_prefix_clear

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MAX_BYTES = 300 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def draw(page: Page, digit: int) -> None:
    """Drag the mouse along the digit's 280-based paths, scaled to the pad, in small steps."""
    box = page.locator("#pad").bounding_box()
    assert box, "the pad is not laid out"
    for stroke in digit_strokes(digit):
        points = [(box["x"] + x * box["width"] / 280, box["y"] + y * box["height"] / 280) for x, y in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for (x0, y0), (x1, y1) in itertools.pairwise(points):
            page.mouse.move(x1, y1, steps=max(1, math.ceil(math.dist((x0, y0), (x1, y1)) / 6)))
            page.wait_for_timeout(8)
        page.mouse.up()


def shoot(url: str, out: Path, digit: int, width: int, height: int) -> None:
    if not os.access(CHROMIUM, os.X_OK):
        sys.exit(f"chromium not found at {CHROMIUM}: `make browser` or `apt-get install -y chromium`")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                viewport={"width": width, "height": height},
                device_scale_factor=1,
                color_scheme="light",
                locale="en-US",
                reduced_motion="reduce",
            )
            page = context.new_page()
            page.goto(url)
            expect(page.locator("#status")).to_have_attribute("data-state", "open", timeout=30000)
            draw(page, digit)
            expect(page.locator("#digit")).to_have_text(str(digit), timeout=15000)
            # the pen-up prediction: its bar is the top one and the model's view is painted
            expect(page.locator(f'#bars li[data-digit="{digit}"]')).to_have_class(re.compile(r"\bis-top\b"), timeout=15000)
            expect(page.locator("#rtt")).not_to_have_text("—")
            page.mouse.move(width - 5, height - 5)  # no hover effects in the picture
            page.wait_for_timeout(800)  # let the bars' transitions finish
            png = page.screenshot()
        finally:
            browser.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(small_png(png))
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")


def small_png(png: bytes) -> bytes:
    """The PNG as is when it is small enough, else reduced to a 256-colour palette."""
    if len(png) <= MAX_BYTES:
        return png
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--digit", type=int, default=3, choices=range(10))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot.png")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=800)
    args = parser.parse_args()

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
        shoot(stack.url + "/", args.out, args.digit, args.width, args.height)
    except Exception:
        print(f"logs in {stack.log_dir}", file=sys.stderr)
        raise
    finally:
        stack.stop()
        redis_prefix_clear(redis_url, prefix)  # leave Redis as we found it


if __name__ == "__main__":
    main()
