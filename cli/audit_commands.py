"""`lilaw-audit audit`: run an audit locally, without any server, and write its report files.
Torch and the audit pipeline are imported when the command runs, not when the parser is built."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.audit_config import EMBEDDING_HEADS, VAL_SPLITS, WEIGHTINGS, AuditConfig, LilawConfig


def register(commands: argparse._SubParsersAction) -> None:
    """Add the `audit` command to a parser's subcommands."""
    audit = commands.add_parser("audit", help="run an audit locally and write its report")
    add_audit_arguments(audit)
    audit.set_defaults(handler=audit_command)


def add_audit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="a file (.zip, .npz, .csv, .parquet) or a built-in: digits, fashion-mnist[:DIR]")
    parser.add_argument("--model", help="small-cnn, mlp, cnn1d, lstm or a timm model name (default: by modality)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate of the network")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="share of samples in the (noisy) validation split")
    parser.add_argument("--val-split", choices=VAL_SPLITS, default=AuditConfig.val_split,
                        help="fixed: one held-out split for the run; rotate: the held-out fold rotates over the "
                             "epochs, so every sample is also trained on (not with --trusted)")
    parser.add_argument("--split-calibration", action=argparse.BooleanOptionalAction,
                        default=AuditConfig.split_calibration,
                        help="map held-out samples' scores by quantile onto the trained samples' before ranking")
    parser.add_argument("--weighting", choices=WEIGHTINGS, default=AuditConfig.weighting,
                        help="lilaw (default), none (plain training), fbr (feature-based reweighting, needs --trusted)")
    parser.add_argument("--trusted", type=Path, metavar="FILE",
                        help="CSV of sample_id,label whose labels are trusted (class name or index): the "
                             "validation split, held out from training (LiLAW's meta steps, FBR's clean set)")
    parser.add_argument("--loss", choices=["ce", "focal"], default="ce")
    parser.add_argument("--meta-batch-size", type=int, default=LilawConfig.meta_batch_size)
    parser.add_argument("--clamp", action="store_true", help="keep α ≥ 1 and β ≤ δ ≤ α after every meta step")
    parser.add_argument("--inject-noise", metavar="KIND:RATE", help="uniform, asymmetric, adjacent or instance, e.g. uniform:0.3")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cross-fit", type=int, default=0, metavar="K", help="K-fold confident learning scores too")
    parser.add_argument("--pretrained", action="store_true", help="timm backbones: load pretrained weights from the local cache")
    parser.add_argument("--weights", help="a local .safetensors/.pth state dict to start from (with --embeddings: the backbone's)")
    parser.add_argument("--embeddings", metavar="MODEL",
                        help="embeddings mode: this timm backbone, frozen, with --weights, computes features once "
                             "(cached under LILAW_DATA_DIR/artifacts/embeddings); a --head is trained on them")
    parser.add_argument("--head", choices=EMBEDDING_HEADS, default="linear", help="the head of embeddings mode")
    parser.add_argument("--image-size", type=int, help="resize images to this size inside the model")
    parser.add_argument("--limit", type=int, help="audit a stratified subset of this many samples")
    parser.add_argument("--device", help="cuda, cpu (default: cuda when available)")
    parser.add_argument("--out", required=True, type=Path, help="directory for scores.csv, summary.json, dynamics.npz")


def config_from_args(args: argparse.Namespace) -> AuditConfig:
    return AuditConfig(
        model=args.model, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        val_fraction=args.val_fraction, val_split=args.val_split, split_calibration=args.split_calibration,
        weighting=args.weighting, loss=args.loss, seed=args.seed,
        lilaw=LilawConfig(meta_batch_size=args.meta_batch_size, clamp=args.clamp),
        inject_noise=args.inject_noise, cross_fit=args.cross_fit, pretrained=args.pretrained,
        weights_path=None if args.embeddings else args.weights, image_size=args.image_size, device=args.device,
        embeddings_backbone=args.embeddings, embeddings_weights=args.weights if args.embeddings else None,
        embeddings_head=args.head,
    )


def audit_command(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from core.audit import run_audit
    from core.loaders import load_dataset
    from core.report import write_report

    config = config_from_args(args)
    config.validate()
    dataset = load_dataset(args.dataset, limit=args.limit)
    print(f"{dataset.name}: {len(dataset)} samples, {dataset.num_classes} classes ({dataset.modality})", file=sys.stderr)
    trusted = None
    if args.trusted is not None:
        from core.dataset import trusted_set

        trusted = trusted_set(dataset, read_trusted_csv(args.trusted))
        print(f"trusted set: {len(trusted)} samples", file=sys.stderr)
    elif config.weighting == "fbr":
        from core.errors import ConfigError

        raise ConfigError("--weighting fbr needs a trusted set: pass --trusted FILE")
    with tqdm(total=config.epochs, unit="epoch", desc="audit", file=sys.stderr) as bar:
        def on_progress(progress):
            bar.n = round(progress.epoch - 1 + progress.step / progress.steps_per_epoch, 2)
            bar.set_postfix(epoch=progress.epoch, eta=f"{progress.eta_s or 0:.0f}s", refresh=False)
            bar.refresh()

        result = run_audit(dataset, config, on_progress=on_progress, trusted=trusted)
    paths = write_report(result, args.out)
    print_summary(result)
    print(f"\nwrote {', '.join(str(p) for p in paths.values())}")
    return 0


def read_trusted_csv(path: Path) -> dict[str, str]:
    """{sample_id: label} from a CSV of two columns, sample_id and label (a header row
    `sample_id,label` is optional); a DatasetError says what is wrong with it."""
    import csv

    from core.errors import DatasetError

    try:
        with open(path, newline="") as f:
            rows = [row for row in csv.reader(f) if row and any(cell.strip() for cell in row)]
    except OSError as error:
        raise DatasetError(f"cannot read the trusted set {path}: {error.strerror or error}") from error
    if rows and [cell.strip().lower() for cell in rows[0]] == ["sample_id", "label"]:
        rows = rows[1:]
    labels: dict[str, str] = {}
    for line, row in enumerate(rows, start=1):
        if len(row) != 2:
            raise DatasetError(f"{path}: row {line} has {len(row)} columns, expected 2 (sample_id,label)")
        sample_id, label = row[0].strip(), row[1].strip()
        if labels.get(sample_id, label) != label:
            raise DatasetError(f"{path}: sample {sample_id!r} is given two labels ({labels[sample_id]!r}, {label!r})")
        labels[sample_id] = label
    if not labels:
        raise DatasetError(f"{path}: the trusted set is empty")
    return labels


def print_summary(result, top: int = 10) -> None:
    from core.report import score_table

    header, rows = score_table(result)
    shown = ["rank", "sample_id", "given_label", "predicted_label", "split", "default_score"]
    if "known_mislabeled" in header:
        shown.append("known_mislabeled")
    columns = [header.index(name) for name in shown]
    print(f"\nTop {top} suspected mislabels (score: {result.default_score}, higher = more suspicious)")
    print("  ".join(f"{name:>15}" for name in shown))
    for row in rows[:top]:
        print("  ".join(f"{_cell(row[c]):>15}" for c in columns))
    if result.detection:
        metrics = result.detection["aggregate"][result.default_score]
        print(
            f"\nAgainst {metrics['num_mislabeled']} known mislabels: AUROC {metrics['auroc']:.4f}, "
            f"AUPRC (mislabeled = positive) {metrics['auprc_mislabeled']:.4f}, "
            f"AUPRC (clean = positive, paper's convention) {metrics['auprc_clean']:.4f}, "
            f"precision@{metrics['num_mislabeled']} {metrics['precision_at_noise_count']:.4f}"
        )
    if result.test_metrics:
        print(f"test split: top-1 {result.test_metrics['top1']:.4f}, top-5 {result.test_metrics['top5']:.4f}")


def _cell(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)

