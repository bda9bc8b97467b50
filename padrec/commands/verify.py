"""`padrec verify`: greedy speculative lists == plain greedy lists, on a whole test set, in batches."""

from __future__ import annotations

import argparse

from padrec.commands import add_prior_argument, add_report_arguments, emit_report, load_models


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--users", type=int, help="the first N test users only (default: every test user)")
    parser.add_argument("--k", default="4", help="draft tokens per round, comma-separated")
    parser.add_argument("--drafters", default="eagle,padrec", help="comma-separated")
    parser.add_argument("--baseline", default="eagle",
                        help="drafter the others' per-user tau is compared with, paired, at the same k "
                             "(a bootstrap 95%% interval of the ratio of mean tau); 'none' to skip")
    parser.add_argument("--batch-size", type=int, default=32, help="users per engine batch")
    parser.add_argument("--threads", type=int, default=2)
    add_prior_argument(parser)
    add_report_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from padrec.benchmark import torch_decoders
    from padrec.verification import check_lossless

    models = load_models(args, args.drafters)
    if models is None:
        return 2
    decoders = torch_decoders(models.target, models.drafts, models.trie, [int(k) for k in args.k.split(",")],
                              rows=args.batch_size)
    test = models.data.split.test
    report = {"dataset": args.dataset, "test_users": len(test), "prefix_size_penalty": models.trie.prefix_size_penalty,
              **check_lossless(models.target, decoders, models.trie, test[: args.users], args.batch_size,
                               progress=not args.quiet, baseline=None if args.baseline == "none" else args.baseline)}
    emit_report(report, args.out, args.json)
    failed = sum(c["mismatches"] for c in report["checks"])
    if not args.json:
        for c in report["checks"]:
            versus = c.get("versus_baseline")
            against = (f"  tau {versus['ratio']:.3f}x {report['baseline']} "
                       f"(95% CI {versus['ratio_ci95'][0]:.3f}-{versus['ratio_ci95'][1]:.3f})" if versus else "")
            print(f"{c['drafter']:10s} k={c['k']}  users {report['users']}  tau {c['tau']:.2f}  "
                  f"near-ties {c['near_ties']}  mismatches {c['mismatches']}{against}")
    return 1 if failed else 0
