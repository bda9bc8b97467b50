"""Train a draft on the target's own outputs (self-distillation), unrolled over several steps.

Data: for training users, the target's greedy list after their training history, so the draft
learns exactly the continuations it will be asked to guess; the target's last-layer features of
every position come from one teacher-forced pass.

Unrolled steps ("training-time test"): step 1 reads real features at every position. Step j >= 2
reads, at position i, the feature step j-1 predicted there, and attends the way inference does:
to real-feature entries up to i - (j - 1) and to its own chain's entries of steps 2..j, one each.
Worked example, step 3 at position i = 5: keys of step 1 at 0..3, of step 2 at 4, of step 3 at 5.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, replace

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from padrec.artifacts import Prepared
from padrec.config import DecodeConfig, DraftConfig, DraftTrainConfig, SplitConfig
from padrec.decoding.beam import BeamDecoder, one_row_rows
from padrec.decoding.constraints import ItemTrie
from padrec.decoding.engine import ListDecoder
from padrec.decoding.interfaces import BeamRequest, DecodeRequest
from padrec.decoding.torch_target import TorchTarget
from padrec.models.draft import Draft, predicted_slots
from padrec.models.target import Target
from padrec.semantic_ids import BOS, PAD, SemanticIds
from padrec.training.batching import length_buckets, pad
from padrec.training.precision import use_bf16
from padrec.training.target import item_inputs


@torch.inference_mode()
def distillation_sequences(target: Target, data: Prepared, users: int, top_n: int = 10, batch_size: int = 64,
                           seed: int = 0, progress: bool = True,
                           max_history: int = SplitConfig().max_history,
                           prefix_size_penalty: float = DecodeConfig.prefix_size_penalty) -> list[np.ndarray]:
    """BOS + history + the target's greedy list (decoded with the given prefix-size prior), for a
    random sample of training users."""
    rng = np.random.default_rng(seed)
    histories = [seq[-max_history:] for seq in data.split.train.values() if seq]
    chosen = rng.choice(len(histories), size=min(users, len(histories)), replace=False)
    decoder = ListDecoder(ItemTrie(data.sids, prefix_size_penalty), TorchTarget(target, batch_size, data.sids),
                          target.config.max_seq_len)
    seqs = []
    for start in tqdm(range(0, len(chosen), batch_size), desc="distill lists", disable=not progress):
        batch = [histories[i] for i in chosen[start : start + batch_size]]
        results = decoder.generate([DecodeRequest(tuple(h), top_n=top_n) for h in batch], list(range(len(batch))))
        seqs.extend(np.asarray([BOS] + data.sids.encode_items(h) + r.tokens, dtype=np.int64)
                    for h, r in zip(batch, results))
    return seqs


@torch.inference_mode()
def beam_distillation_sequences(target: Target, data: Prepared, users: int, beam_width: int = 20,
                                batch_size: int = 16, seed: int = 0, progress: bool = True,
                                max_history: int = SplitConfig().max_history) -> list[np.ndarray]:
    """BOS + history + one of the target's top-`beam_width` items by beam search, for each such item
    of a random sample of training users (AtSpeed's recipe): the prefixes a speculative beam search
    asks the draft to rank are the target's beams, not its greedy list."""
    rng = np.random.default_rng(seed)
    histories = [seq[-max_history:] for seq in data.split.train.values() if seq]
    chosen = rng.choice(len(histories), size=min(users, len(histories)), replace=False)
    rows = one_row_rows(beam_width, 0)
    decoder = BeamDecoder(ItemTrie(data.sids, 0.0), TorchTarget(target, batch_size * rows, data.sids),
                          target.config.max_seq_len, beam_width, one_row=True)
    seqs = []
    for start in tqdm(range(0, len(chosen), batch_size), desc="distill beams", disable=not progress):
        batch = [histories[i] for i in chosen[start : start + batch_size]]
        requests = [BeamRequest(tuple(h), beam_width, beam_width) for h in batch]
        results = decoder.generate(requests, [[u * rows + r for r in range(rows)] for u in range(len(batch))])
        for h, result in zip(batch, results):
            prompt = [BOS] + data.sids.encode_items(h)
            seqs.extend(np.asarray(prompt + data.sids.encode_item(item), dtype=np.int64) for item in result.items)
    return seqs


def last_item_loss_from(seqs: list[np.ndarray], tokens_per_item: int) -> list[int]:
    """Per sequence, the first pair (`unrolled_loss`'s loss_from) that reads its last item's first
    code: a loss from there on counts only the codes after it, as a beam search asks of the draft."""
    return [len(s) - tokens_per_item - 1 for s in seqs]


@torch.inference_mode()
def target_features(target: Target, sids: SemanticIds, seqs: list[np.ndarray],
                    tokens_per_batch: int = 8192) -> list[torch.Tensor]:
    """The target's last-layer features of every position (fp16 to halve the memory)."""
    feats: list[torch.Tensor | None] = [None] * len(seqs)
    for idx in length_buckets([len(s) for s in seqs], tokens_per_batch, None):
        batch = [seqs[i] for i in idx]
        hidden = target(pad(batch), items=item_inputs(target, sids, batch)).hidden
        for row, i in enumerate(idx):
            feats[i] = hidden[row, : len(seqs[i])].half()
    return feats


def unrolled_step_mask(n: int, step: int) -> torch.Tensor:
    """[1, 1, n, step * n] keys visible to step `step` (1-based) queries; see the module docstring."""
    i = torch.arange(n)[:, None]
    s = torch.arange(n)[None, :]
    parts = [s <= i - (step - 1)]
    parts += [s == i - (step - m) for m in range(2, step + 1)]
    return torch.cat(parts, dim=1)[None, None]


def unrolled_loss(draft: Draft, feats: torch.Tensor, tokens: torch.Tensor, tokens_per_item: int,
                  config: DraftTrainConfig, loss_from: torch.Tensor | None = None) -> tuple[torch.Tensor, list[float]]:
    """Summed loss over the unrolled steps, and each step's next-token accuracy (agreement with the
    target's argmax, which is what verification accepts).

    feats [B, T, D] real target features, tokens [B, T] (PAD-padded). Pair t = (f_t, x_{t+1}).
    loss_from [B], if given: row b's loss counts pairs t >= loss_from[b] only.
    """
    B, T, _ = feats.shape
    n = T - 1
    x_in = tokens[:, 1:]  # x_{t+1} for pair t
    target_feat = feats[:, 1:]  # f_{t+1}: what pair t should predict
    next_token = torch.cat([tokens[:, 2:], torch.full((B, 1), PAD)], dim=1)  # x_{t+2}
    valid = next_token != PAD  # [B, n]
    if loss_from is not None:
        valid &= torch.arange(n)[None, :] >= loss_from[:, None]
    # Token labels are the target's own next-token distribution (from f_{t+1}), not the sequence's
    # next token: in the history the user's real item is not what the target would have said, and
    # the full distribution says how close the runners-up are (measured: tau +5% EAGLE, +10% PAD-Rec
    # on Beauty at k=4).
    target_probs = (target_feat.float() @ draft.head_weight.T).softmax(-1)
    target_choice = target_probs.argmax(-1)
    positions = torch.arange(n).expand(B, n)
    slots = predicted_slots(positions, tokens_per_item)
    features = feats[:, :n]
    past_k = past_v = None
    total, accuracies = 0.0, []
    for step in range(1, config.unroll_steps + 1):
        z = draft.fuse(features, x_in, slots, torch.full_like(x_in, step))
        out = draft.decode(z, positions, unrolled_step_mask(n, step), past_k, past_v)
        ok = valid.clone()
        ok[:, : step - 1] = False  # no chain reaches these positions at this depth
        feat_loss = F.smooth_l1_loss(out.features.float()[ok], target_feat.float()[ok])
        token_loss = F.cross_entropy(out.logits.float()[ok], target_probs[ok])
        total = total + config.feature_weight * feat_loss + config.token_weight * token_loss
        accuracies.append(float((out.logits.argmax(-1)[ok] == target_choice[ok]).float().mean()))
        past_k = out.new_k if past_k is None else torch.cat([past_k, out.new_k], dim=3)
        past_v = out.new_v if past_v is None else torch.cat([past_v, out.new_v], dim=3)
        # step j+1 at position i reads step j's prediction made at position i - 1
        features = torch.cat([torch.zeros_like(out.features[:, :1]), out.features[:, :-1]], dim=1)
    return total, accuracies


def train_draft(target: Target, data: Prepared, draft_config: DraftConfig, config: DraftTrainConfig,
                seqs: list[np.ndarray], feats: list[torch.Tensor], progress: bool = True,
                init: Draft | None = None, loss_from: list[int] | None = None) -> tuple[Draft, dict]:
    """Train one draft on prepared distillation data (from `init`'s weights if given, else from the
    target's); returns it and a log. loss_from[i], if given: sequence i's first pair the loss counts
    (`unrolled_loss`)."""
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    # the step embeddings training reaches are those of its unroll; deeper draft steps reuse the last
    draft_config = replace(draft_config, step_depths=config.unroll_steps)
    draft = (init if init is not None else Draft.from_target(draft_config, target, data.sids.num_slots)).train()
    params = [p for p in draft.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    lengths = [len(s) for s in seqs]
    steps_total = len(length_buckets(lengths, config.tokens_per_batch, None)) * config.epochs
    bf16 = use_bf16(config.bf16)
    log = {"draft": asdict(draft_config), "train": asdict(config), "bf16": bf16, "sequences": len(seqs), "epochs": []}
    step, started = 0, time.time()
    for epoch in range(config.epochs):
        sums, batches = np.zeros(config.unroll_steps), 0
        bar = tqdm(length_buckets(lengths, config.tokens_per_batch, rng), desc=f"draft epoch {epoch + 1}",
                   disable=not progress)
        for idx in bar:
            tokens = pad([seqs[i] for i in idx])
            f = torch.zeros(len(idx), tokens.shape[1], feats[idx[0]].shape[-1])
            for row, i in enumerate(idx):
                f[row, : len(feats[i])] = feats[i].float()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                starts = None if loss_from is None else torch.tensor([loss_from[i] for i in idx])
                loss, acc = unrolled_loss(draft, f, tokens, data.sids.tokens_per_item, config, starts)
            progress_ratio = min(1.0, step / max(1, steps_total))
            lr = config.lr * min(1.0, (step + 1) / config.warmup_steps) * (
                config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress_ratio)))
            for group in optim.param_groups:
                group["lr"] = lr
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            optim.step()
            step += 1
            sums += acc
            batches += 1
            bar.set_postfix(loss=f"{loss.item():.3f}", acc="/".join(f"{a:.2f}" for a in acc))
        entry = {"epoch": epoch + 1, "accuracy_by_step": (sums / batches).round(4).tolist(),
                 "minutes": (time.time() - started) / 60}
        log["epochs"].append(entry)
        # one line per epoch even without progress bars: a run in the background can be followed
        tqdm.write(json.dumps(entry))
        sys.stdout.flush()
    return draft.eval(), log
