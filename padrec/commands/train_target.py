"""`padrec train-target`: train a dataset's target recommender and save it to its artifacts."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from padrec.config import ARTIFACTS_DIR, TARGET_PRESETS, TRAIN_PRESETS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--preset", choices=sorted(TARGET_PRESETS), default="default", help="model size and schedule")
    parser.add_argument("--epochs", type=int, help="override the preset's number of epochs")
    parser.add_argument("--max-minutes", type=float, help="stop after the epoch that passes this budget")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--artifacts", type=Path, default=ARTIFACTS_DIR)
    parser.add_argument("--out", type=Path, help="checkpoint path (default: artifacts/<dataset>/target.pt)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars (one line per epoch still)")


def run(args: argparse.Namespace) -> int:
    from padrec.artifacts import load_prepared
    from padrec.config import with_overrides
    from padrec.training.target import train_target

    data = load_prepared(args.dataset, args.artifacts)
    config = with_overrides(TRAIN_PRESETS[args.preset], epochs=args.epochs, max_minutes=args.max_minutes,
                            threads=args.threads, seed=args.seed)
    model, log = train_target(data, TARGET_PRESETS[args.preset], config, progress=not args.quiet)
    out = args.out or data.paths.target
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out, {"dataset": args.dataset, "preset": args.preset})
    log_path = out.with_name(out.stem + "_train.json")
    log_path.write_text(json.dumps(log, indent=1) + "\n")
    print(f"saved {out} (best epoch {log['best_epoch']}, valid NLL {log['best_valid_nll']:.4f}); log {log_path}")
    return 0
