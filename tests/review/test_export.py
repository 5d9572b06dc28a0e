"""Export: what is written loads back identically (images, effective labels, ids, strokes, manifest),
excluded and unlabelled ones are left out, unreviewed ones too unless asked for (and then each row's
label source says so), the zip is written through temporary files, and the command's
--include-unreviewed and --since choose the rows. Drawings still waiting, rendered as the workers
render them: test_export_render.py."""

from __future__ import annotations

import io
import tempfile
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from recognizer.models import Drawing
from review import export
from review.export import ZIP_NAMES, export_to_files
from review.export_zip import export_to_zip, export_zip_file
from review.selectors import drawings_for_export
from tests.review.exports import load, make, some_drawings
from worker.pipeline import prepare_strokes

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def drawings() -> dict[str, Drawing]:
    return some_drawings()


def test_an_export_loads_back_identically(drawings: dict[str, Drawing], tmp_path: Path) -> None:
    out = tmp_path / "set.npz"
    summary = export_to_files(drawings_for_export(), out)
    arrays, lines, manifest = load(out)

    kept = [drawings[k] for k in ("person", "relabelled", "pending", "reviewer_only")]  # by id
    assert (summary.exported, summary.rendered, summary.excluded, summary.unlabelled) == (4, 1, 1, 1)
    assert (summary.unreviewed, summary.person_unreviewed) == (1, 0) and "1 not reviewed" in summary.describe()
    assert sorted(arrays) == ["ids", "images", "labels"]
    assert arrays["images"].dtype == np.uint8 and arrays["images"].shape == (4, 28, 28)
    assert arrays["ids"].tolist() == [d.pk for d in kept]
    assert arrays["labels"].tolist() == [1, 7, 3, 0]  # the reviewer's label wins
    for image, row in zip(arrays["images"], kept):
        stored = Drawing.objects.get(pk=row.pk)
        if stored.image28 is not None:
            assert image.tobytes() == bytes(stored.image28)
        else:  # pending: rendered here exactly as the workers would
            assert image.tobytes() == prepare_strokes(stored.strokes, (280.0, 300.0), 14.5)
            assert image.max() > 200

    for line, row in zip(lines, kept, strict=True):
        stored = Drawing.objects.get(pk=row.pk)
        assert line == {
            "id": row.pk,
            "label": stored.effective_label,
            "canvas": [280.0, 300.0],
            "brush": 14.5,
            "strokes": stored.strokes,
        }

    assert [int(r["id"]) for r in manifest] == [d.pk for d in kept]
    assert [int(r["index"]) for r in manifest] == [0, 1, 2, 3]
    by_id = {int(r["id"]): r for r in manifest}
    relabelled = by_id[drawings["relabelled"].pk]
    assert (relabelled["label"], relabelled["person_label"], relabelled["review_label"]) == ("7", "2", "7")
    assert relabelled["reviewed_at"] and relabelled["model_name"] == "cnn-v6"
    assert [r["label_source"] for r in manifest] == ["person-reviewed", "reviewer", "person-reviewed", "reviewer"]
    assert by_id[drawings["pending"].pk]["image"] == "rendered" and by_id[drawings["person"].pk]["image"] == "stored"
    assert by_id[drawings["pending"].pk]["predicted_digit"] == "" and by_id[drawings["person"].pk]["confidence"] == "0.51"


def test_unreviewed_drawings_only_when_asked_for_and_marked_as_such(drawings: dict[str, Drawing], tmp_path: Path) -> None:
    spam = drawings["spam"]
    waiting = make(8, label=8, reviewed_at=None, image28=None, png=None, predicted_digit=None, confidence=None, predicted_at=None)
    relabelled_unreviewed = make(9, label=1, review_label=9, reviewed_at=None)  # in the database by hand
    default = export_to_files(drawings_for_export(), tmp_path / "d.npz")
    assert not {spam.pk, waiting.pk, relabelled_unreviewed.pk} & set(load(tmp_path / "d.npz")[0]["ids"].tolist())
    assert (default.exported, default.unreviewed, default.person_unreviewed) == (4, 3, 0)

    summary = export_to_files(drawings_for_export(), tmp_path / "u.npz", include_unreviewed=True)
    arrays, _, manifest = load(tmp_path / "u.npz")
    assert (summary.exported, summary.rendered, summary.unreviewed, summary.person_unreviewed) == (7, 2, 0, 2)
    assert "2 of them with the person's label alone (unreviewed)" in summary.describe()
    by_id = {int(r["id"]): r for r in manifest}
    assert by_id[spam.pk]["label_source"] == "person-unreviewed" and by_id[spam.pk]["reviewed_at"] == ""
    assert by_id[waiting.pk]["label_source"] == "person-unreviewed" and by_id[waiting.pk]["image"] == "rendered"
    assert by_id[relabelled_unreviewed.pk]["label_source"] == "reviewer"
    assert by_id[drawings["person"].pk]["label_source"] == "person-reviewed"
    assert dict(zip(arrays["ids"].tolist(), arrays["labels"].tolist()))[spam.pk] == 7


def test_strokes_come_back_point_for_point(tmp_path: Path) -> None:
    strokes = [[[0.5, 1.25], [3.0, 4.0]], [[7.125, 8.0]]]
    row = make(9, strokes=strokes)
    export_to_files(drawings_for_export(), tmp_path / "s.npz")
    _, lines, _ = load(tmp_path / "s.npz")
    assert [(line["id"], line["strokes"]) for line in lines] == [(row.pk, strokes)]


@pytest.mark.parametrize("include_unreviewed", [False, True])
def test_the_zip_holds_the_same_three_files(drawings: dict[str, Drawing], tmp_path: Path, include_unreviewed: bool) -> None:
    export_to_files(drawings_for_export(), tmp_path / "f.npz", include_unreviewed=include_unreviewed)
    data, summary = export_to_zip(drawings_for_export(), include_unreviewed=include_unreviewed)
    assert summary.exported == (5 if include_unreviewed else 4)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert sorted(zf.namelist()) == sorted(ZIP_NAMES)
        assert zf.getinfo("drawings.npz").compress_type == zipfile.ZIP_STORED  # already compressed
        assert zf.getinfo("drawings.csv").compress_type == zipfile.ZIP_DEFLATED
        with np.load(io.BytesIO(zf.read("drawings.npz"))) as zipped, np.load(tmp_path / "f.npz") as filed:
            for key in ("images", "labels", "ids"):
                assert np.array_equal(zipped[key], filed[key])
        assert zf.read("drawings.strokes.jsonl") == (tmp_path / "f.strokes.jsonl").read_bytes()
        assert zf.read("drawings.csv") == (tmp_path / "f.csv").read_bytes()


def test_the_zip_file_is_written_through_temporary_files_and_read_from_its_start(
    drawings: dict[str, Drawing], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing of the export's size in memory: the three files and the zip are temporary files."""
    opened: list[Any] = []
    real = tempfile.TemporaryFile

    def recording(*args: Any, **kwargs: Any) -> Any:
        opened.append(real(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(export.tempfile, "TemporaryFile", recording)
    zipped, summary = export_zip_file(drawings_for_export())
    with zipped:
        assert zipped is opened[0] and len(opened) == 4  # the zip; npz, strokes and manifest written into it
        assert all(f.closed for f in opened[1:]) and not zipped.closed  # the parts are gone once in the zip
        assert zipped.tell() == 0
        with zipfile.ZipFile(zipped) as zf:
            assert sorted(zf.namelist()) == sorted(ZIP_NAMES)
            with np.load(io.BytesIO(zf.read("drawings.npz"))) as npz:
                assert len(npz["ids"]) == summary.exported == 4


def test_the_command_reviewed_by_default_include_unreviewed_and_since(drawings: dict[str, Drawing], tmp_path: Path) -> None:
    old = make(11, label=8, reviewed_at=timezone.now())
    Drawing.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))
    reviewed = [drawings[k].pk for k in ("person", "relabelled", "pending", "reviewer_only")] + [old.pk]
    for flags in ([], ["--reviewed-only"]):  # the default; the old flag still accepted
        stdout = io.StringIO()
        call_command("export_drawings", "--out", str(tmp_path / "r.npz"), *flags, stdout=stdout)
        assert load(tmp_path / "r.npz")[0]["ids"].tolist() == reviewed
        assert "5 drawings exported" in stdout.getvalue() and "1 excluded" in stdout.getvalue()
        assert "1 not reviewed" in stdout.getvalue() and "person" not in stdout.getvalue()

    since = (timezone.now() - timedelta(days=2)).date().isoformat()
    call_command("export_drawings", "--out", str(tmp_path / "s.npz"), "--since", since, stdout=io.StringIO())
    assert load(tmp_path / "s.npz")[0]["ids"].tolist() == reviewed[:-1]

    stdout = io.StringIO()
    call_command("export_drawings", "--out", str(tmp_path / "a.npz"), "--include-unreviewed", stdout=stdout)
    arrays, _, manifest = load(tmp_path / "a.npz")
    assert arrays["ids"].tolist() == sorted([*reviewed, drawings["spam"].pk])  # everything labelled, not excluded
    assert [r["label_source"] for r in manifest].count("person-unreviewed") == 1
    assert "the person's label alone" in stdout.getvalue()
    with pytest.raises(CommandError):
        call_command("export_drawings", "--out", str(tmp_path / "x.npz"), "--include-unreviewed", "--reviewed-only")


def test_the_command_refuses_a_bad_out_or_date(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match=r"\.npz"):
        call_command("export_drawings", "--out", str(tmp_path / "x.zip"))
    with pytest.raises(CommandError, match="expected a date"):
        call_command("export_drawings", "--out", str(tmp_path / "x.npz"), "--since", "last week")


def test_an_empty_export_is_still_loadable(tmp_path: Path) -> None:
    summary = export_to_files(drawings_for_export(), tmp_path / "e.npz")
    arrays, lines, manifest = load(tmp_path / "e.npz")
    assert summary.exported == 0 and arrays["images"].shape == (0, 28, 28) and lines == [] and manifest == []
    data, summary = export_to_zip(drawings_for_export())
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert sorted(zf.namelist()) == sorted(ZIP_NAMES) and zf.read("drawings.strokes.jsonl") == b""
