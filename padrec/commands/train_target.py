"""`padrec train-target`: train a dataset's target recommender and save it to its artifacts."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from padrec.config import ARTIFACTS_DIR, TARGET_PRESETS, TRAIN_PRESETS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--preset", choices=sorted(TARGET_PRESETS), default="default", help="model size and schedule")
    parser.add_argument("--epochs", type=int, help="override the preset's number of epochs")
    parser.add_argument("--max-minutes", type=float, help="stop after the epoch that passes this budget")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--layers", type=int, help="override the preset's number of decoder layers (a deeper target "
                                                   "makes a draft step cheaper beside it: `padrec forward-costs`)")
    parser.add_argument("--d-model", type=int, metavar="N",
                        help="override the preset's width (a multiple of 64: heads of 64 dimensions and a 3N FFN, "
                             "as `padrec forward-costs` shapes)")
    parser.add_argument("--dropout", type=float,
                        help="override the model's dropout (attention weights and both residual branches), 0 <= p < 1")
    parser.add_argument("--item-embedding", action=argparse.BooleanOptionalAction,
                        help="override the preset's item embeddings: an embedding of each item added at its last "
                             "token (ModelConfig.item_embedding)")
    parser.add_argument("--shuffle-tail-items", type=int, metavar="N",
                        help="each epoch, shuffle the last N items of every training window (TrainConfig)")
    parser.add_argument("--refit-with-valid", action="store_true",
                        help="also train on every user's validation item and keep the last epoch; choose "
                             "--epochs beforehand from a run without it (its best validation epoch)")
    parser.add_argument("--artifacts", type=Path, default=ARTIFACTS_DIR)
    parser.add_argument("--out", type=Path, help="checkpoint path (default: artifacts/<dataset>/target.pt)")
    parser.add_argument("--init-from", type=Path, metavar="CHECKPOINT",
                        help="start from this target's weights (fresh optimizer and schedule), e.g. to go on "
                             "with a run that --max-minutes stopped")
    parser.add_argument("--quiet", action="store_true", help="no progress bars (one line per epoch still)")


def run(args: argparse.Namespace) -> int:
    from padrec.artifacts import load_prepared
    from padrec.config import with_overrides
    from padrec.training.target import train_target

    if args.dropout is not None and not 0 <= args.dropout < 1:
        print(f"error: --dropout must be in [0, 1), got {args.dropout}", file=sys.stderr)
        return 2
    if args.layers is not None and args.layers < 1:
        print(f"error: --layers must be >= 1, got {args.layers}", file=sys.stderr)
        return 2
    if args.refit_with_valid and args.epochs is None:
        print("error: --refit-with-valid needs --epochs (the best epoch of a run without it)", file=sys.stderr)
        return 2
    init = None
    if args.init_from is not None:
        from padrec.models.target import Target

        init = Target.load(args.init_from)
    # a warm restart trains the checkpoint's shape; the preset's shape applies to a fresh model
    base = init.config if init is not None else TARGET_PRESETS[args.preset]
    model_config = with_overrides(base, dropout=args.dropout, n_layers=args.layers,
                                  item_embedding=args.item_embedding)
    if args.d_model is not None:
        try:
            model_config = model_config.with_width(args.d_model)
        except ValueError as error:
            print(f"error: --d-model: {error}", file=sys.stderr)
            return 2
    data = load_prepared(args.dataset, args.artifacts)
    config = with_overrides(TRAIN_PRESETS[args.preset], epochs=args.epochs, max_minutes=args.max_minutes,
                            threads=args.threads, seed=args.seed, shuffle_tail_items=args.shuffle_tail_items,
                            refit_with_valid=args.refit_with_valid or None)
    model, log = train_target(data, model_config, config, progress=not args.quiet, init=init)
    if init is not None:
        # the run that made the starting point, so the saved log tells the whole history
        earlier = args.init_from.with_name(args.init_from.stem + "_train.json")
        log["init_from"] = {"path": str(args.init_from),
                            "log": json.loads(earlier.read_text()) if earlier.is_file() else None}
    out = args.out or data.paths.target
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out, {"dataset": args.dataset, "preset": args.preset})
    log_path = out.with_name(out.stem + "_train.json")
    log_path.write_text(json.dumps(log, indent=1) + "\n")
    kept = "last epoch (refit)" if config.refit_with_valid else f"best epoch {log['best_epoch']}"
    print(f"saved {out} ({kept}, valid NLL {log['best_valid_nll']:.4f}); log {log_path}")
    return 0
