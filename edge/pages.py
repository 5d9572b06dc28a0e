"""The edge's refusals as a person sees them: a page request (a GET or HEAD outside /api/ whose Accept
prefers text/html, as a browser's navigation does) is answered a small HTML page; the API, and any
client that asks for JSON (or for anything, */*), keep the JSON error body (contract.errors)."""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

HTML_TYPES = ("text/html", "application/xhtml+xml")
CONTENT_TYPE = b"text/html; charset=utf-8"
HEAD_MAX_BYTES = 8192  # of a raw request read for its Accept header (edge.serve's refused connections)

TITLES = {400: "Bad request", 403: "Forbidden", 413: "Too large", 429: "Too many requests"}


def _quality(params: list[str]) -> float:
    for param in params:
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "q":
            try:
                return max(0.0, min(1.0, float(value)))
            except ValueError:
                return 0.0
    return 1.0


def prefers_html(accept: str) -> bool:
    """Whether `accept` ranks HTML (named: text/html or application/xhtml+xml) above JSON (named, or
    through application/* or */*)."""
    html = json = 0.0
    wildcard = None
    for item in accept.split(","):
        media, *params = item.split(";")
        media = media.strip().lower()
        q = _quality(params)
        if media in HTML_TYPES:
            html = max(html, q)
        elif media == "application/json":
            json = max(json, q)
        elif media in ("*/*", "application/*"):
            wildcard = q if wildcard is None else max(wildcard, q)
    if json == 0.0 and wildcard is not None:
        json = wildcard
    return html > 0.0 and html > json


def wants_page(method: str, path: str, accept: str) -> bool:
    """A browser's page request: answered a page rather than JSON."""
    return method.upper() in ("GET", "HEAD") and not path.startswith("/api/") and prefers_html(accept)


def scope_wants_page(scope: dict) -> bool:
    """wants_page for an ASGI HTTP scope."""
    return wants_page(scope.get("method", ""), scope.get("path", ""), header(scope.get("headers") or [], b"accept"))


def header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str:
    """The values of header `name` (lower case), joined by commas."""
    values = [value.decode("latin-1") for key, value in headers if key.lower() == name]
    return ", ".join(values)


def head_wants_page(head: bytes) -> bool:
    """wants_page for a raw HTTP/1 request head (its request line and headers; nothing else parsed)."""
    lines = head[:HEAD_MAX_BYTES].split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
        return False
    headers = [tuple(line.split(b":", 1)) for line in lines[1:] if b":" in line]
    accept = header(((k.strip(), v.strip()) for k, v in headers), b"accept")
    return wants_page(parts[0].decode("latin-1"), parts[1].decode("latin-1"), accept)


def error_page(status: int, message: str) -> bytes:
    """A small, self-contained HTML page for an error `status`."""
    title = TITLES.get(status, "Error")
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{status} {escape(title)}</title>"
        "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;color:#222}"
        "h1{font-size:1.4em}</style></head>"
        f"<body><h1>{escape(title)}</h1><p>{escape(message)}</p>"
        '<p><a href="">Try again</a> · <a href="/">Home</a></p></body></html>\n'
    ).encode()


def too_many_page(retry_after: int) -> bytes:
    return error_page(429, f"Too many requests from your address — try again in {retry_after} s.")
