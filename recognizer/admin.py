import base64

from django.contrib import admin
from django.utils.html import format_html

from recognizer.images import image28_png
from recognizer.models import Drawing


WAITING = "waiting for its prediction"


def _png_img(data: bytes, size: int, pixelated: bool = False) -> str:
    style = "image-rendering: pixelated;" if pixelated else ""
    return format_html(
        '<img src="data:image/png;base64,{}" width="{}" height="{}" style="{}border:1px solid #ccc;background:#fff" alt="">',
        base64.b64encode(bytes(data)).decode(),
        size,
        size,
        style,
    )


class WaitingFilter(admin.SimpleListFilter):
    """Drawings are stored first and predicted after: find the ones still waiting."""

    title = "prediction"
    parameter_name = "prediction"

    def lookups(self, request, model_admin):
        return [("waiting", "still waiting"), ("done", "predicted")]

    def queryset(self, request, queryset):
        if self.value() in ("waiting", "done"):
            return queryset.filter(predicted_at__isnull=self.value() == "waiting")
        return queryset


@admin.register(Drawing)
class DrawingAdmin(admin.ModelAdmin):
    list_display = ("id", "thumbnail", "predicted_digit", "confidence_pct", "uncertain", "label", "model_name",
                    "latency_ms", "created_at")
    list_display_links = ("id", "thumbnail")
    list_filter = (WaitingFilter, "predicted_digit", "label", "uncertain", "model_name", "created_at")
    search_fields = ("=id", "client_id", "model_name")
    date_hierarchy = "created_at"
    list_per_page = 50
    readonly_fields = (
        "drawing_image", "image28_view", "client_id", "predicted_digit", "confidence", "probabilities",
        "uncertain", "reason", "model_name", "canvas_width", "canvas_height", "brush", "latency_ms", "created_at",
        "predicted_at", "prediction_attempts", "strokes",
    )
    fields = ("drawing_image", "image28_view", "label") + readonly_fields[2:]

    def get_queryset(self, request):  # the list needs no stroke JSON
        return super().get_queryset(request).defer("strokes", "probabilities")

    @admin.display(description="drawing")
    def thumbnail(self, obj: Drawing) -> str:
        return _png_img(obj.png, 56) if obj.png else WAITING

    @admin.display(description="drawing")
    def drawing_image(self, obj: Drawing) -> str:
        return _png_img(obj.png, 280) if obj.png else WAITING

    @admin.display(description="28×28 image the model saw")
    def image28_view(self, obj: Drawing) -> str:
        return _png_img(image28_png(bytes(obj.image28)), 140, pixelated=True) if obj.image28 else WAITING

    @admin.display(description="confidence", ordering="confidence")
    def confidence_pct(self, obj: Drawing) -> str:
        return "—" if obj.confidence is None else f"{obj.confidence:.1%}"
