"""How much a trained PAD-Rec draft uses its two position signals.

PAD-Rec adds alpha * E_item[slot] and gate * E_step[depth] to the draft's fused input
z = fc([embed(x); f]). Two measurements say whether those terms matter in a trained draft:

- their size beside the fused input they are added to, on real (teacher-forced) inputs: the
  depth-1 pairs of test users' histories, where f is the target's own feature;
- the draft's acceptance with the two terms removed at inference (same weights otherwise): if
  tau does not move, the trained draft does not use them.

`padrec draft-signals` runs both; results/README.md reads them.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from padrec.benchmark import torch_decoders
from padrec.data.split import Example
from padrec.decoding.constraints import ItemTrie
from padrec.models.draft import Draft, predicted_slots
from padrec.models.target import Target
from padrec.semantic_ids import BOS
from padrec.training.target import item_inputs
from padrec.verification import decode_all


def without_position_signals(draft: Draft) -> Draft:
    """The same draft with its item- and step-position terms left out (the EAGLE-style code path)."""
    config = replace(draft.config, item_position=False, step_position=False)
    stripped = Draft(config, draft.target_config, draft.vocab_size, draft.num_slots)
    kept = {name: value for name, value in draft.state_dict().items() if name in stripped.state_dict()}
    stripped.load_state_dict(kept)
    return stripped.eval()


@torch.inference_mode()
def signal_sizes(draft: Draft, target: Target, trie: ItemTrie, examples: list[Example]) -> dict:
    """Mean L2 norms, over the depth-1 pairs of the examples' histories, of the fused input
    fc([embed(x); f]) and of each position term added to it (the step term at every trained depth),
    with each term's share of the fused input's norm; and the embeddings' norms beside the norm
    they had at initialisation (sqrt(d) * std), which shows whether training moved them."""
    if not (draft.config.item_position or draft.config.step_position):
        raise ValueError("this draft has no position signals (an EAGLE-style draft)")
    base, item, steps = [], [], {d: [] for d in range(1, draft.config.step_depths + 1)}
    for example in examples:
        tokens = torch.tensor([[BOS] + trie.sids.encode_items(example.history)])
        items = item_inputs(target, trie.sids, [tokens[0].numpy()])
        features = target(tokens, items=items).hidden[:, :-1]  # f_t, paired with the token after it
        following = tokens[:, 1:]
        base.append(draft.fc(torch.cat([draft.token_embedding[following], features], dim=-1)).norm(dim=-1))
        if draft.config.item_position:
            slots = predicted_slots(torch.arange(following.shape[1])[None], trie.sids.tokens_per_item)
            item.append((draft.item_coefficient * draft.item_embedding(slots)).norm(dim=-1))
        if draft.config.step_position:
            gate = torch.sigmoid(draft.step_gate(features))
            for depth in steps:
                steps[depth].append((gate * draft.step_embedding.weight[depth]).norm(dim=-1))
    base_norm = float(torch.cat(base, dim=1).mean())
    init_norm = float(np.sqrt(draft.target_config.d_model) * draft.config.position_init_std)
    report = {"pairs": int(sum(b.numel() for b in base)), "fused_input_norm": base_norm,
              "init": {"item_coefficient": draft.config.item_coefficient_init,
                       "embedding_std": draft.config.position_init_std},
              "embedding_init_norm": init_norm}
    if draft.config.item_position:
        norm = float(torch.cat(item, dim=1).mean())
        report["item"] = {"coefficient": float(draft.item_coefficient), "norm": norm, "share": norm / base_norm,
                          "embedding_norms": draft.item_embedding.weight.norm(dim=-1).tolist()}
    if draft.config.step_position:
        norms = {d: float(torch.cat(v, dim=1).mean()) for d, v in steps.items()}
        report["step"] = {"norm_by_depth": list(norms.values()),
                          "share_by_depth": [n / base_norm for n in norms.values()],
                          "embedding_norms": draft.step_embedding.weight[1:].norm(dim=-1).tolist()}
    return report


def tau_without_signals(draft: Draft, target: Target, trie: ItemTrie, examples: list[Example], k: int,
                        batch_size: int, progress: bool = True) -> dict:
    """Greedy speculative decoding of the examples with the draft as trained and with its position
    terms removed: tau of each, and how many lists differ between the two (0: both are lossless)."""
    variants = {"with_signals": draft, "without_signals": without_position_signals(draft)}
    decoders = torch_decoders(target, variants, trie, [k], rows=batch_size)
    runs = {name: decode_all(decoders[(name, k)], examples, k, batch_size, desc=name.replace("_", " "),
                             progress=progress) for name in variants}
    return {"k": k, "users": len(examples),
            **{f"tau_{name}": float(np.mean([r.stats.tau for r in results])) for name, results in runs.items()},
            "differing_lists": sum(a.tokens != b.tokens for a, b in zip(*runs.values()))}
