"""The offline host's draft: a torch `Draft` with its KV cache in the same process."""

from __future__ import annotations

import numpy as np
import torch

from padrec.decoding.interfaces import DraftBatch, Proposal
from padrec.decoding.sampling import constrained_distribution
from padrec.models.draft import Draft
from padrec.models.inference import for_inference
from padrec.semantic_ids import PAD, SemanticIds


def next_slot_table(sids: SemanticIds) -> np.ndarray:
    """For every token, the within-item slot of the token that follows it.

    Worked example with 4 code levels and separators: a level-2 code is followed by level 3 (slot
    3), a level-3 code by the separator (slot 4), the separator (and BOS) by level 0 (slot 0).
    """
    nxt = sids.token_slot + 1
    nxt[sids.token_slot < 0] = 0  # PAD, BOS: an item starts next
    nxt[nxt >= sids.tokens_per_item] = 0  # after the item's last token, a new item
    return nxt


class TorchDraft:
    """`DraftProposer` over a torch `Draft` (run as prepared by `for_inference`) and a pool of
    `rows` cache rows."""

    def __init__(self, draft: Draft, sids: SemanticIds, rows: int):
        self.draft = for_inference(draft)
        self.cache = draft.new_cache(rows)
        self.k_max = draft.config.k_max
        self.next_slot = torch.from_numpy(next_slot_table(sids))

    def _step(self, rows, start, features, tokens, depth):
        out = self.draft(features, tokens, self.next_slot[tokens], depth, *self.cache.view(rows, start), start)
        self.cache.write(rows, start, out.new_k, out.new_v)
        return out

    @torch.inference_mode()
    def propose(self, batch: DraftBatch) -> Proposal:
        B = len(batch.rows)
        rows, start = torch.from_numpy(batch.rows), torch.from_numpy(batch.start)
        tokens = torch.from_numpy(batch.tokens)
        # depth 1: every new pair with a real target feature, in one forward
        out = self._step(rows, start, torch.from_numpy(batch.features).float(), tokens, torch.ones_like(tokens))
        last = torch.from_numpy(batch.lengths - 1)
        feature, logits = out.features[torch.arange(B), last], out.logits[torch.arange(B), last].numpy()
        position = start + torch.from_numpy(batch.lengths)

        steps = [len(f) + int(k) for f, k in zip(batch.forced, batch.num_tokens)]
        k_max = int(batch.num_tokens.max())
        proposed = np.full((B, k_max), PAD, dtype=np.int64)
        counts = np.zeros(B, dtype=np.int64)
        sampling = bool((batch.temperatures > 0).any())
        probs = np.zeros((B, k_max, logits.shape[-1]), dtype=np.float32) if sampling else None
        walking = [c.copy() for c in batch.constraints]
        stopped = [False] * B
        for step in range(max(steps)):
            next_tokens = np.full(B, PAD, dtype=np.int64)
            for r in range(B):
                if step >= steps[r] or stopped[r]:
                    continue
                if step < len(batch.forced[r]):
                    next_tokens[r] = batch.forced[r][step]
                    continue
                allowed = walking[r].allowed()
                if len(allowed) == 0 or walking[r].exhausted():
                    stopped[r] = True
                    continue
                if batch.temperatures[r] > 0:
                    q = constrained_distribution(logits[r], allowed, float(batch.temperatures[r]))
                    token = int(batch.rngs[r].choice(len(q), p=q))
                    probs[r, counts[r]] = q
                else:
                    token = int(allowed[np.argmax(logits[r][allowed])])
                walking[r].advance(token)
                proposed[r, counts[r]] = token
                counts[r] += 1
                next_tokens[r] = token
            if step == max(steps) - 1:
                break  # the last decided token needs no forward of its own
            t = torch.from_numpy(next_tokens)[:, None]
            out = self._step(rows, position, feature[:, None], t, torch.full_like(t, step + 2))
            feature, logits = out.features[:, 0], out.logits[:, 0].numpy()
            position = position + 1
        return Proposal(proposed, counts, probs)
