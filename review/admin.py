"""The review desk: stored drawings listed with what the model said, labels fixed in place or a page at
a time (actions), wrong and unsure predictions found by filters, and the kept ones downloaded.

Every review write goes through DrawingQuerySet (models.py), the same as the triage page's. Every action
that writes needs the "change drawing" permission, the download its own ("export drawing"): the admin
offers a user only the actions they hold the permission for, and refuses (403) a POST of any other.
The download is of reviewed drawings unless its "with unreviewed" variant is chosen, and streams the
zip as the export makes it (review.export.export_zip_stream: the command's code path; memory flat
in the number of rows, the first bytes out at once; the summary is the zip's comment).

At a million drawings and more (docs/scale.md) a page costs the rows it shows, not the table: no
facets and no full count; the count of a filtered list is the planner's estimate when it is large
(exact when cheap: EstimatedCountPaginator); the filters' choices are fixed (the models from their
cards, dates as fixed ranges, no date hierarchy); search is an exact id or client id, each one index
lookup; the list is newest first by id and sorts by confidence on an index; actions over a large
selection write it DrawingQuerySet chunk by chunk (ACTION_CHUNK rows a transaction), so no lock is
held on a large selection at once."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import OperationalError, connections, transaction
from django.db.models import F, Max, Q, QuerySet
from django.forms import ModelForm
from django.http import FileResponse, HttpRequest, HttpResponseBase, StreamingHttpResponse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html

from recognizer.models import DIGIT_CHOICES, EFFECTIVE_LABEL, Drawing, ServingModel
from review.export import export_zip_stream
from review.images import image28_png
from review.permissions import EXPORT_DRAWINGS

WAITING = "waiting for its prediction"
# A filtered list counted exactly when the planner expects at most this many rows (and the count
# finishes within EXACT_COUNT_MS); above, the planner's estimate is shown instead.
EXACT_COUNT_UP_TO = 5_000
EXACT_COUNT_MS = 50
# Actions write a large selection this many rows a transaction (each holds its row locks a few ms).
ACTION_CHUNK = 1000

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


class StreamedFileResponse(FileResponse):
    """A FileResponse that an ASGI server (daphne) is sent a block at a time, read off the event loop.

    Django serves a synchronous iterator under ASGI by reading it whole into a list first (and warns):
    the whole zip would sit in the web process's memory. A WSGI server, or the test client, iterates
    `streaming_content` as with any FileResponse."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self.file_to_stream is None:  # its content was replaced by another iterator: as Django serves it
            async for part in super().__aiter__():
                yield part
            return
        read = sync_to_async(self.file_to_stream.read, thread_sensitive=False)
        while chunk := await read(self.block_size):
            yield chunk


def planner_rows(queryset: QuerySet[Any]) -> int | None:
    """PostgreSQL's estimate of how many rows `queryset` returns (EXPLAIN: no row is read), or None
    on another database."""
    if connections[queryset.db].vendor != "postgresql":
        return None
    plan = json.loads(queryset.explain(format="json"))
    return int(plan[0]["Plan"]["Plan Rows"])


def exact_count_within(queryset: QuerySet[Any], milliseconds: int) -> int | None:
    """COUNT(*) of `queryset` if PostgreSQL finishes it within `milliseconds`, else None (the
    statement is cancelled: a count that would scan a large table gives up instead)."""
    connection = connections[queryset.db]
    try:
        with transaction.atomic(using=queryset.db), connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('statement_timeout')")
            before = cursor.fetchone()[0]
            cursor.execute("SELECT set_config('statement_timeout', %s, true)", [str(milliseconds)])
            count = queryset.count()
            cursor.execute("SELECT set_config('statement_timeout', %s, true)", [before])
            return count
    except OperationalError:  # cancelled by the statement timeout
        return None


class EstimatedCountPaginator(Paginator):
    """The admin's pages without a full scan for their count: on PostgreSQL, a list the planner
    expects to be large is counted by the planner's estimate (EXPLAIN), a small one exactly when
    that takes at most EXACT_COUNT_MS (else the estimate again). `estimated` says which it was.
    Other databases (SQLite in development) count exactly."""

    estimated = False

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        estimate = planner_rows(queryset)
        if estimate is None:
            return queryset.count()
        if estimate <= EXACT_COUNT_UP_TO:
            exact = exact_count_within(queryset, EXACT_COUNT_MS)
            if exact is not None:
                return exact
        self.estimated = True
        return estimate


def in_chunks(queryset: QuerySet[Drawing], write: Callable[[QuerySet[Drawing]], int]) -> tuple[int, int]:
    """`write` (a DrawingQuerySet write) applied to the rows of `queryset`, ACTION_CHUNK rows at a
    time in id order, each chunk its own transaction: 100,000 rows are 100 short UPDATEs, each
    holding its rows' locks for a few milliseconds, rather than one holding them all. Returns how
    many rows were written and how many were selected."""
    done, selected, last = 0, 0, 0
    ids = queryset.order_by("pk").values_list("pk", flat=True)
    while chunk := list(ids.filter(pk__gt=last)[:ACTION_CHUNK]):
        with transaction.atomic(using=queryset.db):
            done += write(Drawing.objects.using(queryset.db).filter(pk__in=chunk))
        selected += len(chunk)
        last = chunk[-1]
    return done, selected


class ModelFilter(admin.SimpleListFilter):
    """The model that predicted it: the choices are the model cards in MODELS_DIR and the models
    ever chosen in the admin (no SELECT DISTINCT over the drawings)."""

    title = "model"
    parameter_name = "model_name"  # the URL the field filter had: links and bookmarks still work

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        from review.serving import model_versions  # the models page's module (cards on disk)

        names = {v.name for v in model_versions()} | set(ServingModel.objects.values_list("name", flat=True))
        return [(name, name) for name in sorted(names)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Drawing]) -> QuerySet[Drawing]:
        """The model's drawings, up to its newest (one lookup in drawing_model_id): a model's drawings
        come in a run of ids, and newest first the list would otherwise walk the primary key past
        every later model's drawings (the planner takes them to be spread evenly)."""
        if not self.value():
            return queryset
        newest = Drawing.objects.filter(model_name=self.value()).aggregate(newest=Max("pk"))["newest"]
        if newest is None:
            return queryset.none()
        return queryset.filter(model_name=self.value(), pk__lte=newest)


class StreamedZipResponse(StreamingHttpResponse):
    """A download made while it is sent: a synchronous iterator of blocks (the export reads the
    database), iterated as is by a WSGI server or the test client, and a block at a time off the event
    loop under ASGI (daphne), in the request's own thread (its database connection and cursor).
    Django would otherwise read a synchronous iterator whole into a list first under ASGI."""

    def __init__(self, blocks: Iterator[bytes], **kwargs: Any) -> None:
        super().__init__(blocks, **kwargs)
        self._blocks = blocks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        step = sync_to_async(_next_block, thread_sensitive=True)
        while (block := await step(self._blocks)) is not None:
            yield block


def _next_block(blocks: Iterator[bytes]) -> bytes | None:
    return next(blocks, None)


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
        now = timezone.now()
        done, _ = in_chunks(queryset, lambda rows: rows.relabel(digit, by=request.user, now=now))
        modeladmin.message_user(request, f"{done} drawings labelled {digit} and marked reviewed.", messages.SUCCESS)

    action.__name__ = f"relabel_as_{digit}"  # the admin keys actions by name
    return admin.action(description=f"Label as {digit}", permissions=["change"])(action)


@admin.register(Drawing)
class DrawingAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "thumbnail",
        "predicted_digit",
        "confidence_pct",
        "uncertain",
        "person_label",
        "review_label",
        "effective_label_col",
        "reviewed",
        "excluded",
        "model_name",
        "created_at",
    )
    list_display_links = ("id", "thumbnail")
    list_editable = ("review_label",)
    list_filter = (
        ReviewedFilter,
        LabelledFilter,
        AgreementFilter,
        "uncertain",
        ConfidenceFilter,
        WaitingFilter,
        EffectiveLabelFilter,
        "predicted_digit",
        "label",
        "excluded",
        ModelFilter,
        "created_at",
    )
    # Searched by get_search_results: an exact id or client id (one index lookup each).
    search_fields = ("client_id",)
    search_help_text = "An id (12345) or a client id, exactly as it is: no partial matches."
    # No date hierarchy (its MIN/MAX and DISTINCT dates read every row): the date filter's fixed ranges.
    ordering = ("-pk",)  # newest first, on the primary key (ids are given in the order drawings are made)
    list_per_page = 50
    show_full_result_count = False  # no COUNT(*) of the whole table beside a filtered one
    show_facets = admin.ShowFacets.NEVER  # "Show counts" would count every choice of every filter
    paginator = EstimatedCountPaginator
    actions = [
        "mark_reviewed",
        "confirm_prediction",
        *[_relabel_action(d) for d in range(10)],
        "exclude_from_training",
        "include_in_training",
        "download_export",
        "download_export_with_unreviewed",
    ]
    readonly_fields = (
        "drawing_image",
        "image28_view",
        "label",
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
    fields = ("drawing_image", "image28_view", "review_label", "excluded") + readonly_fields[2:]

    def has_export_permission(self, request: HttpRequest) -> bool:
        """The download's permission (an action's permissions=["export"] asks for it)."""
        return any(request.user.has_perm(p) for p in EXPORT_DRAWINGS)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponseBase:
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
        if not term:
            return queryset, False
        match = Q(client_id=term)
        if term.isdigit() and int(term) < 2**63:
            match |= Q(pk=int(term))
        return queryset.filter(match), False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Drawing]:  # the list needs no strokes or images
        return (
            super()
            .get_queryset(request)
            .defer("strokes", "probabilities", "image28")
            .select_related("reviewed_by")
            .with_effective_label()
        )

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
    @admin.action(description="Mark reviewed (labels as they are)", permissions=["change"])
    def mark_reviewed(self, request: HttpRequest, queryset: QuerySet[Drawing]) -> None:
        now = timezone.now()
        done, _ = in_chunks(queryset, lambda rows: rows.mark_reviewed(by=request.user, now=now))
        self.message_user(request, f"{done} drawings marked reviewed.", messages.SUCCESS)

    @admin.action(description="Confirm the prediction as the label", permissions=["change"])
    def confirm_prediction(self, request: HttpRequest, queryset: QuerySet[Drawing]) -> None:
        now = timezone.now()
        done, selected = in_chunks(queryset, lambda rows: rows.confirm_prediction(by=request.user, now=now))
        skipped = f" ({selected - done} without a prediction left alone)" if selected > done else ""
        self.message_user(request, f"{done} predictions confirmed as labels{skipped}.", messages.SUCCESS)

    @admin.action(description="Exclude from training", permissions=["change"])
    def exclude_from_training(self, request: HttpRequest, queryset: QuerySet[Drawing]) -> None:
        now = timezone.now()
        done, _ = in_chunks(queryset, lambda rows: rows.exclude_from_training(by=request.user, now=now))
        self.message_user(request, f"{done} drawings excluded from training.", messages.SUCCESS)

    @admin.action(description="Include in training again", permissions=["change"])
    def include_in_training(self, request: HttpRequest, queryset: QuerySet[Drawing]) -> None:
        done, _ = in_chunks(queryset, lambda rows: rows.update(excluded=False))
        self.message_user(request, f"{done} drawings back in the training data.", messages.SUCCESS)

    @admin.action(description="Download the reviewed ones as training data (zip: npz, strokes, CSV)", permissions=["export"])
    def download_export(self, request: HttpRequest, queryset: QuerySet[Drawing]) -> StreamedZipResponse:
        return self._download(queryset, include_unreviewed=False)

    @admin.action(description="Download as training data, unreviewed ones with the person's label too", permissions=["export"])
    def download_export_with_unreviewed(self, request: HttpRequest, queryset: QuerySet[Drawing]) -> StreamedZipResponse:
        return self._download(queryset, include_unreviewed=True)

    def _download(self, queryset: QuerySet[Drawing], *, include_unreviewed: bool) -> StreamedZipResponse:
        """The zip streamed as it is made (export_zip_stream), whatever the size of the selection."""
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        kind = "-with-unreviewed" if include_unreviewed else ""
        response = StreamedZipResponse(
            export_zip_stream(queryset.order_by(), include_unreviewed=include_unreviewed), content_type="application/zip"
        )
        response["Content-Disposition"] = f'attachment; filename="drawings-{stamp}{kind}.zip"'
        response["X-Export-Summary"] = "in the zip's comment (counted once the rows are out)"
        return response
