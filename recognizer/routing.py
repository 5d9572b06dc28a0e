from django.urls import path

from recognizer.consumers import RecognizeConsumer

websocket_urlpatterns = [path("ws/recognize/", RecognizeConsumer.as_asgi())]
