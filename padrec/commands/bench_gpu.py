"""`padrec bench-gpu`: plain vs speculative decoding on a GPU across precisions and batch sizes.

Writes `<out-dir>/<device>.json` (the report), `.md` (a table) and `.png` (speed-up against k per
batch size). `--device cpu` runs the same path on the CPU: what CI's smoke test does, so that the
GPU run finds working code.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from padrec.commands import add_prior_argument, emit_report, load_models
from padrec.commands.bench import tree_shapes


def parse_cell_list(text: str):
    """`--cells` as `padrec.device_bench.Cell`s (argparse reports a bad one)."""
    from padrec.device_bench import parse_cells

    try:
        return parse_cells(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from padrec.config import ARTIFACTS_DIR

    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--users", type=int, default=200, help="first N test users, in every cell")
    parser.add_argument("--k", default="1,2,3,4,5,6", help="draft tokens per round, comma-separated")
    parser.add_argument("--drafters", default="eagle,padrec", help="comma-separated")
    parser.add_argument("--trees", default="", type=tree_shapes, metavar="KxW[@C][:B],...",
                        help="token trees too, as for `padrec bench --trees` (e.g. 4x3,5x3)")
    parser.add_argument("--draft-rounds", default="", metavar="K,...",
                        help="also each drafter at these k with its whole draft round on the device (the exported "
                             "round as torch modules: constraints walked there, one host sync a round), as "
                             "<drafter>/round")
    parser.add_argument("--forced-room", type=int, metavar="F",
                        help="forced tokens a --draft-rounds round takes before proposing (default: measured as "
                             "`padrec export` does, on 50 test users)")
    parser.add_argument("--batch-sizes", default="1,4,16", help="users per engine batch, comma-separated")
    parser.add_argument("--dtypes", default="fp32,bf16", help="precisions, comma-separated: fp32, bf16")
    parser.add_argument("--graphs", default="off", choices=["off", "on", "off,on", "on,off"],
                        help="static-shape calls, replayed as CUDA graphs on a GPU: off (default), on, or both")
    parser.add_argument("--cells", type=parse_cell_list, metavar="B:DTYPE[:graphs],...",
                        help="the cells in this order, instead of every batch size x precision x graphs "
                             "(e.g. 1:bf16:graphs,1:bf16,16:bf16:graphs): what runs first when time is short")
    parser.add_argument("--beams", default="", metavar="B:D,...",
                        help="also plain against speculative beam search (PAD-Rec draft) at these beam widths B and "
                             "draft widths D, one request at a time, in each precision of --dtypes, after the cells "
                             "and while time is left (e.g. 10:10,20:20)")
    parser.add_argument("--beam-users", type=int, default=100, help="first N test users of --beams (default 100)")
    parser.add_argument("--beam-minutes", type=float, default=1.5,
                        help="of --max-minutes, kept for --beams: no cell starts after max-minutes minus this")
    parser.add_argument("--max-minutes", type=float, default=7.0,
                        help="start no cell after this much wall-clock (cells run batch by batch, in the order given)")
    parser.add_argument("--threads", type=int, default=4, help="torch CPU threads")
    parser.add_argument("--artifacts", type=Path, default=ARTIFACTS_DIR)
    parser.add_argument("--out-dir", type=Path, required=True, help="where <device>.json, .md and .png go")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_prior_argument(parser)


def run(args: argparse.Namespace) -> int:
    import torch

    from padrec.bench_plots import speedup_by_batch
    from padrec.config import DecodeConfig
    from padrec.device_bench import Cell, bench_beams, bench_grid, device_name, file_stem, markdown_table

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"error: --device {args.device}, but torch {torch.__version__} sees no CUDA device", file=sys.stderr)
        return 2
    try:
        beams = [tuple(int(x) for x in spec.split(":")) for spec in args.beams.split(",") if spec]
    except ValueError:
        beams = [()]
    if any(len(b) != 2 or b[0] < 10 or b[1] < 1 for b in beams):
        print(f"error: --beams takes B:D pairs, beam width B at least the top 10 and draft width D at least 1, "
              f"got {args.beams!r}", file=sys.stderr)
        return 2
    if args.forced_room is not None and (not args.draft_rounds or args.forced_room < 1):
        print("error: --forced-room needs --draft-rounds and is at least 1", file=sys.stderr)
        return 2
    models = load_models(args, args.drafters)
    if models is None:
        return 2
    if beams and "padrec" not in models.drafts:
        print("error: --beams drafts with PAD-Rec: keep padrec in --drafters", file=sys.stderr)
        return 2
    round_ks = [int(k) for k in args.draft_rounds.split(",") if k]
    room = 0
    if round_ks:
        from padrec.export.forced_room import measured_room

        room = args.forced_room or measured_room(models.target, models.trie, models.data.split.test)
    cells = args.cells or [Cell(b, d, g == "on") for b in (int(x) for x in args.batch_sizes.split(","))
                           for d in args.dtypes.split(",") for g in args.graphs.split(",")]
    stem = args.out_dir / file_stem(device_name(device))
    header = {"dataset": args.dataset, "prefix_size_penalty": models.trie.prefix_size_penalty}

    def write(report: dict) -> None:
        """The report so far as JSON, table and plot: a run cut off keeps its finished cells."""
        report = {**header, **report}
        emit_report(report, stem.with_suffix(".json"), as_json=False)
        stem.with_suffix(".md").write_text(markdown_table(report))
        speedup_by_batch(report, stem.with_suffix(".png"))

    try:
        report = bench_grid(models.target, models.drafts, models.trie, models.data.split.test[: args.users],
                            [int(k) for k in args.k.split(",")], cells, device,
                            args.max_minutes - (args.beam_minutes if beams else 0.0),
                            progress=not args.quiet, on_cell=write, trees=args.trees, round_ks=round_ks,
                            round_room=room)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if beams and report["minutes"] < args.max_minutes:
        report["beam_top_n"] = DecodeConfig().top_n
        report["beam"] = bench_beams(models.target, models.drafts["padrec"], models.data.sids,
                                     models.data.split.test[: args.beam_users], beams, args.dtypes.split(","), device,
                                     progress=not args.quiet)
    elif beams:
        report["beam_skipped"] = f"time budget of {args.max_minutes} min spent"
    write(report)
    failed = (sum(e["mismatches"] for c in report["cells"] if "skipped" not in c for e in c["speculative"])
              + sum(c["mismatches"] for run in report.get("beam", []) for c in run["checks"]))
    print(f"wrote {stem}.json, .md, .png ({report['minutes']:.1f} min; mismatches {failed})")
    return 1 if failed else 0
