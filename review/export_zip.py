"""The export as one zip: `export_zip_stream` makes it a block at a time while it is sent (the admin's
download, review.downloads): the manifest is written into the zip row by row as the rows are read
(the download starts within a moment, however many rows), then the npz and the strokes are copied in
from their temporary files; the summary is the zip's comment (the headers are gone before it is
known). `export_zip`, `export_zip_file` and `export_to_zip` write the same zip to a file or bytes."""

from __future__ import annotations

import io
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack
from typing import IO, BinaryIO

from django.db.models import QuerySet

from recognizer.models import Drawing
from review.export import COPY_BUFFER, ZIP_NAMES, ExportSummary, export_steps

# The streamed zip is handed on whenever this much of it is ready.
STREAM_BLOCK = 1 << 18


def export_zip(
    drawings: QuerySet[Drawing], out: BinaryIO, *, include_unreviewed: bool = False, processes: int | None = None
) -> ExportSummary:
    """The same three files in one zip written into `out` (export_zip_stream's blocks, as they come)."""
    summary: list[ExportSummary] = []
    for block in export_zip_stream(drawings, include_unreviewed=include_unreviewed, processes=processes, summary=summary):
        out.write(block)
    return summary[0]


class _Sink:
    """Where zipfile writes the streamed zip: no tell() or seek(), so zipfile writes each member's
    sizes after its data (a data descriptor) instead of going back for them."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def write(self, data: bytes) -> int:
        self.buffer += data
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        block, self.buffer = bytes(self.buffer), bytearray()
        return block


def export_zip_stream(
    drawings: QuerySet[Drawing],
    *,
    include_unreviewed: bool = False,
    processes: int | None = None,
    summary: list[ExportSummary] | None = None,
) -> Iterator[bytes]:
    """The zip of the three files, a block (about STREAM_BLOCK bytes) at a time, as it is made: the
    manifest (drawings.csv) first, written into the zip row by row while the rows are read, then the
    npz and the strokes, copied in from the temporary files they were written to meanwhile. The
    summary is the zip's comment, and is appended to `summary` when given."""
    sink = _Sink()
    with ExitStack() as stack:
        npz = stack.enter_context(tempfile.TemporaryFile())
        strokes = stack.enter_context(io.TextIOWrapper(stack.enter_context(tempfile.TemporaryFile()), encoding="utf-8"))
        zf = stack.enter_context(zipfile.ZipFile(sink, "w"))
        stamp = time.localtime()[:6]

        def member(name: str, method: int) -> IO[bytes]:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = method
            return zf.open(info, "w", force_zip64=True)  # sizes unknown until written: room for large ones

        with io.TextIOWrapper(member(ZIP_NAMES[2], zipfile.ZIP_DEFLATED), encoding="utf-8", newline="") as manifest:
            steps = export_steps(
                drawings, npz=npz, strokes=strokes, manifest=manifest, include_unreviewed=include_unreviewed, processes=processes
            )
            while True:
                try:
                    next(steps)
                except StopIteration as done:
                    result: ExportSummary = done.value
                    break
                if len(sink.buffer) >= STREAM_BLOCK:
                    yield sink.take()
        strokes.flush()
        for name, part, method in (
            (ZIP_NAMES[0], npz, zipfile.ZIP_STORED),  # already compressed
            (ZIP_NAMES[1], strokes.buffer, zipfile.ZIP_DEFLATED),
        ):
            part.seek(0)
            with member(name, method) as entry:
                while block := part.read(COPY_BUFFER):
                    entry.write(block)
                    if len(sink.buffer) >= STREAM_BLOCK:
                        yield sink.take()
        zf.comment = result.describe().encode()[:65535]
    if summary is not None:
        summary.append(result)
    yield sink.take()  # the central directory, written when the zip closed


def export_zip_file(
    drawings: QuerySet[Drawing], *, include_unreviewed: bool = False, processes: int | None = None
) -> tuple[IO[bytes], ExportSummary]:
    """The zip in a temporary file (gone once closed), read from its start: what a response streams."""
    out = tempfile.TemporaryFile()  # noqa: SIM115 - returned open: the response that streams it closes it
    try:
        summary = export_zip(drawings, out, include_unreviewed=include_unreviewed, processes=processes)
        out.seek(0)
    except BaseException:
        out.close()
        raise
    return out, summary


def export_to_zip(
    drawings: QuerySet[Drawing], *, include_unreviewed: bool = False, processes: int | None = None
) -> tuple[bytes, ExportSummary]:
    """The zip's bytes (small exports and tests; the admin's download streams export_zip_file's)."""
    out = io.BytesIO()
    summary = export_zip(drawings, out, include_unreviewed=include_unreviewed, processes=processes)
    return out.getvalue(), summary
