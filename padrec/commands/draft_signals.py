"""`padrec draft-signals`: how much a trained PAD-Rec draft uses its item- and step-position terms."""

from __future__ import annotations

import argparse

from padrec.commands import add_prior_argument, add_report_arguments, emit_report, load_models


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--drafter", default="padrec", help="a draft with position terms (padrec, item-only, step-only)")
    parser.add_argument("--users", type=int, default=200, help="first N test users")
    parser.add_argument("--k", type=int, default=4, help="draft tokens per round of the tau comparison")
    parser.add_argument("--batch-size", type=int, default=32, help="users per engine batch")
    parser.add_argument("--threads", type=int, default=2)
    add_prior_argument(parser)
    add_report_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from padrec.draft_signals import signal_sizes, tau_without_signals

    models = load_models(args, args.drafter)
    if models is None:
        return 2
    draft, target, trie = models.drafts[args.drafter], models.target, models.trie
    examples = models.data.split.test[: args.users]
    try:
        sizes = signal_sizes(draft, target, trie, examples)
    except ValueError as error:
        print(f"error: {args.drafter}: {error}")
        return 2
    report = {"dataset": args.dataset, "drafter": args.drafter, "prefix_size_penalty": trie.prefix_size_penalty,
              "sizes": sizes,
              "acceptance": tau_without_signals(draft, target, trie, examples, args.k, args.batch_size,
                                                progress=not args.quiet)}
    emit_report(report, args.out, args.json)
    if not args.json:
        a = report["acceptance"]
        shares = [f"item {sizes['item']['share']:.3f}"] if "item" in sizes else []
        shares += [f"step@{d} {s:.3f}" for d, s in enumerate(sizes.get("step", {}).get("share_by_depth", []), 1)]
        print(f"{args.dataset} {args.drafter}: share of the fused input: {', '.join(shares)}; "
              f"tau k={a['k']} with {a['tau_with_signals']:.3f}, without {a['tau_without_signals']:.3f} "
              f"({a['differing_lists']} differing lists)")
    return 0
