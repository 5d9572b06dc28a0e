from django.core.validators import MaxValueValidator
from django.db import models

DIGIT_CHOICES = [(d, str(d)) for d in range(10)]


class Drawing(models.Model):
    """A submitted drawing, kept for review: the strokes, what the model saw and what it said.

    Stored first, predicted after: a submit writes the strokes at once, and a worker fills in the
    prediction, the 28x28 image and the PNG (`predicted_at` is empty until then)."""

    client_id = models.CharField(max_length=64, help_text="Drawing id chosen by the page.")
    content_hash = models.CharField(max_length=64, default="", help_text="sha256 of strokes, canvas and brush: a resubmit is the same row.")
    strokes = models.JSONField(help_text="[[[x, y], ...], ...] in canvas CSS pixels.")
    canvas_width = models.FloatField()
    canvas_height = models.FloatField()
    brush = models.FloatField(help_text="Line width in canvas pixels.")
    image28 = models.BinaryField(null=True, help_text="784 bytes, row-major, 0 = background, 255 = ink.")
    png = models.BinaryField(null=True, help_text="PNG of the whole drawing, dark ink on white.")
    predicted_digit = models.PositiveSmallIntegerField(
        null=True, choices=DIGIT_CHOICES, validators=[MaxValueValidator(9)]
    )
    confidence = models.FloatField(null=True)
    probabilities = models.JSONField(null=True)
    uncertain = models.BooleanField(default=False, help_text="The model flagged it as no clear digit.")
    reason = models.CharField(max_length=40, blank=True, default="", help_text="Why it was flagged.")
    model_name = models.CharField(max_length=100, blank=True, default="")
    label = models.PositiveSmallIntegerField(
        null=True, blank=True, choices=DIGIT_CHOICES, validators=[MaxValueValidator(9)],
        help_text="The digit the person says it is, if they said.",
    )
    latency_ms = models.FloatField(null=True, help_text="Server time from the submit to its stored prediction.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    predicted_at = models.DateTimeField(null=True, blank=True, help_text="Empty while the prediction is still to come.")
    prediction_attempts = models.PositiveSmallIntegerField(default=0, help_text="Times a worker was asked to predict it.")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["predicted_digit"]),
            models.Index(fields=["label"]),
            models.Index(fields=["created_at"], condition=models.Q(predicted_at__isnull=True), name="drawing_waiting"),
        ]
        constraints = [models.UniqueConstraint(fields=["client_id", "content_hash"], name="drawing_once_per_content")]

    def __str__(self) -> str:
        return f"Drawing {self.pk}: {self.predicted_digit} (label {self.label})"
