"""The stored data: drawings (stored at a submit, predicted by a worker, reviewed by staff) and the
served model's choice, with the expressions their indexes are built on (EFFECTIVE_LABEL, TRIAGE_*,
SCORED). No behaviour of their own: the reads and writes are the selectors and services of
`recognizer` (the live side) and `review` (the staff side)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from django.conf import settings
from django.core.validators import MaxValueValidator
from django.db import models
from django.db.models.functions import Coalesce
from django.utils import timezone

if TYPE_CHECKING:
    from django_stubs_ext import StrPromise  # django-stubs' own: a dev requirement, not the service's

DIGIT_CHOICES = [(d, str(d)) for d in range(10)]

# The label a drawing is trained and scored on: the reviewer's word wins over the person's. The review
# side's reads and writes of these rows are review.selectors' and review.services'; the live side's,
# recognizer.selectors' and recognizer.services'.
EFFECTIVE_LABEL = Coalesce("review_label", "label")
# The triage queue: drawings nobody has reviewed (nor excluded), least sure first, those still waiting
# for their prediction before every guess. The partial index drawing_triage holds exactly these rows
# in exactly this order (the query must say it the same way for PostgreSQL to use the index).
TRIAGE_ROWS = models.Q(reviewed_at__isnull=True, excluded=False)
NO_GUESS = -1.0
TRIAGE_ORDER = Coalesce("confidence", models.Value(NO_GUESS), output_field=models.FloatField())
# The drawings the dashboard scores: predicted, kept, with a label (the person's or a reviewer's),
# written as an OR (not COALESCE(...) IS NOT NULL) so that PostgreSQL sees the queries imply the
# partial indexes' condition; the indexes hold every column the GROUP BYs read.
SCORED = models.Q(excluded=False, predicted_digit__isnull=False) & (
    models.Q(label__isnull=False) | models.Q(review_label__isnull=False)
)
SCORED_FIELDS = ["model_name", "predicted_digit", "label", "review_label", "created_at"]


class Drawing(models.Model):
    """A submitted drawing, kept for review: the strokes, what the model saw and what it said.

    Stored first, predicted after: a submit writes the strokes at once, and a worker fills in the
    prediction, the 28x28 image and the PNG (`predicted_at` is empty until then)."""

    client_id = models.CharField(max_length=64, help_text="Drawing id chosen by the page.")
    content_hash = models.CharField(
        max_length=64, default="", help_text="sha256 of strokes, canvas and brush: a resubmit is the same row."
    )
    strokes = models.JSONField(help_text="[[[x, y], ...], ...] in canvas CSS pixels.")
    canvas_width = models.FloatField()
    canvas_height = models.FloatField()
    brush = models.FloatField(help_text="Line width in canvas pixels.")
    image28 = models.BinaryField(null=True, help_text="784 bytes, row-major, 0 = background, 255 = ink.")
    png = models.BinaryField(null=True, help_text="PNG of the whole drawing, dark ink on white.")
    predicted_digit = models.PositiveSmallIntegerField(null=True, choices=DIGIT_CHOICES, validators=[MaxValueValidator(9)])
    confidence = models.FloatField(null=True)
    probabilities = models.JSONField(null=True)
    uncertain = models.BooleanField(default=False, help_text="The model flagged it as no clear digit.")
    reason = models.CharField(max_length=40, blank=True, default="", help_text="Why it was flagged.")
    model_name = models.CharField(max_length=100, blank=True, default="")
    label = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        choices=DIGIT_CHOICES,
        validators=[MaxValueValidator(9)],
        help_text="The digit the person says it is, if they said.",
    )
    review_label = models.PositiveSmallIntegerField(
        "reviewer's label",
        null=True,
        blank=True,
        choices=DIGIT_CHOICES,
        validators=[MaxValueValidator(9)],
        help_text="The digit a reviewer says it is; wins over the person's label.",
    )
    reviewed_at = models.DateTimeField(null=True, blank=True, help_text="When a reviewer last looked at it.")
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="reviewed_drawings"
    )
    excluded = models.BooleanField(default=False, help_text="Left out of training and exports.")
    latency_ms = models.FloatField(null=True, help_text="Server time from the submit to its stored prediction.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    predicted_at = models.DateTimeField(null=True, blank=True, help_text="Empty while the prediction is still to come.")
    prediction_attempts = models.PositiveSmallIntegerField(default=0, help_text="Times a worker was asked to predict it.")

    class Meta:
        ordering: ClassVar[list[str]] = ["-created_at", "-id"]
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["predicted_digit"]),
            models.Index(fields=["label"]),
            models.Index(fields=["created_at"], condition=models.Q(reviewed_at__isnull=True), name="drawing_unreviewed"),
            models.Index(fields=["created_at"], condition=models.Q(predicted_at__isnull=True), name="drawing_waiting"),
            # The review side at scale (docs/scale.md): every page reads an index, not the table.
            # The admin's list, filtered by model, newest first; sorted (and filtered) by confidence.
            models.Index(fields=["model_name", "id"], name="drawing_model_id"),
            models.Index(fields=["confidence"], name="drawing_confidence"),
            # The label used (the admin's filter), newest first; also PostgreSQL's statistics of it.
            models.Index(EFFECTIVE_LABEL, "id", name="drawing_effective"),
            # The few excluded drawings, newest first (the excluded filter).
            models.Index(fields=["id"], condition=models.Q(excluded=True), name="drawing_excluded"),
            # The triage queue, least sure first: the rows waiting for review only, in TRIAGE_ORDER.
            models.Index(TRIAGE_ORDER, "id", condition=TRIAGE_ROWS, name="drawing_triage"),
            # The dashboard and the models page: their GROUP BYs read these alone (index-only scans).
            models.Index(fields=SCORED_FIELDS, condition=SCORED, name="drawing_scored"),
            models.Index(
                fields=SCORED_FIELDS, condition=SCORED & models.Q(reviewed_at__isnull=False), name="drawing_scored_reviewed"
            ),
        ]
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(fields=["client_id", "content_hash"], name="drawing_once_per_content")
        ]
        # Downloading training data is a right of its own (review.export, the admin's download).
        permissions: ClassVar[list[tuple[str, str | StrPromise]]] = [("export_drawing", "Can export drawings as training data")]

    def __str__(self) -> str:
        return f"Drawing {self.pk}: {self.predicted_digit} (label {self.effective_label})"

    @property
    def effective_label(self) -> int | None:
        """The reviewer's label if there is one, else the person's (EFFECTIVE_LABEL in queries)."""
        return self.review_label if self.review_label is not None else self.label


class ServingModel(models.Model):
    """Which model the workers serve, chosen in the admin: the newest row wins; the rows before it
    are the history that "roll back" reads. With no row, `models/current.json` names it.

    In the database rather than a file or Redis: the admin and the workers may run on different
    machines, and the choice must outlive a Redis restart."""

    name = models.CharField(max_length=64, help_text="A model in MODELS_DIR (its card is <name>.json).")
    chosen_at = models.DateTimeField(default=timezone.now, db_index=True)
    chosen_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    rolled_back = models.BooleanField(default=False, help_text="Chosen by 'roll back' (to the model before).")

    class Meta:
        ordering: ClassVar[list[str]] = ["-id"]  # the newest row first (ids, not clocks: the admin's machines may disagree)
        # The operations page (review.operations): the service's live figures, for staff given it.
        permissions: ClassVar[list[tuple[str, str | StrPromise]]] = [("view_operations", "Can view the operations page")]

    def __str__(self) -> str:
        return f"{self.name} since {self.chosen_at:%Y-%m-%d %H:%M}"
