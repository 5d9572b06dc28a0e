"""The Celery worker's consumer, minus a long wait for a broker that comes back.

kombu's default waits 2, 4, 6 ... up to 30 s between attempts to reach a broker that went away, so a
worker could stay away half a minute after Redis is back. This one tries every second. Selected with
CELERY_WORKER_CONSUMER (only workers import it).
"""

from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer

RECONNECT_EVERY_S = 1.0


class Consumer(CeleryConsumer):
    def ensure_connected(self, conn: Any) -> Any:
        ensure = conn.ensure_connection

        def quick(*args: Any, **kwargs: Any) -> Any:
            kwargs.update(interval_start=0, interval_step=RECONNECT_EVERY_S, interval_max=RECONNECT_EVERY_S)
            return ensure(*args, **kwargs)

        conn.ensure_connection = quick
        return super().ensure_connected(conn)
