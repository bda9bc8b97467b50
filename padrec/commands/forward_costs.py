"""`padrec forward-costs`: a target forward against a draft step at batch 1, for target shapes."""

from __future__ import annotations

import argparse
import platform
import sys

from padrec.commands import add_report_arguments, emit_report

DEFAULT_SHAPES = "256x8,256x12,192x14"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shapes", default=DEFAULT_SHAPES,
                        help="comma-separated <d_model>x<n_layers> (default %(default)s; 256x8 is the default target)")
    parser.add_argument("--vocab-size", type=int, default=790, help="tokens (default: about Beauty's)")
    parser.add_argument("--past", type=int, default=60, help="positions already in the cache (a history of ~12 items)")
    parser.add_argument("--verify-tokens", type=int, default=6, help="tokens of a verification forward (pending + k)")
    parser.add_argument("--repeats", type=int, default=5, help="turns the shapes take")
    parser.add_argument("--calls", type=int, default=40, help="timed calls per turn")
    parser.add_argument("--threads", type=int, default=1)
    add_report_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import torch

    from padrec.forward_costs import forward_costs, parse_shape

    try:
        shapes = [parse_shape(text) for text in args.shapes.split(",")]
    except ValueError as error:
        print(f"error: --shapes: {error}", file=sys.stderr)
        return 2
    if min(args.past, args.verify_tokens, args.repeats, args.calls, args.threads) < 1:
        print("error: --past, --verify-tokens, --repeats, --calls and --threads must be >= 1", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    rows = forward_costs(shapes, args.vocab_size, past=args.past, verify_tokens=args.verify_tokens,
                         repeats=args.repeats, calls=args.calls)
    report = {"threads": args.threads, "past": args.past, "verify_tokens": args.verify_tokens,
              "vocab_size": args.vocab_size, "repeats": args.repeats, "calls": args.calls,
              "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__},
              "shapes": rows}
    emit_report(report, args.out, args.json)
    if not args.json:
        for row in rows:
            print(f"{row['shape']:>7s}  {row['parameters'] / 1e6:5.1f}M  target {row['target_ms']:6.2f} ms  "
                  f"verify x{args.verify_tokens} {row['verify_ms']:6.2f} ms  draft step {row['draft_step_ms']:5.2f} ms  "
                  f"target/draft {row['target_over_draft']:5.1f}x")
    return 0
