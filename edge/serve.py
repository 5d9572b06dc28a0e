"""The web process: daphne, with a graceful shutdown and a body limit. Same arguments as `daphne`.

daphne's own SIGTERM handling stops the reactor at once: sockets drop without a close frame and
submits being stored are cancelled. Here the first SIGTERM (or SIGINT) instead stops accepting
connections, lets open sockets finish their predictions and submits (edge.draining) and HTTP
requests in flight finish, all within WEB_DRAIN_S (10 s by default), then stops; a second signal
stops at once.

Bodies: twisted reads a whole request body (into memory up to 100 KB, then a temporary file) and
parses a multipart one on the event loop, before daphne hands the request to the app, so the app's
limit (edge.limits) came after the cost: a 100 MB multipart POST held every socket of the
process for seconds. Here a body over settings.REQUEST_MAX_BYTES is answered `too_large` as soon as its
declared length is known (or, chunked, as soon as it passes the limit), the rest is discarded
unread, and no form is ever parsed (daphne
passes the raw body on; nothing reads twisted's parsed form).

Floods: a new connection from an address that was refused by a rate limit and has not waited out
its Retry-After is answered 429 here, before any HTTP is parsed (edge.penalties).

Hangs: an event loop that stops turning for WEB_LOOP_STALL_LIMIT_S (30 s) ends the process for a
fresh one (edge.watchdog); its sockets reconnect to the others meanwhile.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import sys
import time
from typing import Any

import daphne.server
from daphne.cli import CommandLineInterface
from daphne.http_protocol import HTTPFactory, WebRequest
from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol
from twisted.internet import defer
from twisted.internet import reactor as _reactor
from twisted.internet.protocol import Protocol

from contract.errors import error_body
from edge import draining
from edge.pages import HEAD_MAX_BYTES, head_wants_page
from edge.penalties import Penalties, penalties, refusal
from edge.proxies import is_trusted, parse_networks
from edge.watchdog import Watchdog, watch_event_loop

# Twisted's reactor and transports are zope interfaces, which mypy cannot check calls against.
reactor: Any = _reactor

log = logging.getLogger("edge.serve")

DRAIN_S = float(os.environ.get("WEB_DRAIN_S", "10"))
LOOP_STALL_LIMIT_S = float(os.environ.get("WEB_LOOP_STALL_LIMIT_S", "30"))
CLOSE_WAIT_S = 2.0  # for clients to answer the close frames (the closing handshake)


LINGER_S = 10.0  # how long a refused body may go on arriving (discarded) before the connection is cut


def _max_body_bytes() -> int:
    from django.conf import settings  # configured by the time a request arrives (the app is loaded)

    return int(settings.REQUEST_MAX_BYTES)


class LimitedRequest(WebRequest):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._parsePOSTFormSubmission = False  # daphne sends the raw body on; the parsed form is unused
        self._received = 0
        self._refused = False

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > _max_body_bytes():
            self._refuse()
        super().gotLength(None if self._refused else length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._received += len(data)
        if self._received > _max_body_bytes():
            self._refuse()
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if not self._refused:
            super().requestReceived(command, path, version)

    def _refuse(self) -> None:
        """Answer the API's `too_large` error and close the connection without reading the rest."""
        self._refused = True
        limit_mb = _max_body_bytes() // 2**20
        body = error_body("too_large", f"request bodies up to {limit_mb} MB")
        transport: Any = self.channel.transport
        transport.write(
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )
        # A lingering close: closing with the body still arriving would reset the connection, and a
        # client still sending (most do) would see a broken pipe instead of the answer. So: end our
        # side after the answer, discard what still comes (handleContentChunk), and cut it off after
        # LINGER_S at the latest.
        transport.loseWriteConnection()
        reactor.callLater(LINGER_S, transport.abortConnection)


REFUSED_LINGER_S = 2.0  # how long a refused connection's request may go on arriving (discarded)


HEAD_WAIT_S = 0.25  # how long a refused connection's answer waits for the request's head (its Accept)


class RefusedConnection(Protocol):
    """A connection from an address still serving its penalty: held a moment (unread), answered 429,
    closed. The request is never parsed: only its head is scanned for a browser's page request (its
    request line and Accept, edge.pages), answered a small HTML page instead of the JSON error."""

    def __init__(self, address: str, box: Penalties) -> None:
        self.address, self.box = address, box
        self.held = False
        self.ready = False  # its hold is over: answered once its head is in (or after HEAD_WAIT_S)
        self.answered = False
        self.head = b""
        self.calls: list[Any] = []

    transport: Any

    def connectionMade(self) -> None:
        hold = self.box.hold(self.address)
        self.held = hold is not None
        if hold:
            self.transport.pauseProducing()  # nothing is read (or parsed) while it waits
            self.calls.append(reactor.callLater(hold, self._answer))
        else:
            self._answer()

    def _answer(self) -> None:
        self._release()
        self.ready = True
        self.transport.resumeProducing()  # read the head, discard the rest: closing on unread data resets
        if b"\r\n\r\n" in self.head or len(self.head) >= HEAD_MAX_BYTES:
            self._write()
        else:
            self.calls.append(reactor.callLater(HEAD_WAIT_S, self._write))

    def _write(self) -> None:
        if self.answered or self.transport is None:
            return
        self.answered = True
        self.transport.write(refusal(self.box.remaining(self.address), page=head_wants_page(self.head)))
        self.transport.loseWriteConnection()
        self.calls.append(reactor.callLater(REFUSED_LINGER_S, self.transport.abortConnection))

    def dataReceived(self, data: bytes) -> None:
        if self.answered or len(self.head) >= HEAD_MAX_BYTES:
            return
        self.head = (self.head + data)[:HEAD_MAX_BYTES]
        if self.ready and (b"\r\n\r\n" in self.head or len(self.head) >= HEAD_MAX_BYTES):
            self._write()  # the head is in: answer now rather than after HEAD_WAIT_S

    def connectionLost(self, reason: Any = None) -> None:
        self._release()
        for call in self.calls:
            if call.active():
                call.cancel()

    def _release(self) -> None:
        if self.held:
            self.held = False
            self.box.release(self.address)


@functools.cache
def _trusted_proxies() -> Any:
    from django.conf import settings  # configured by the time a connection arrives (the app is loaded)

    return parse_networks(settings.TRUSTED_PROXIES)


class LimitedHTTPFactory(HTTPFactory):
    def buildProtocol(self, addr: Any) -> Any:
        host = getattr(addr, "host", None)
        if host is not None and penalties.remaining(host) > 0 and not is_trusted(host, _trusted_proxies()):
            return RefusedConnection(host, penalties)
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = LimitedRequest
        return protocol


class DrainingServer(Server):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "signal_handlers": False})
        self.ports: list[Any] = []
        self.draining = False
        self.drain_task: asyncio.Future[None] | None = None  # held: the loop keeps only a weak reference

    def listen_success(self, port: Any) -> None:
        self.ports.append(port)
        super().listen_success(port)

    def run(self) -> None:
        # Server.run builds its factory from the module's HTTPFactory name: use the limited one
        daphne.server.HTTPFactory = LimitedHTTPFactory
        reactor.callWhenRunning(self._install_signal_handlers)
        reactor.callWhenRunning(self._watch_loop)
        super().run()

    def _watch_loop(self) -> None:
        dog = Watchdog(LOOP_STALL_LIMIT_S)
        watch_event_loop(asyncio.get_event_loop(), dog)  # the reactor's loop
        dog.start()
        log.info("event loop watched: a stall of %.0f s ends this process", LOOP_STALL_LIMIT_S)

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_event_loop()  # the reactor's loop
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.draining:
            log.warning("%s again: stopping now", sig.name)
            self.stop()
            return
        self.draining = True
        log.warning("%s: draining (at most %.0f s)", sig.name, DRAIN_S)
        self.drain_task = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        started = time.monotonic()
        try:
            # new connections go to the other web processes (or wait in the shared socket's backlog)
            await asyncio.gather(
                *(defer.maybeDeferred(port.stopListening).asFuture(asyncio.get_running_loop()) for port in self.ports)
            )
            sockets, requests = await asyncio.gather(draining.drain(DRAIN_S), self._requests_done(started + DRAIN_S))
            await self._sockets_closed(time.monotonic() + CLOSE_WAIT_S)  # the close frames go out
            log.warning("drained %d sockets and %d requests in %.2f s", sockets, requests, time.monotonic() - started)
        except Exception:
            log.exception("draining failed; stopping anyway")
        finally:
            self.stop()

    async def _requests_done(self, deadline: float) -> int:
        """Wait until the HTTP requests in flight are answered (or `deadline`); returns their number."""
        requests = [
            d["application_instance"]
            for p, d in list(self.connections.items())
            if not isinstance(p, WebSocketProtocol) and "application_instance" in d and not d["application_instance"].done()
        ]
        if requests:
            await asyncio.wait(requests, timeout=max(0.0, deadline - time.monotonic()))
        return len(requests)

    async def _sockets_closed(self, deadline: float) -> None:
        """Wait until the sockets told to close have closed (their closing handshakes done)."""
        # A poll of the server's connection table: nothing signals a close to wait on.
        while time.monotonic() < deadline and any(  # noqa: ASYNC110
            isinstance(p, WebSocketProtocol) and "disconnected" not in d for p, d in list(self.connections.items())
        ):
            await asyncio.sleep(0.02)


class DrainingCommandLine(CommandLineInterface):
    server_class = DrainingServer


def main(argv: list[str] | None = None) -> None:
    DrainingCommandLine().run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
