"""The offline host's draft: a torch `Draft` with its KV cache in the same process, on the CPU or a GPU."""

from __future__ import annotations

import numpy as np
import torch

from padrec.decoding.constraints import ListConstraint
from padrec.decoding.draft_tree import propose_trees
from padrec.decoding.interfaces import DraftBatch, DraftScores, Proposal
from padrec.decoding.sampling import constrained_distribution, greedy_scores
from padrec.decoding.torch_device import on_device, to_host
from padrec.decoding.tree import DraftTreeStep
from padrec.models.draft import Draft, DraftOutput
from padrec.models.inference import InferenceDraftInput, for_inference
from padrec.models.layers import attention_mask, tree_step_mask
from padrec.semantic_ids import PAD, SemanticIds


class TorchDraft:
    """`DraftProposer` and `DraftScorer` over a torch `Draft` (run as prepared by `for_inference`, on `device` in
    `dtype`) and a pool of `rows` cache rows beside it.

    Each draft step's logits come back to the host, where the trie constraints choose the next token
    (a host sync per drafted token); a chain's features stay on the device between steps, a token
    tree's pass through the host (it grows through `score`, as on every host: `padrec.decoding.draft_tree`)."""

    def __init__(self, draft: Draft, sids: SemanticIds, rows: int, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32):
        self.draft = for_inference(draft, device, dtype)
        self.device, self.dtype = torch.device(device), dtype
        self.input = InferenceDraftInput(self.draft, sids.tokens_per_item)
        self.cache = draft.new_cache(rows, self.device, dtype)
        self.k_max = draft.config.k_max
        self.proposes_trees = True

    def _step(self, rows: torch.Tensor, start: torch.Tensor, features: torch.Tensor, tokens: torch.Tensor,
              depth: int, tree: DraftTreeStep | None = None) -> DraftOutput:
        """One draft forward of T new pairs per row after each row's first start[r] cache positions;
        writes their K/V. What `Draft.forward` computes (up to float rounding: the input comes from
        `InferenceDraftInput`), with the mask left out where it masks nothing: one new token of a
        single row (whose cache view is exactly its past). `rows` and `start` are host tensors.
        A tree step says where its nodes sit and what each sees (`DraftTreeStep`)."""
        past_k, past_v = self.cache.view(rows, start)
        T = tokens.shape[1]
        if tree is None:
            start_here = start.to(self.device)
            mask = None if len(rows) == 1 and T == 1 else attention_mask(start_here, past_k.shape[3], T)
            positions = start_here[:, None] + torch.arange(T, device=self.device)
        else:
            positions = on_device(tree.positions, self.device)
            mask = tree_step_mask(on_device(tree.visible, self.device))
        out = self.draft.decode(self.input(features, tokens, positions, depth), positions, mask, past_k, past_v)
        self.cache.write(rows, start, out.new_k, out.new_v)
        return out

    @torch.inference_mode()
    def score(self, rows: np.ndarray, start: np.ndarray, features: np.ndarray, tokens: np.ndarray,
              lengths: np.ndarray, depth: int, sources: np.ndarray | None = None,
              tree: DraftTreeStep | None = None) -> DraftScores:
        rows_t, start_t = torch.from_numpy(rows), torch.from_numpy(start)
        if sources is not None:
            self.cache.copy(torch.from_numpy(sources), rows_t, int(start.max()))
        out = self._step(rows_t, start_t, on_device(features, self.device, self.dtype), on_device(tokens, self.device),
                         depth, tree)
        return DraftScores(to_host(out.logits), to_host(out.features))

    @torch.inference_mode()
    def propose(self, batch: DraftBatch) -> Proposal:
        if batch.widths is not None:
            return propose_trees(batch, self)
        B = len(batch.rows)
        rows, start = torch.from_numpy(batch.rows), torch.from_numpy(batch.start)
        # depth 1: every new pair with a real target feature, in one forward
        out = self._step(rows, start, on_device(batch.features, self.device, self.dtype),
                         on_device(batch.tokens, self.device), 1)
        last = on_device(batch.lengths - 1, self.device)
        every = torch.arange(B, device=self.device)
        feature, logits = out.features[every, last], to_host(out.logits[every, last])
        position = start + torch.from_numpy(batch.lengths)

        steps = [len(f) + int(k) for f, k in zip(batch.forced, batch.num_tokens)]
        k_max = int(batch.num_tokens.max())
        proposed = np.full((B, k_max), PAD, dtype=np.int64)
        counts = np.zeros(B, dtype=np.int64)
        probs = np.zeros((B, k_max, logits.shape[-1]), dtype=np.float32) if (batch.temperatures > 0).any() else None
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
                token = self._choose(batch, r, walking[r], logits[r], probs, counts[r])
                if token is None:
                    stopped[r] = True
                    continue
                proposed[r, counts[r]] = next_tokens[r] = token
                counts[r] += 1
            if step == max(steps) - 1:
                break  # the last decided token needs no forward of its own
            out = self._step(rows, position, feature[:, None], on_device(next_tokens, self.device)[:, None], step + 2)
            feature, logits = out.features[:, 0], to_host(out.logits[:, 0])
            position = position + 1
        return Proposal(proposed, counts, probs)

    @staticmethod
    def _choose(batch: DraftBatch, r: int, walking: ListConstraint, logits: np.ndarray, probs: np.ndarray | None,
                index: int) -> int | None:
        """Row r's next proposal from its draft logits, walking its constraint (None when its list is
        complete); a sampled one records the distribution it was drawn from in probs[r, index]."""
        allowed, prior = walking.allowed(), walking.prior()
        if len(allowed) == 0 or walking.exhausted():
            return None
        if batch.temperatures[r] > 0:
            q = constrained_distribution(logits, allowed, float(batch.temperatures[r]), prior=prior)
            token = int(batch.rngs[r].choice(len(q), p=q))
            probs[r, index] = q
        else:
            token = int(allowed[np.argmax(greedy_scores(logits, allowed, prior))])
        walking.advance(token)
        return token
