"""Multipart dataset uploads, parsed while they stream in: the file part goes straight into the
blob store (hashed, size-limited: 413 as soon as it is too large), the text fields stay in memory.
Whatever fails (a client gone mid-upload included), the partly received file is removed; once
the request has ended, whatever its answer, `release_upload` removes the received blob unless a
dataset version now refers to it.

An upload larger than `settings.inline_ingest_max_bytes` is ingested by the ingest task
(`queue_ingest`), not inside its request."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from kombu.exceptions import OperationalError
from pydantic import ValidationError
from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header
from sqlalchemy.orm import Session, sessionmaker

from api.errors import validation_message
from api.schemas import DatasetUploadForm
from core.dataset import Modality
from core.errors import AuditError, DatasetError
from core.services import BrokerUnavailableError, UploadTooLargeError
from core.services.blobs import SUFFIXES, Blob, BlobStore, BlobWriter
from core.services.ingest import fail_ingest
from core.settings import Settings
from worker.celery_app import INGEST_TASK, ingest_queue

FILE_FIELD = "file"
MAX_FIELD_BYTES = 4096
# Room for the multipart boundaries and part headers around the file itself.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


def multipart_file_schema(**fields: dict) -> dict:
    """The OpenAPI schema of a multipart upload of one dataset file, plus the text `fields`."""
    file = {"type": "string", "format": "binary", "description": f"one of {', '.join(SUFFIXES)}"}
    return {"type": "object", "required": [FILE_FIELD], "properties": {FILE_FIELD: file, **fields}}


@dataclass(frozen=True)
class DatasetUpload:
    blob: Blob
    name: str
    modality: Modality | None


async def receive_dataset_upload(request: Request, store: BlobStore) -> DatasetUpload:
    """Read a multipart/form-data body with a `file` part and optional `name` and `modality` fields."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > store.max_bytes + MULTIPART_OVERHEAD_BYTES:
        raise UploadTooLargeError(f"the upload is larger than the limit of {store.max_bytes} bytes")
    receiver = _FormReceiver(store)
    parser = MultipartParser(_boundary(request.headers.get("content-type", "")), receiver.callbacks())
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
        return receiver.finish()
    except MultipartParseError as error:
        receiver.discard()
        raise AuditError(f"malformed multipart body: {error}") from None
    except BaseException:
        receiver.discard()
        raise


async def release_upload(store: BlobStore, sessions: sessionmaker[Session], upload: DatasetUpload) -> None:
    """Remove the upload's blob if the request that received it left no dataset version on it
    (a refusal, a 404, a 500, a lost race, or an append, which stores a blob of its own)."""
    await run_in_threadpool(store.discard_unreferenced, sessions, upload.blob)


def ingested_inline(upload: DatasetUpload, settings: Settings) -> bool:
    """Whether the upload is small enough to be ingested inside its request."""
    return upload.blob.path.stat().st_size <= settings.inline_ingest_max_bytes


def queue_ingest(request: Request, session: Session, settings: Settings, version_id: int) -> None:
    """Commit the ingesting version, then queue its ingest task. When the broker refuses it, the
    ingest is recorded as failed (the version and blob removed) and `BrokerUnavailableError` raised."""
    session.commit()  # the ingest worker must find the version when its task arrives
    try:
        request.app.state.celery.send_task(INGEST_TASK, args=[version_id], queue=ingest_queue(settings))
    except OperationalError as error:
        message = "the upload could not be queued for ingest: the broker is unavailable"
        fail_ingest(request.app.state.sessions, settings, version_id, message)
        raise BrokerUnavailableError(message) from error


def _boundary(content_type: str) -> bytes:
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise AuditError("a multipart/form-data body needs a boundary in its Content-Type")
    return boundary


class _FormReceiver:
    """Callbacks of `python_multipart.MultipartParser` that route each part to its destination."""

    def __init__(self, store: BlobStore):
        self._store = store
        self._writer: BlobWriter | None = None
        self._filename = ""
        self._fields: dict[str, str] = {}
        self._headers: dict[bytes, bytes] = {}
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._field_name: str | None = None
        self._field_value = bytearray()
        self._sink: Callable[[bytes], None] = self._to_field
        self._complete = False

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._on_part_begin,
            "on_header_field": lambda data, start, end: self._header_name.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._header_value.extend(data[start:end]),
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
            "on_part_data": lambda data, start, end: self._sink(bytes(data[start:end])),
            "on_part_end": self._on_part_end,
            "on_end": self._on_end,
        }

    def finish(self) -> DatasetUpload:
        if not self._complete:
            raise AuditError("the multipart body ended before its closing boundary")
        if self._writer is None:
            raise DatasetError(
                f"no dataset file: send it in the multipart field {FILE_FIELD!r} ({', '.join(SUFFIXES)})"
            )
        try:
            form = DatasetUploadForm.model_validate(self._fields)
        except ValidationError as error:
            raise DatasetError(validation_message(error.errors())) from None
        blob = self._writer.finish()
        self._writer = None
        return DatasetUpload(blob=blob, name=form.name or _stem(self._filename), modality=form.modality)

    def discard(self) -> None:
        if self._writer is not None:
            self._writer.discard()

    def _on_part_begin(self) -> None:
        self._headers = {}

    def _on_header_end(self) -> None:
        self._headers[bytes(self._header_name).lower()] = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def _on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        if filename is None:
            self._field_name = name
            self._field_value.clear()
            self._sink = self._to_field
            return
        if name != FILE_FIELD:
            raise DatasetError(f"unexpected file field {name!r}: send the dataset in the field {FILE_FIELD!r}")
        if self._writer is not None:
            raise DatasetError("send one dataset file per upload")
        self._filename = filename.decode("utf-8", "replace").replace("\\", "/").rsplit("/", 1)[-1]
        self._writer = self._store.writer(self._filename)
        self._field_name = None
        self._sink = self._writer.write

    def _on_part_end(self) -> None:
        if self._field_name is not None:
            self._fields[self._field_name] = self._field_value.decode("utf-8", "replace")

    def _on_end(self) -> None:
        self._complete = True

    def _to_field(self, data: bytes) -> None:
        self._field_value.extend(data)
        if len(self._field_value) > MAX_FIELD_BYTES:
            raise DatasetError(f"form field {self._field_name!r} is longer than {MAX_FIELD_BYTES} bytes")


def _stem(filename: str) -> str:
    lower = filename.lower()
    suffix = next(suffix for suffix in SUFFIXES if lower.endswith(suffix))
    return filename[: -len(suffix)] or filename
