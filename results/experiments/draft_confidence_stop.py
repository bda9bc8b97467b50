"""Experiment: end a greedy draft round at the first proposal the draft itself is unsure of.

    python results/experiments/draft_confidence_stop.py --dataset beauty --users 60 --k 4,6 \
        --thresholds 0,0.1,0.25,0.5 --out results/experiments/draft_confidence_stop_beauty.json

EAGLE-2 sizes its draft by the draft's confidence. Here a row stops proposing (for the rest of
the round) when the draft's largest constrained probability for the next token is below the
threshold; 0 is the committed behaviour. The stop only changes which guesses are verified, so the
lists stay the target's (the benchmark checks them against plain decoding). The rule lives in this
script (a patched `TorchDraft._choose`), not in the library: it did not pay.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from padrec.benchmark import compare_decoders, torch_decoders
from padrec.commands import load_models
from padrec.config import ARTIFACTS_DIR
from padrec.decoding.sampling import constrained_log_probs
from padrec.decoding.torch_draft import TorchDraft

committed_choose = TorchDraft._choose
threshold = 0.0


def confident_choose(batch, r, walking, logits, probs, index):
    """`TorchDraft._choose`, returning None (stop) where a greedy row's draft is unsure."""
    allowed = walking.allowed()
    if threshold > 0 and batch.temperatures[r] == 0 and len(allowed) and not walking.exhausted():
        if np.exp(constrained_log_probs(logits, allowed).max()) < threshold:
            return None
    return committed_choose(batch, r, walking, logits, probs, index)


def main() -> None:
    global threshold
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--users", type=int, default=60)
    parser.add_argument("--k", default="4,6")
    parser.add_argument("--thresholds", default="0,0.1,0.25,0.5")
    parser.add_argument("--drafter", default="padrec")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    TorchDraft._choose = staticmethod(confident_choose)
    models = load_models(argparse.Namespace(dataset=args.dataset, artifacts=ARTIFACTS_DIR, threads=1,
                                            prefix_size_penalty=None), args.drafter)
    examples = models.data.split.test[: args.users]
    ks = [int(k) for k in args.k.split(",")]
    rows = []
    for threshold in [float(t) for t in args.thresholds.split(",")]:
        decoders = torch_decoders(models.target, models.drafts, models.trie, ks)
        report = compare_decoders(models.target, decoders, models.trie, examples, progress=False)
        for entry in report["speculative"]:
            row = {"threshold": threshold, "k": entry["k"], "plain_ms": report["plain"]["median_ms"],
                   "median_ms": entry["median_ms"], "speedup": entry["speedup"], "tau": entry["tau"],
                   "target_forwards": entry["target_calls_per_list"], "mismatches": entry["mismatches"]}
            rows.append(row)
            print(f"threshold {threshold} k={row['k']}: {row['median_ms']:.1f} ms against plain "
                  f"{row['plain_ms']:.1f} (x{row['speedup']:.2f}), tau {row['tau']:.3f}", flush=True)
    Path(args.out).write_text(json.dumps({"dataset": args.dataset, "drafter": args.drafter, "users": args.users,
                                          "threads": 1, "runs": rows}, indent=1))


if __name__ == "__main__":
    main()
