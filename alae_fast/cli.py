"""Command line: ``alae-fast train``, ``prepare-dataset``, ``configs``, ``eval-mnist``, ``doctor``, and the
commands that use a trained model (:mod:`alae_fast.cli_model`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="alae-fast", description="Adversarial Latent Autoencoders")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train an ALAE model")
    t.add_argument(
        "--config",
        help="built-in config name (mnist-mlp, mnist-style) or a YAML "
        "file; defaults to the checkpoint's config with --resume",
    )
    t.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.epochs=5 (repeatable)",
    )
    t.add_argument(
        "--data",
        help="data directory (data.path): MNIST IDX files, an image folder, or a dataset made by prepare-dataset",
    )
    t.add_argument("--output", help="output directory (train.output_dir)")
    t.add_argument(
        "--resume",
        nargs="?",
        const="",
        metavar="CHECKPOINT",
        help="continue from a checkpoint (default: <output_dir>/checkpoint.pt); 'auto': from "
        "<output_dir>/checkpoint.pt when it exists, else start (for job scripts that restart themselves)",
    )
    t.add_argument("--device", help="cpu, cuda, cuda:1, ... (train.device)")
    t.add_argument(
        "--impl",
        choices=("fast", "ref", "cpu", "cuda", "triton"),
        help="op implementation (train.impl): fast = the fastest available (default), ref = plain PyTorch",
    )
    t.add_argument("--no-progress", action="store_true", help="no progress bar")

    e = sub.add_parser("eval-mnist", help="1-NN and linear-SVM accuracy of E's codes on MNIST")
    e.add_argument("checkpoint")
    e.add_argument("--data", help="MNIST directory")
    e.add_argument(
        "--protocol",
        choices=("master", "paper"),
        default="master",
        help="master (default): w of the EMA encoder, standard split, SVM C=0.1 on standardised codes; "
        "paper: the official mnist_ref eval (live encoder, w and E's 1024-wide hidden layer h, "
        "different- and same-writers splits, LinearSVC C=0.02 on raw codes; MLP models only)",
    )
    e.add_argument(
        "--weights",
        choices=("ema", "model"),
        help="the averaged (ema) or live (model) weights; default: ema for --protocol master, model for paper",
    )
    e.add_argument("--dump", help="--protocol paper: also write the features and labels to this .npz file")
    e.add_argument(
        "--splits",
        choices=("both", "different", "same"),
        default="both",
        help="--protocol paper: the writer splits to evaluate (default both)",
    )
    e.add_argument("--device", default="cpu")
    e.add_argument("--json", help="also write the result as JSON to this file")
    e.add_argument(
        "--limit", type=int, help="use only the first N train and test images (quick check; the protocol uses all)"
    )

    c = sub.add_parser("configs", help="list the built-in configs, or print one (resolved) as YAML")
    c.add_argument("name", nargs="?", help="a built-in config name or a YAML file: print it with every default filled")
    c.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    pd = sub.add_parser(
        "prepare-dataset",
        help="convert a folder or zip of images (PNG, JPEG, WebP, BMP; nested) into a training dataset",
        description="Each image is converted to RGB (or L), centre-cropped to a square and resized "
        "with a Lanczos filter to RESOLUTION, then stored as uint8 with a manifest (dataset.json). "
        "Unreadable files are skipped and listed. Train from it with --data DST.",
    )
    pd.add_argument("src", help="a folder of images (searched recursively) or a .zip of them")
    pd.add_argument("dst", help="output folder")
    pd.add_argument("--resolution", type=int, required=True, help="side of the square images (a power of two >= 4)")
    pd.add_argument("--channels", type=int, choices=(1, 3), default=3, help="3: RGB (default), 1: grayscale")
    pd.add_argument(
        "--workers", type=int, default=None, help="decoding processes (default: the CPU count, at most 8; 0: none)"
    )
    pd.add_argument(
        "--storage",
        choices=("raw", "png"),
        default="raw",
        help="raw: one uint8 array read through a memory map (default, fastest to read); png: a zip of PNGs "
        "(2-3x smaller, decoded at every read); see benchmarks/RESULTS.md, 'Data loader'",
    )
    pd.add_argument("--overwrite", action="store_true", help="replace a dataset already prepared in DST")
    pd.add_argument("--no-progress", action="store_true", help="no progress bar")

    d = sub.add_parser(
        "doctor",
        help="versions, the implementation each op runs and why, and "
        "a quick parity check of every kernel against the "
        "reference (exit 1 on a mismatch)",
    )
    d.add_argument("--device", choices=("cpu", "cuda"), help="device to check (default: cuda when available, else cpu)")
    d.add_argument("--json", help="also write the results as JSON to this file")

    from .cli_model import add_model_commands

    add_model_commands(sub)
    return p


def _train(args) -> int:
    from .checkpoints import CheckpointError
    from .checkpoints import load_checkpoint
    from .train.config import config_from_dict
    from .train.config import load_config
    from .train.config import override_config
    from .train.trainer import Trainer

    overrides = list(args.overrides)
    if args.data:
        overrides.append(f"data.path={args.data}")
    if args.output:
        overrides.append(f"train.output_dir={args.output}")
    if args.device:
        overrides.append(f"train.device={args.device}")
    if args.impl:
        overrides.append(f"train.impl={args.impl}")
    resume = args.resume
    if resume == "auto":
        resume = _auto_resume(args.config, args.output, overrides)
    saved = load_checkpoint(resume) if resume else None
    if saved is not None and "opt_e" not in saved:
        raise CheckpointError(
            f"{resume} has no optimizer state (it was converted from an official file): it is for "
            "inference (generate, encode, ...), not for resuming training"
        )
    if args.config is not None:
        cfg = load_config(args.config, overrides)
    elif saved is not None:
        cfg = override_config(config_from_dict(saved["config"]), overrides)
    else:
        print("alae-fast train: --config is required (or --resume CHECKPOINT)", file=sys.stderr)
        return 2
    if resume == "":
        resume = str(Path(cfg.train.output_dir) / "checkpoint.pt")
    try:
        Trainer(cfg, resume=resume, progress=not args.no_progress).run()
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0


def _auto_resume(config: str | None, output: str | None, overrides: list[str]) -> str | None:
    """``--resume auto``: the output folder's checkpoint.pt when there is one, else None."""
    from .train.config import load_config

    if output is not None:
        folder = Path(output)
    elif config is not None:
        folder = Path(load_config(config, overrides).train.output_dir)
    else:
        raise ValueError("--resume auto needs --output or --config (to know the output folder)")
    checkpoint = folder / "checkpoint.pt"
    if checkpoint.is_file():
        return str(checkpoint)
    if config is None:
        raise ValueError(f"--resume auto: {checkpoint} does not exist yet; give --config to start the run")
    return None


def _configs(args) -> int:
    from .train.config import builtin_configs
    from .train.config import config_to_yaml
    from .train.config import describe_builtin
    from .train.config import load_config

    if args.name is None:
        names = builtin_configs()
        width = max(map(len, names))
        for name in names:
            print(f"{name:<{width}}  {describe_builtin(name)}")
        return 0
    print(config_to_yaml(load_config(args.name, args.overrides)), end="")
    return 0


def _prepare(args) -> int:
    import os

    from .data.prepared import prepare_dataset

    workers = min(8, os.cpu_count() or 1) if args.workers is None else args.workers
    prepare_dataset(
        args.src,
        args.dst,
        args.resolution,
        channels=args.channels,
        workers=workers,
        storage=args.storage,
        progress=not args.no_progress,
        overwrite=args.overwrite,
    )
    return 0


def _eval(args) -> int:
    from .evaluate import PROTOCOLS
    from .evaluate import evaluate_mnist
    from .evaluate import evaluate_mnist_paper
    from .evaluate import format_paper_table
    from .evaluate import format_table
    from .evaluate import paper_note

    weights = args.weights or PROTOCOLS[args.protocol]
    common = dict(data=args.data, weights=weights, device=args.device, limit=args.limit)
    if args.protocol == "paper":
        splits = ("different", "same") if args.splits == "both" else (args.splits,)
        log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731 - progress, off stdout's table
        result = evaluate_mnist_paper(args.checkpoint, dump=args.dump, splits=splits, log=log, **common)
        print(f"MNIST, paper protocol (official mnist_ref eval), {weights} weights of {args.checkpoint}\n")
        print(format_paper_table(result, paper_note(args.checkpoint, splits)))
    else:
        if args.dump or args.splits != "both":
            raise ValueError("--dump and --splits need --protocol paper")
        result = evaluate_mnist(args.checkpoint, **common)
        print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


def _doctor(args) -> int:
    from .doctor import DoctorUsageError
    from .doctor import run_doctor

    try:
        return run_doctor(args.device, args.json)
    except DoctorUsageError as exc:
        print(f"alae-fast doctor: error: {exc}", file=sys.stderr)
        return 2


def main(argv=None) -> int:
    from .checkpoints import CheckpointError
    from .cli_model import MODEL_COMMANDS
    from .cli_model import run_model_command
    from .data import MNISTDataError
    from .metrics.networks import MetricsSetupError
    from .train.config import ConfigError
    from .train.trainer import NonFiniteLossError

    args = _parser().parse_args(argv)
    try:
        if args.command in MODEL_COMMANDS:
            return run_model_command(args)
        if args.command == "train":
            return _train(args)
        if args.command == "eval-mnist":
            return _eval(args)
        if args.command == "doctor":
            return _doctor(args)
        if args.command == "prepare-dataset":
            return _prepare(args)
        return _configs(args)
    except (
        ConfigError,
        MNISTDataError,
        CheckpointError,
        MetricsSetupError,
        FileNotFoundError,
        FileExistsError,
        ValueError,
    ) as exc:
        print(f"alae-fast {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except NonFiniteLossError as exc:
        print(f"alae-fast {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
