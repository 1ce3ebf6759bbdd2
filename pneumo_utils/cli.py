"""`python -m pneumo_utils {train,evaluate,predict,bench,download,report}`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import UserError

DEFAULTS_NOTE = "Defaults reproduce the course report: Adam, lr 0.001, batch 32, 40 epochs, 224 px."


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
    from .data import RESIZE_MODES
    from .device import DEVICE_CHOICES
    from .models import FREEZE_CHOICES, MODEL_NAMES
    from .train import SCHEDULERS, SELECT_METRICS, THRESHOLD_SPLITS, TrainConfig
    from .transforms import INTENSITY_NORMS

    d = TrainConfig()
    add = parser.add_argument
    add(
        "--model",
        choices=MODEL_NAMES,
        required=True,
        help="scratch: random init, Dropout(p) + 2-way FC; pretrained: ImageNet weights, new FC",
    )
    add("--data", required=True, help="dataset folder (Kaggle or Mendeley layout)")
    add("--out", required=True, help="run folder; an existing one is resumed")
    group = parser.add_argument_group("optimisation")
    group.add_argument("--epochs", type=_positive_int, default=d.epochs, help="default %(default)s")
    group.add_argument(
        "--batch-size", type=_positive_int, default=d.batch_size, help="default %(default)s"
    )
    group.add_argument(
        "--lr", type=float, default=d.lr, help="Adam learning rate, default %(default)s"
    )
    group.add_argument(
        "--weight-decay", type=float, default=d.weight_decay, help="default %(default)s"
    )
    group.add_argument(
        "--scheduler",
        choices=SCHEDULERS,
        default=d.scheduler,
        help="learning-rate schedule: cosine over all epochs, or x0.3 when val "
        "loss stalls 3 epochs; default %(default)s",
    )
    group.add_argument(
        "--early-stopping",
        type=_positive_int,
        metavar="PATIENCE",
        help="stop after this many epochs without a better validation score",
    )
    group.add_argument(
        "--select-metric",
        choices=SELECT_METRICS,
        default=d.select_metric,
        help="validation score that picks best.pt; default %(default)s",
    )
    group.add_argument(
        "--threshold-on",
        choices=THRESHOLD_SPLITS,
        default=d.threshold_on,
        help="validation split whose predictions pick the decision threshold; default %(default)s",
    )
    group = parser.add_argument_group("model")
    group.add_argument(
        "--dropout",
        type=float,
        default=d.dropout,
        help="dropout before the final FC, default %(default)s",
    )
    group.add_argument(
        "--freeze",
        choices=FREEZE_CHOICES,
        default=d.freeze,
        help="pretrained only: freeze nothing, the whole backbone, or every stage "
        "below the one named; default %(default)s",
    )
    group.add_argument(
        "--unfreeze-after", type=int, metavar="N", help="unfreeze everything after N epochs"
    )
    group.add_argument(
        "--weights",
        metavar="FILE",
        help="ImageNet weights file for --model pretrained (default: torchvision's "
        "cache, $TORCH_HOME/hub/checkpoints/resnet18-f37072fd.pth)",
    )
    group = parser.add_argument_group("data")
    group.add_argument("--image-size", type=int, default=d.image_size, help="default %(default)s")
    group.add_argument(
        "--augment",
        action="store_true",
        help="small rotations, shifts, zoom and exposure changes (no flips)",
    )
    group.add_argument(
        "--resize",
        choices=RESIZE_MODES,
        default=d.resize,
        help="how an original becomes a square: squash (aspect lost), pad with black, or "
        "centre-crop; default %(default)s",
    )
    group.add_argument(
        "--aspect-jitter",
        type=float,
        default=d.aspect_jitter,
        metavar="A",
        help="training: stretch the anatomy by a random factor in [1/(1+A), 1+A] along x or y "
        "(breaks the aspect-ratio shortcut); default %(default)s",
    )
    group.add_argument(
        "--intensity-jitter",
        type=float,
        default=d.intensity_jitter,
        metavar="J",
        help="training: move black and white points by up to J of the range and gamma in "
        "[exp(-2J), exp(2J)]; default %(default)s",
    )
    group.add_argument(
        "--jpeg-quality-min",
        type=int,
        default=d.jpeg_quality_min,
        metavar="Q",
        help="training: re-save each image as JPEG at a random quality in [Q, 95] "
        "(breaks the encoding shortcut)",
    )
    group.add_argument(
        "--intensity-norm",
        choices=INTENSITY_NORMS,
        default=d.intensity_norm,
        help="per-image grey-level normalisation, every split: percentile stretch "
        "(0.5-99.5%%) or histogram equalisation; default %(default)s",
    )
    group.add_argument(
        "--class-weighting", action="store_true", help="weight the loss by inverse class frequency"
    )
    group.add_argument(
        "--weighted-sampling",
        action="store_true",
        help="draw training images so both classes are equally frequent",
    )
    group.add_argument(
        "--val-fraction",
        type=float,
        default=d.val_fraction,
        help="share of train patients carved out for validation, default %(default)s",
    )
    group.add_argument(
        "--keep-official-val",
        action="store_true",
        help="validate on the official 16-image val/ instead",
    )
    group.add_argument(
        "--skip-bad-images",
        action="store_true",
        help="leave out unreadable files (listed in a warning) instead of stopping",
    )
    group.add_argument(
        "--cache-dir", help="decoded-image cache (default $PNEUMO_CACHE or ~/.cache/pneumo_utils)"
    )
    group = parser.add_argument_group("run")
    group.add_argument("--seed", type=int, default=d.seed, help="default %(default)s")
    group.add_argument(
        "--device",
        choices=DEVICE_CHOICES,
        default=d.device,
        help="default %(default)s: cuda, then mps, then cpu",
    )
    group.add_argument("--workers", type=int, help="loader processes (default 0 on CPU, 6 on GPU)")
    group.add_argument(
        "--no-amp",
        dest="amp",
        action="store_false",
        help="plain fp32 (default: bf16/fp16 autocast where the hardware has it)",
    )
    group.add_argument(
        "--no-channels-last",
        dest="channels_last",
        action="store_false",
        help="keep NCHW memory layout",
    )
    group.add_argument(
        "--no-pin-memory",
        dest="pin_memory",
        action="store_false",
        help="CUDA: copy batches from pageable memory",
    )
    group.add_argument("--compile", action="store_true", help="torch.compile the model")
    group.add_argument(
        "--deterministic", action="store_true", help="bit-identical CUDA runs (slower kernels)"
    )
    group.add_argument(
        "--max-batches",
        type=_positive_int,
        help="stop each pass after N batches (smoke tests only)",
    )
    group.add_argument(
        "--new-run",
        action="store_true",
        help="set an existing run in --out aside (renamed, not deleted) and start again",
    )
    group.add_argument(
        "--fallback-checkpoint",
        action="store_true",
        help="if last.pt is unreadable, resume from the previous good checkpoint",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pneumo_utils",
        description="Pneumonia detection on chest X-rays with ResNet-18. " + DEFAULTS_NOTE,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train or resume a run", description=DEFAULTS_NOTE)
    _add_train_arguments(train)

    evaluate = commands.add_parser("evaluate", help="metrics of a run's best checkpoint")
    evaluate.add_argument("run_dir", help="a run folder written by train")
    evaluate.add_argument("--data", help="dataset folder (default: the one the run used)")
    evaluate.add_argument("--split", choices=("train", "val", "test"), default="test")

    predict = commands.add_parser("predict", help="P(pneumonia) for image files")
    predict.add_argument("run_dir", help="a run folder written by train")
    predict.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...)")

    audit = commands.add_parser(
        "audit", help="the shortcut audit: how much of the label the file and pixel properties give"
    )
    audit.add_argument("--data", required=True, help="dataset folder (Kaggle or Mendeley layout)")
    audit.add_argument(
        "--image-size", type=int, default=128, help="decoded size of the pixel properties"
    )
    audit.add_argument("--csv", metavar="FILE", help="also write every file's properties as CSV")

    bench = commands.add_parser("bench", help="images/s of the data pipeline and training step")
    bench.add_argument(
        "--data",
        default="../shared/data/chest_xray_sample",
        help="dataset folder, default %(default)s",
    )
    bench.add_argument("--image-size", type=int, default=224)
    bench.add_argument("--batch-size", type=_positive_int, default=32)
    bench.add_argument(
        "--batches", type=_positive_int, default=8, help="timed batches per pipeline"
    )
    bench.add_argument("--device", default="auto")
    bench.add_argument("--json", metavar="FILE", help="also write the results as JSON")

    download = commands.add_parser("download", help="fetch and unpack the Mendeley dataset")
    download.add_argument(
        "--dest", default="data", help="folder to extract into, default %(default)s"
    )
    download.add_argument("--url", help="archive URL (default: Mendeley's ChestXRay2017.zip)")

    report = commands.add_parser(
        "report", help="the main job: get the data if missing, run notebooks 01-04 headless"
    )
    report.add_argument("--notebooks", default="notebooks", help="default %(default)s")
    report.add_argument(
        "--download",
        action="store_true",
        help="download the dataset into data/ when PNEUMO_DATA is missing",
    )
    return parser


def _run(args: argparse.Namespace) -> None:
    if args.command == "train":
        from .train import TrainConfig, train

        options = vars(args).copy()
        new_run, fallback = options.pop("new_run"), options.pop("fallback_checkpoint")
        out = options.pop("out")
        options.pop("command")
        train(TrainConfig(**options), out, new_run=new_run, fallback_checkpoint=fallback)
    elif args.command == "evaluate":
        from .predict import evaluate_run

        print(json.dumps(evaluate_run(args.run_dir, args.data, args.split), indent=2))
    elif args.command == "predict":
        from .predict import predict_files

        for result in predict_files(args.run_dir, args.images):
            print(
                f"{result['path']}\tP(pneumonia)={result['p_pneumonia']:.4f}\t{result['predicted']}"
            )
    elif args.command == "audit":
        from .audit import shortcut_audit

        result = shortcut_audit(args.data, args.image_size)
        print(result.auc.round(3).to_string(), end="\n\n")
        print(result.single.round(3).to_string())
        if args.csv:
            result.properties.to_csv(args.csv, index=False)
    elif args.command == "bench":
        from .bench import run_benchmark

        run_benchmark(
            args.data,
            image_size=args.image_size,
            batch_size=args.batch_size,
            batches=args.batches,
            device=args.device,
            json_path=Path(args.json) if args.json else None,
        )
    elif args.command == "download":
        from .download import MENDELEY_URL, download_dataset

        download_dataset(args.url or MENDELEY_URL, Path(args.dest))
    elif args.command == "report":
        from .report import run_notebooks

        run_notebooks(Path(args.notebooks), download=args.download)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _run(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    return 0
