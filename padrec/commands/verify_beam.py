"""`padrec verify-beam`: speculative beam search == plain beam search on test users, with its speed.

Plain search always keeps a cache row per beam (the reference); `--one-row` runs the speculative
search, and a plain search of its own, in the one-row layout (`BeamDecoder.one_row`), so the
report separates the layout's gain from the draft's."""

from __future__ import annotations

import argparse
import sys

from padrec.commands import add_report_arguments, emit_report, load_models


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--users", type=int, default=500, help="the first N test users (default 500)")
    parser.add_argument("--drafter", default="padrec")
    parser.add_argument("--beam-widths", default="20", help="comma-separated")
    parser.add_argument("--draft-widths", default="20",
                        help="comma-separated prefixes the draft proposes per level; each checked at each beam width")
    parser.add_argument("--top-n", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--one-row", action="store_true",
                        help="score each request's prefixes as a token tree in one cache row (BeamDecoder.one_row)")
    add_report_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from padrec.beam_verification import check_beams
    from padrec.decoding.beam import BeamDecoder, beam_rows
    from padrec.decoding.torch_draft import TorchDraft
    from padrec.decoding.torch_target import TorchTarget

    widths = [int(w) for w in args.beam_widths.split(",")]
    draft_widths = [int(w) for w in args.draft_widths.split(",")]
    if min(widths) < args.top_n or min(draft_widths) < 1:
        print(f"error: every beam width must be at least --top-n ({args.top_n}) and every draft width at least 1",
              file=sys.stderr)
        return 2
    args.prefix_size_penalty = 0.0  # beam search ranks by the target's own log-probabilities
    models = load_models(args, args.drafter)
    if models is None:
        return 2
    settings = [(w, d) for w in widths for d in draft_widths]
    sids = models.data.sids
    rows = max(beam_rows(sids.num_levels, w, d) for w, d in settings)
    # one target and draft for both layouts: searches run one at a time, each in rows 0..
    target, draft = TorchTarget(models.target, rows, sids), TorchDraft(models.drafts[args.drafter], sids, rows)
    def beams(one_row: bool) -> BeamDecoder:
        return BeamDecoder(models.trie, target, models.target.config.max_seq_len, max(widths), draft,
                           max(draft_widths), one_row)

    decoder, reference = beams(args.one_row), beams(False) if args.one_row else None
    report = {"dataset": args.dataset, "drafter": args.drafter, "threads": args.threads, "top_n": args.top_n,
              "layout": "one_row" if args.one_row else "rows",
              "checks": check_beams(decoder, models.data.split.test[: args.users], settings, args.top_n,
                                    progress=not args.quiet, reference=reference)}
    emit_report(report, args.out, args.json)
    if not args.json:
        for c in report["checks"]:
            print(f"B={c['beam_width']:3d} draft {c['draft_width']:3d}  users {c['users']}  mismatches {c['mismatches']}  "
                  f"near-ties {c['near_ties']}  forwards {c['plain_target_calls']:.2f} -> {c['spec_target_calls']:.2f}  "
                  f"accepted levels {c['accepted_levels']:.2f}  speed-up {c['speedup_total']:.2f}x "
                  f"(median {c['speedup_median']:.2f}x)")
            if "layout_plain_ms_median" in c:
                print(f"        one-row plain: mismatches {c['layout_mismatches']}  near-ties {c['layout_near_ties']}  "
                      f"median ms {c['plain_ms_median']:.1f} (rows) -> {c['layout_plain_ms_median']:.1f} (one row) -> "
                      f"{c['spec_ms_median']:.1f} (one row, speculative): speed-up {c['speedup_layout_plain_median']:.2f}x, "
                      f"then {c['speedup_over_layout_plain_median']:.2f}x")
    return 1 if any(c["mismatches"] or c.get("layout_mismatches") for c in report["checks"]) else 0
