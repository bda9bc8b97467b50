"""`padrec eval`: Recall/NDCG@5/10 of the target's generated lists, beside popularity and beam search."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from padrec.commands import add_prior_argument, add_report_arguments, emit_report, prefix_size_penalty


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--split", choices=("test", "valid"), default="test")
    parser.add_argument("--users", type=int, help="evaluate the first N users only")
    parser.add_argument("--beam-users", type=int, help="users for the beam-search reference (default: as --users)")
    parser.add_argument("--no-beam", action="store_true", help="skip the beam-search reference")
    parser.add_argument("--no-list", action="store_true",
                        help="skip the generated lists and popularity (beam search only)")
    parser.add_argument("--top-n", type=int, default=10)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--include-history", action="store_true", help="allow items from the user's history")
    add_prior_argument(parser)
    parser.add_argument("--checkpoint", type=Path, help="default: artifacts/<dataset>/target.pt")
    parser.add_argument("--threads", type=int, default=2)
    add_report_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import torch

    from padrec.artifacts import load_prepared
    from padrec.config import DecodeConfig
    from padrec.decoding.constraints import ItemTrie
    from padrec.evaluation import beam_lists, generated_lists, popularity_lists, ranking_metrics
    from padrec.models.target import Target

    torch.set_num_threads(args.threads)
    data = load_prepared(args.dataset, args.artifacts)
    beta = prefix_size_penalty(args, data)
    checkpoint = args.checkpoint or data.paths.target
    if not checkpoint.is_file():
        print(f"error: no target checkpoint at {checkpoint} (run `padrec train-target --dataset {args.dataset}`)",
              file=sys.stderr)
        return 2
    model = Target.load(checkpoint)
    trie = ItemTrie(data.sids, beta)
    examples = getattr(data.split, args.split)[: args.users]
    targets = [e.target for e in examples]
    exclude = not args.include_history
    progress = not args.quiet

    report = {"dataset": args.dataset, "split": args.split, "users": len(examples), "top_n": args.top_n,
              "checkpoint": str(checkpoint), "decoding": {"temperature": args.temperature, "top_p": args.top_p,
                                                          "seed": args.seed, "exclude_history": exclude,
                                                          "prefix_size_penalty": beta}}
    if args.no_list and args.no_beam:
        print("error: --no-list and --no-beam leave nothing to evaluate", file=sys.stderr)
        return 2
    if not args.no_list:
        started = time.time()
        lists = generated_lists(model, trie, examples, args.top_n, progress=progress, exclude_history=exclude,
                                temperature=args.temperature, top_p=args.top_p, seed=args.seed)
        report["target"] = ranking_metrics(lists, targets)
        report["target_seconds"] = time.time() - started
        report["popularity"] = ranking_metrics(popularity_lists(data.split, examples, args.top_n, exclude), targets)
    if not args.no_beam:
        beam_examples = examples[: args.beam_users]
        width = max(DecodeConfig().beam_width, args.top_n)  # a beam search ranks at most its width
        started = time.time()
        beams = beam_lists(model, trie, beam_examples, width=width, top_n=args.top_n, progress=progress)
        report["beam_search"] = {"width": width, "users": len(beam_examples), "seconds": time.time() - started,
                                 **ranking_metrics(beams, [e.target for e in beam_examples])}
    emit_report(report, args.out, args.json)
    if not args.json:
        for name in ("target", "popularity", "beam_search"):
            if name in report:
                metrics = {k: v for k, v in report[name].items() if "@" in k}
                print(f"{name:12s} " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return 0
