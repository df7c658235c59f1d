"""``poolattn train CONFIG.toml``: contrastive fine-tuning of one design (see poolattn.training)."""

from __future__ import annotations

import argparse

from . import add_overrides_option, user_errors

HELP = "train an embedding model from a TOML config (works under `accelerate launch` too)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="training TOML with [model], [data], [training] and [lora] sections")
    add_overrides_option(parser)
    parser.add_argument(
        "--resume", action="store_true", help="continue from the latest checkpoint in output_dir"
    )


def run(args: argparse.Namespace) -> int:
    from ..training.config import load_train_config

    config = load_train_config(args.config, args.overrides)  # before torch: a typo is reported at once
    from ..training.data import DataError
    from ..training.trainer import OutputExistsError, TrainingDiverged, train

    try:
        with user_errors(DataError, OutputExistsError):
            path = train(config, resume=args.resume)
    except TrainingDiverged as exc:
        print(f"poolattn train: {exc}")
        return 3
    print(f"model saved to {path}")
    return 0
