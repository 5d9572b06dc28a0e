"""The review desk: stored drawings listed with what the model said, labels fixed in place or a page at
a time (actions), wrong and unsure predictions found by filters, and the kept ones downloaded.

Every review write goes through DrawingQuerySet (models.py), the same as the triage page's."""
from __future__ import annotations

import base64
from collections.abc import Callable

from django.contrib import admin, messages
from django.db.models import F, Q, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.html import format_html

from recognizer.export import export_to_zip
from recognizer.images import image28_png
from recognizer.models import DIGIT_CHOICES, EFFECTIVE_LABEL, Drawing

WAITING = "waiting for its prediction"

# (value, title, lower bound inclusive, upper bound exclusive) of the model's confidence
CONFIDENCE_BANDS = [
    ("lt50", "below 50%", 0.0, 0.5),
    ("50-80", "50–80%", 0.5, 0.8),
    ("80-95", "80–95%", 0.8, 0.95),
    ("95-99", "95–99%", 0.95, 0.99),
    ("99+", "99% and more", 0.99, 1.01),
]


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

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("waiting", "still waiting"), ("done", "predicted")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Drawing]) -> QuerySet[Drawing]:
        if self.value() in ("waiting", "done"):
            return queryset.filter(predicted_at__isnull=self.value() == "waiting")
        return queryset


class ReviewedFilter(admin.SimpleListFilter):
    title = "reviewed"
    parameter_name = "reviewed"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "reviewed"), ("no", "not reviewed")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Drawing]) -> QuerySet[Drawing]:
        if self.value() in ("yes", "no"):
            return queryset.filter(reviewed_at__isnull=self.value() == "no")
        return queryset


class LabelledFilter(admin.SimpleListFilter):
    title = "labelled"
    parameter_name = "labelled"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "labelled"), ("person", "by the person"), ("reviewer", "by a reviewer"), ("no", "no label")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Drawing]) -> QuerySet[Drawing]:
        match self.value():
            case "yes":
                return queryset.filter(Q(label__isnull=False) | Q(review_label__isnull=False))
            case "person":
                return queryset.filter(label__isnull=False)
            case "reviewer":
                return queryset.filter(review_label__isnull=False)
            case "no":
                return queryset.filter(label__isnull=True, review_label__isnull=True)
        return queryset


class EffectiveLabelFilter(admin.SimpleListFilter):
    """The label training uses (the reviewer's, else the person's)."""

    title = "label used (reviewer's, else person's)"
    parameter_name = "effective"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(str(d), str(d)) for d, _ in DIGIT_CHOICES]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Drawing]) -> QuerySet[Drawing]:
        if self.value() in {str(d) for d in range(10)}:
            return queryset.alias(eff=EFFECTIVE_LABEL).filter(eff=int(self.value()))
        return queryset


class AgreementFilter(admin.SimpleListFilter):
    """Where the model and the label disagree: the drawings worth a look first."""

    title = "label vs prediction"
    parameter_name = "agreement"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("wrong", "label ≠ prediction"), ("right", "label = prediction")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Drawing]) -> QuerySet[Drawing]:
        if self.value() not in ("wrong", "right"):
            return queryset
        both = queryset.alias(eff=EFFECTIVE_LABEL).filter(eff__isnull=False, predicted_digit__isnull=False)
        if self.value() == "wrong":
            return both.exclude(eff=F("predicted_digit"))
        return both.filter(eff=F("predicted_digit"))


class ConfidenceFilter(admin.SimpleListFilter):
    title = "confidence"
    parameter_name = "confidence"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(value, title) for value, title, _, _ in CONFIDENCE_BANDS]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Drawing]) -> QuerySet[Drawing]:
        for value, _, low, high in CONFIDENCE_BANDS:
            if self.value() == value:
                return queryset.filter(confidence__gte=low, confidence__lt=high)
        return queryset


def _relabel_action(digit: int) -> Callable[[admin.ModelAdmin, HttpRequest, QuerySet[Drawing]], None]:
    def action(modeladmin: DrawingAdmin, request: HttpRequest, queryset: QuerySet[Drawing]) -> None:
        done = queryset.relabel(digit, by=request.user)
        modeladmin.message_user(request, f"{done} drawings labelled {digit} and marked reviewed.", messages.SUCCESS)

    action.__name__ = f"relabel_as_{digit}"  # the admin keys actions by name
    return admin.action(description=f"Label as {digit}")(action)


@admin.register(Drawing)
class DrawingAdmin(admin.ModelAdmin):
    list_display = ("id", "thumbnail", "predicted_digit", "confidence_pct", "uncertain", "person_label", "review_label",
                    "effective_label_col", "reviewed", "excluded", "model_name", "created_at")
    list_display_links = ("id", "thumbnail")
    list_editable = ("review_label",)
    list_filter = (ReviewedFilter, LabelledFilter, AgreementFilter, "uncertain", ConfidenceFilter, WaitingFilter,
                   EffectiveLabelFilter, "predicted_digit", "label", "excluded", "model_name", "created_at")
    search_fields = ("=id", "client_id", "model_name")
    date_hierarchy = "created_at"
    list_per_page = 50
    actions = ["mark_reviewed", "confirm_prediction", *[_relabel_action(d) for d in range(10)],
               "exclude_from_training", "include_in_training", "download_export"]
    readonly_fields = (
        "drawing_image", "image28_view", "label", "reviewed_at", "reviewed_by", "client_id", "predicted_digit",
        "confidence", "probabilities", "uncertain", "reason", "model_name", "canvas_width", "canvas_height", "brush",
        "latency_ms", "created_at", "predicted_at", "prediction_attempts", "strokes",
    )
    fields = ("drawing_image", "image28_view", "review_label", "excluded") + readonly_fields[2:]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Drawing]:  # the list needs no strokes or images
        return (super().get_queryset(request).defer("strokes", "probabilities", "image28")
                .select_related("reviewed_by").with_effective_label())

    def save_model(self, request: HttpRequest, obj: Drawing, form: ModelForm, change: bool) -> None:
        """A label or exclusion set by hand, in the list or the form, is a review."""
        if {"review_label", "excluded"} & set(form.changed_data):
            obj.reviewed_at, obj.reviewed_by = timezone.now(), request.user
        super().save_model(request, obj, form, change)

    # ---- columns
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

    @admin.display(description="person's label", ordering="label")
    def person_label(self, obj: Drawing) -> int | None:
        return obj.label

    @admin.display(description="label used", ordering="effective")
    def effective_label_col(self, obj: Drawing) -> int | None:
        return obj.effective_label

    @admin.display(description="reviewed", boolean=True, ordering="reviewed_at")
    def reviewed(self, obj: Drawing) -> bool:
        return obj.reviewed_at is not None

    # ---- actions
    @admin.action(description="Mark reviewed (labels as they are)")
    def mark_reviewed(self, request: HttpRequest, queryset: QuerySet[Drawing]) -> None:
        done = queryset.mark_reviewed(by=request.user)
        self.message_user(request, f"{done} drawings marked reviewed.", messages.SUCCESS)

    @admin.action(description="Confirm the prediction as the label")
    def confirm_prediction(self, request: HttpRequest, queryset: QuerySet[Drawing]) -> None:
        selected = queryset.count()
        done = queryset.confirm_prediction(by=request.user)
        skipped = f" ({selected - done} without a prediction left alone)" if selected > done else ""
        self.message_user(request, f"{done} predictions confirmed as labels{skipped}.", messages.SUCCESS)

    @admin.action(description="Exclude from training")
    def exclude_from_training(self, request: HttpRequest, queryset: QuerySet[Drawing]) -> None:
        done = queryset.exclude_from_training(by=request.user)
        self.message_user(request, f"{done} drawings excluded from training.", messages.SUCCESS)

    @admin.action(description="Include in training again")
    def include_in_training(self, request: HttpRequest, queryset: QuerySet[Drawing]) -> None:
        done = queryset.update(excluded=False)
        self.message_user(request, f"{done} drawings back in the training data.", messages.SUCCESS)

    @admin.action(description="Download as training data (zip: npz, strokes, CSV)")
    def download_export(self, request: HttpRequest, queryset: QuerySet[Drawing]) -> HttpResponse:
        data, summary = export_to_zip(queryset)
        response = HttpResponse(data, content_type="application/zip")
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response["Content-Disposition"] = f'attachment; filename="drawings-{stamp}.zip"'
        response["X-Export-Summary"] = summary.describe()
        return response
