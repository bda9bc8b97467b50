"""`padrec train-draft`: self-distil drafts from a dataset's trained target."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from padrec.commands import add_prior_argument, prefix_size_penalty
from padrec.config import ARTIFACTS_DIR, DRAFTERS, REPO_ROOT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--drafter", default="padrec", choices=sorted(DRAFTERS) + ["all"],
                        help="which draft to train (all = the four variants on the same data)")
    parser.add_argument("--users", type=int, help="training users to distil from")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--token-weight", type=float,
                        help="weight of the token loss (against the target's distribution) beside the feature loss")
    parser.add_argument("--item-coefficient-init", type=float,
                        help="PAD-Rec's item-position coefficient at initialisation (DraftConfig)")
    parser.add_argument("--position-init-std", type=float,
                        help="std of the item- and step-position embeddings at initialisation (DraftConfig)")
    parser.add_argument("--artifacts", type=Path, default=ARTIFACTS_DIR)
    parser.add_argument("--cache", type=Path, default=REPO_ROOT / ".cache" / "distill",
                        help="where the distillation data is kept between runs")
    parser.add_argument("--quiet", action="store_true", help="no progress bars (one line per epoch still)")
    add_prior_argument(parser)  # the lists the draft learns from are decoded with it


def run(args: argparse.Namespace) -> int:
    import torch

    from padrec.artifacts import load_prepared
    from padrec.config import DraftTrainConfig, with_overrides
    from padrec.models.target import Target
    from padrec.training.draft import distillation_sequences, target_features, train_draft

    config = with_overrides(DraftTrainConfig(), distill_users=args.users, epochs=args.epochs, threads=args.threads,
                            token_weight=args.token_weight)
    torch.set_num_threads(config.threads)
    data = load_prepared(args.dataset, args.artifacts)
    beta = prefix_size_penalty(args, data)
    target = Target.load(data.paths.target)
    prior = f"_prior{beta:g}" if beta else ""
    # keyed by the artifacts root too: two roots of one dataset (e.g. another vocabulary) differ
    root = hashlib.sha1(str(data.paths.root.resolve()).encode()).hexdigest()[:8]
    cache = args.cache / f"{args.dataset}_{root}_{config.distill_users}_{config.seed}{prior}.pt"
    if cache.is_file() and cache.stat().st_mtime > data.paths.target.stat().st_mtime:
        seqs = [s.numpy() for s in torch.load(cache, weights_only=True)]
    else:
        seqs = distillation_sequences(target, data, config.distill_users, seed=config.seed, progress=not args.quiet,
                                      prefix_size_penalty=beta)
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save([torch.from_numpy(s) for s in seqs], cache)
    feats = target_features(target, data.sids, seqs)
    names = sorted(DRAFTERS) if args.drafter == "all" else [args.drafter]
    for name in names:
        draft_config = with_overrides(DRAFTERS[name], item_coefficient_init=args.item_coefficient_init,
                                      position_init_std=args.position_init_std)
        draft, log = train_draft(target, data, draft_config, config, seqs, feats, progress=not args.quiet)
        out = data.paths.draft(name)
        draft.save(out, {"dataset": args.dataset, "drafter": name})
        log["distilled_with_prefix_size_penalty"] = beta
        out.with_name(out.stem + "_train.json").write_text(json.dumps(log, indent=1) + "\n")
        print(f"saved {out}: next-token accuracy by unrolled step {log['epochs'][-1]['accuracy_by_step']}")
    return 0
