"""Experiment: does a draft fine-tuned on the target's beams rank them better?

The committed drafts are distilled on the target's greedy lists, so below an item's first code they
have seen only the greedy prefix, and speculative beam search misses most of the target's beams
(docs/findings.md, "Beam-20 against the greedy list on every test user, and speculative beam search"). This fine-tunes a committed draft on paths of the
target's own beam search (BOS + history + each of the top-B items, for training users) and reports,
on test users, how many of the target's true top-B prefixes at each level fall in the draft's
top-B and top-2B, before and after, then writes the fine-tuned draft (not adopted anywhere).

    .venv/bin/python docs/experiments/beam_draft.py --dataset beauty --users 300 --epochs 2 \
        --out docs/experiments/beam_draft_beauty.json --save .cache/beam_draft/draft_padrec.pt
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from padrec.artifacts import load_prepared
from padrec.config import DraftTrainConfig, SplitConfig
from padrec.decoding import beam as beam_module
from padrec.decoding.beam import BeamDecoder, beam_rows
from padrec.decoding.constraints import ItemTrie
from padrec.decoding.interfaces import BeamRequest
from padrec.decoding.sampling import constrained_log_probs
from padrec.decoding.torch_draft import TorchDraft
from padrec.decoding.torch_target import TorchTarget
from padrec.models.draft import Draft
from padrec.models.target import Target
from padrec.semantic_ids import BOS
from padrec.training.draft import target_features, train_draft


def beam_paths(target: Target, trie: ItemTrie, histories: list[list[int]], width: int) -> list[np.ndarray]:
    """BOS + history + the codes of each of the target's top-`width` beam items, per history."""
    sids = trie.sids
    decoder = BeamDecoder(trie, TorchTarget(target, width, sids), target.config.max_seq_len, width)
    seqs = []
    for h in histories:
        result = decoder.generate([BeamRequest(tuple(h), top_n=width, beam_width=width)], [list(range(width))])[0]
        prompt = [BOS] + sids.encode_items(h)
        seqs.extend(np.asarray(prompt + sids.item_tokens[i].tolist(), dtype=np.int64) for i in result.items)
    return seqs


def coverage(target: Target, draft: Draft, trie: ItemTrie, histories: list[list[int]], width: int) -> dict:
    """Share of the target's true top-`width` prefixes at each drafted level that the draft's own
    beam search (from the true first-level beams) ranks within width and 2 x width."""
    sids = trie.sids
    rows = beam_rows(sids.num_levels, width, 4 * width)
    decoder = BeamDecoder(trie, TorchTarget(target, rows, sids), target.config.max_seq_len, width,
                          TorchDraft(draft, sids, rows), 4 * width)
    ranks: dict[int, list[int]] = {}
    orders: list[dict] = []
    grow = beam_module._Tree.grow

    def recording_grow(tree, logits, features):  # the draft's full ranking of every candidate child
        codes, totals = [], []
        for j, node in enumerate(tree.frontier):
            allowed = node.constraint.allowed()
            codes += [node.codes + (int(t),) for t in allowed]
            totals.append(node.score + constrained_log_probs(logits[j], allowed))
        order = np.argsort(-np.concatenate(totals), kind="stable")
        orders.append({codes[i]: r for r, i in enumerate(order)})
        grow(tree, logits, features)

    expand = BeamDecoder._expand
    for h in histories:
        levels = []
        BeamDecoder._expand = lambda self, s: (expand(self, s), levels.append([b.codes for b in s.beams]))
        decoder.generate([BeamRequest(tuple(h), 10, width)], [list(range(width))])
        BeamDecoder._expand = expand
        orders.clear()
        beam_module._Tree.grow = recording_grow
        request = BeamRequest(tuple(h), 10, width, draft_width=4 * width)
        decoder.generate([request], [list(range(decoder.rows_needed(request)))])
        beam_module._Tree.grow = grow
        for depth, order in enumerate(orders):
            ranks.setdefault(depth + 2, []).extend(order.get(c, 10**6) for c in levels[depth + 1])
    return {f"level {lv}": {"within_width": float(np.mean(np.array(r) < width)),
                            "within_2x_width": float(np.mean(np.array(r) < 2 * width))} for lv, r in ranks.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--drafter", default="padrec")
    parser.add_argument("--users", type=int, default=300, help="training users whose beams form the data")
    parser.add_argument("--test-users", type=int, default=30)
    parser.add_argument("--width", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--save", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_prepared(args.dataset)
    trie = ItemTrie(data.sids, 0.0)
    target = Target.load(data.paths.target)
    draft = Draft.load(data.paths.draft(args.drafter))
    test = [e.history for e in data.split.test[: args.test_users]]
    before = coverage(target, draft, trie, test, args.width)
    print("before", json.dumps(before))
    rng = np.random.default_rng(0)
    histories = [seq[-SplitConfig().max_history:] for seq in data.split.train.values() if seq]
    chosen = [histories[i] for i in rng.choice(len(histories), size=args.users, replace=False)]
    seqs = beam_paths(target, trie, chosen, args.width)
    with torch.inference_mode():
        feats = target_features(target, data.sids, seqs)
    config = replace(DraftTrainConfig(), epochs=args.epochs, threads=args.threads, warmup_steps=10, lr=args.lr)
    tuned, log = train_draft(target, data, draft.config, config, seqs, feats, progress=False, init=draft)
    after = coverage(target, tuned, trie, test, args.width)
    print("after", json.dumps(after))
    args.out.write_text(json.dumps({"dataset": args.dataset, "drafter": args.drafter, "train_users": args.users,
                                    "sequences": len(seqs), "width": args.width, "test_users": args.test_users,
                                    "coverage_before": before, "coverage_after": after, "train_log": log},
                                   indent=1) + "\n")
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        tuned.save(args.save)


if __name__ == "__main__":
    main()
