"""How a target forward's time grows with the tokens it scores, in the shapes beam search uses.

Plain beam search scores B rows x 1 token per level; speculative beam search scores its draft tree
in one forward, as rows of whole paths (about 3B rows x up to 3 tokens on four-level IDs) or, with
tree attention, as one row of all the tree's nodes. Whether the one forward is cheaper than the
levels it replaces depends on how flat this curve is on the machine.

    .venv/bin/python -m perf.beam_forward_scaling --dataset beauty --out results/beam/forward_scaling_beauty.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from padrec.artifacts import load_prepared
from padrec.decoding.torch_target import TorchTarget
from padrec.models.target import Target
from padrec.semantic_ids import BOS
from perf.machine import cpu_model, load_average

SHAPES = [(1, 1), (10, 1), (20, 1), (40, 1), (60, 1), (20, 3), (60, 3), (1, 20), (1, 60)]  # (rows, new tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--history-items", type=int, default=20, help="items of history before the new tokens")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_prepared(args.dataset)
    target = TorchTarget(Target.load(data.paths.target), 64, data.sids)
    history = [e.history for e in data.split.test if len(e.history) >= args.history_items][0][-args.history_items:]
    prompt = np.array([[BOS] + data.sids.encode_items(history)], dtype=np.int64)
    target.score(np.array([0]), np.array([0]), prompt, np.array([prompt.shape[1]]))
    codes = data.sids.item_tokens[0]
    rows_out = []
    for rows, tokens in SHAPES:
        new = np.tile(codes[:tokens] if tokens <= len(codes) else np.resize(codes, tokens), (rows, 1)).astype(np.int64)
        start = np.full(rows, prompt.shape[1], dtype=np.int64)
        args_ = (np.arange(1, rows + 1), start, new, np.full(rows, tokens, dtype=np.int64))
        sources = np.zeros(rows, dtype=np.int64)
        times = []
        for _ in range(args.repeats + 3):
            began = time.perf_counter()
            target.score(*args_, sources=sources)
            times.append(time.perf_counter() - began)
        rows_out.append({"rows": rows, "tokens_per_row": tokens, "tokens": rows * tokens,
                         "ms_median": 1e3 * float(np.median(times[3:]))})
        print(json.dumps(rows_out[-1]))
    report = {"dataset": args.dataset, "prompt_tokens": int(prompt.shape[1]), "threads": args.threads,
              "cpu": cpu_model(), "load_average": load_average(), "forwards": rows_out}
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
