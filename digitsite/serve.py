"""The web process: daphne, with a graceful shutdown. Same arguments as the `daphne` command.

daphne's own SIGTERM handling stops the reactor at once: sockets drop without a close frame and
submits being stored are cancelled. Here the first SIGTERM (or SIGINT) instead stops accepting
connections, lets open sockets finish their predictions and submits (recognizer.draining) and HTTP
requests in flight finish, all within WEB_DRAIN_S (10 s by default), then stops; a second signal
stops at once.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from typing import Any

from daphne.cli import CommandLineInterface
from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol
from twisted.internet import defer, reactor

log = logging.getLogger("digitsite.serve")

DRAIN_S = float(os.environ.get("WEB_DRAIN_S", "10"))
CLOSE_WAIT_S = 2.0  # for clients to answer the close frames (the closing handshake)


class DrainingServer(Server):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "signal_handlers": False})
        self.ports: list[Any] = []
        self.draining = False

    def listen_success(self, port: Any) -> None:
        self.ports.append(port)
        super().listen_success(port)

    def run(self) -> None:
        reactor.callWhenRunning(self._install_signal_handlers)
        super().run()

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
        asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        started = time.monotonic()
        try:
            # new connections go to the other web processes (or wait in the shared socket's backlog)
            await asyncio.gather(*(defer.maybeDeferred(port.stopListening).asFuture(asyncio.get_running_loop())
                                   for port in self.ports))
            from recognizer import draining  # the app (and so Django) is loaded by now

            sockets, requests = await asyncio.gather(draining.drain(DRAIN_S), self._requests_done(started + DRAIN_S))
            await self._sockets_closed(time.monotonic() + CLOSE_WAIT_S)  # the close frames go out
            log.warning("drained %d sockets and %d requests in %.2f s", sockets, requests, time.monotonic() - started)
        except Exception:
            log.exception("draining failed; stopping anyway")
        finally:
            self.stop()

    async def _requests_done(self, deadline: float) -> int:
        """Wait until the HTTP requests in flight are answered (or `deadline`); returns their number."""
        requests = [d["application_instance"] for p, d in list(self.connections.items())
                    if not isinstance(p, WebSocketProtocol) and "application_instance" in d
                    and not d["application_instance"].done()]
        if requests:
            await asyncio.wait(requests, timeout=max(0.0, deadline - time.monotonic()))
        return len(requests)


    async def _sockets_closed(self, deadline: float) -> None:
        """Wait until the sockets told to close have closed (their closing handshakes done)."""
        while time.monotonic() < deadline and any(
                isinstance(p, WebSocketProtocol) and "disconnected" not in d for p, d in list(self.connections.items())):
            await asyncio.sleep(0.02)


class DrainingCommandLine(CommandLineInterface):
    server_class = DrainingServer


def main(argv: list[str] | None = None) -> None:
    DrainingCommandLine().run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
