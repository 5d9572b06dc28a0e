"""The triage page and its API (recognizer.review), included under /review/ by digitsite/urls.py."""
from django.urls import path

from recognizer import review

app_name = "review"

urlpatterns = [
    path("", review.triage, name="triage"),
    path("api/queue", review.api_queue, name="queue"),
    path("api/drawings/<int:pk>", review.api_review, name="review"),
]
