"""Train the target as a causal language model over users' training item sequences.

Model selection uses the validation item only: after each epoch, the mean negative log-likelihood
of each validation user's held-out item (its code tokens, given the history) decides which
checkpoint is kept. A refit (`TrainConfig.refit_with_valid`) also trains on the validation items, so
it keeps its last epoch; its epoch count comes from an earlier run's validation curve.
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
from padrec.config import ModelConfig, TrainConfig
from padrec.data.split import Example
from padrec.models.target import Target
from padrec.training.batching import item_windows, length_buckets, pad, shuffle_tails, to_tokens
from padrec.training.precision import use_bf16
from padrec.semantic_ids import PAD, SemanticIds


def lr_at(step: int, total: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to min_lr_ratio x lr."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, total - config.warmup_steps))
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def heldout_nll_by_level(model: Target, sids: SemanticIds, examples: list[Example],
                         tokens_per_batch: int = 16384) -> np.ndarray:
    """[code levels] mean NLL of each code token of the examples' held-out items given their
    histories (over the whole vocabulary: no catalogue constraint)."""
    seqs = to_tokens(sids, [ex.history + [ex.target] for ex in examples])
    n_codes = sids.num_levels
    model.eval()
    total = np.zeros(n_codes)
    for idx in length_buckets([len(s) for s in seqs], tokens_per_batch, None):
        batch = [seqs[i] for i in idx]
        tokens = pad(batch)
        logp = model(tokens, items=item_inputs(model, sids, batch)).logits.log_softmax(-1)  # [B,T,V]
        for row, seq in enumerate(batch):
            # the target item's code tokens sit just before its separator (or at the very end)
            end = len(seq) - int(sids.use_separator)
            positions = torch.arange(end - n_codes, end)
            total -= logp[row, positions - 1, torch.from_numpy(seq[end - n_codes : end])].numpy()
    return total / len(examples)


def item_inputs(model: Target, sids: SemanticIds, batch: list[np.ndarray]) -> torch.Tensor | None:
    """The item marks an item-embedding target reads beside a batch of token sequences (padded as
    `pad` pads the tokens: 0 = no item), or None for a target without item embeddings."""
    return pad([sids.item_marks(s) for s in batch]) if model.item_embed is not None else None


def validation_nll(model: Target, data: Prepared, max_users: int = 4000, tokens_per_batch: int = 16384) -> float:
    """Mean NLL per code token of the validation item given the user's history."""
    return float(heldout_nll_by_level(model, data.sids, data.split.valid[:max_users], tokens_per_batch).mean())


def training_sequences(data: Prepared, with_valid: bool) -> list[list[int]]:
    """Each user's training items, followed by the validation item for a refit."""
    if not with_valid:
        return list(data.split.train.values())
    valid_item = {ex.user: ex.target for ex in data.split.valid}
    return [seq + [valid_item[user]] for user, seq in data.split.train.items()]


def train_target(
    data: Prepared, model_config: ModelConfig, config: TrainConfig, progress: bool = True,
    init: Target | None = None,
) -> tuple[Target, dict]:
    """Train, keep the best epoch by validation NLL (a refit: the last epoch), return it and a log.
    `init`: a trained target to start from instead of random weights (a warm restart: fresh
    optimizer, fresh schedule)."""
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    windows = item_windows(training_sequences(data, config.refit_with_valid), config.window_items,
                           config.window_stride_items)
    seqs = to_tokens(data.sids, windows)
    lengths = [len(s) for s in seqs]
    if max(lengths) > model_config.max_seq_len:
        raise ValueError(f"training windows of {max(lengths)} tokens exceed max_seq_len {model_config.max_seq_len}")
    model = Target(model_config, data.sids.vocab_size, data.sids.num_items)
    if init is not None:
        # dropout is a training setting, not part of what the weights are: a warm restart may change it
        same_weights = replace(init.config, dropout=model_config.dropout) == model_config
        if not same_weights or init.vocab_size != data.sids.vocab_size or init.num_items != model.num_items:
            raise ValueError(f"the initial checkpoint is a {init.config} model over {init.vocab_size} tokens; "
                             f"this run trains a {model_config} model over {data.sids.vocab_size}")
        model.load_state_dict(init.state_dict())
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optim = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr, betas=(0.9, 0.98),
    )
    steps_per_epoch = len(length_buckets(lengths, config.tokens_per_batch, None))
    total_steps = steps_per_epoch * config.epochs
    bf16 = use_bf16(config.bf16)
    log = {"model": asdict(model_config), "train": asdict(config), "bf16": bf16, "parameters": model.num_parameters(),
           "train_tokens_per_epoch": int(sum(lengths)), "warm_start": init is not None, "epochs": []}
    best_state, best_nll, step, started = None, float("inf"), 0, time.time()
    for epoch in range(config.epochs):
        model.train()
        epoch_start, tokens_seen, loss_sum = time.time(), 0, 0.0
        batches = length_buckets(lengths, config.tokens_per_batch, rng)
        if config.shuffle_tail_items:  # same windows, same lengths: the buckets still hold
            seqs = to_tokens(data.sids, shuffle_tails(windows, config.shuffle_tail_items, rng))
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress)
        for idx in bar:
            batch = [seqs[i] for i in idx]
            tokens = pad(batch)
            items = item_inputs(model, data.sids, batch)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = model(tokens[:, :-1], items=None if items is None else items[:, :-1]).logits
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1),
                                   ignore_index=PAD)
            for group in optim.param_groups:
                group["lr"] = lr_at(step, total_steps, config)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optim.step()
            step += 1
            n = int((tokens[:, 1:] != PAD).sum())
            tokens_seen += n
            loss_sum += loss.item() * n
            bar.set_postfix(loss=f"{loss.item():.3f}", tok_s=f"{tokens_seen / (time.time() - epoch_start):.0f}")
        nll = validation_nll(model, data)
        entry = {"epoch": epoch + 1, "train_loss": loss_sum / tokens_seen, "valid_nll": nll,
                 "tokens_per_s": tokens_seen / (time.time() - epoch_start), "minutes": (time.time() - started) / 60}
        log["epochs"].append(entry)
        # one line per epoch even without progress bars: a run in the background can be followed
        tqdm.write(json.dumps(entry))
        sys.stdout.flush()
        if nll < best_nll or config.refit_with_valid:
            best_nll, log["best_epoch"] = nll, epoch + 1
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if config.max_minutes is not None and (time.time() - started) / 60 > config.max_minutes:
            log["stopped_early"] = True
            break
    model.load_state_dict(best_state)
    log["best_valid_nll"] = best_nll
    return model.eval(), log
