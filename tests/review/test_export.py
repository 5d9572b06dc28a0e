"""Export: what is written loads back identically (images, effective labels, ids, strokes, manifest),
drawings still waiting are rendered as the workers render them (in this process, or by spawned ones:
the same files), excluded and unlabelled ones are left out, unreviewed ones too unless asked for (and
then each row's label source says so), the zip is written through temporary files, and the command's
--include-unreviewed and --since choose the rows."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import tempfile
import zipfile
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from recognizer.models import Drawing
from review import export
from review.export import ZIP_NAMES, drawings_for_export, export_to_files, export_to_zip, export_zip_file
from tests.support.digit_paths import digit_strokes
from worker.pipeline import prepare_strokes

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def make(n: int, **fields: Any) -> Drawing:
    image = bytes((n * 31 + i * 7) % 256 for i in range(784))
    defaults: dict[str, Any] = {
        "client_id": f"e{n}",
        "content_hash": f"h{n}",
        "strokes": digit_strokes(n % 10),
        "canvas_width": 280.0,
        "canvas_height": 300.0,
        "brush": 14.5,
        "image28": image,
        "png": b"\x89PNG",
        "predicted_digit": n % 10,
        "confidence": 0.5 + n / 100,
        "model_name": "cnn-v6",
        "predicted_at": timezone.now(),
        "label": n % 10,
        "reviewed_at": timezone.now(),
    }
    defaults.update(fields)
    return Drawing.objects.create(**defaults)


@pytest.fixture
def drawings() -> dict[str, Drawing]:
    return {
        "person": make(1, label=1),  # the person's label, let stand by a reviewer
        "relabelled": make(2, label=2, review_label=7, reviewed_at=timezone.now()),
        "pending": make(3, label=3, image28=None, png=None, predicted_digit=None, confidence=None, predicted_at=None),
        "excluded": make(4, label=4, excluded=True, reviewed_at=timezone.now()),
        "unlabelled": make(5, label=None),
        "reviewer_only": make(6, label=None, review_label=0, reviewed_at=timezone.now()),
        "spam": make(7, label=7, reviewed_at=None),  # the person's word alone: never reviewed
    }


def load(out: Path) -> tuple[dict[str, np.ndarray], list[dict], list[dict]]:
    with np.load(out) as npz:
        arrays = {k: npz[k] for k in npz.files}
    lines = [json.loads(line) for line in out.with_suffix(".strokes.jsonl").read_text().splitlines()]
    with out.with_suffix(".csv").open(newline="") as f:
        manifest = list(csv.DictReader(f))
    return arrays, lines, manifest


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


def test_a_large_wait_to_render_holds_only_a_few_chunks_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks out to the render processes are bounded (their drawings are held until their images are
    in): a pool whose chunks finish only when asked never has more than a few out."""
    out_now, most = [0], [0]

    class LazyFuture(Future):
        def __init__(self, fn: Any, arg: Any) -> None:
            super().__init__()
            self.fn, self.arg = fn, arg

        def done(self) -> bool:
            return False

        def result(self, timeout: float | None = None) -> Any:
            out_now[0] -= 1
            return self.fn(self.arg)

    class SlowPool:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def submit(self, fn: Any, arg: Any) -> Future:
            out_now[0] += 1
            most[0] = max(most[0], out_now[0])
            return LazyFuture(fn, arg)

        def shutdown(self, **kwargs: Any) -> None:
            pass

    for n in range(40):
        pending(n, strokes=digit_strokes(n % 10))
    monkeypatch.setattr(export, "RENDER_CHUNK", 2)
    here = export_to_files(drawings_for_export(), tmp_path / "here.npz", processes=0)
    monkeypatch.setattr(export, "ProcessPoolExecutor", SlowPool)
    assert export_to_files(drawings_for_export(), tmp_path / "pool.npz", processes=2) == here
    assert out_now[0] == 0 and 2 <= most[0] <= 2 * 2 + 3  # 20 chunks, at most 2 x processes + 2 (+1 just sent)
    with np.load(tmp_path / "pool.npz") as pool, np.load(tmp_path / "here.npz") as alone:
        assert pool["images"].tobytes() == alone["images"].tobytes() and pool["images"].max() > 200

    # large strokes make smaller chunks: a chunk is sent once its strokes reach RENDER_CHUNK_BYTES
    sizes: list[int] = []
    monkeypatch.setattr(export, "RENDER_CHUNK", 1000)
    monkeypatch.setattr(export, "RENDER_CHUNK_BYTES", 1)  # every drawing's strokes reach it
    monkeypatch.setattr(SlowPool, "submit", lambda self, fn, arg: sizes.append(len(arg)) or LazyFuture(fn, arg))
    assert export_to_files(drawings_for_export(), tmp_path / "small.npz", processes=2) == here
    assert sizes == [1] * 40  # without the byte limit: one chunk of 40


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


def pending(n: int, **fields: Any) -> Drawing:
    return make(n, image28=None, png=None, predicted_digit=None, confidence=None, predicted_at=None, **fields)


def test_drawings_rendered_by_spawned_processes_load_back_as_those_rendered_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "RENDER_CHUNK", 4)  # several chunks, rows of both kinds within each
    pools: list[dict[str, Any]] = []

    def pool(*args: Any, **kwargs: Any) -> ProcessPoolExecutor:
        pools.append({"args": args, "start": kwargs["mp_context"].get_start_method()})
        return ProcessPoolExecutor(*args, **kwargs)

    monkeypatch.setattr(export, "ProcessPoolExecutor", pool)
    rows = []
    for n in range(30):
        if n % 3 == 2:
            rows.append(make(n))
        else:  # digits of many sizes and places, a pen that fills a few strokes, a lone dot
            rows.append(
                pending(
                    n,
                    strokes=digit_strokes(n % 10, 0.3 + n / 25, (n * 7 % 90 - 40, n * 5 % 60 - 30)),
                    brush=2.0 + n * 3 % 40,
                    canvas_width=280.0 + n,
                )
            )
    rows.append(pending(31, strokes=[[[40.0, 50.0]]]))
    rows.append(pending(32, strokes=[[]]))  # no ink: zeros, as the workers store it
    rows.append(pending(33, strokes=[[[-50.0, 400.0], [700.0, -3.5]], [[10.0, 10.0], [12.5, 300.0]]]))  # off canvas

    here = export_to_files(drawings_for_export(), tmp_path / "here.npz", processes=0)
    assert pools == []
    spawned = export_to_files(drawings_for_export(), tmp_path / "spawned.npz", processes=2)
    assert pools == [{"args": (2,), "start": "spawn"}]  # never forked

    assert here == spawned and (spawned.exported, spawned.rendered) == (33, 23)
    arrays_here, lines_here, manifest_here = load(tmp_path / "here.npz")
    arrays, lines, manifest = load(tmp_path / "spawned.npz")
    for key in ("images", "labels", "ids"):
        assert np.array_equal(arrays[key], arrays_here[key]) and arrays[key].dtype == arrays_here[key].dtype
    assert (lines, manifest) == (lines_here, manifest_here)
    assert (tmp_path / "spawned.csv").read_bytes() == (tmp_path / "here.csv").read_bytes()
    assert (tmp_path / "spawned.strokes.jsonl").read_bytes() == (tmp_path / "here.strokes.jsonl").read_bytes()

    assert arrays["ids"].tolist() == [row.pk for row in rows]  # in order, by id
    for image, row, line in zip(arrays["images"], rows, manifest, strict=True):
        stored = Drawing.objects.get(pk=row.pk)
        if stored.image28 is not None:
            assert image.tobytes() == bytes(stored.image28) and line["image"] == "stored"
        else:
            canvas = (stored.canvas_width, stored.canvas_height)
            assert image.tobytes() == (prepare_strokes(stored.strokes, canvas, stored.brush) or bytes(784))
            assert line["image"] == "rendered"
    assert arrays["images"][-2].max() == 0 and arrays["images"][-3].max() > 200


def test_render_processes_that_die_or_never_start_leave_the_work_to_the_exporting_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class DyingPool:
        """Its first two chunks' process dies; then no process can be started."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.submitted = 0

        def submit(self, fn: Any, *args: Any) -> Future:
            self.submitted += 1
            if self.submitted > 2:
                raise BrokenProcessPool("cannot start a process")
            future: Future = Future()
            future.set_exception(BrokenProcessPool("a process died"))
            return future

        def shutdown(self, **kwargs: Any) -> None:
            pass

    for n in range(9):
        pending(n, strokes=digit_strokes(n, 0.5 + n / 10))
    monkeypatch.setattr(export, "RENDER_CHUNK", 2)
    here = export_to_files(drawings_for_export(), tmp_path / "here.npz", processes=0)
    monkeypatch.setattr(export, "ProcessPoolExecutor", DyingPool)
    assert export_to_files(drawings_for_export(), tmp_path / "pool.npz", processes=2) == here
    with np.load(tmp_path / "pool.npz") as pool, np.load(tmp_path / "here.npz") as alone:
        assert pool["images"].tobytes() == alone["images"].tobytes() and pool["images"].max() > 200


def test_processes_render_only_a_large_export_on_several_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export.os, "sched_getaffinity", lambda pid: set(range(2)))
    assert export.render_processes(export.RENDER_PROCESSES_FROM - 1) == 0
    assert export.render_processes(export.RENDER_PROCESSES_FROM) == 2
    monkeypatch.setattr(export.os, "sched_getaffinity", lambda pid: {0})
    assert export.render_processes(10_000) == 0
    monkeypatch.setattr(export.os, "sched_getaffinity", lambda pid: set(range(64)))
    assert export.render_processes(10_000) == export.RENDER_PROCESSES_MAX


def test_a_small_export_starts_no_process(drawings: dict[str, Drawing], monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a process pool for a small export")

    monkeypatch.setattr(export, "ProcessPoolExecutor", refuse)
    data, summary = export_to_zip(drawings_for_export())
    assert summary.rendered == 1 and data


def test_the_render_processes_draw_real_pen_digits_byte_for_byte_as_the_workers() -> None:
    """digits.inference.render.strokes_json_to_mnist_bytes, what the render processes run, on the 400 UJI dev
    digits (real pen trajectories) put on the page's pad, and a tenth of them raw on a tablet-sized
    canvas with a thin pen; a drawing without ink is all zeros."""
    from digits.data import uji
    from digits.inference.render import strokes_json_to_mnist_bytes

    digits = uji.load_dev(ROOT.parent / "shared" / "data" / "uji-pen")
    drawings = [(uji.fit_to_canvas(d.strokes, uji.CANVAS), uji.CANVAS, uji.BRUSH) for d in digits]
    drawings += [(d.strokes, (1000.0, 1400.0), 3.0) for d in digits[::10]]
    drawings += [([[]], uji.CANVAS, uji.BRUSH)]
    data = strokes_json_to_mnist_bytes([(json.dumps(s), c[0], c[1], b) for s, c, b in drawings])
    assert data == b"".join(prepare_strokes(s, c, b) or bytes(784) for s, c, b in drawings)


def test_rendering_in_the_export_loads_no_torch() -> None:
    """The admin's download renders in a web process (and its render processes import the same)."""
    code = (
        "import sys, digits.inference.render;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'scipy', 'skimage', 'cv2', 'django'});"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
