"""The staff side's writes: review marks and labels (a page of drawings in one UPDATE, a large selection
in chunks), the triage page's answers, the served model (switch, roll back), the compaction of old
rows and the import of UJI digits. The views, the admin's actions and the commands only call them."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from django.contrib.auth.models import AnonymousUser, User
from django.db import connection, transaction
from django.db.models import F, Max, QuerySet
from django.utils import timezone

from contract.tasks import MAX_BATCH
from recognizer.models import Drawing, ServingModel
from recognizer.services import Enqueue, drawing_store, enqueue_quietly
from review.model_cards import UnservableModel, check_servable
from review.selectors import serving_previous_name

if TYPE_CHECKING:
    from digits.data import uji

log = logging.getLogger(__name__)

Actor: TypeAlias = "User | AnonymousUser | None"  # who made a change (None: a command, a test)
# Actions write a large selection this many rows a transaction (each holds its row locks a few ms).
ACTION_CHUNK = 1000


# ---------------------------------------------------------------- review marks and labels


def _reviewed(by: Actor, now: datetime | None) -> dict[str, Any]:
    return {"reviewed_at": now or timezone.now(), "reviewed_by": by}


def drawings_mark_reviewed(*, drawings: QuerySet[Drawing], by: Actor = None, now: datetime | None = None) -> int:
    """Reviewed as they stand: the person's label (or none) is right."""
    return drawings.update(**_reviewed(by, now))


def drawings_relabel(*, drawings: QuerySet[Drawing], digit: int, by: Actor = None, now: datetime | None = None) -> int:
    """The reviewer says `digit`; a relabelled drawing is back in the training data."""
    if digit not in range(10):
        raise ValueError(f"a label is a digit 0-9, not {digit!r}")
    return drawings.update(review_label=digit, excluded=False, **_reviewed(by, now))


def drawings_confirm_prediction(*, drawings: QuerySet[Drawing], by: Actor = None, now: datetime | None = None) -> int:
    """The model was right: its digit becomes the reviewer's label (rows without one are left alone)."""
    return drawings.filter(predicted_digit__isnull=False).update(
        review_label=F("predicted_digit"), excluded=False, **_reviewed(by, now)
    )


def drawings_exclude_from_training(*, drawings: QuerySet[Drawing], by: Actor = None, now: datetime | None = None) -> int:
    """Not a usable digit (a scribble, a letter, a test): kept, labels and all, but never exported."""
    return drawings.update(excluded=True, **_reviewed(by, now))


def drawings_include_in_training(*, drawings: QuerySet[Drawing]) -> int:
    """Back in the training data (the review marks stay as they are)."""
    return drawings.update(excluded=False)


def drawings_in_chunks(drawings: QuerySet[Drawing], write: Callable[[QuerySet[Drawing]], int]) -> tuple[int, int]:
    """`write` (one of the writes above) applied to the rows of `drawings`, ACTION_CHUNK rows at a
    time in id order, each chunk its own transaction: 100,000 rows are 100 short UPDATEs, each
    holding its rows' locks for a few milliseconds, rather than one holding them all. Returns how
    many rows were written and how many were selected."""
    done, selected, last = 0, 0, 0
    ids = drawings.order_by("pk").values_list("pk", flat=True)
    while chunk := list(ids.filter(pk__gt=last)[:ACTION_CHUNK]):
        with transaction.atomic(using=drawings.db):
            done += write(Drawing.objects.using(drawings.db).filter(pk__in=chunk))
        selected += len(chunk)
        last = chunk[-1]
    return done, selected


def drawing_save(*, drawing: Drawing, changed: Iterable[str], by: Actor) -> None:
    """Save a drawing edited in the admin (its list or its form): a label or exclusion set by hand is a review."""
    if {"review_label", "excluded"} & set(changed):
        if isinstance(by, AnonymousUser):  # (as the foreign key would refuse it: the admin's users are signed in)
            raise ValueError("a review is made by a user, not an anonymous one")
        drawing.reviewed_at, drawing.reviewed_by = timezone.now(), by
    drawing.save()


class NoPrediction(Exception):
    """A prediction to confirm, on a drawing still waiting for it."""


def drawing_review_answer(
    *, pk: int, kind: Literal["label", "confirm", "exclude"], digit: int | None = None, by: Actor = None
) -> Drawing:
    """The triage page's answer for one drawing, written as the admin's actions write it; returns the
    row as it is now. Raises Drawing.DoesNotExist (no such drawing) or NoPrediction (nothing to confirm)."""
    one = Drawing.objects.filter(pk=pk)
    if kind == "label":
        if digit is None:
            raise ValueError("a label needs its digit")
        changed = drawings_relabel(drawings=one, digit=digit, by=by)
    elif kind == "confirm":
        changed = drawings_confirm_prediction(drawings=one, by=by)
        if not changed and one.exists():
            raise NoPrediction(f"drawing {pk} has no prediction yet to confirm")
    else:
        changed = drawings_exclude_from_training(drawings=one, by=by)
    if not changed:
        raise Drawing.DoesNotExist(f"no drawing {pk}")
    return one.get()


# ---------------------------------------------------------------- the served model


def serving_model_set(*, name: str, by: Actor = None, rolled_back: bool = False, directory: Path | None = None) -> ServingModel:
    """Make `name` the model the workers serve (they switch within about a second); raises
    UnservableModel for a model they could not load."""
    check_servable(name, directory=directory)
    row = ServingModel.objects.create(
        name=name, chosen_by=by if by is not None and by.is_authenticated else None, rolled_back=rolled_back
    )
    log.info("serving model set to %s by %s%s", name, by, " (roll back)" if rolled_back else "")
    return row


def serving_model_roll_back(*, by: Actor = None, directory: Path | None = None) -> ServingModel:
    """Serve again the model that was current before the newest choice (a second roll back undoes
    the first, like `cd -`)."""
    with transaction.atomic():
        previous = serving_previous_name(directory=directory)
        if previous is None:
            raise UnservableModel("there is no earlier model to roll back to")
        return serving_model_set(name=previous, by=by, rolled_back=True, directory=directory)


# ---------------------------------------------------------------- compaction


def drawings_compact(
    *, batch: int, pause: float, vacuum: bool = False, progress: Callable[[int, int], None] | None = None
) -> int | None:
    """Rewrite the drawings stored before migration 0009, `batch` ids a transaction (`UPDATE … SET
    strokes = strokes`: PostgreSQL toasts their bulky columns under the table's toast_tuple_target),
    `pause` seconds between batches; VACUUM ANALYZE at the end if asked. `progress(high, done)`
    after each batch. Returns how many rows were rewritten, None on another database (nothing to do)."""
    if connection.vendor != "postgresql":
        return None
    top = Drawing.objects.aggregate(top=Max("pk"))["top"] or 0
    done, low = 0, 0
    while low < top:
        high = low + batch
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "UPDATE recognizer_drawing SET strokes = strokes WHERE id > %s AND id <= %s AND png IS NOT NULL", [low, high]
            )
            done += cursor.rowcount
        low = high
        if progress is not None:
            progress(high, done)
        time.sleep(pause)
    if vacuum:
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE recognizer_drawing")
    return done


# ---------------------------------------------------------------- imports


@dataclass(frozen=True)
class ImportSummary:
    created: int
    existing: int
    queued: int  # rows whose prediction was queued (the others wait for the workers' sweep)

    def describe(self) -> str:
        return f"{self.created} drawings imported, {self.existing} already there; {self.queued} predictions queued"


def uji_client_id(digit: uji.PenDigit) -> str:
    """One id per digit: the sample name repeats across the ten digits of a writer."""
    return f"uji-{digit.writer}-{digit.label}-{digit.sample}"


def uji_import(*, digits: Sequence[uji.PenDigit], enqueue: Enqueue | None) -> ImportSummary:
    """Store ``digits`` as drawings (one transaction) through the submit's own write path, the set's
    label as a reviewer's; queue the new rows' predictions after the commit, in the workers' batch
    size, when ``enqueue`` is given."""
    from digits.data import uji  # the ML side's data helpers, only when an import runs

    canvas, brush = uji.CANVAS, uji.BRUSH
    by_label: dict[int, list[int]] = {}
    with transaction.atomic():
        for digit in digits:
            row, new = drawing_store(
                client_id=uji_client_id(digit),
                strokes=uji.fit_to_canvas(digit.strokes, canvas),
                canvas=canvas,
                brush=brush,
                label=None,
            )
            if new:
                by_label.setdefault(digit.label, []).append(row.pk)
        # the data set's label is what a reviewer would say: stored as the reviewer's label
        now = timezone.now()
        for label, pks in by_label.items():
            drawings_relabel(drawings=Drawing.objects.filter(pk__in=pks), digit=label, now=now)
        created = sorted(pk for pks in by_label.values() for pk in pks)
        if enqueue is not None:
            for i in range(0, len(created), MAX_BATCH):
                chunk = created[i : i + MAX_BATCH]
                transaction.on_commit(functools.partial(enqueue_quietly, enqueue, chunk))
    return ImportSummary(
        created=len(created), existing=len(digits) - len(created), queued=len(created) if enqueue is not None else 0
    )
