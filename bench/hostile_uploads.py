"""Hostile uploads against the real service (issue "Hostile clients get nowhere": bounded work per upload).

    python bench/hostile_uploads.py [--rounds 3] [--bombs 20] [--normal 60]

Starts the service as `make run` does (scripts.stack.Stack, with a Redis key prefix and a throwaway
database of its own, made on DATABASE_URL's server; REDIS_URL defaults to redis://127.0.0.1:6379/13),
then prints:

1. each file of the hostile corpus (digits.data.hostile_corpus) sent `rounds` times: its answer, the median
   and slowest answer time (target: each within 200 ms), and the preprocess worker's RSS before the
   corpus (after a warm-up upload), after it, and its peak (VmHWM) meanwhile (target: growth <= 64 MB);
2. the costliest files that still pass the checks, per format (what a hostile client can still make a
   worker decode): their answer time and the worker's peak RSS;
3. normal uploads (a 112x112 PNG) from 127.0.0.2, unloaded, then while 127.0.0.3 sends the scan bomb
   `bombs` times (one every 40 ms, none waiting for another's answer): p50, p95, max (target: p95 <= 50 ms).

The per-address limits are lifted (scripts.stack.UNTHROTTLED), so that every hostile upload reaches
the preprocess worker: with the default 5/second;60/minute most of them would be refused before any
work, which is not what is measured here. The clients are threads of this process.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.database import throwaway_database  # noqa: E402
from bench.e2e import free_port  # noqa: E402
from bench.load import pct  # noqa: E402
from bench.procstat import machine_line  # noqa: E402
from digits.data.hostile_corpus import corpus, digit_image, encode, png_of_rows, scan_bomb  # noqa: E402
from digits.inference import upload_guard  # noqa: E402
from scripts.stack import UNTHROTTLED, Stack, redis_prefix_clear  # noqa: E402

ANSWER_MS_MAX = 200.0
RSS_GROWTH_MB_MAX = 64.0
NORMAL_P95_MS_MAX = 50.0
NORMAL_FROM, BOMBS_FROM = "127.0.0.2", "127.0.0.3"


def multipart(name: str, data: bytes) -> tuple[dict[str, str], bytes]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return {"Content-Type": f"multipart/form-data; boundary={boundary}"}, body


@dataclass(frozen=True)
class Answer:
    status: int  # 0: none
    code: str  # the JSON error's code, "digit N" for a prediction
    ms: float  # from the request's first byte to the whole answer


def upload(port: int, request: tuple[dict[str, str], bytes], source: str = "127.0.0.1", timeout: float = 60) -> Answer:
    headers, body = request
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=(source, 0))
    start = time.perf_counter()
    try:
        conn.request("POST", "/api/predict", body=body, headers=headers)
        resp = conn.getresponse()
        text = resp.read()
        ms = (time.perf_counter() - start) * 1000
        try:
            doc = json.loads(text)
            code = doc.get("code") if doc.get("type") == "error" else f"digit {doc.get('digit')}"
        except ValueError:
            code = repr(text[:40])
        return Answer(resp.status, str(code), ms)
    except OSError as exc:
        return Answer(0, type(exc).__name__, (time.perf_counter() - start) * 1000)
    finally:
        conn.close()


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of a process, in MB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


def reset_peak(pid: int) -> bool:
    """Start VmHWM again from the current RSS (Linux >= 4.0; needs to be the process's owner)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# ---- the costliest files that pass


def costliest_passing() -> list[tuple[str, bytes]]:
    """Per format, files at (or near) the limits that pass the checks and are decoded."""
    from PIL import Image, ImageChops, ImageDraw

    def photo(w: int, h: int) -> Image.Image:
        grad = Image.linear_gradient("L").resize((w, h)).point(lambda v: 210 - v // 4)
        img = ImageChops.add(Image.merge("RGB", (grad, grad, grad)), Image.effect_noise((w, h), 6).convert("RGB"), 1.0, -128)
        ImageDraw.Draw(img).line([(w * 0.3, h * 0.3), (w * 0.7, h * 0.3), (w * 0.45, h * 0.8)], fill=(30, 30, 40), width=w // 40)
        return img

    paeth = b"\x04"  # the costliest row filter to undo
    out = [
        ("PNG 4096x4096 8-bit RGBA, Paeth rows (64 MB of samples)", png_of_rows(4096, 4096, 8, 6, paeth + b"\x07" * 4 * 4096)),
        ("PNG 4096x4096 16-bit grey (32 MB of samples)", png_of_rows(4096, 4096, 16, 0, paeth + b"\x07" * 2 * 4096)),
        ("PNG 4096x4096 8-bit RGBA drawing, as Pillow writes it", encode(digit_image(4096, "RGBA"), "PNG")),
    ]
    out.append(("PNG 4096x4096 8-bit RGBA, Adam7 interlaced, Paeth rows", adam7_png(4096, 4096)))
    # a progressive grey JPEG with its first AC scan repeated up to the block-visit limit
    lo, hi = 0, upload_guard.MAX_JPEG_SCANS
    while lo < hi:
        mid = (lo + hi + 1) // 2
        try:
            upload_guard.check_upload(scan_bomb(mid, 4096))
            lo = mid
        except upload_guard.BadImage:
            hi = mid - 1
    out.append((f"JPEG 4096x4096 grey progressive, first AC scan repeated {lo} times (the limits' worst)", scan_bomb(lo, 4096)))
    out.append(
        (
            "JPEG 4096x4096 colour progressive 4:4:4 photo",
            encode(photo(4096, 4096), "JPEG", quality=70, progressive=True, subsampling=0),
        )
    )
    out.append(("JPEG 4096x3072 phone photo (baseline 4:2:0, q92)", encode(photo(4096, 3072), "JPEG", quality=92)))
    out.append(("WebP 4096x4096 lossy photo", encode(photo(4096, 4096), "WEBP", quality=40)))
    out.append(("WebP 4096x4096 lossless RGBA", encode(digit_image(4096, "RGBA"), "WEBP", lossless=True)))
    out.append(("GIF 4096x4096", encode(digit_image(4096, "P"), "GIF")))
    passing = []
    for name, data in out:
        if len(data) > 5 * 2**20:
            print(f"  (left out, over 5 MB: {name}, {len(data) / 2**20:.1f} MB)")
            continue
        upload_guard.check_upload(data)  # passes, else this is no worst case
        passing.append((name, data))
    return passing


def adam7_png(width: int, height: int) -> bytes:
    """An interlaced 8-bit RGBA PNG: its seven passes, every row Paeth-filtered."""
    import zlib

    from digits.data.hostile_corpus import png_chunk

    z, parts = zlib.compressobj(9), []
    for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)):
        w, h = -(-(width - x0) // dx), -(-(height - y0) // dy)
        row = b"\x04" + b"\x07" * 4 * w
        parts += [z.compress(row) for _ in range(h)]
    idat = b"".join(parts) + z.flush()
    ihdr = png_chunk(b"IHDR", width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 6, 0, 0, 1]))
    return b"\x89PNG\r\n\x1a\n" + ihdr + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


# ---- the scenarios


def corpus_answers(stack: Stack, rounds: int) -> list[str]:
    pid = dict(stack.procs)["worker-preprocess0"].pid
    warm = multipart("warm.png", encode(digit_image(112), "PNG"))
    for _ in range(3):
        upload(stack.port, warm)
    before = memory_mb(pid)
    peak_reset = reset_peak(pid)
    lines = [
        f"hostile corpus, each sent {rounds} times (answer time from the request's first byte to the whole answer):",
        f"  {'file':<22} {'size':>9}  {'answer':<32} {'median':>8} {'slowest':>8}",
    ]
    failures = []
    for hostile in corpus():
        request = multipart(hostile.name, hostile.data)
        answers = [upload(stack.port, request) for _ in range(rounds)]
        kinds = sorted({f"{a.status} {a.code}" for a in answers})
        slowest = max(a.ms for a in answers)
        lines.append(
            f"  {hostile.name:<22} {len(hostile.data) / 1024:7.0f} kB  {', '.join(kinds):<32} "
            f"{statistics.median(a.ms for a in answers):6.1f} ms {slowest:6.1f} ms"
        )
        if slowest > ANSWER_MS_MAX or kinds != [f"400 {hostile.code}"]:
            failures.append(hostile.name)
    after = memory_mb(pid)
    # the floor of the path: as many bytes of junk, refused from their first bytes
    size = max(len(h.data) for h in corpus())
    junk = [upload(stack.port, multipart("junk", os.urandom(size))) for _ in range(rounds)]
    kinds = ", ".join(sorted({f"{a.status} {a.code}" for a in junk}))
    lines.append(
        f"  {'(reference) junk':<22} {size / 1024:7.0f} kB  {kinds:<32} "
        f"{statistics.median(a.ms for a in junk):6.1f} ms {max(a.ms for a in junk):6.1f} ms  (the upload path itself)"
    )
    growth = after["VmRSS"] - before["VmRSS"]
    peak = after["VmHWM"] - before["VmRSS"] if peak_reset else float("nan")
    lines.append(
        f"  preprocess worker RSS: {before['VmRSS']:.1f} MB before, {after['VmRSS']:.1f} MB after "
        f"({growth:+.1f} MB), peak {after['VmHWM']:.1f} MB ({peak:+.1f} MB over the start"
        f"{'' if peak_reset else '; peak not reset: since the worker started'})"
    )
    verdict = "PASS" if not failures and growth <= RSS_GROWTH_MB_MAX and not (peak > RSS_GROWTH_MB_MAX) else "FAIL"
    lines.append(
        f"  {verdict}: each answered 400 with its code within {ANSWER_MS_MAX:.0f} ms, RSS growth <= "
        f"{RSS_GROWTH_MB_MAX:.0f} MB{'; failed: ' + ', '.join(failures) if failures else ''}"
    )
    return lines


def passing_costs(stack: Stack, rounds: int) -> list[str]:
    pid = dict(stack.procs)["worker-preprocess0"].pid
    lines = [
        "costliest files that pass the checks (decoded; answered with a prediction or empty_image):",
        f"  {'file':<74} {'size':>8}  {'answer':<16} {'median':>8} {'slowest':>8} {'peak RSS':>9}",
    ]
    for name, data in costliest_passing():
        request = multipart("file", data)
        start_rss = memory_mb(pid)["VmRSS"]
        reset = reset_peak(pid)
        answers = [upload(stack.port, request) for _ in range(rounds)]
        peak = memory_mb(pid)["VmHWM"] - start_rss if reset else float("nan")
        kinds = ", ".join(sorted({f"{a.status} {a.code}" for a in answers}))
        lines.append(
            f"  {name:<74} {len(data) / 2**20:6.2f} MB  {kinds:<16} "
            f"{statistics.median(a.ms for a in answers):6.0f} ms {max(a.ms for a in answers):6.0f} ms {peak:+7.0f} MB"
        )
    return lines


def normal_during_bombs(stack: Stack, bombs: int, normal: int) -> list[str]:
    normal_req = multipart("digit.png", encode(digit_image(112), "PNG"))
    bomb_req = multipart("scan-bomb.jpg", next(h.data for h in corpus() if h.name == "scan-bomb.jpg"))
    for _ in range(3):
        upload(stack.port, normal_req, NORMAL_FROM)
    quiet = [upload(stack.port, normal_req, NORMAL_FROM) for _ in range(normal)]

    bomb_answers: list[Answer] = []
    done = threading.Event()

    def bomb() -> None:
        bomb_answers.append(upload(stack.port, bomb_req, BOMBS_FROM))

    def attacker() -> None:
        threads = []
        for _ in range(bombs):
            t = threading.Thread(target=bomb)
            t.start()
            threads.append(t)
            time.sleep(0.04)
        for t in threads:
            t.join()
        done.set()

    attack = threading.Thread(target=attacker)
    attack.start()
    loaded = []
    while not done.is_set() or len(loaded) < normal:
        loaded.append(upload(stack.port, normal_req, NORMAL_FROM))
        if done.is_set() and len(loaded) >= normal:
            break
    attack.join()
    p95 = pct([a.ms for a in loaded], 95)

    def stats(answers: list[Answer]) -> str:
        ms = [a.ms for a in answers]
        codes = sorted({f"{a.status} {a.code}" for a in answers})
        return (
            f"p50 {pct(ms, 50):6.1f} ms, p95 {pct(ms, 95):6.1f} ms, max {max(ms):6.1f} ms ({len(ms)} uploads: {', '.join(codes)})"
        )

    return [
        f"normal uploads from {NORMAL_FROM} while {BOMBS_FROM} sends the scan bomb {bombs} times (one every 40 ms):",
        f"  unloaded:        {stats(quiet)}",
        f"  during the bombs: {stats(loaded)}",
        f"  the bombs:        {stats(bomb_answers)}",
        f"  {'PASS' if p95 <= NORMAL_P95_MS_MAX else 'FAIL'}: normal uploads' p95 {p95:.1f} ms <= {NORMAL_P95_MS_MAX:.0f} ms",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="times each file is sent")
    parser.add_argument("--bombs", type=int, default=20)
    parser.add_argument("--normal", type=int, default=60, help="normal uploads at least, unloaded and during the bombs")
    parser.add_argument("--skip-passing", action="store_true", help="leave out the costliest passing files")
    args = parser.parse_args()
    print(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), machine_line(ROOT), flush=True)
    redis_url, prefix = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13"), f"bench-{uuid.uuid4().hex[:8]}:"
    corpus()  # built before the stack starts (a few seconds)
    try:
        log_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"hostile-{prefix[:-1]}"
        with (
            throwaway_database() as db_url,
            Stack(
                port=free_port(),
                redis_url=redis_url,
                log_dir=log_dir,
                env={"REDIS_PREFIX": prefix, "DATABASE_URL": db_url, **UNTHROTTLED},
            ) as stack,
        ):
            print("\n".join(corpus_answers(stack, args.rounds)), flush=True)
            print("\n".join(normal_during_bombs(stack, args.bombs, args.normal)), flush=True)
            if not args.skip_passing:
                print("\n".join(passing_costs(stack, args.rounds)), flush=True)
    finally:
        redis_prefix_clear(redis_url, prefix)


if __name__ == "__main__":
    main()
