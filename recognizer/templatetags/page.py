"""What the drawing page's JavaScript needs from the server, as data- attributes of its <html>
(templates/recognizer/index.html; read once by recognizer/static/recognizer/config.js), so that the
page repeats none of it: the WebSocket's path from recognizer.routing (the upload API's comes from
{% url %}), and the limits the page enforces from recognizer.protocol and the upload settings.
"""

from __future__ import annotations

import functools

from django import template
from django.conf import settings
from django.utils.html import format_html_join
from django.utils.safestring import SafeString

from recognizer import protocol

register = template.Library()


@register.simple_tag
@functools.cache
def socket_path() -> str:
    """The recognising socket's path, as recognizer.routing routes it ("/ws/recognize/"). Imported
    when a page is first rendered rather than with the template tags: the consumer's imports are the
    web process's, not every template user's."""
    from recognizer.consumers import RecognizeConsumer
    from recognizer.routing import websocket_urlpatterns

    (route,) = (p for p in websocket_urlpatterns if getattr(p.callback, "consumer_class", None) is RecognizeConsumer)
    return "/" + str(route.pattern)


def limits() -> dict[str, int | float]:
    """The limits the page enforces, by the name of their data- attribute (less "data-")."""
    return {
        "max-strokes": protocol.MAX_STROKES,  # strokes a drawing
        "max-stroke-points": protocol.MAX_POINTS_PER_STROKE,  # points a stroke
        "max-canvas": protocol.MAX_CANVAS,  # CSS px a side of a drawing's coordinate space
        "max-brush": protocol.MAX_BRUSH,  # the brush's diameter, CSS px
        "upload-max-bytes": settings.UPLOAD_MAX_BYTES,  # an image's size (recognizer.views.api_predict)
    }


def _number(value: int | float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)  # 4096.0 -> "4096"


@register.simple_tag
def page_limits() -> SafeString:
    """The limits as data- attributes: data-max-strokes="64" data-max-stroke-points="10000" ..."""
    return format_html_join(" ", 'data-{}="{}"', ((name, _number(value)) for name, value in limits().items()))
