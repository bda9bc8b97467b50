"""Does a draft distilled on the target's beams (AtSpeed's recipe) cover more of them?

Fine-tunes a dataset's committed draft on BOS + history + each of the target's top-B beam items for
a sample of training users (`beam_distillation_sequences`; the loss counts the item's codes only,
since the history repeats B times), then counts, on the first test users, the levels a one-row
speculative beam search accepted with the committed draft and with the fine-tuned one. The
fine-tuned draft is a probe, written under /tmp unless --save says where; nothing serves it.

    .venv/bin/python -m perf.beam_distilled_draft --dataset beauty --out results/beam/beam_distilled_draft_beauty.json
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from padrec.artifacts import load_prepared
from padrec.beam_verification import timed_search
from padrec.config import DRAFTERS, DraftTrainConfig
from padrec.decoding.interfaces import BeamRequest
from padrec.models.draft import Draft
from padrec.models.target import Target
from padrec.training.draft import beam_distillation_sequences, last_item_loss_from, target_features, train_draft
from perf.beam_setup import one_row_decoder, parse_settings
from perf.machine import cpu_model


def accepted_levels(data, target: Target, draft: Draft, users: int, settings: list[tuple[int, int]]) -> dict:
    """Mean accepted levels per request of one-row speculative beam search, per 'B:D' setting."""
    decoder = one_row_decoder(data, target, draft, settings)
    out = {}
    for width, draft_width in settings:
        accepted = []
        for e in data.split.test[:users]:
            request = BeamRequest(tuple(e.history), min(10, width), width, draft_width=draft_width)
            accepted.append(timed_search(decoder, request)[0].stats.accepted)
        out[f"{width}:{draft_width}"] = float(np.mean(accepted))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--drafter", default="padrec")
    parser.add_argument("--train-users", type=int, default=600)
    parser.add_argument("--beam-width", type=int, default=20, help="beams per training user")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--test-users", type=int, default=100)
    parser.add_argument("--settings", default="10:10,10:20,20:20,20:40", help="comma-separated beam_width:draft_width")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--save", type=Path, help="where to write the fine-tuned draft (default: /tmp)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_prepared(args.dataset)
    target = Target.load(data.paths.target)
    committed = Draft.load(data.paths.draft(args.drafter))
    started = time.time()
    seqs = beam_distillation_sequences(target, data, args.train_users, args.beam_width)
    loss_from = last_item_loss_from(seqs, data.sids.tokens_per_item)
    config = replace(DraftTrainConfig(), epochs=args.epochs, lr=args.lr, threads=args.threads, warmup_steps=20)
    tuned, log = train_draft(target, data, DRAFTERS[args.drafter], config, seqs, target_features(target, data.sids, seqs),
                             init=copy.deepcopy(committed), loss_from=loss_from)
    save = args.save or Path("/tmp") / f"draft_{args.dataset}_{args.drafter}_beams.pt"
    tuned.save(save, {"dataset": args.dataset, "drafter": args.drafter, "distilled_on": "beams"})
    settings = parse_settings(args.settings)
    report = {"dataset": args.dataset, "drafter": args.drafter, "cpu": cpu_model(), "threads": args.threads,
              "train_users": args.train_users, "beam_width": args.beam_width, "sequences": len(seqs),
              "epochs": log["epochs"], "train_minutes": (time.time() - started) / 60, "test_users": args.test_users,
              "accepted_levels": {"committed": accepted_levels(data, target, committed, args.test_users, settings),
                                  "beam_distilled": accepted_levels(data, target, tuned, args.test_users, settings)}}
    print(json.dumps(report["accepted_levels"]))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
