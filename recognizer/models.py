from django.core.validators import MaxValueValidator
from django.db import models

DIGIT_CHOICES = [(d, str(d)) for d in range(10)]


class Drawing(models.Model):
    """A submitted drawing, kept for review: the strokes, what the model saw and what it said."""

    client_id = models.CharField(max_length=64, help_text="Drawing id chosen by the page.")
    strokes = models.JSONField(help_text="[[[x, y], ...], ...] in canvas CSS pixels.")
    canvas_width = models.FloatField()
    canvas_height = models.FloatField()
    brush = models.FloatField(help_text="Line width in canvas pixels.")
    image28 = models.BinaryField(help_text="784 bytes, row-major, 0 = background, 255 = ink.")
    png = models.BinaryField(help_text="PNG of the whole drawing, dark ink on white.")
    predicted_digit = models.PositiveSmallIntegerField(
        null=True, choices=DIGIT_CHOICES, validators=[MaxValueValidator(9)]
    )
    confidence = models.FloatField(null=True)
    probabilities = models.JSONField(null=True)
    model_name = models.CharField(max_length=100)
    label = models.PositiveSmallIntegerField(
        null=True, blank=True, choices=DIGIT_CHOICES, validators=[MaxValueValidator(9)],
        help_text="The digit the person says it is, if they said.",
    )
    latency_ms = models.FloatField(help_text="Server time from the submit to its prediction.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["predicted_digit"]), models.Index(fields=["label"])]

    def __str__(self) -> str:
        return f"Drawing {self.pk}: {self.predicted_digit} (label {self.label})"
