"""The admin's list of drawings at scale: its filters (each one a read of review.selectors, with fixed
choices: no SELECT DISTINCT, no facets) and its paginator, which counts a large list by the planner's
estimate instead of a full scan (docs/scale.md)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.functional import cached_property

from recognizer.models import DIGIT_CHOICES, Drawing
from review import selectors

# A filtered list counted exactly when the planner expects at most this many rows (and the count
# finishes within EXACT_COUNT_MS); above, the planner's estimate is shown instead.
EXACT_COUNT_UP_TO = 5_000
EXACT_COUNT_MS = 50


class EstimatedCountPaginator(Paginator):
    """The admin's pages without a full scan for their count: on PostgreSQL, a list the planner
    expects to be large is counted by the planner's estimate (EXPLAIN), a small one exactly when
    that takes at most EXACT_COUNT_MS (else the estimate again). `estimated` says which it was.
    Other databases (SQLite in development) count exactly."""

    estimated = False

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        assert isinstance(queryset, QuerySet), "the admin pages a queryset"  # (the stubs: any sliceable list)
        estimate = selectors.planner_rows(queryset)
        if estimate is None:
            return queryset.count()
        if estimate <= EXACT_COUNT_UP_TO:
            exact = selectors.exact_count_within(queryset, EXACT_COUNT_MS)
            if exact is not None:
                return exact
        self.estimated = True
        return estimate


class ModelFilter(admin.SimpleListFilter):
    """The model that predicted it: the choices are the model cards in MODELS_DIR and the models
    ever chosen in the admin (selectors.model_names)."""

    title = "model"
    parameter_name = "model_name"  # the URL the field filter had: links and bookmarks still work

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(name, name) for name in selectors.model_names()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Drawing]) -> QuerySet[Drawing]:
        name = self.value()
        return selectors.drawings_of_model(queryset, name) if name else queryset


class WaitingFilter(admin.SimpleListFilter):
    """Drawings are stored first and predicted after: find the ones still waiting."""

    title = "prediction"
    parameter_name = "prediction"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("waiting", "still waiting"), ("done", "predicted")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Drawing]) -> QuerySet[Drawing]:
        if self.value() in ("waiting", "done"):
            return selectors.drawings_by_prediction(queryset, waiting=self.value() == "waiting")
        return queryset


class ReviewedFilter(admin.SimpleListFilter):
    title = "reviewed"
    parameter_name = "reviewed"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "reviewed"), ("no", "not reviewed")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Drawing]) -> QuerySet[Drawing]:
        if self.value() in ("yes", "no"):
            return selectors.drawings_by_review(queryset, reviewed=self.value() == "yes")
        return queryset


class LabelledFilter(admin.SimpleListFilter):
    title = "labelled"
    parameter_name = "labelled"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "labelled"), ("person", "by the person"), ("reviewer", "by a reviewer"), ("no", "no label")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Drawing]) -> QuerySet[Drawing]:
        return selectors.drawings_by_label_source(queryset, self.value() or "")


class EffectiveLabelFilter(admin.SimpleListFilter):
    """The label training uses (the reviewer's, else the person's)."""

    title = "label used (reviewer's, else person's)"
    parameter_name = "effective"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(str(d), str(d)) for d, _ in DIGIT_CHOICES]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Drawing]) -> QuerySet[Drawing]:
        digit = self.value()
        if digit is not None and digit in {str(d) for d in range(10)}:
            return selectors.drawings_by_effective_label(queryset, int(digit))
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
        return selectors.drawings_by_agreement(queryset, right=self.value() == "right")


class ConfidenceFilter(admin.SimpleListFilter):
    title = "confidence"
    parameter_name = "confidence"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(value, title) for value, title, _, _ in selectors.CONFIDENCE_BANDS]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Drawing]) -> QuerySet[Drawing]:
        return selectors.drawings_by_confidence(queryset, self.value() or "")


LIST_FILTERS: tuple[Any, ...] = (
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
