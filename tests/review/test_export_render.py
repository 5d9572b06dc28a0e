"""Export: drawings still waiting for their prediction are rendered as the workers render them, in this
process or by spawned ones (the same files), a few chunks out at a time, the work left to the exporting
process when those die or never start; a small export starts none, and rendering loads no torch."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recognizer.models import Drawing
from review import export_render
from review.export import export_to_files
from review.export_zip import export_to_zip
from review.selectors import drawings_for_export
from tests.review.exports import load, make, pending, some_drawings
from tests.support.digit_paths import digit_strokes
from worker.pipeline import prepare_strokes

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def drawings() -> dict[str, Drawing]:
    return some_drawings()


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
    monkeypatch.setattr(export_render, "RENDER_CHUNK", 2)
    here = export_to_files(drawings_for_export(), tmp_path / "here.npz", processes=0)
    monkeypatch.setattr(export_render, "ProcessPoolExecutor", SlowPool)
    assert export_to_files(drawings_for_export(), tmp_path / "pool.npz", processes=2) == here
    assert out_now[0] == 0 and 2 <= most[0] <= 2 * 2 + 3  # 20 chunks, at most 2 x processes + 2 (+1 just sent)
    with np.load(tmp_path / "pool.npz") as pool, np.load(tmp_path / "here.npz") as alone:
        assert pool["images"].tobytes() == alone["images"].tobytes() and pool["images"].max() > 200

    # large strokes make smaller chunks: a chunk is sent once its strokes reach RENDER_CHUNK_BYTES
    sizes: list[int] = []
    monkeypatch.setattr(export_render, "RENDER_CHUNK", 1000)
    monkeypatch.setattr(export_render, "RENDER_CHUNK_BYTES", 1)  # every drawing's strokes reach it
    monkeypatch.setattr(SlowPool, "submit", lambda self, fn, arg: sizes.append(len(arg)) or LazyFuture(fn, arg))
    assert export_to_files(drawings_for_export(), tmp_path / "small.npz", processes=2) == here
    assert sizes == [1] * 40  # without the byte limit: one chunk of 40


def test_drawings_rendered_by_spawned_processes_load_back_as_those_rendered_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export_render, "RENDER_CHUNK", 4)  # several chunks, rows of both kinds within each
    pools: list[dict[str, Any]] = []

    def pool(*args: Any, **kwargs: Any) -> ProcessPoolExecutor:
        pools.append({"args": args, "start": kwargs["mp_context"].get_start_method()})
        return ProcessPoolExecutor(*args, **kwargs)

    monkeypatch.setattr(export_render, "ProcessPoolExecutor", pool)
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
    monkeypatch.setattr(export_render, "RENDER_CHUNK", 2)
    here = export_to_files(drawings_for_export(), tmp_path / "here.npz", processes=0)
    monkeypatch.setattr(export_render, "ProcessPoolExecutor", DyingPool)
    assert export_to_files(drawings_for_export(), tmp_path / "pool.npz", processes=2) == here
    with np.load(tmp_path / "pool.npz") as pool, np.load(tmp_path / "here.npz") as alone:
        assert pool["images"].tobytes() == alone["images"].tobytes() and pool["images"].max() > 200


def test_processes_render_only_a_large_export_on_several_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export_render.os, "sched_getaffinity", lambda pid: set(range(2)))
    assert export_render.render_processes(export_render.RENDER_PROCESSES_FROM - 1) == 0
    assert export_render.render_processes(export_render.RENDER_PROCESSES_FROM) == 2
    monkeypatch.setattr(export_render.os, "sched_getaffinity", lambda pid: {0})
    assert export_render.render_processes(10_000) == 0
    monkeypatch.setattr(export_render.os, "sched_getaffinity", lambda pid: set(range(64)))
    assert export_render.render_processes(10_000) == export_render.RENDER_PROCESSES_MAX


def test_a_small_export_starts_no_process(drawings: dict[str, Drawing], monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a process pool for a small export")

    monkeypatch.setattr(export_render, "ProcessPoolExecutor", refuse)
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
