"""The admin's download of training data: the export's zip as an HTTP response that is sent while it is
made (review.export_zip.export_zip_stream), a block at a time under ASGI as under WSGI."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from asgiref.sync import sync_to_async
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone

from recognizer.models import Drawing
from review.export_zip import export_zip_stream


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


def zip_download(drawings: QuerySet[Drawing], *, include_unreviewed: bool) -> StreamedZipResponse:
    """The zip streamed as it is made (export_zip_stream), whatever the size of the selection; the
    summary is the zip's comment (the headers are gone before it is known)."""
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    kind = "-with-unreviewed" if include_unreviewed else ""
    response = StreamedZipResponse(
        export_zip_stream(drawings.order_by(), include_unreviewed=include_unreviewed), content_type="application/zip"
    )
    response["Content-Disposition"] = f'attachment; filename="drawings-{stamp}{kind}.zip"'
    response["X-Export-Summary"] = "in the zip's comment (counted once the rows are out)"
    return response
