"""The review desk: stored drawings listed with what the model said, labels fixed in place or a page at
a time (actions), wrong and unsure predictions found by filters, and the kept ones downloaded.

The list's filters and paginator are review.admin_list's (reads of review.selectors), every write an
action makes is a review.services write (the triage page's too), the download is review.downloads'.
Every action that writes needs the "change drawing" permission, the download its own ("export
drawing"): the admin offers a user only the actions they hold the permission for, and refuses (403)
a POST of any other. The download is of reviewed drawings unless its "with unreviewed" variant is
chosen, and streams the zip as the export makes it (memory flat in the number of rows, the first bytes
out at once; the summary is the zip's comment).

At a million drawings and more (docs/scale.md) a page costs the rows it shows, not the table: no
facets and no full count (EstimatedCountPaginator); the filters' choices are fixed (the models from
their cards, dates as fixed ranges, no date hierarchy); search is an exact id or client id, each one
index lookup; the list is newest first by id and sorts by confidence on an index; actions over a large
selection write it chunk by chunk (services.ACTION_CHUNK rows a transaction), so no lock is held on a
large selection at once."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponseBase
from django.utils import timezone
from django.utils.html import format_html

from recognizer.models import Drawing
from review import selectors, services
from review.admin_list import LIST_FILTERS, EstimatedCountPaginator
from review.downloads import StreamedZipResponse, zip_download
from review.permissions import EXPORT_DRAWINGS
from review.thumbnails import image28_png

WAITING = "waiting for its prediction"


def _png_img(data: bytes | memoryview, size: int, pixelated: bool = False) -> str:
    style = "image-rendering: pixelated;" if pixelated else ""
    return format_html(
        '<img src="data:image/png;base64,{}" width="{}" height="{}" style="{}border:1px solid #ccc;background:#fff" alt="">',
        base64.b64encode(bytes(data)).decode(),
        size,
        size,
        style,
    )


def _relabel_action(digit: int) -> Callable[[DrawingAdmin, HttpRequest, QuerySet[Drawing]], None]:
    def action(modeladmin: DrawingAdmin, request: HttpRequest, queryset: QuerySet[Drawing]) -> None:
        now = timezone.now()
        done, _ = services.drawings_in_chunks(
            queryset, lambda rows: services.drawings_relabel(drawings=rows, digit=digit, by=request.user, now=now)
        )
        modeladmin.message_user(request, f"{done} drawings labelled {digit} and marked reviewed.", messages.SUCCESS)

    action.__name__ = f"relabel_as_{digit}"  # the admin keys actions by name
    return admin.action(description=f"Label as {digit}", permissions=["change"])(action)


@admin.register(Drawing)
class DrawingAdmin(admin.ModelAdmin):
    # What a reviewer needs at a glance, narrow enough for a 1280 px screen beside the filters; the
    # person's label, the label used, the exclusion, the model and the rest are in the change view.
    list_display = (
        "id",
        "thumbnail",
        "predicted_digit",
        "confidence_pct",
        "uncertain_flag",
        "review_label",
        "reviewed",
        "created_at",
    )
    list_display_links = ("id", "thumbnail")
    list_editable = ("review_label",)
    list_filter = LIST_FILTERS
    # Searched by get_search_results: an exact id or client id (one index lookup each).
    search_fields = ("client_id",)
    search_help_text = "An id (12345) or a client id, exactly as it is: no partial matches."
    # No date hierarchy (its MIN/MAX and DISTINCT dates read every row): the date filter's fixed ranges.
    ordering = ("-pk",)  # newest first, on the primary key (ids are given in the order drawings are made)
    list_per_page = 50
    show_full_result_count = False  # no COUNT(*) of the whole table beside a filtered one
    show_facets = admin.ShowFacets.NEVER  # "Show counts" would count every choice of every filter
    paginator = EstimatedCountPaginator
    actions = (
        "mark_reviewed",
        "confirm_prediction",
        *[_relabel_action(d) for d in range(10)],
        "exclude_from_training",
        "include_in_training",
        "download_export",
        "download_export_with_unreviewed",
    )
    readonly_fields = (
        "drawing_image",
        "image28_view",
        "label",
        "effective_label_col",
        "reviewed_at",
        "reviewed_by",
        "client_id",
        "predicted_digit",
        "confidence",
        "probabilities",
        "uncertain",
        "reason",
        "model_name",
        "canvas_width",
        "canvas_height",
        "brush",
        "latency_ms",
        "created_at",
        "predicted_at",
        "prediction_attempts",
        "strokes",
    )
    fields = ("drawing_image", "image28_view", "review_label", "excluded", *readonly_fields[2:])

    def has_export_permission(self, request: HttpRequest) -> bool:
        """The download's permission (an action's permissions=["export"] asks for it)."""
        return any(request.user.has_perm(p) for p in EXPORT_DRAWINGS)

    # django-stubs says HttpResponse, but the list returns what an action returns: the downloads' is streamed
    def changelist_view(  # type: ignore[override]
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponseBase:
        """An action the user may not run (not offered to them: a permission is missing) is refused
        with 403, rather than passed over ("no action selected", or the list again for a user offered
        no action at all)."""
        if request.method == "POST" and "action" in request.POST:
            try:
                chosen = request.POST.getlist("action")[int(request.POST.get("index", 0))]
            except (IndexError, ValueError):
                chosen = ""
            if chosen and chosen not in self.get_actions(request):
                raise PermissionDenied
        return super().changelist_view(request, extra_context)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Drawing], search_term: str
    ) -> tuple[QuerySet[Drawing], bool]:
        """An exact client id, or an id: the unique (client_id, content_hash) index and the primary key."""
        term = search_term.strip()
        return (selectors.drawings_search(queryset, term) if term else queryset), False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Drawing]:  # the list needs no strokes or images
        return selectors.drawing_list(super().get_queryset(request))

    def save_model(self, request: HttpRequest, obj: Drawing, form: ModelForm, change: bool) -> None:
        """A label or exclusion set by hand, in the list or the form, is a review."""
        services.drawing_save(drawing=obj, changed=form.changed_data, by=request.user)

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

    @admin.display(description="uncertain", ordering="uncertain")
    def uncertain_flag(self, obj: Drawing) -> str:
        """A mark on the rows the model was unsure of, nothing on the others."""
        if not obj.uncertain:
            return ""
        return format_html('<span class="uncertain" title="{}">⚠ uncertain</span>', obj.reason or "the model was unsure")

    uncertain_flag.empty_value_display = ""  # type: ignore[attr-defined]  # a blank cell, not the admin's "-"

    @admin.display(description="label used", ordering="effective")
    def effective_label_col(self, obj: Drawing) -> int | None:
        return obj.effective_label

    @admin.display(description="reviewed", boolean=True, ordering="reviewed_at")
    def reviewed(self, obj: Drawing) -> bool:
        return obj.reviewed_at is not None

    # ---- actions
    @admin.action(description="Mark reviewed (labels as they are)", permissions=["change"])
    def mark_reviewed(self, request: HttpRequest, queryset: QuerySet[Drawing]) -> None:
        now = timezone.now()
        done, _ = services.drawings_in_chunks(
            queryset, lambda rows: services.drawings_mark_reviewed(drawings=rows, by=request.user, now=now)
        )
        self.message_user(request, f"{done} drawings marked reviewed.", messages.SUCCESS)

    @admin.action(description="Confirm the prediction as the label", permissions=["change"])
    def confirm_prediction(self, request: HttpRequest, queryset: QuerySet[Drawing]) -> None:
        now = timezone.now()
        done, selected = services.drawings_in_chunks(
            queryset, lambda rows: services.drawings_confirm_prediction(drawings=rows, by=request.user, now=now)
        )
        skipped = f" ({selected - done} without a prediction left alone)" if selected > done else ""
        self.message_user(request, f"{done} predictions confirmed as labels{skipped}.", messages.SUCCESS)

    @admin.action(description="Exclude from training", permissions=["change"])
    def exclude_from_training(self, request: HttpRequest, queryset: QuerySet[Drawing]) -> None:
        now = timezone.now()
        done, _ = services.drawings_in_chunks(
            queryset, lambda rows: services.drawings_exclude_from_training(drawings=rows, by=request.user, now=now)
        )
        self.message_user(request, f"{done} drawings excluded from training.", messages.SUCCESS)

    @admin.action(description="Include in training again", permissions=["change"])
    def include_in_training(self, request: HttpRequest, queryset: QuerySet[Drawing]) -> None:
        done, _ = services.drawings_in_chunks(queryset, lambda rows: services.drawings_include_in_training(drawings=rows))
        self.message_user(request, f"{done} drawings back in the training data.", messages.SUCCESS)

    @admin.action(description="Download the reviewed ones as training data (zip: npz, strokes, CSV)", permissions=["export"])
    def download_export(self, request: HttpRequest, queryset: QuerySet[Drawing]) -> StreamedZipResponse:
        return zip_download(queryset, include_unreviewed=False)

    @admin.action(description="Download as training data, unreviewed ones with the person's label too", permissions=["export"])
    def download_export_with_unreviewed(self, request: HttpRequest, queryset: QuerySet[Drawing]) -> StreamedZipResponse:
        return zip_download(queryset, include_unreviewed=True)
