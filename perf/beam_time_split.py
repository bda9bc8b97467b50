"""Where a speculative beam search spends its time: each scorer call of the one-row searches timed.

A one-row plain search is a prefill and one target forward per deeper level. A speculative one is
the prefill, the draft's pass over the prompt, its steps, the forward of its tree, and a fallback
forward for each level the tree missed. Timing each call separately says how fast speculation could
be with a draft that never missed (`bound_*`: the speculative time less its fallback forwards), and
so whether coverage (a better-trained draft) or the draft's own cost stands between it and the
plain search.

    .venv/bin/python -m perf.beam_time_split --dataset beauty --users 100 --out results/beam/time_split_beauty.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from padrec.artifacts import load_prepared
from padrec.beam_verification import timed_search
from padrec.decoding.beam import BeamDecoder
from padrec.decoding.interfaces import BeamRequest
from padrec.models.draft import Draft
from padrec.models.target import Target
from perf.beam_setup import one_row_decoder, parse_settings
from perf.machine import cpu_model, load_average


class TimedCalls:
    """A scorer whose `score` calls are timed, in order, until `take` hands the times over."""

    def __init__(self, scorer):
        self.scorer = scorer
        self.seconds: list[float] = []

    def score(self, *args, **kwargs):
        began = time.perf_counter()
        out = self.scorer.score(*args, **kwargs)
        self.seconds.append(time.perf_counter() - began)
        return out

    def take(self) -> list[float]:
        taken, self.seconds = self.seconds, []
        return taken


def split_one(decoder: BeamDecoder, target: TimedCalls, draft: TimedCalls, request: BeamRequest) -> dict[str, float]:
    """One search's seconds by part: prefill, target levels (plain) or tree and fallbacks
    (speculative), draft prompt and draft steps, the rest (the search's own Python), the total."""
    target.take(), draft.take()
    total = timed_search(decoder, request)[1]
    t, d = target.take(), draft.take()
    parts = {"prefill": t[0]}
    if request.draft_width:
        # the calls come in this order: prefill, draft prompt, draft steps, the tree, fallbacks
        parts |= {"draft_prompt": d[0], "draft_steps": sum(d[1:]), "tree": t[1] if len(t) > 1 else 0.0,
                  "fallbacks": sum(t[2:])}
    else:
        parts["levels"] = sum(t[1:])
    parts["search"] = total - sum(parts.values())
    parts["total"] = total
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--drafter", default="padrec")
    parser.add_argument("--users", type=int, default=100, help="the first N test users")
    parser.add_argument("--settings", default="10:10,10:20,20:20", help="comma-separated beam_width:draft_width")
    parser.add_argument("--top-n", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_prepared(args.dataset)
    settings = parse_settings(args.settings)
    decoder = one_row_decoder(data, Target.load(data.paths.target), Draft.load(data.paths.draft(args.drafter)),
                              settings, wrap=TimedCalls)
    target, draft = decoder.target, decoder.draft
    report_rows = []
    for width, draft_width in settings:
        parts: dict[str, dict[str, list[float]]] = {"plain": defaultdict(list), "speculative": defaultdict(list)}
        for e in tqdm(data.split.test[: args.users], desc=f"beam {width} draft {draft_width}"):
            history = tuple(e.history)
            for name, request in (("plain", BeamRequest(history, args.top_n, width)),
                                  ("speculative", BeamRequest(history, args.top_n, width, draft_width=draft_width))):
                for part, seconds in split_one(decoder, target, draft, request).items():
                    parts[name][part].append(seconds)
        medians = {name: {part: 1e3 * float(np.median(v)) for part, v in p.items()} for name, p in parts.items()}
        spec = {part: np.array(v) for part, v in parts["speculative"].items()}
        plain_total = np.array(parts["plain"]["total"])
        row = {"beam_width": width, "draft_width": draft_width, "users": len(plain_total), "ms_median": medians,
               "speedup_median": float(np.median(plain_total / spec["total"])),
               # a draft that never missed: the same search less its fallback forwards
               "bound_speedup_median": float(np.median(plain_total / (spec["total"] - spec["fallbacks"]))),
               # ... and whose own forwards cost nothing besides
               "bound_free_draft_speedup_median": float(np.median(
                   plain_total / (spec["total"] - spec["fallbacks"] - spec["draft_prompt"] - spec["draft_steps"])))}
        report_rows.append(row)
        print(json.dumps(row))
    report = {"dataset": args.dataset, "drafter": args.drafter, "threads": args.threads, "top_n": args.top_n,
              "cpu": cpu_model(), "load_average": load_average(), "settings": report_rows}
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
