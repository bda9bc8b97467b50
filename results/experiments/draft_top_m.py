"""Experiment: how often the target's own token is among the draft's top m candidates.

    python results/experiments/draft_top_m.py --dataset beauty --users 150 --k 4 \
        --drafters padrec,eagle --out results/experiments/draft_top_m_beauty.json

A chain verifies the draft's single best guess per position; a token tree (several candidates per
position, verified in one target forward) would also keep a round going where the target's token
is the draft's second or third choice. This measures, on real greedy speculative rounds, the rank of
the target's token among the draft's allowed candidates at every position verification reaches
(every earlier guess accepted), by draft depth and by within-item slot. Ranks only: no timing, so it
may run beside other jobs. The instrumentation (patched `TorchDraft._choose` and
`ListDecoder._verify`) lives in this script, not in the library.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from padrec.benchmark import torch_decoders
from padrec.commands import load_models
from padrec.config import ARTIFACTS_DIR
from padrec.decoding.engine import ListDecoder
from padrec.decoding.interfaces import DecodeRequest
from padrec.decoding.sampling import choose_token, greedy_scores
from padrec.decoding.torch_draft import TorchDraft

DEEPEST_RANK = 8  # ranks beyond this count as "not among the top 8"

committed_choose, committed_verify = TorchDraft._choose, ListDecoder._verify
round_candidates: list[list[int]] = []  # the current round's candidates per proposal, best first
ranks: dict[tuple[int, int], np.ndarray] = defaultdict(lambda: np.zeros(DEEPEST_RANK + 1, dtype=np.int64))


def recording_choose(batch, r, walking, logits, probs, index):
    """`TorchDraft._choose`, first noting the draft's candidates in the order greedy ranks them."""
    allowed, prior = walking.allowed(), walking.prior()
    if len(allowed) and not walking.exhausted():
        order = np.argsort(-greedy_scores(logits, allowed, prior), kind="stable")[:DEEPEST_RANK]
        round_candidates.append(allowed[order].tolist())
    return committed_choose(batch, r, walking, logits, probs, index)


def recording_verify(self, row, logits, hidden, guesses, q):
    """`ListDecoder._verify`, first noting the rank of the target's token at each reached guess."""
    pending, walking = len(row.pending), row.constraint.copy()
    for depth, guess in enumerate(guesses):
        token, _ = choose_token(logits[pending - 1 + depth], walking.allowed(), 0.0, 1.0, None, walking.prior())
        candidates = round_candidates[depth]
        rank = candidates.index(token) if token in candidates else DEEPEST_RANK
        ranks[(depth, walking.slot)][rank] += 1
        if token != guess:
            break
        walking.advance(token)
    round_candidates.clear()
    return committed_verify(self, row, logits, hidden, guesses, q)


def hit_rates(counts: np.ndarray) -> dict:
    total = int(counts.sum())
    return {"reached": total, **{f"top{m}": round(float(counts[:m].sum() / total), 4) for m in (1, 2, 3, 4, 5, 8)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--users", type=int, default=150)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--drafters", default="padrec,eagle")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    TorchDraft._choose = staticmethod(recording_choose)
    ListDecoder._verify = recording_verify
    models = load_models(argparse.Namespace(dataset=args.dataset, artifacts=ARTIFACTS_DIR, threads=1,
                                            prefix_size_penalty=None), args.drafters)
    report = {"dataset": args.dataset, "users": args.users, "k": args.k, "drafters": {}}
    decoders = torch_decoders(models.target, models.drafts, models.trie, [args.k])
    for name in args.drafters.split(","):
        ranks.clear()
        for example in models.data.split.test[: args.users]:
            round_candidates.clear()
            decoders[(name, args.k)].generate([DecodeRequest(tuple(example.history), num_draft_tokens=args.k)], [0])
        by_slot = defaultdict(lambda: np.zeros(DEEPEST_RANK + 1, dtype=np.int64))
        for (depth, slot), counts in ranks.items():
            by_slot[slot] += counts
        report["drafters"][name] = {
            "by_slot": {str(slot): hit_rates(counts) for slot, counts in sorted(by_slot.items())},
            "by_depth_and_slot": [{"depth": depth + 1, "slot": slot, **hit_rates(counts)}
                                  for (depth, slot), counts in sorted(ranks.items())],
        }
        for slot, rates in report["drafters"][name]["by_slot"].items():
            print(name, "slot", slot, rates, flush=True)
    Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
