"""Staff pages under /review/ (included by digitsite/urls.py): the triage page and its API
(review.triage), the models page (review.serving), the dashboard (review.dashboard) and the
operations page (review.operations)."""

from django.urls import path

from review import dashboard, operations, serving
from review import triage as review

app_name = "review"

urlpatterns = [
    path("", review.triage, name="triage"),
    path("api/queue", review.api_queue, name="queue"),
    path("api/drawings/<int:pk>", review.api_review, name="review"),
    path("models/", serving.models_page, name="models"),
    path("models/current", serving.models_make_current, name="make-current"),
    path("models/roll-back", serving.models_roll_back, name="roll-back"),
    path("dashboard/", dashboard.dashboard, name="dashboard"),
    path("dashboard/confusion.png", dashboard.dashboard_confusion_png, name="confusion-png"),
    path("operations/", operations.operations_page, name="operations"),
    path("operations/figures.json", operations.operations_figures, name="operations-figures"),
]
