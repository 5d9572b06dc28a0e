"""Hostile WebSocket frames, by category (GENERATORS), and how a socket answers them."""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import websockets

from bench.load import BRUSH, CANVAS


@dataclass(frozen=True)
class Frame:
    category: str
    payload: str | bytes
    text: bool  # a text frame (bytes sent as text: invalid UTF-8)
    # the closes that are documented for this frame (None: the TCP connection dropped, no close
    # frame); any other frame is owed an `error`
    closes: tuple[int | None, ...] = ()


OVER_FRAME = 4 * 2**20  # docs/protocol.md: a frame over 4 MB closes the connection (1009, RFC 6455)
JSON_LIMIT = 256 * 1024  # over this, `too_large`


def _stroke(seq: int, /, **fields: Any) -> dict[str, Any]:
    msg = {
        "type": "stroke",
        "seq": seq,
        "drawing": "f",
        "stroke": 0,
        "points": [[10, 10], [20, 20]],
        "final": False,
        "canvas": [CANVAS, CANVAS],
        "brush": BRUSH,
    }
    msg.update(fields)
    return {k: v for k, v in msg.items() if v is not _MISSING}


_MISSING = object()


def _dumps(obj: Any) -> str:
    return json.dumps(obj, allow_nan=True)


def _gen_random_binary(rng: random.Random, seq: int) -> Frame:
    return Frame("random bytes (binary)", rng.randbytes(rng.randint(0, 4096)), text=False)


def _gen_binary_json(rng: random.Random, seq: int) -> Frame:
    return Frame("valid JSON in a binary frame", _dumps(_stroke(seq)).encode(), text=False)


def _gen_invalid_utf8(rng: random.Random, seq: int) -> Frame:
    # RFC 6455 8.1: a text frame that is not UTF-8 fails the connection (7.1.7: a close frame, 1007, is
    # optional; autobahn, under daphne, drops the TCP connection)
    bad = rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80"])
    body = _dumps(_stroke(seq)).encode()
    cut = rng.randint(0, len(body))
    return Frame("invalid UTF-8 (text)", body[:cut] + bad + body[cut:], text=True, closes=(1007, None))


def _gen_random_text(rng: random.Random, seq: int) -> Frame:
    alphabet = '{}[]":,0123456789abcdefnulltrue \t\n\\/éあ\u2028\x00'
    return Frame("random text", "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 2000))) + "}", text=True)


def _gen_truncated(rng: random.Random, seq: int) -> Frame:
    body = _dumps(_stroke(seq, points=[[rng.uniform(0, 280), rng.uniform(0, 280)] for _ in range(20)]))
    return Frame("truncated JSON", body[: rng.randint(0, len(body) - 1)], text=True)


def _gen_not_object(rng: random.Random, seq: int) -> Frame:
    choices = ["[]", "null", "7", '"stroke"', "true", f"[{_dumps(_stroke(seq))}]"]
    return Frame("JSON, not an object", rng.choice(choices), text=True)


def _gen_deep(rng: random.Random, seq: int) -> Frame:
    depth = rng.randint(2_000, 60_000)
    if rng.random() < 0.5:
        return Frame("deeply nested JSON", "[" * depth + "]" * depth, text=True)
    return Frame(
        "deeply nested JSON", f'{{"type":"stroke","seq":{seq},"points":' + '{"a":' * depth + "1" + "}" * depth + "}", text=True
    )


def _gen_huge_json(rng: random.Random, seq: int) -> Frame:
    size = rng.randint(JSON_LIMIT + 1, OVER_FRAME - 1024)
    return Frame("JSON over 256 KB (up to 4 MB)", _dumps({"type": "stroke", "seq": seq, "pad": "x" * size}), text=True)


def _gen_oversized(rng: random.Random, seq: int) -> Frame:
    size = rng.randint(OVER_FRAME + 1, OVER_FRAME + 2**20)
    return Frame("frame over 4 MB", _dumps({"type": "stroke", "seq": seq, "pad": "x" * size}), text=True, closes=(1009, None))


def _gen_unknown_type(rng: random.Random, seq: int) -> Frame:
    kind = rng.choice(["hello", "", "STROKE", None, 7, ["stroke"], {"t": 1}, _MISSING])
    return Frame("unknown or missing type", _dumps(_stroke(seq, type=kind)), text=True)


def _gen_wrong_types(rng: random.Random, seq: int) -> Frame:
    fld, value = rng.choice(
        [
            ("seq", str(seq)),
            ("seq", seq + 0.5),
            ("seq", None),
            ("seq", True),
            ("drawing", 5),
            ("drawing", None),
            ("points", {"x": 1}),
            ("points", "10,10"),
            ("points", [[1, "2"]]),
            ("points", [[True, 1]]),
            ("final", 1),
            ("final", "true"),
            ("canvas", "280x280"),
            ("canvas", [280]),
            ("brush", "18"),
            ("brush", None),
            ("stroke", 1.5),
            ("stroke", "0"),
            ("points", _MISSING),
            ("final", _MISSING),
            ("canvas", _MISSING),
        ]
    )
    return Frame("wrong types, missing fields", _dumps(_stroke(seq, **{fld: value})), text=True)


def _gen_wrong_submit(rng: random.Random, seq: int) -> Frame:
    label = rng.choice([10, -1, "3", 3.5, True, [3]])
    return Frame("bad submit label", _dumps({"type": "submit", "seq": seq, "drawing": "f", "label": label}), text=True)


def _gen_nan_inf(rng: random.Random, seq: int) -> Frame:
    value = rng.choice([math.nan, math.inf, -math.inf])
    fld = rng.choice(["points", "brush", "canvas", "seq", "stroke"])
    obj = _stroke(seq)
    obj[fld] = {"points": [[value, 1]], "canvas": [value, 280]}.get(fld, value)
    text = _dumps(obj)
    if rng.random() < 0.5:  # numbers that overflow to infinity pass the JSON parser's NaN check
        text = text.replace("Infinity", "1e999").replace("NaN", "-1e999")
    return Frame("NaN and infinities", text, text=True)


def _gen_negative(rng: random.Random, seq: int) -> Frame:
    fld, value = rng.choice(
        [("brush", -1), ("brush", 0), ("canvas", [-280, 280]), ("canvas", [280, 0]), ("stroke", -1), ("points", [[-1e6, 5]])]
    )
    return Frame("negative or zero numbers", _dumps(_stroke(seq, **{fld: value})), text=True)


def _gen_huge_seq(rng: random.Random, seq: int) -> Frame:
    big = rng.choice([2**53, 2**63, -(2**63), 10**30, -(10**400), 10**4000])
    return Frame("huge seq", _dumps(_stroke(big)), text=True)


def _gen_out_of_range(rng: random.Random, seq: int) -> Frame:
    fld, value = rng.choice(
        [
            ("points", [[1e6, 5]]),
            ("points", [[5, 100_001]]),
            ("points", [[1, 2, 3]]),
            ("points", [[1]]),
            ("points", [[]]),
            ("canvas", [10_001, 280]),
            ("brush", 1_001),
            ("stroke", 64),
            ("stroke", 2**40),
            ("stroke", 3),
        ]
    )
    return Frame("values out of range", _dumps(_stroke(seq, **{fld: value})), text=True)


def _gen_long_stroke(rng: random.Random, seq: int) -> Frame:
    n = rng.randint(10_001, 12_000)
    points = [[round(rng.uniform(0, 280), 2), round(rng.uniform(0, 280), 2)] for _ in range(n)]
    return Frame("stroke over 10,000 points", _dumps(_stroke(seq, points=points)), text=True)


def _gen_bad_drawing(rng: random.Random, seq: int) -> Frame:
    drawing = rng.choice(["", "x" * 65, "a b", "d/1", "é", "<script>", "d\x00", "𝟘"])
    return Frame("bad drawing id", _dumps(_stroke(seq, drawing=drawing)), text=True)


def _gen_empty_submit(rng: random.Random, seq: int) -> Frame:
    kind = rng.choice(["submit", "undo", "clear"])
    if kind == "submit":  # nothing drawn on this socket: nothing to store
        return Frame("submit of nothing", _dumps({"type": "submit", "seq": seq, "drawing": "f", "label": 3}), text=True)
    return Frame("submit of nothing", _dumps({"type": kind, "seq": seq, "drawing": "x" * 65}), text=True)


def _gen_text_oddities(rng: random.Random, seq: int) -> Frame:
    body = _dumps(_stroke(seq))
    return Frame(
        "BOM, control characters",
        rng.choice(["\ufeff" + body, body.replace(",", ",\x00", 1), "\x00" * 64, body.replace('"stroke"', '"str\\ud800oke"', 1)]),
        text=True,
    )


GENERATORS: tuple[Callable[[random.Random, int], Frame], ...] = (
    _gen_random_binary,
    _gen_binary_json,
    _gen_invalid_utf8,
    _gen_random_text,
    _gen_truncated,
    _gen_not_object,
    _gen_deep,
    _gen_huge_json,
    _gen_oversized,
    _gen_unknown_type,
    _gen_wrong_types,
    _gen_wrong_submit,
    _gen_nan_inf,
    _gen_negative,
    _gen_huge_seq,
    _gen_out_of_range,
    _gen_long_stroke,
    _gen_bad_drawing,
    _gen_empty_submit,
    _gen_text_oddities,
)


@dataclass
class Tally:
    """Per category: how each hostile input was answered."""

    error: int = 0  # a protocol `error` / an HTTP 4xx JSON error
    closed: int = 0  # the documented close (WebSocket frames only)
    other: int = 0  # answered, but not with an error (accepted: a prediction, an HTTP 2xx)
    unanswered: int = 0  # nothing within the timeout, an undocumented close, a 5xx or a reset
    codes: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return self.error + self.closed + self.other + self.unanswered


async def fuzz_socket(url: str, frames: list[Frame], tallies: dict[str, Tally], *, timeout: float, interval: float) -> bool:
    """Send `frames` one at a time on one socket (a new one after each close), each awaited; then
    whether the last socket still predicts a real stroke."""
    ws_url = url.replace("http://", "ws://") + "/ws/recognize/"

    async def connect() -> Any:
        return await websockets.connect(ws_url, origin=url, max_size=2**22, open_timeout=timeout, write_limit=2**23)

    ws = await connect()
    try:
        for frame in frames:
            tally = tallies.setdefault(frame.category, Tally())
            started = time.perf_counter()
            try:
                await ws.send(frame.payload, text=frame.text)
                answer = json.loads(await asyncio.wait_for(ws.recv(), timeout))
                if answer.get("type") == "error":
                    tally.error += 1
                    tally.codes[answer["code"]] += 1
                else:
                    tally.other += 1
                    tally.codes[f"answered {answer.get('type')}"] += 1
            except websockets.ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else None
                if code in frame.closes:
                    tally.closed += 1
                else:
                    tally.unanswered += 1
                tally.codes[f"close {code or 'without a close frame'}"] += 1
                ws = await connect()
            except TimeoutError:
                tally.unanswered += 1
                tally.codes["no answer"] += 1
                await ws.close()
                ws = await connect()
            # the per-socket message budget (100/s) is not what this measures
            await asyncio.sleep(max(0.0, interval - (time.perf_counter() - started)))
        await ws.send(
            json.dumps(
                {
                    "type": "stroke",
                    "seq": 1,
                    "drawing": "ok",
                    "stroke": 0,
                    "points": [[60, 60], [200, 220]],
                    "final": True,
                    "canvas": [CANVAS, CANVAS],
                    "brush": BRUSH,
                }
            )
        )
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), timeout))
            if msg["type"] == "prediction":
                return msg["seq"] == 1 and msg["digit"] is not None
    except (TimeoutError, OSError, websockets.WebSocketException):
        return False
    finally:
        await ws.close()


def fuzz_frames(count: int, seed: int) -> list[Frame]:
    """`count` hostile frames, the categories in turn (each at least once when count >= their number)."""
    rng = random.Random(seed)
    return [GENERATORS[i % len(GENERATORS)](rng, i + 1) for i in range(count)]
