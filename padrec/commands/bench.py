"""`padrec bench`: plain vs EAGLE-style vs PAD-Rec (and ablations) at several k, offline."""

from __future__ import annotations

import argparse
import sys

from padrec.commands import add_prior_argument, add_report_arguments, emit_report, load_models
from padrec.config import DRAFTERS, REPO_ROOT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--users", type=int, default=200, help="first N test users")
    parser.add_argument("--k", default="2,3,4,5,6", help="draft tokens per round, comma-separated")
    parser.add_argument("--drafters", default=",".join(sorted(DRAFTERS)), help="comma-separated")
    parser.add_argument("--trees", default="", type=tree_shapes, metavar="KxW[@C][:B][~P],...",
                        help="token trees too: K deep, W nodes kept per depth, the B likeliest "
                             "nodes verified (default all), e.g. 4x2,4x3:6; @C gives the continuations of a node "
                             "at each within-item slot, dash-separated (a position-shaped tree: 4x3@1-3-2-1-1); "
                             "~P drafts no node whose path the draft gives less than P (6x1~0.3: a chain that stops)")
    parser.add_argument("--threads", type=int, default=1, help="torch / ONNX Runtime threads (1: batch-1 latency)")
    parser.add_argument("--runtime", choices=("torch", "onnxruntime"), default="torch",
                        help="run target and drafts on torch eager or on their exported ONNX graphs")
    parser.add_argument("--forced-room", type=int, help="onnxruntime: forced tokens a draft graph round can take "
                                                         "before proposing (default: as `padrec export` measures it)")
    add_prior_argument(parser)
    add_report_arguments(parser)


def tree_shapes(text: str) -> list[tuple[int, int, tuple[int, ...], int, float]]:
    """'4x2,4x3@1-3-2-1-1:6,6x1~0.3' -> [(4, 2, (), 0, 0.0), (4, 3, (1, 3, 2, 1, 1), 6, 0.0), (6, 1, (), 0, 0.3)]:
    (draft depth k, nodes kept per depth, continuations per node by slot (empty: the width), budget
    (0 = every node), the path probability below which nothing is drafted)."""
    shapes = []
    for spec in filter(None, text.split(",")):
        try:
            spec, _, min_prob = spec.partition("~")
            shape, _, budget = spec.partition(":")
            shape, at, children = shape.partition("@")
            if at and not children:
                raise ValueError("no continuations after @")
            k, width = (int(n) for n in shape.split("x"))
            parsed = (k, width, tuple(int(c) for c in children.split("-")) if children else (), int(budget or 0),
                      float(min_prob or 0))
        except ValueError:
            raise argparse.ArgumentTypeError(f"a tree is KxW[@C][:B][~P], C dash-separated continuations by slot "
                                             f"(e.g. 4x2:6, 4x3@1-3-2-1-1, 6x1~0.3), got {spec!r}") from None
        if min(parsed[0], parsed[1], *parsed[2]) < 1 or parsed[3] < 0 or not 0 <= parsed[4] < 1:
            raise argparse.ArgumentTypeError(f"a tree needs K, W, C >= 1, B >= 0 and 0 <= P < 1, got {spec!r}")
        shapes.append(parsed)
    return shapes


def run(args: argparse.Namespace) -> int:
    from padrec.benchmark import run_benchmark

    if args.forced_room is not None and (args.runtime != "onnxruntime" or args.forced_room < 1):
        # torch drafts take their forced tokens one step each: only the exported graph has a room to size
        print("error: --forced-room takes a number >= 1, and only with --runtime onnxruntime", file=sys.stderr)
        return 2
    models = load_models(args, args.drafters)
    if models is None:
        return 2
    ks = [int(k) for k in args.k.split(",")]
    forced_room = args.forced_room
    if args.runtime == "onnxruntime" and forced_room is None:
        from padrec.export.forced_room import measured_room

        forced_room = measured_room(models.target, models.trie, models.data.split.test)
    report = run_benchmark(models.target, models.drafts, models.trie, models.data.split.test[: args.users], ks,
                           progress=not args.quiet, runtime=args.runtime,
                           workdir=REPO_ROOT / ".cache" / "bench" / args.dataset, forced_room=forced_room,
                           trees=args.trees)
    report["dataset"] = args.dataset
    if forced_room is not None:
        report["forced_room"] = forced_room
    report["prefix_size_penalty"] = models.trie.prefix_size_penalty
    emit_report(report, args.out, args.json)
    if not args.json:
        p = report["plain"]
        print(f"plain        {p['median_ms']:7.1f} ms  calls/list {p['target_calls_per_list']:.1f}")
        for e in report["speculative"]:
            shaped = f" (continuations by slot {'-'.join(map(str, e['tree_slot_widths']))})" if e.get(
                "tree_slot_widths") else ""
            stop = f", stop below p {e['tree_min_prob']:g}" if e.get("tree_min_prob") else ""
            tree = (f" tree {e['tree_width']} wide{shaped}, {e['tree_budget'] or 'all'} nodes{stop}"
                    if "tree_width" in e else "")
            print(f"{e['drafter']:10s} k={e['k']}{tree}  {e['median_ms']:7.1f} ms  x{e['speedup']:.2f} (CPU x{e['cpu_speedup']:.2f})  "
                  f"tau {e['tau']:.2f}  mismatches {e['mismatches']} near-ties {e['near_ties']}")
    return 0
