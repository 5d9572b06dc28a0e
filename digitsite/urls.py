from django.contrib import admin
from django.urls import include, path

from recognizer import metrics, views

urlpatterns = [
    path("", views.index, name="index"),
    path("api/predict", views.api_predict, name="api-predict"),
    path("healthz", views.healthz, name="healthz"),
    path("livez", views.livez, name="livez"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("review/", include("review.urls")),
]
