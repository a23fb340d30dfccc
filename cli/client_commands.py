"""`lilaw-audit upload`, `submit`, `status`, `suspects`, `download`, `cancel`, for growing
datasets `append`, `reaudit`, `report`, `schedule`, `download-dataset`, and for reviewing a job
`review queue`, `review decide`, `review undo`, `review export`: the Python client (`api.client`)
against a running service. The service's URL and API key come from --url / --api-key or LILAW_URL /
LILAW_API_KEY. The client is imported when a command runs, not when the parser is built."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import AuditError
from core.statuses import JobStatus

if TYPE_CHECKING:
    from api.client import LilawClient
    from api.schemas import DatasetPublic, JobPublic, ReauditReportPublic, SuspectPublic

DEFAULT_URL = "http://127.0.0.1:8000"
DOWNLOADS = {"scores.csv": "csv", "scores.parquet": "parquet", "model": None}
REVIEW_EXPORT_SUFFIXES = {"csv": "csv", "json": "json", "label-studio": "labelstudio.json"}

Command = Callable[[argparse.Namespace], int]


def register(commands: argparse._SubParsersAction) -> None:
    """Add the client commands to a parser's subcommands."""
    service = argparse.ArgumentParser(add_help=False)
    service.add_argument("--url", help=f"the service's URL (default: $LILAW_URL or {DEFAULT_URL})")
    service.add_argument("--api-key", help="an API key (default: $LILAW_API_KEY)")

    upload = commands.add_parser("upload", parents=[service], help="upload a dataset file, or add a built-in one")
    upload.add_argument(
        "source", help="a .zip, .npz, .csv, .tsv or .parquet file, or a built-in: digits, fashion-mnist"
    )
    upload.add_argument("--name", help="dataset name (default: the file name); an existing name gets a new version")
    upload.add_argument("--modality", choices=["image", "tabular", "timeseries"])
    upload.set_defaults(handler=upload_command)

    training = argparse.ArgumentParser(add_help=False)
    training.add_argument("--model", help="small-cnn, mlp, cnn1d, lstm or a timm model name (default: by modality)")
    training.add_argument("--epochs", type=int)
    training.add_argument("--batch-size", type=int)
    training.add_argument("--lr", type=float, help="Adam learning rate of the network")
    training.add_argument("--val-fraction", type=float)
    training.add_argument("--weighting", choices=["lilaw", "none"])
    training.add_argument("--loss", choices=["ce", "focal"])
    training.add_argument(
        "--inject-noise", metavar="KIND:RATE", help="uniform, asymmetric, adjacent or instance, e.g. uniform:0.3"
    )
    training.add_argument("--seed", type=int)
    training.add_argument("--cross-fit", type=int, metavar="K")
    training.add_argument("--meta-batch-size", type=int)
    training.add_argument("--clamp", action="store_true", default=None, help="keep α ≥ 1 and β ≤ δ ≤ α")
    training.add_argument("--pretrained", action="store_true", default=None)
    training.add_argument("--image-size", type=int)
    follow = argparse.ArgumentParser(add_help=False)
    follow.add_argument("--follow", action="store_true", help="follow the job with a progress bar until it ends")

    submit = commands.add_parser("submit", parents=[service, training, follow], help="submit an audit of a dataset")
    submit.add_argument("dataset_id", type=int)
    submit.add_argument("--version", type=int, help="dataset version (default: the latest)")
    submit.set_defaults(handler=submit_command)

    status = commands.add_parser("status", parents=[service], help="follow a job with a progress bar until it ends")
    status.add_argument("job_id", type=int)
    status.add_argument("--no-follow", dest="follow", action="store_false", help="print the status once")
    status.add_argument("--poll", type=float, default=1.0, metavar="SECONDS")
    status.set_defaults(handler=status_command)

    suspects = commands.add_parser("suspects", parents=[service], help="print a job's suspected mislabels")
    suspects.add_argument("job_id", type=int)
    suspects.add_argument("--limit", type=int, default=20)
    suspects.add_argument("--score", help="order by this score (default: the job's ranking)")
    suspects.add_argument("--epoch", type=int, help="order by this epoch's score")
    suspects.add_argument("--label", help="only samples with this given label")
    suspects.add_argument("--predicted", help="only samples the model labels so")
    suspects.add_argument("--split", choices=["train", "val"])
    suspects.set_defaults(handler=suspects_command)

    download = commands.add_parser("download", parents=[service], help="download a job's scores or trained model")
    download.add_argument("job_id", type=int)
    download.add_argument("what", choices=list(DOWNLOADS))
    download.add_argument("--out", type=Path, help="file to write (default: job-<id>-<what>)")
    download.set_defaults(handler=download_command)

    cancel = commands.add_parser("cancel", parents=[service], help="cancel a queued or running job")
    cancel.add_argument("job_id", type=int)
    cancel.set_defaults(handler=cancel_command)

    append = commands.add_parser(
        "append", parents=[service], help="add the samples of a file to a dataset as its next version"
    )
    append.add_argument("dataset_id", type=int)
    append.add_argument("file", type=Path, help="a .zip, .npz, .csv, .tsv or .parquet file of the dataset's kind")
    append.set_defaults(handler=append_command)

    reaudit = commands.add_parser(
        "reaudit",
        parents=[service, training, follow],
        help="re-audit a dataset's latest version now (training options default to the previous job's)",
    )
    reaudit.add_argument("dataset_id", type=int)
    reaudit.add_argument("--force", action="store_true", help="even if the latest version is audited already")
    reaudit.add_argument("--warm-start", action="store_true", help="start from the previous job's model")
    reaudit.set_defaults(handler=reaudit_command)

    report = commands.add_parser("report", parents=[service], help="what a re-audit found since the audit before it")
    report.add_argument("job_id", type=int)
    report.add_argument("--limit", type=int, default=10, help="samples shown per list")
    report.set_defaults(handler=report_command)

    schedule = commands.add_parser("schedule", parents=[service, training], help="re-audit a dataset on a schedule")
    schedule.add_argument("dataset_id", type=int)
    timing = schedule.add_mutually_exclusive_group(required=True)
    timing.add_argument("--cron", help="five-field cron expression, UTC, e.g. '0 3 * * 1'")
    timing.add_argument("--every", type=int, metavar="SECONDS", help="an interval instead of cron")
    schedule.add_argument("--warm-start", action="store_true", help="start each re-audit from the previous model")
    schedule.set_defaults(handler=schedule_command)

    download_dataset = commands.add_parser(
        "download-dataset", parents=[service], help="download a dataset version (e.g. the corrected one) as a file"
    )
    download_dataset.add_argument("dataset_id", type=int)
    download_dataset.add_argument("--version", type=int, help="default: the latest")
    download_dataset.add_argument(
        "--format", choices=["original", "npz", "csv"], default="original",
        help="original: the format the dataset was uploaded in (default)",
    )  # fmt: skip
    download_dataset.add_argument(
        "--out", type=Path, help="file (or folder) to write (default: the service's file name, here)"
    )
    download_dataset.set_defaults(handler=download_dataset_command)

    _register_review(commands.add_parser("review", help="review a job's suspects").add_subparsers(
        dest="review_command", required=True, metavar="{queue,decide,undo,export}"
    ), service)  # fmt: skip


def _register_review(review: argparse._SubParsersAction, service: argparse.ArgumentParser) -> None:
    queue = review.add_parser(
        "queue", parents=[service], help="print the next samples to review, most suspicious first"
    )
    queue.add_argument("job_id", type=int)
    queue.add_argument("--limit", type=int, default=20)
    queue.add_argument("--status", choices=["undecided", "decided", "conflict", "all"], default="undecided")
    queue.add_argument("--label", help="only samples with this label")
    queue.set_defaults(handler=review_queue_command)

    decide = review.add_parser("decide", parents=[service], help="record a decision on a sample of a job")
    decide.add_argument("job_id", type=int)
    decide.add_argument("sample_index", type=int, help="the sample's index (`review queue` shows it)")
    verdict = decide.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--keep", action="store_true", help="the label is right")
    verdict.add_argument("--relabel", metavar="LABEL", help="the label should be LABEL")
    verdict.add_argument("--remove", action="store_true", help="the sample is ambiguous: leave it out")
    decide.set_defaults(handler=review_decide_command)

    undo = review.add_parser("undo", parents=[service], help="undo one of your decisions")
    undo.add_argument("decision_id", type=int)
    undo.set_defaults(handler=review_undo_command)

    export = review.add_parser("export", parents=[service], help="save a job's corrected labels with the decisions")
    export.add_argument("job_id", type=int)
    export.add_argument("--format", choices=list(REVIEW_EXPORT_SUFFIXES), default="csv")
    export.add_argument("--decided-only", action="store_true", help="only the samples with a decision")
    export.add_argument("--out", type=Path, help="file to write (default: job-<id>-labels.<suffix>)")
    export.set_defaults(handler=review_export_command)


def reporting_service_errors(command: Command) -> Command:
    """`command`, with the service's error answers and an unreachable service printed as one line
    and exit status 2."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        import httpx

        from api.client import LilawAPIError

        try:
            return command(args)
        except LilawAPIError as error:
            print(f"error ({error.status_code}): {error.detail}", file=sys.stderr)
        except httpx.TransportError as error:
            url = getattr(args, "url", None) or _env_url()
            print(f"error: cannot reach the service at {url}: {error}", file=sys.stderr)
        return 2

    return run


@reporting_service_errors
def upload_command(args: argparse.Namespace) -> int:
    from core.loaders import BUILTINS

    with _client(args) as client:
        if not Path(args.source).exists() and args.source in BUILTINS:
            dataset = client.create_builtin_dataset(args.source, name=args.name)
        else:
            dataset = _upload_with_progress(client, args)
    version = dataset.versions[-1]
    print(
        f"dataset {dataset.id} {dataset.name!r} version {version.version}: {version.num_samples} samples, "
        f"{version.num_classes} classes ({version.modality})"
    )
    return 0


def _upload_with_progress(client: LilawClient, args: argparse.Namespace) -> DatasetPublic:
    """Upload the file; a large one is ingested by the server afterwards, shown as a bar on stderr."""
    from tqdm import tqdm

    with tqdm(total=100, unit="%", desc=f"ingest {Path(args.source).name}", file=sys.stderr, delay=1) as bar:

        def show(dataset: DatasetPublic) -> None:
            bar.n = dataset.ingest_percent
            bar.refresh()

        return client.upload_dataset(args.source, name=args.name, modality=args.modality, on_progress=show)


TRAINING_OPTIONS = (
    "model", "epochs", "batch_size", "lr", "val_fraction", "weighting", "loss", "inject_noise", "seed",
    "cross_fit", "meta_batch_size", "clamp", "pretrained", "image_size",
)  # fmt: skip


def _training_options(args: argparse.Namespace) -> dict:
    return {name: getattr(args, name) for name in TRAINING_OPTIONS if getattr(args, name) is not None}


@reporting_service_errors
def submit_command(args: argparse.Namespace) -> int:
    options = _training_options(args)
    if args.version is not None:
        options["version"] = args.version
    with _client(args) as client:
        job = client.submit_audit(args.dataset_id, **options)
        print(f"job {job.id} {job.status.value}")
        if args.follow:
            return report_job(client, follow_job(client, job.id, poll_seconds=1.0))
    return 0


@reporting_service_errors
def status_command(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = follow_job(client, args.job_id, args.poll) if args.follow else client.job(args.job_id)
        return report_job(client, job)


@reporting_service_errors
def suspects_command(args: argparse.Namespace) -> int:
    filters = {
        "score": args.score,
        "epoch": args.epoch,
        "label": args.label,
        "predicted": args.predicted,
        "split": args.split,
    }
    with _client(args) as client:
        print_suspects(client, args.job_id, limit=args.limit, **filters)
    return 0


def print_suspects(client: LilawClient, job_id: int, limit: int, **filters: object) -> None:
    header = ("rank", "sample_id", "label", "predicted", "split", "score", "known_mislabeled")
    rows = [_suspect_row(suspect) for suspect in client.suspects(job_id, limit=limit, **filters)]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    for row in (header, *rows):
        print("  ".join(str(cell).rjust(width) for cell, width in zip(row, widths)))


def _suspect_row(suspect: SuspectPublic) -> tuple[str, ...]:
    score = "" if suspect.score is None else f"{suspect.score:.4f}"
    known = "" if suspect.is_mislabeled is None else str(suspect.is_mislabeled).lower()
    return (
        str(suspect.rank),
        suspect.sample_id,
        suspect.label,
        suspect.predicted or "",
        suspect.split or "",
        score,
        known,
    )


@reporting_service_errors
def download_command(args: argparse.Namespace) -> int:
    out = args.out or Path(f"job-{args.job_id}-{args.what}")
    with _client(args) as client:
        if args.what == "model":
            client.download_model(args.job_id, out)
        else:
            client.download_scores(args.job_id, out, format=DOWNLOADS[args.what])
    print(f"wrote {out}")
    return 0


@reporting_service_errors
def cancel_command(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.cancel(args.job_id)
    print(f"job {job.id} {job.status.value}")
    return 0


@reporting_service_errors
def append_command(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    with _client(args) as client, tqdm(total=100, unit="%", desc=f"append {args.file.name}", file=sys.stderr,
                                       delay=1) as bar:  # fmt: skip

        def show(dataset: DatasetPublic) -> None:  # a large file, ingested by the server
            bar.n = dataset.ingest_percent
            bar.refresh()

        appended = client.append_samples(args.dataset_id, args.file, on_progress=show)
    print(
        f"dataset {args.dataset_id} version {appended.version}: {appended.num_added} samples added, "
        f"{appended.num_duplicates} duplicates left out"
    )
    for duplicate in appended.duplicates[:10]:
        print(f"  {duplicate['sample_id']} duplicates {duplicate['duplicate_of']}")
    if appended.new_classes:
        print(f"new classes: {', '.join(appended.new_classes)}")
    return 0


@reporting_service_errors
def reaudit_command(args: argparse.Namespace) -> int:
    with _client(args) as client:
        started = client.reaudit(
            args.dataset_id, force=args.force, warm_start=args.warm_start, **_training_options(args)
        )
        if started.job is None:
            print(f"skipped: {started.skipped}")
            return 0
        print(f"job {started.job.id} {started.job.status.value} (re-audit of job {started.job.previous_job_id})")
        if not args.follow:
            return 0
        job = follow_job(client, started.job.id, poll_seconds=1.0)
        code = report_job(client, job)
        if job.status is JobStatus.SUCCEEDED:
            _print_reaudit_report(client.report(job.id, limit=10))
        return code


@reporting_service_errors
def report_command(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print_reaudit_report(client.report(args.job_id, limit=args.limit))
    return 0


def _print_reaudit_report(report: ReauditReportPublic) -> None:
    if report.previous_job_id is None:
        since = "a first audit"
    else:
        since = f"since job {report.previous_job_id} (version {report.previous_version})"
    suspected = f"{report.num_suspected} of {report.num_samples} suspected"
    print(f"job {report.job_id}, version {report.version}: {suspected}, {since}")
    for name, count in report.counts.items():
        shown = report.samples.get(name, [])
        ids = ", ".join(sample.sample_id for sample in shown)
        print(f"  {name}: {count}" + (f" ({ids}{', ...' if count > len(shown) else ''})" if shown else ""))


@reporting_service_errors
def schedule_command(args: argparse.Namespace) -> int:
    with _client(args) as client:
        schedule = client.set_schedule(
            args.dataset_id, cron=args.cron, interval_seconds=args.every, warm_start=args.warm_start,
            **_training_options(args),
        )  # fmt: skip
    timing = f"cron {schedule.cron!r} (UTC)" if schedule.cron else f"every {schedule.interval_seconds} s"
    print(f"dataset {schedule.dataset_id} re-audited {timing}; next run {schedule.next_run_at.isoformat()}")
    return 0


@reporting_service_errors
def download_dataset_command(args: argparse.Namespace) -> int:
    with _client(args) as client:
        out = client.download_dataset(args.dataset_id, args.out or Path("."), version=args.version, format=args.format)
    print(f"wrote {out}")
    return 0


@reporting_service_errors
def review_queue_command(args: argparse.Namespace) -> int:
    with _client(args) as client:
        page = client.review_queue(args.job_id, limit=args.limit, status=args.status, label=args.label)
    if page.progress is not None:
        progress = page.progress
        print(
            f"{progress.decided} of {progress.total} decided, {progress.remaining} to go, "
            f"{progress.conflicts} conflicts"
        )
    header = ("rank", "sample_index", "sample_id", "label", "suggested", "score", "decisions")
    rows = [
        (
            str(item.rank),
            str(item.sample_index),
            item.sample_id,
            item.label,
            ", ".join(f"{top.label} {top.probability:.2f}" for top in item.top_classes[:3]),
            f"{item.score:.4f}",
            "" if item.review is None else "; ".join(
                f"{decision.reviewer}: {_verdict_text(decision)}" for decision in item.review.decisions
            ),
        )
        for item in page.items
    ]  # fmt: skip
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
    for row in (header, *rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0


def _verdict_text(decision) -> str:
    return f"relabel to {decision.label}" if decision.label is not None else decision.verdict.value


@reporting_service_errors
def review_decide_command(args: argparse.Namespace) -> int:
    verdict = "keep" if args.keep else "remove" if args.remove else "relabel"
    with _client(args) as client:
        decision = client.decide(args.job_id, args.sample_index, verdict, label=args.relabel)
    print(f"decision {decision.id}: {decision.sample_id} ({decision.given_label}) {_verdict_text(decision)}")
    return 0


@reporting_service_errors
def review_undo_command(args: argparse.Namespace) -> int:
    with _client(args) as client:
        decision = client.undo(args.decision_id)
    print(f"decision {decision.id} undone: {decision.sample_id} {_verdict_text(decision)}")
    return 0


@reporting_service_errors
def review_export_command(args: argparse.Namespace) -> int:
    out = args.out or Path(f"job-{args.job_id}-labels.{REVIEW_EXPORT_SUFFIXES[args.format]}")
    with _client(args) as client:
        client.export_review(args.job_id, out, format=args.format, decided_only=args.decided_only)
    print(f"wrote {out}")
    return 0


def _client(args: argparse.Namespace) -> LilawClient:
    from api.client import LilawClient

    api_key = args.api_key or os.environ.get("LILAW_API_KEY")
    if not api_key:
        raise AuditError("no API key: pass --api-key or set LILAW_API_KEY (create one with `lilaw-audit create-key`)")
    return LilawClient(args.url or _env_url(), api_key)


def _env_url() -> str:
    return os.environ.get("LILAW_URL", DEFAULT_URL)


def follow_job(client: LilawClient, job_id: int, poll_seconds: float) -> JobPublic:
    """Wait for the job to end, showing its progress as a bar on stderr."""
    from tqdm import tqdm

    with tqdm(unit="epoch", desc=f"job {job_id}", file=sys.stderr) as bar:

        def show(job: JobPublic) -> None:
            bar.total = job.progress.total_epochs
            bar.n = round(_epochs_done(job), 2)
            bar.set_postfix(status=job.status.value, eta=f"{job.progress.eta_seconds or 0:.0f}s", refresh=False)
            bar.refresh()

        return client.wait(job_id, on_progress=show, poll_seconds=poll_seconds)


def _epochs_done(job: JobPublic) -> float:
    progress = job.progress
    if job.status is JobStatus.SUCCEEDED:
        return float(progress.total_epochs or progress.epoch)
    if progress.total_steps and progress.total_epochs:
        return min(progress.step / progress.total_steps, 1.0) * progress.total_epochs
    return float(max(progress.epoch - 1, 0))


def report_job(client: LilawClient, job: JobPublic) -> int:
    """Print the job's state (and its default score's metrics once it succeeded); 1 unless it
    succeeded or is still going."""
    progress = job.progress
    print(f"job {job.id} {job.status.value}: epoch {progress.epoch}/{progress.total_epochs}")
    if job.error:
        print(f"error: {job.error}")
    if job.status is JobStatus.SUCCEEDED:
        metrics = client.metrics(job.id)
        for entry in metrics.scores:
            overall = entry.aggregate.get("all")
            if entry.score == metrics.default_score and overall is not None:
                print(
                    f"{entry.score} against {overall.num_mislabeled} known mislabels: AUROC {_number(overall.auroc)}, "
                    f"AUPRC (mislabeled = positive) {_number(overall.auprc_mislabeled)}, "
                    f"AUPRC (clean = positive) {_number(overall.auprc_clean)}"
                )
    return 1 if job.status in (JobStatus.FAILED, JobStatus.CANCELLED) else 0


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"

