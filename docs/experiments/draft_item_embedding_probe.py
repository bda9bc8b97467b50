"""Probe: would PAD-Rec drafts agree more often with an item-embedding target if they read the
target's item embedding too, or had two layers? Teacher-forced next-token accuracy by unrolled step
(the figure `padrec train-draft` logs), from the same distillation lists `padrec train-draft` cached.

An experiment, not a feature: the item embedding enters through a patched `Draft.fuse` (the target's
frozen item table, projected by the token half of the draft's fc, at each item's last token), which
the decoding hosts and the draft graph do not have.

    python docs/experiments/draft_item_embedding_probe.py --artifacts .cache/b128ie [--item-embedding] [--layers 2] [--epochs 9]
"""

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

import padrec.training.draft as draft_training
from padrec.artifacts import load_prepared
from padrec.config import DRAFTERS, DraftTrainConfig, with_overrides
from padrec.models.draft import Draft
from padrec.models.target import Target
from padrec.training.batching import pad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, required=True, help="holds beauty/ with an item-embedding target")
    parser.add_argument("--item-embedding", action="store_true", help="the draft reads the target's item embedding")
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=3, help="as `padrec train-draft --epochs`")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    config = with_overrides(DraftTrainConfig(), distill_users=5000, epochs=args.epochs, threads=1)
    torch.set_num_threads(config.threads)
    data = load_prepared("beauty", args.artifacts)
    target = Target.load(data.paths.target)
    seqs = [s.numpy() for s in torch.load(args.artifacts / "distill" / "beauty_5000_0.pt", weights_only=True)]
    feats = draft_training.target_features(target, data.sids, seqs)
    if args.item_embedding:
        table = target.item_embed.weight.detach()
        fuse, unrolled_loss = Draft.fuse, draft_training.unrolled_loss

        def fuse_with_items(self, features, tokens, slots, depth):
            return fuse(self, features, tokens, slots, depth) + F.linear(table[self.marks_in], self.fc.weight[:, : table.shape[1]])

        def loss_with_marks(draft, f, tokens, next_slot, cfg):
            # marks of x_{t+1} for every pair t (PAD = 0 is dropped before marking, padded back after)
            draft.marks_in = pad([data.sids.item_marks(row[row != 0].numpy()) for row in tokens])[:, 1:]
            return unrolled_loss(draft, f, tokens, next_slot, cfg)

        Draft.fuse, draft_training.unrolled_loss = fuse_with_items, loss_with_marks
    draft_config = replace(DRAFTERS["padrec"], n_layers=args.layers)
    _, log = draft_training.train_draft(target, data, draft_config, config, seqs, feats, progress=False)
    report = {"artifacts": str(args.artifacts), "item_embedding": args.item_embedding, "layers": args.layers,
              "train_epochs": args.epochs, "epochs": log["epochs"]}
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
