"""ASGI entry point: HTTP through Django, WebSockets through Channels (served by edge.serve).

Outermost first: the client's real address (TrustedProxies), then for HTTP the origin check of API
POSTs (before any limit is counted), per-address limits and the body limit; for WebSockets the exact
origin check.
"""

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "digitsite.settings.local")
django_asgi_app: Any = get_asgi_application()  # set up Django before importing consumers

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from edge.limits import RequestBodyLimit  # noqa: E402
from edge.origins import SameOriginPosts, SameOriginWebSocket  # noqa: E402
from edge.proxies import TrustedProxies, parse_networks  # noqa: E402
from edge.throttle import HttpThrottle  # noqa: E402
from recognizer.routing import websocket_urlpatterns  # noqa: E402

application = TrustedProxies(
    ProtocolTypeRouter(
        {
            "http": SameOriginPosts(
                HttpThrottle(RequestBodyLimit(django_asgi_app, settings.REQUEST_MAX_BYTES)),
                settings.ALLOWED_HOSTS,
                settings.CSRF_TRUSTED_ORIGINS,
            ),
            "websocket": SameOriginWebSocket(
                URLRouter(websocket_urlpatterns), settings.ALLOWED_HOSTS, settings.CSRF_TRUSTED_ORIGINS
            ),
        }
    ),
    parse_networks(settings.TRUSTED_PROXIES),
)
