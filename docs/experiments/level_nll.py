"""Per-code-level NLL of held-out items: a target against its catalogue's training popularity.

Usage (from the repository root):
    python docs/experiments/level_nll.py --dataset beauty --split valid --users 2000 \
        --out docs/experiments/level_nll_beauty_valid_2000users.json

For each held-out item, the target's NLL of its code tokens given the history (unconstrained:
`heldout_nll_by_level`, what model selection averages), and the NLL of the same
codes under item popularity walked down the trie (level l: the popularity mass of the item's prefix
of l + 1 codes over that of its prefix of l codes). Also how often the item's first code is the
first code of some history item, and of the last one. Written for docs/findings.md ("Beauty refit
on the validation items"); an analysis, not part of the library.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from padrec.artifacts import load_prepared
from padrec.models.target import Target
from padrec.training.target import heldout_nll_by_level


def popularity_level_nll(popularity: np.ndarray, codes: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """[levels] mean NLL of each code level under popularity (add-0.5 smoothed) walked down the trie."""
    mass = popularity + 0.5
    total = np.zeros(codes.shape[1])
    for item in targets:
        for level in range(codes.shape[1]):
            prefix = (codes[:, :level] == codes[item, :level]).all(1)
            total[level] -= np.log(mass[prefix & (codes[:, level] == codes[item, level])].sum() / mass[prefix].sum())
    return total / len(targets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--split", choices=("valid", "test"), default="valid")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--checkpoint", type=Path, help="default: artifacts/<dataset>/target.pt")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_prepared(args.dataset)
    examples = getattr(data.split, args.split)[: args.users]
    model = Target.load(args.checkpoint or data.paths.target).eval()
    codes = data.sids.codes
    first = codes[:, 0]
    report = {
        "dataset": args.dataset, "split": args.split, "users": len(examples),
        "checkpoint": str(args.checkpoint or data.paths.target),
        "target_nll_by_level": heldout_nll_by_level(model, data.sids, examples).round(4).tolist(),
        "popularity_nll_by_level": popularity_level_nll(
            data.split.item_popularity(), codes, np.array([ex.target for ex in examples])).round(4).tolist(),
        "first_code_in_history": float(np.mean([first[ex.target] in set(first[ex.history]) for ex in examples])),
        "first_code_of_last_item": float(np.mean([first[ex.target] == first[ex.history[-1]] for ex in examples])),
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
