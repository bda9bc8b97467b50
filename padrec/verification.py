"""The lossless check: greedy speculative lists against plain greedy lists, user by user.

Greedy speculative decoding must reproduce plain greedy decoding token for token. Float rounding
may still make the two differ where the target's top two allowed logits are nearly equal (a
one-token forward and a multi-token forward round differently): each differing list is re-scored
at its first diverging step by the target alone, and counted as a near-tie if the top-2 logit gap
there is below `NEAR_TIE_GAP`, otherwise as a mismatch (a bug).

`padrec bench` applies this to its batch-1 runs; `padrec verify` (`check_lossless`) to whole test
sets, decoded in batches, where rows of one batch accept different numbers of tokens per round.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from padrec.data.split import Example
from padrec.decoding.constraints import ItemTrie, ListConstraint
from padrec.decoding.engine import ListDecoder
from padrec.decoding.interfaces import DecodeRequest, DecodeResult
from padrec.decoding.sampling import greedy_scores
from padrec.models.target import Target
from padrec.paired import paired_comparison
from padrec.semantic_ids import BOS

NEAR_TIE_GAP = 1e-4


@torch.inference_mode()
def divergence_gap(target: Target, trie: ItemTrie, history: list[int], plain: list[int], other: list[int]) -> float:
    """Top-2 gap of the scores greedy decoding compares (allowed tokens' logits, plus the trie's prior)
    at the first step where two token lists differ, by `target` on its device in its dtype."""
    step = next(i for i, (a, b) in enumerate(zip(plain, other)) if a != b)
    constraint = ListConstraint(trie, history)
    for token in plain[:step]:
        constraint.advance(token)
    context = [BOS] + trie.sids.encode_items(history) + plain[:step]
    device = target.embed.weight.device
    items = None if target.item_embed is None else torch.tensor(trie.sids.item_marks(context)[None], device=device)
    logits = target(torch.tensor([context], device=device), items=items).logits[0, -1].float().cpu().numpy()
    top2 = np.sort(greedy_scores(logits, constraint.allowed(), constraint.prior()))[-2:]
    return float(top2[1] - top2[0]) if len(top2) == 2 else float("inf")


def compare_to_plain(target: Target, trie: ItemTrie, examples: list[Example], plain: list[DecodeResult],
                     other: list[DecodeResult], near_tie_gap: float = NEAR_TIE_GAP) -> dict:
    """How a speculative decoder's greedy lists differ from the plain ones: counts of near-ties (a
    top-2 gap below `near_tie_gap` where they part) and mismatches, the users (by index into
    `examples`) with a mismatch, and the gap of every differing list, smallest first."""
    differing = [i for i, (p, s) in enumerate(zip(plain, other)) if p.tokens != s.tokens]
    gaps = {i: divergence_gap(target, trie, examples[i].history, plain[i].tokens, other[i].tokens) for i in differing}
    return {"near_ties": sum(g < near_tie_gap for g in gaps.values()),
            "mismatches": sum(g >= near_tie_gap for g in gaps.values()),
            "mismatched_users": [i for i, g in gaps.items() if g >= near_tie_gap],
            "divergence_gaps": sorted(round(g, 6) for g in gaps.values())}


def decode_all(decoder: ListDecoder, examples: list[Example], num_draft_tokens: int, batch_size: int,
               top_n: int = 10, desc: str = "decode", progress: bool = True) -> list[DecodeResult]:
    """Greedy lists of every example, `batch_size` users per engine batch (cache rows 0..batch-1)."""
    results = []
    for start in tqdm(range(0, len(examples), batch_size), desc=desc, disable=not progress):
        chunk = examples[start : start + batch_size]
        requests = [DecodeRequest(tuple(e.history), top_n=top_n, num_draft_tokens=num_draft_tokens) for e in chunk]
        results.extend(decoder.generate(requests, list(range(len(chunk)))))
    return results


def check_lossless(target: Target, decoders: dict[tuple[str, int], ListDecoder], trie: ItemTrie,
                   examples: list[Example], batch_size: int, top_n: int = 10, progress: bool = True,
                   baseline: str | None = None) -> dict:
    """Decode every example with the plain decoder (key ("plain", 0)) and each (drafter, k) decoder,
    in batches; report per speculative decoder how its lists differ from plain greedy, and its tau.
    With a `baseline` drafter, each other drafter's per-user tau is also compared, paired, with the
    baseline's at the same k (`padrec.paired`)."""
    plain = decode_all(decoders[("plain", 0)], examples, 0, batch_size, top_n, "plain", progress)
    report = {"users": len(examples), "batch_size": batch_size, "top_n": top_n, "checks": []}
    user_taus = {}
    for (name, k), decoder in decoders.items():
        if name == "plain":
            continue
        results = decode_all(decoder, examples, k, batch_size, top_n, f"{name} k={k}", progress)
        user_taus[name, k] = [r.stats.tau for r in results]
        report["checks"].append({"drafter": name, "k": k, "tau": float(np.mean(user_taus[name, k])),
                                 **compare_to_plain(target, trie, examples, plain, results)})
    if baseline is not None:
        report["baseline"] = baseline
        for check in report["checks"]:
            reference = user_taus.get((baseline, check["k"]))
            if check["drafter"] != baseline and reference is not None:
                check["versus_baseline"] = paired_comparison(user_taus[check["drafter"], check["k"]], reference)
    return report
