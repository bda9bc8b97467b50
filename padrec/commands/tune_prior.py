"""`padrec tune-prior`: choose a dataset's prefix-size prior (BETA) on its validation lists.

Greedy lists are decoded for the validation item of the first N users at each candidate BETA; the
one with the best Recall@10 (then NDCG@10, then the smaller BETA) becomes the dataset's default,
saved with the evidence in artifacts/<dataset>/decoding.json. Test items are never looked at.
"""

from __future__ import annotations

import argparse
import sys

from padrec.commands import add_report_arguments, emit_report, has_target


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--betas", default="0,0.25,0.5,1", help="candidate BETAs, comma-separated")
    parser.add_argument("--users", type=int, help="the first N validation users (default: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dry-run", action="store_true", help="report the choice without saving it")
    add_report_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import torch

    from padrec.artifacts import load_prepared, save_decode_defaults
    from padrec.decoding.constraints import ItemTrie
    from padrec.evaluation import best_setting, generated_lists, ranking_metrics
    from padrec.models.target import Target

    try:
        betas = sorted({float(b) for b in args.betas.split(",")})
    except ValueError:
        print(f"error: --betas must be comma-separated numbers, got {args.betas!r}", file=sys.stderr)
        return 2
    if any(b < 0 for b in betas):
        print("error: a BETA is >= 0 (0 = no prior)", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    data = load_prepared(args.dataset, args.artifacts)
    if not has_target(data):
        return 2
    target = Target.load(data.paths.target)
    examples = data.split.valid[: args.users]
    metrics = {}
    for beta in betas:
        lists = generated_lists(target, ItemTrie(data.sids, beta), examples, progress=not args.quiet)
        metrics[beta] = ranking_metrics(lists, [e.target for e in examples])
        if not args.json:
            print(f"BETA {beta:g}: " + "  ".join(f"{k} {v:.4f}" for k, v in metrics[beta].items()))
    chosen = best_setting(metrics)
    evidence = {"split": "valid", "users": len(examples), "rule": "best recall@10, then ndcg@10, then smaller BETA",
                "metrics": {f"{b:g}": m for b, m in metrics.items()}}
    if not args.dry_run:
        save_decode_defaults(data.paths, {"prefix_size_penalty": chosen}, evidence)
    emit_report({"dataset": args.dataset, "prefix_size_penalty": chosen, "saved": not args.dry_run, **evidence},
                args.out, args.json)
    if not args.json:
        print(f"chosen BETA {chosen:g}" + ("" if args.dry_run else f", saved in {data.paths.decoding}"))
    return 0
