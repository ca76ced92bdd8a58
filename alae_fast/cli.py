"""Command line: ``alae-fast train``, ``alae-fast eval-mnist``, ``alae-fast doctor``."""

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
    t.add_argument("--data", help="data directory (MNIST IDX files or an image folder)")
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
    e.add_argument("--weights", choices=("ema", "model"), default="ema")
    e.add_argument("--device", default="cpu")
    e.add_argument("--json", help="also write the result as JSON to this file")
    e.add_argument(
        "--limit", type=int, help="use only the first N train and test images (quick check; the protocol uses all)"
    )

    sub.add_parser("configs", help="list the built-in configs")

    d = sub.add_parser(
        "doctor",
        help="versions, the implementation each op runs and why, and "
        "a quick parity check of every kernel against the "
        "reference (exit 1 on a mismatch)",
    )
    d.add_argument("--device", choices=("cpu", "cuda"), help="device to check (default: cuda when available, else cpu)")
    d.add_argument("--json", help="also write the results as JSON to this file")
    return p


def _train(args) -> int:
    from .checkpoints import load_checkpoint
    from .train.config import config_from_dict
    from .train.config import load_config
    from .train.config import override_config
    from .train.trainer import Trainer

    overrides = list(args.overrides)
    if args.output:
        overrides.append(f"train.output_dir={args.output}")
    if args.device:
        overrides.append(f"train.device={args.device}")
    if args.impl:
        overrides.append(f"train.impl={args.impl}")
    resume = args.resume
    if resume == "auto":
        resume = _auto_resume(args.config, args.output, overrides)
    if args.config is not None:
        cfg = load_config(args.config, overrides)
    elif resume:
        cfg = override_config(config_from_dict(load_checkpoint(resume)["config"]), overrides)
    else:
        print("alae-fast train: --config is required (or --resume CHECKPOINT)", file=sys.stderr)
        return 2
    if resume == "":
        resume = str(Path(cfg.train.output_dir) / "checkpoint.pt")
    try:
        Trainer(cfg, data=args.data, resume=resume, progress=not args.no_progress).run()
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


def _eval(args) -> int:
    from .evaluate import evaluate_mnist
    from .evaluate import format_table

    result = evaluate_mnist(args.checkpoint, data=args.data, weights=args.weights, device=args.device, limit=args.limit)
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
    from .data import MNISTDataError
    from .train.config import ConfigError
    from .train.config import builtin_configs
    from .train.trainer import NonFiniteLossError

    args = _parser().parse_args(argv)
    try:
        if args.command == "train":
            return _train(args)
        if args.command == "eval-mnist":
            return _eval(args)
        if args.command == "doctor":
            return _doctor(args)
        print("\n".join(builtin_configs()))
        return 0
    except (ConfigError, MNISTDataError, CheckpointError, FileNotFoundError, ValueError) as exc:
        print(f"alae-fast {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except NonFiniteLossError as exc:
        print(f"alae-fast {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
