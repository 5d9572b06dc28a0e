"""The error body every part answers with: on the page's socket, in HTTP answers of the app and of
the edge (limits, origins, penalties), and for the workers' job errors once they reach the page.

`{"type": "error", "code": ..., "message": ...}`, with the `seq` of the socket message it answers
and `retry_after` (seconds) where a limit refused it.
"""

from __future__ import annotations

import json
from typing import Literal, NotRequired, TypedDict


class ErrorMessage(TypedDict):
    type: Literal["error"]
    code: str
    message: str
    seq: NotRequired[int | None]  # on the socket: the message it answers (None: none); not in HTTP bodies
    retry_after: NotRequired[float]  # seconds


class _NoSeq:
    pass


NO_SEQ = _NoSeq()  # an HTTP error body: it answers no socket message


def error_message(
    code: str, message: str, *, seq: int | _NoSeq | None = NO_SEQ, retry_after: float | None = None
) -> ErrorMessage:
    """The error body: on the socket with the `seq` it answers, in an HTTP answer without one."""
    body: ErrorMessage = {"type": "error", "code": code, "message": message}
    if not isinstance(seq, _NoSeq):
        body["seq"] = seq
    if retry_after is not None:
        body["retry_after"] = retry_after
    return body


def error_body(code: str, message: str) -> bytes:
    """An HTTP answer's error body, encoded (the edge writes it before any view runs)."""
    return json.dumps(error_message(code, message)).encode()
