"""A small typed Python client of the LiLAW Audit API, over httpx.

    with LilawClient("http://127.0.0.1:8000", api_key) as client:
        dataset = client.create_builtin_dataset("digits")
        job = client.submit_audit(dataset.id, epochs=5, inject_noise="uniform:0.3")
        job = client.wait(job.id, on_progress=print)
        for suspect in client.suspects(job.id, limit=20):
            print(suspect.rank, suspect.sample_id, suspect.label, suspect.predicted)
        page = client.review_queue(job.id, limit=10)
        client.decide(job.id, page.items[0].sample_index, "relabel", label="3")
        client.export_review(job.id, "labels.csv")

Failed requests raise `LilawAPIError` with the status code and the server's message.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx

from api.schemas import (
    AppendPublic,
    AuditSettings,
    DatasetPublic,
    DatasetVersionPublic,
    DecisionPublic,
    DeliveryPublic,
    FlagCreate,
    FlagsPublic,
    JobCreate,
    JobDecisionsPublic,
    JobMetricsPublic,
    JobPublic,
    ReauditCreate,
    ReauditPublic,
    ReauditReportPublic,
    ReviewQueuePublic,
    ScheduleCreate,
    SchedulePublic,
    SuspectPagePublic,
    SuspectPublic,
    VersionDiffPublic,
    WebhookCreate,
    WebhookCreated,
)

DOWNLOAD_CHUNK_BYTES = 1 << 20
# The review exports by format: csv, json, label-studio (Label Studio tasks).
REVIEW_EXPORTS = {"csv": "export.csv", "json": "export.json", "label-studio": "export.labelstudio.json"}


def _attachment_name(response: httpx.Response, url: str) -> str:
    """The file name of a download's Content-Disposition (the service sends plain ASCII names),
    else the URL's last part."""
    match = re.search(r'filename="([^"/\\]+)"', response.headers.get("content-disposition", ""))
    return match.group(1) if match else url.rstrip("/").rsplit("/", 1)[-1]


class LilawAPIError(Exception):
    def __init__(self, status_code: int, detail: str):
        super().__init__(f"{status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


class LilawClient:
    def __init__(self, url: str, api_key: str, *, timeout: float = 60.0, http: httpx.Client | None = None):
        """`http` replaces the underlying httpx client (e.g. FastAPI's TestClient)."""
        self._http = http or httpx.Client(base_url=url, timeout=timeout)
        self._http.headers["Authorization"] = f"Bearer {api_key}"

    def __enter__(self) -> LilawClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------ datasets

    def upload_dataset(
        self,
        path: str | Path,
        *,
        name: str | None = None,
        modality: str | None = None,
        wait: bool = True,
        on_progress: Callable[[DatasetPublic], None] | None = None,
        poll_seconds: float = 0.5,
        timeout: float | None = None,
    ) -> DatasetPublic:
        """Upload a dataset file (streamed); a name already used adds a version. A large file is
        ingested by the server after the upload: with `wait` (the default) this polls the dataset
        until it is ready, `on_progress` seeing every polled state (its `ingest_percent`), and
        raises `LilawAPIError` (422, the server's reason) when the ingest failed."""
        path = Path(path)
        fields = {key: value for key, value in {"name": name, "modality": modality}.items() if value is not None}
        with path.open("rb") as file:
            response = self._http.post("/datasets", files={"file": (path.name, file)}, data=fields)
        dataset = DatasetPublic.model_validate(self._checked(response).json())
        if not wait or dataset.status != "ingesting":
            return dataset
        return self.wait_for_dataset(dataset.id, on_progress, poll_seconds=poll_seconds, timeout=timeout)

    def dataset(self, dataset_id: int) -> DatasetPublic:
        return DatasetPublic.model_validate(self._get(f"/datasets/{dataset_id}"))

    def wait_for_dataset(
        self,
        dataset_id: int,
        on_progress: Callable[[DatasetPublic], None] | None = None,
        *,
        poll_seconds: float = 0.5,
        timeout: float | None = None,
    ) -> DatasetPublic:
        """Poll the dataset until its upload is ingested and return it; a failed ingest raises
        `LilawAPIError` (422) with the reason, `timeout` seconds without an end `TimeoutError`."""
        dataset = _poll(
            lambda: self.dataset(dataset_id), lambda found: found.status != "ingesting", on_progress,
            poll_seconds=poll_seconds, timeout=timeout, still=lambda _: f"dataset {dataset_id} is still ingesting",
        )  # fmt: skip
        if dataset.status == "failed":
            raise LilawAPIError(422, dataset.ingest_error or "the dataset could not be ingested")
        return dataset

    def create_builtin_dataset(self, builtin: str, *, name: str | None = None) -> DatasetPublic:
        response = self._http.post("/datasets", json={"builtin": builtin, "name": name})
        return DatasetPublic.model_validate(self._checked(response).json())

    def datasets(self) -> list[DatasetPublic]:
        return [DatasetPublic.model_validate(item) for item in self._get("/datasets")]

    def upload_flags(self, dataset_id: int, version: int, flags: Mapping[str, bool | None]) -> FlagsPublic:
        body = [FlagCreate(sample_id=sample_id, is_mislabeled=flag).model_dump() for sample_id, flag in flags.items()]
        response = self._http.post(f"/datasets/{dataset_id}/versions/{version}/flags", json=body)
        return FlagsPublic.model_validate(self._checked(response).json())

    # ------------------------------------------------------------ jobs

    def submit_audit(self, dataset_id: int, **options: Any) -> JobPublic:
        """Submit an audit; `options` are the fields of `api.schemas.JobCreate` (epochs, model...)."""
        body = JobCreate(dataset_id=dataset_id, **options).model_dump(exclude_unset=True)
        return JobPublic.model_validate(self._checked(self._http.post("/jobs", json=body)).json())

    def job(self, job_id: int, *, trajectory: bool = False, max_points: int = 500) -> JobPublic:
        params = {"trajectory": trajectory, "max_points": max_points}
        return JobPublic.model_validate(self._get(f"/jobs/{job_id}", params=params))

    def jobs(self) -> list[JobPublic]:
        return [JobPublic.model_validate(item) for item in self._get("/jobs")]

    def wait(
        self,
        job_id: int,
        on_progress: Callable[[JobPublic], None] | None = None,
        *,
        poll_seconds: float = 1.0,
        timeout: float | None = None,
    ) -> JobPublic:
        """Poll the job until it has ended (succeeded, failed or cancelled) and return it;
        `on_progress` sees every polled state. Raises TimeoutError after `timeout` seconds."""
        return _poll(
            lambda: self.job(job_id), lambda job: job.status.is_terminal, on_progress,
            poll_seconds=poll_seconds, timeout=timeout, still=lambda job: f"job {job_id} is still {job.status.value}",
        )  # fmt: skip

    def cancel(self, job_id: int) -> JobPublic:
        return JobPublic.model_validate(self._checked(self._http.post(f"/jobs/{job_id}/cancel")).json())

    # ------------------------------------------------------------ results

    def suspects(
        self, job_id: int, *, page_size: int = 100, limit: int | None = None, **filters: Any
    ) -> Iterator[SuspectPublic]:
        """Suspects, most suspicious first, fetched page by page; `filters` are the query
        parameters of GET /jobs/{id}/suspects (label, predicted, split, score, epoch)."""
        params = {key: value for key, value in filters.items() if value is not None}
        remaining = limit
        cursor = None
        while remaining is None or remaining > 0:
            size = page_size if remaining is None else min(page_size, remaining)
            page = SuspectPagePublic.model_validate(
                self._get(f"/jobs/{job_id}/suspects", params={**params, "limit": size, "cursor": cursor})
            )
            yield from page.items
            if remaining is not None:
                remaining -= len(page.items)
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def metrics(self, job_id: int) -> JobMetricsPublic:
        return JobMetricsPublic.model_validate(self._get(f"/jobs/{job_id}/metrics"))

    def recompute_metrics(self, job_id: int) -> JobMetricsPublic:
        response = self._http.post(f"/jobs/{job_id}/metrics/recompute")
        return JobMetricsPublic.model_validate(self._checked(response).json())

    def download_scores(self, job_id: int, path: str | Path, *, format: str = "csv") -> Path:
        """Save the score table as `format` (csv or parquet) at `path`."""
        return self._download(f"/jobs/{job_id}/scores.{format}", Path(path))

    def download_model(self, job_id: int, path: str | Path) -> Path:
        return self._download(f"/jobs/{job_id}/model", Path(path))

    # ------------------------------------------------------------ review

    def review_queue(
        self, job_id: int, *, limit: int = 50, cursor: str | None = None, status: str = "undecided", **filters: Any
    ) -> ReviewQueuePublic:
        """A page of the job's review queue, most suspicious first (the first page, without
        `cursor`, says how far the review is); `status` is undecided, decided, conflict or all and
        `filters` label, split, min_score."""
        params = {**filters, "limit": limit, "cursor": cursor, "status": status}
        return ReviewQueuePublic.model_validate(self._get(f"/jobs/{job_id}/review-queue", params=params))

    def decide(
        self, job_id: int, sample_index: int, verdict: str, *, label: str | None = None, client_id: str | None = None
    ) -> DecisionPublic:
        """Record a decision on a sample of the job: `keep` its label, `relabel` it to `label`, or
        `remove` it. `client_id` names the decision: sent again, it is the same decision."""
        body = {"sample_index": sample_index, "verdict": verdict, "label": label}
        if client_id is not None:
            body["client_id"] = client_id
        response = self._http.post(f"/jobs/{job_id}/decisions", json=body)
        return DecisionPublic.model_validate(self._checked(response).json())

    def undo(self, decision_id: int) -> DecisionPublic:
        """Undo one of your decisions; your previous decision on the sample counts again."""
        response = self._http.post(f"/decisions/{decision_id}/undo")
        return DecisionPublic.model_validate(self._checked(response).json())

    def decisions(
        self, job_id: int, *, conflicts_only: bool = False, limit: int | None = None, after: int | None = None
    ) -> JobDecisionsPublic:
        """A page of the job's samples with decisions (pass its `next_after` as `after` for the
        next), and how the decisions agree with the known flags."""
        params = {"conflicts_only": conflicts_only, "limit": limit, "after": after}
        return JobDecisionsPublic.model_validate(self._get(f"/jobs/{job_id}/decisions", params=params))

    def export_review(self, job_id: int, path: str | Path, *, format: str = "csv", decided_only: bool = False) -> Path:
        """Save the job's corrected labels at `path` as `format`: csv, json or label-studio."""
        if format not in REVIEW_EXPORTS:
            raise ValueError(f"format must be one of {', '.join(REVIEW_EXPORTS)}, got {format!r}")
        url = f"/jobs/{job_id}/{REVIEW_EXPORTS[format]}"
        return self._download(url, Path(path), {"decided_only": decided_only})

    # ------------------------------------------------------------ growing datasets and re-audits

    def append_samples(
        self,
        dataset_id: int,
        path: str | Path,
        *,
        wait: bool = True,
        on_progress: Callable[[DatasetPublic], None] | None = None,
        poll_seconds: float = 0.5,
        timeout: float | None = None,
    ) -> AppendPublic:
        """Add the samples of a file as the dataset's next version; exact duplicates of samples
        already in it are left out and reported. A large file is ingested by the server after
        the upload, as for `upload_dataset`: with `wait` (the default) this polls the dataset
        until the new version is ready (its counts then filled in) and raises `LilawAPIError`
        (422, the server's reason: also when nothing in the file was new) when the append failed;
        without, the counts are None."""
        path = Path(path)
        with path.open("rb") as file:
            response = self._http.post(f"/datasets/{dataset_id}/versions/append", files={"file": (path.name, file)})
        appended = AppendPublic.model_validate(self._checked(response).json())
        if not wait or appended.dataset.status != "ingesting":
            return appended
        dataset = self.wait_for_dataset(dataset_id, on_progress, poll_seconds=poll_seconds, timeout=timeout)
        return AppendPublic.of(dataset)

    def apply_relabels(self, dataset_id: int) -> DatasetVersionPublic:
        """A new version with the reviewers' agreed relabels and removals applied."""
        response = self._http.post(f"/datasets/{dataset_id}/versions/relabel")
        return DatasetVersionPublic.model_validate(self._checked(response).json())

    def download_dataset(
        self, dataset_id: int, path: str | Path, *, version: int | None = None, format: str = "original"
    ) -> Path:
        """Save a version of the dataset (default: the latest, e.g. the one `apply_relabels` made)
        at `path`, or in the folder `path` under the service's file name (``NAME-vN.zip``...): in
        the format it was uploaded in (`original`), or as `npz` or `csv` (tables). Returns the
        file's path."""
        if version is None:
            version = self.versions(dataset_id)[-1].version
        return self._download(f"/datasets/{dataset_id}/versions/{version}/download", Path(path), {"format": format})

    def versions(self, dataset_id: int) -> list[DatasetVersionPublic]:
        return [DatasetVersionPublic.model_validate(item) for item in self._get(f"/datasets/{dataset_id}/versions")]

    def diff_versions(self, dataset_id: int, base: int, version: int | None = None) -> VersionDiffPublic:
        params = {"base": base, "version": version}
        return VersionDiffPublic.model_validate(self._get(f"/datasets/{dataset_id}/versions/diff", params=params))

    def set_schedule(
        self,
        dataset_id: int,
        *,
        cron: str | None = None,
        interval_seconds: int | None = None,
        warm_start: bool = False,
        enabled: bool = True,
        **audit: Any,
    ) -> SchedulePublic:
        """Re-audit the dataset on a cron expression (UTC) or every `interval_seconds`; `audit`
        are the fields of `api.schemas.AuditSettings` (epochs, model...)."""
        body = ScheduleCreate(
            cron=cron, interval_seconds=interval_seconds, warm_start=warm_start, enabled=enabled,
            audit=AuditSettings(**audit),
        ).model_dump(exclude_unset=True)  # fmt: skip
        response = self._http.put(f"/datasets/{dataset_id}/schedule", json=body)
        return SchedulePublic.model_validate(self._checked(response).json())

    def reaudit(self, dataset_id: int, *, force: bool = False, warm_start: bool = False, **audit: Any) -> ReauditPublic:
        """Re-audit the dataset's latest version now (skipped when it is audited already, unless
        `force`); without `audit` options it reuses the previous job's configuration."""
        settings = AuditSettings(**audit) if audit else None
        body = ReauditCreate(force=force, warm_start=warm_start, audit=settings).model_dump(exclude_unset=True)
        response = self._http.post(f"/datasets/{dataset_id}/reaudits", json=body)
        return ReauditPublic.model_validate(self._checked(response).json())

    def report(self, job_id: int, *, limit: int = 100) -> ReauditReportPublic:
        """What changed since the audit the job re-audits; at most `limit` samples per list."""
        return ReauditReportPublic.model_validate(self._get(f"/jobs/{job_id}/report", params={"limit": limit}))

    def set_webhook(self, dataset_id: int, url: str, *, secret: str | None = None) -> WebhookCreated:
        """Call `url` when a re-audit of the dataset finishes; the answer holds the signing secret."""
        body = WebhookCreate(url=url, secret=secret).model_dump()
        response = self._http.put(f"/datasets/{dataset_id}/webhook", json=body)
        return WebhookCreated.model_validate(self._checked(response).json())

    def webhook_deliveries(self, dataset_id: int, *, limit: int = 50) -> list[DeliveryPublic]:
        items = self._get(f"/datasets/{dataset_id}/webhook/deliveries", params={"limit": limit})
        return [DeliveryPublic.model_validate(item) for item in items]

    # ------------------------------------------------------------ transport

    def _get(self, url: str, params: Mapping[str, Any] | None = None) -> Any:
        query = {key: value for key, value in (params or {}).items() if value is not None}
        return self._checked(self._http.get(url, params=query)).json()

    def _download(self, url: str, path: Path, params: Mapping[str, Any] | None = None) -> Path:
        with self._http.stream("GET", url, params=params) as response:
            if response.is_error:
                response.read()
                self._checked(response)
            if path.is_dir():
                path = path / _attachment_name(response, url)
            with path.open("wb") as file:
                for chunk in response.iter_bytes(DOWNLOAD_CHUNK_BYTES):
                    file.write(chunk)
        return path

    @staticmethod
    def _checked(response: httpx.Response) -> httpx.Response:
        if response.is_error:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise LilawAPIError(response.status_code, str(detail))
        return response


T = TypeVar("T")


def _poll(
    fetch: Callable[[], T], ended: Callable[[T], bool], on_progress: Callable[[T], None] | None, *,
    poll_seconds: float, timeout: float | None, still: Callable[[T], str],
) -> T:
    """`fetch()` every `poll_seconds` until `ended` says so, `on_progress` seeing every state;
    TimeoutError (`still(state)` + how long) after `timeout` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        state = fetch()
        if on_progress is not None:
            on_progress(state)
        if ended(state):
            return state
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"{still(state)} after {timeout} s")
        time.sleep(poll_seconds)
