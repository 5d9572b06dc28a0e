"""Celery's Redis transport, minus a per-command cost.

kombu builds a new redis-py client for every command it sends, and each redis-py client copies a
table of ~170 response callbacks: about 0.4 ms of Python per command on a small machine, three or
more times per task. A client only wraps the channel's connection pool and is safe to share, so
each channel keeps one.

It serves redis:// and rediss:// URLs: use_as_redis_transport() (digitsite/celery.py calls it) puts it
under kombu's own aliases, so the broker URL keeps its scheme and tools that read it (Flower's broker
page and queue lengths, `celery inspect`'s broker info) take it for the Redis broker it is.
"""

import logging
from typing import Any

from kombu import transport as kombu_transport
from kombu.transport import redis as kombu_redis

log = logging.getLogger(__name__)

TRANSPORT = "digitsite.broker:Transport"
SCHEMES = ("redis", "rediss")


class Channel(kombu_redis.Channel):
    _shared_client = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        kombus: Any = super()  # kombu's private API (its type stubs leave it out)
        if asynchronous:  # the worker's event-loop connection keeps kombu's own handling
            return kombus._create_client(asynchronous=True)
        if self._shared_client is None:
            self._shared_client = kombus._create_client()
        return self._shared_client

    def _brpop_read(self, **options: Any) -> Any:
        """kombu's, except that a message whose envelope cannot be read (not JSON, not kombu's shape:
        anything written into a queue's list by something other than a Celery producer) is logged and
        dropped instead of ending the worker ("Unrecoverable error"). It was already taken off the list."""
        kombus: Any = super()  # kombu's private API (its type stubs leave it out)
        channel: Any = self
        connection_errors = channel.connection_errors  # set on the channel by kombu
        try:
            return kombus._brpop_read(**options)
        except connection_errors:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            log.error("dropped an unreadable message from the broker: %r", exc)
            return True  # something was read; the worker goes on to the next


class Transport(kombu_redis.Transport):
    Channel = Channel


def use_as_redis_transport() -> None:
    """Make kombu resolve redis:// and rediss:// to this transport (before any connection is made)."""
    transports: Any = kombu_transport  # its resolution cache is private
    for scheme in SCHEMES:
        transports.TRANSPORT_ALIASES[scheme] = TRANSPORT
        transports._transport_cache.pop(scheme, None)  # resolved before: resolve again
