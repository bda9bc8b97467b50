"""The graphs export turns into ONNX: the target's forward, one whole draft round, and one draft step.

`TargetGraph` is `Target.forward` with positional outputs (ONNX outputs have no field names);
`TargetTreeGraph` the same forward of a token tree (`padrec.decoding.tree.TreeLayout`: each token's
depth and ancestors as inputs), what one-row beam search scores its prefixes with.

`DraftStepGraph` is one draft forward of new (feature, token) pairs, with the draft's logits and
next features at each: what speculative beam search asks of a draft (`DraftScorer`: several
continuations per prefix, so the host chooses, not the graph); `DraftStepTreeGraph` the same step
over token-tree nodes, what a served draft grows its token trees with.

`DraftGraph` unrolls the round that `TorchDraft.propose` runs into one graph without control flow:
  1. depth 1: every fresh pair (a real target feature and the token after it) in one pass;
  2. `room + proposals` single-token steps in lockstep for all rows, each on the feature the
     previous step predicted. Row r takes its first forced_counts[r] tokens as given (teacher
     forcing: tokens the constraints dictated), then chooses `proposals` tokens itself;
  3. the proposals of row r are steps forced_counts[r] .. forced_counts[r] + proposals - 1.
Worked example, room 2, proposals 3, a row with one forced token f:
    step:   0  1  2  3  4
    token:  f  p0 p1 p2 x     (x: chosen but not returned, the row needed only 4 steps)
`room` is `forced_room` unless a smaller one is given: the graph of room 0, the *unforced* round,
takes the same inputs and serves batches in which no row starts with a forced token, `forced_room`
steps fewer. Most rounds are such (Beauty, k=4: 89%), so export writes both graphs and the
ONNX Runtime host runs whichever fits (`padrec.decoding.onnx_draft`).

Choosing a token: the graph walks the catalogue constraints itself (`GraphConstraint`: the trie and
the bans, from each row's `ListConstraint` state at its first proposal), so its proposals are the ones
`TorchDraft` makes. Greedy rows (temperature 0) take the argmax of the allowed logits; sampling rows
draw by Gumbel-max, argmax(logits / T + g) with g = -log(-log(u)) from the caller's uniform noise u,
an exact draw from q = softmax(allowed logits / T), which is returned for rejection sampling.

Only the depth-1 K/V are returned: the steps' K/V would be dropped by the next round anyway (the
draft cache keeps only positions with real target features; see `DraftBatch`).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from padrec.decoding.constraints import ItemTrie
from padrec.decoding.tree import TreeLayout
from padrec.export.constraint_graph import GraphConstraint
from padrec.models.draft import Draft
from padrec.models.inference import InferenceDraftInput
from padrec.models.layers import attention_mask, tree_step_mask
from padrec.models.target import Target

EXAMPLE_SIZES = (2, 3, 4)  # batch, new tokens, cache positions of the example inputs
# The logit of a token the constraints forbid: finite, so a row with nothing allowed (a complete
# list, never verified) gets no NaN; its probability still underflows to exactly 0 beside any
# allowed token.
NOT_ALLOWED = torch.finfo(torch.float32).min


class TargetGraph(nn.Module):
    """The target's forward with positional outputs, for export. An item-embedding target's graph
    also reads the item marks of the new tokens (`items`, which its host keeps: `ItemMarkLog`)."""

    kind = "target"
    outputs = ("logits", "hidden", "new_k", "new_v")

    def __init__(self, target: Target):
        super().__init__()
        self.target = target
        self.max_seq_len = target.config.max_seq_len
        self.inputs = ("tokens", "past_k", "past_v", "past_lengths") + (("items",) if target.item_embed is not None else ())

    def example_inputs(self) -> tuple[torch.Tensor, ...]:
        """Inputs to trace the export with: every dynamic size >= 2 (the exporter specialises 0, 1)."""
        c, (B, T, S) = self.target.config, EXAMPLE_SIZES
        cache = (c.n_layers, B, c.n_heads, S, c.head_dim)
        items = (torch.randint(0, self.target.num_items + 1, (B, T)),) if "items" in self.inputs else ()
        return (torch.randint(0, self.target.vocab_size, (B, T)), torch.randn(cache), torch.randn(cache),
                torch.tensor([S, 1]), *items)

    def forward(self, tokens, past_k, past_v, past_lengths, items=None):
        out = self.target(tokens, past_k, past_v, past_lengths, items)
        return out.logits, out.hidden, out.new_k, out.new_v


class TargetTreeGraph(TargetGraph):
    """`TargetGraph` of a token tree: token t sits at past_length + depths[t] and sees the cache,
    its ancestors and itself (ancestors[b, t, u])."""

    kind = "target_tree"

    def __init__(self, target: Target):
        super().__init__(target)
        self.inputs = ("tokens", "past_k", "past_v", "past_lengths", "depths", "ancestors") + self.inputs[4:]

    def example_inputs(self) -> tuple[torch.Tensor, ...]:
        B, T, _ = EXAMPLE_SIZES
        plain = super().example_inputs()  # tokens, past_k, past_v, past_lengths[, items]
        layout = TreeLayout.from_parents(torch.tensor([[-1, 0, 0], [-1, -1, 1]])[:B, :T].numpy())
        return (*plain[:4], torch.from_numpy(layout.depths), torch.from_numpy(layout.ancestors), *plain[4:])

    def forward(self, tokens, past_k, past_v, past_lengths, depths, ancestors, items=None):
        out = self.target(tokens, past_k, past_v, past_lengths, items, (depths, ancestors))
        return out.logits, out.hidden, out.new_k, out.new_v


class DraftStepGraph(nn.Module):
    """One draft forward of T new pairs per row after its cached ones, at a draft depth per row:
    `TorchDraft.score` (before its optional cache copy, which the host does)."""

    kind = "draft_step"
    inputs = ("features", "tokens", "depth", "past_k", "past_v", "past_lengths")
    outputs = ("logits", "next_features", "new_k", "new_v")

    def __init__(self, draft: Draft, tokens_per_item: int):
        super().__init__()
        self.draft = draft
        self.input = InferenceDraftInput(draft, tokens_per_item)
        self.max_seq_len = draft.target_config.max_seq_len

    def example_inputs(self) -> tuple[torch.Tensor, ...]:
        """Inputs to trace the export with: every dynamic size >= 2 (the exporter specialises 0, 1)."""
        c, (B, T, S) = self.draft.target_config, EXAMPLE_SIZES
        cache = (self.draft.config.n_layers, B, c.n_heads, S, c.head_dim)
        return (torch.randn(B, T, c.d_model), torch.randint(0, self.draft.vocab_size, (B, T)), torch.tensor([1, 2]),
                torch.randn(cache), torch.randn(cache), torch.tensor([S, 1]))

    def forward(self, features, tokens, depth, past_k, past_v, past_lengths):
        T = tokens.shape[1]
        positions = past_lengths[:, None] + torch.arange(T, device=tokens.device)
        out = self.draft.decode(self.input(features, tokens, positions, depth), positions,
                                attention_mask(past_lengths, past_k.shape[3], T), past_k, past_v)
        return out.logits, out.features, out.new_k, out.new_v


class DraftStepTreeGraph(DraftStepGraph):
    """`DraftStepGraph` over token-tree nodes (`padrec.decoding.tree.DraftTreeStep`): node t sits at
    positions[t] and sees the cached entries visible[t] and itself; what a served draft grows its
    token trees with (`padrec.decoding.draft_tree`). Written beside the step graph (`tree_path`)."""

    kind = "draft_step_tree"
    inputs = ("features", "tokens", "depth", "positions", "visible", "past_k", "past_v")

    def example_inputs(self) -> tuple[torch.Tensor, ...]:
        B, T, S = EXAMPLE_SIZES
        features, tokens, depth, past_k, past_v, _ = super().example_inputs()
        return (features, tokens, depth, torch.randint(0, S + T, (B, T)), torch.rand(B, T, S) < 0.5, past_k, past_v)

    def forward(self, features, tokens, depth, positions, visible, past_k, past_v):
        out = self.draft.decode(self.input(features, tokens, positions, depth), positions, tree_step_mask(visible),
                                past_k, past_v)
        return out.logits, out.features, out.new_k, out.new_v


class DraftGraph(nn.Module):
    """One draft round, unrolled: fresh pairs in, proposals, their distributions and new K/V out."""

    kind = "draft"
    inputs = ("features", "tokens", "lengths", "past_k", "past_v", "past_lengths", "forced", "forced_counts",
              "node", "awaiting_separator", "banned", "temperatures", "uniform")
    outputs = ("proposals", "q", "new_k", "new_v")

    def __init__(self, draft: Draft, trie: ItemTrie, proposals: int, forced_room: int, room: int | None = None):
        super().__init__()
        room = forced_room if room is None else room
        if proposals < 1 or forced_room < 1 or not 0 <= room <= forced_room:
            raise ValueError(f"need proposals >= 1, forced_room >= 1 and 0 <= room <= forced_room, "
                             f"got {proposals}, {forced_room}, {room}")
        self.draft = draft
        self.proposals = proposals
        self.forced_room = forced_room
        self.room = room
        self.trie = trie
        self.constraint = GraphConstraint(trie)
        self.input = InferenceDraftInput(draft, trie.sids.tokens_per_item)
        self.max_seq_len = draft.target_config.max_seq_len

    def example_inputs(self) -> tuple[torch.Tensor, ...]:
        """Inputs to trace the export with: every dynamic size >= 2 (the exporter specialises 0, 1)."""
        c, (B, T, S), V = self.draft.target_config, EXAMPLE_SIZES, self.draft.vocab_size
        cache = (self.draft.config.n_layers, B, c.n_heads, S, c.head_dim)
        return (torch.randn(B, T, c.d_model), torch.randint(0, V, (B, T)), torch.tensor([T, 1]),
                torch.randn(cache), torch.randn(cache), torch.tensor([S, 1]),
                torch.randint(0, V, (B, self.forced_room)), torch.tensor([0, self.room]),
                torch.zeros(B, dtype=torch.long), torch.tensor([False, True]),
                torch.randint(0, self.constraint.num_items, (B, 3)),
                torch.tensor([0.0, 1.0]), torch.rand(B, self.steps, V))

    @property
    def steps(self) -> int:
        """Rows of noise a call takes: forced_room + proposals (a smaller room runs the first ones)."""
        return self.forced_room + self.proposals

    def forward(
        self,
        features: torch.Tensor,  # [B, T, D] target features f_t of the fresh pairs
        tokens: torch.Tensor,  # [B, T] the token after each (padding beyond lengths)
        lengths: torch.Tensor,  # [B] fresh pairs per row, >= 1
        past_k: torch.Tensor,  # [n_layers, B, H, S, hd] the draft cache, read-only
        past_v: torch.Tensor,
        past_lengths: torch.Tensor,  # [B] cache positions each row keeps
        forced: torch.Tensor,  # [B, forced_room] teacher-forced tokens (padding beyond forced_counts)
        forced_counts: torch.Tensor,  # [B] <= room
        node: torch.Tensor,  # [B] the constraint state after the forced tokens (see GraphConstraint)
        awaiting_separator: torch.Tensor,  # [B] bool
        banned: torch.Tensor,  # [B, NB] banned items, padded with the number of items
        temperatures: torch.Tensor,  # [B] float; 0 = greedy
        uniform: torch.Tensor,  # [B, forced_room + proposals, V] noise in [0, 1), one row per step run
    ):
        B, T, _ = features.shape
        device = features.device
        rows = torch.arange(B, device=device)
        last = lengths - 1
        fresh_positions = past_lengths[:, None] + torch.arange(T, device=device)
        fresh = self.draft.decode(self.input(features, tokens, fresh_positions, 1), fresh_positions,
                                  attention_mask(past_lengths, past_k.shape[3], T), past_k, past_v)
        # tokens are chosen from float32 logits in every precision: a bf16 draft's logits would
        # round the forbidden tokens' NOT_ALLOWED to -inf, and q to NaN
        feature, logits = fresh.features[rows, last], fresh.logits[rows, last].float()  # [B, D], [B, V]
        keys = torch.cat([past_k, fresh.new_k], dim=3)  # [n_layers, B, H, S + T, hd]
        values = torch.cat([past_v, fresh.new_v], dim=3)
        # what the steps may attend to: the kept cache, this call's real pairs, then every step
        visible = torch.cat([torch.arange(past_k.shape[3], device=device)[None, :] < past_lengths[:, None],
                             torch.arange(T, device=device)[None, :] < lengths[:, None]], dim=1)  # [B, S + T]
        position = past_lengths + lengths  # [B] where step 0's token sits
        sampling = temperatures > 0
        temperature = torch.where(sampling, temperatures, torch.ones_like(temperatures))[:, None]  # [B, 1]
        gumbel = -torch.log(-torch.log(uniform))  # [B, steps, V]
        node, banned_nodes = self.constraint.initial(node, awaiting_separator, banned)

        step_tokens, step_q = [], []
        steps = self.room + self.proposals
        for step in range(steps):
            proposing = step >= forced_counts  # [B]
            children = self.constraint.child_nodes(node)
            allowed = self.constraint.allowed(banned_nodes, children)  # [B, V]
            prior = self.constraint.prior(children)
            scores = logits if prior is None else logits + prior
            scaled = torch.where(allowed, scores / temperature, NOT_ALLOWED)
            token = torch.where(sampling, (scaled + gumbel[:, step]).argmax(-1), scaled.argmax(-1))
            if step < self.room:
                token = torch.where(proposing, token, forced[:, step])
            step_tokens.append(token)
            step_q.append(scaled.softmax(-1))
            if step == steps - 1:
                break  # the last token needs no forward of its own
            node, banned_nodes = self.constraint.advance(node, banned_nodes, children, token, proposing)
            step_position = (position + step)[:, None]
            z = self.input(feature[:, None], token[:, None], step_position, step + 2)
            visible = torch.cat([visible, torch.ones_like(visible[:, :1])], dim=1)
            out = self.draft.decode(z, step_position, visible[:, None, None, :], keys, values)
            keys = torch.cat([keys, out.new_k], dim=3)
            values = torch.cat([values, out.new_v], dim=3)
            feature, logits = out.features[:, 0], out.logits[:, 0].float()

        pick = forced_counts[:, None] + torch.arange(self.proposals, device=device)  # [B, proposals] step of each proposal
        proposals = torch.stack(step_tokens, dim=1).gather(1, pick)
        q = torch.stack(step_q, dim=1)[rows[:, None], pick]  # [B, proposals, V]
        return proposals, q, fresh.new_k, fresh.new_v


def unforced_round(graph: DraftGraph) -> DraftGraph:
    """The same round with room 0, for batches without forced tokens (same inputs and outputs)."""
    return DraftGraph(graph.draft, graph.trie, graph.proposals, graph.forced_room, room=0).eval()
