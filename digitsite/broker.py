"""Celery's Redis transport, minus a per-command cost.

kombu builds a new redis-py client for every command it sends, and each redis-py client copies a
table of ~170 response callbacks: about 0.4 ms of Python per command on a small machine, three or
more times per task. A client only wraps the channel's connection pool and is safe to share, so
each channel keeps one. Selected with CELERY_BROKER_TRANSPORT.
"""
from typing import Any

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _shared_client = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:  # the worker's event-loop connection keeps kombu's own handling
            return super()._create_client(asynchronous=True)
        if self._shared_client is None:
            self._shared_client = super()._create_client()
        return self._shared_client


class Transport(kombu_redis.Transport):
    Channel = Channel
