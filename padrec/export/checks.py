"""The checks export runs before it installs anything: exported graphs against the torch models.

1. Numerics: the same inputs through torch (eager) and ONNX Runtime, at prefill, verification and
   mixed-batch shapes; every float output within `NUMERIC_ATOL`, every token output equal.
2. Lists: greedy lists of test users from the engine on ONNX Runtime (`OnnxTarget` + `OnnxDraft`
   for chains, + the draft step's tree forward for token trees, as served) and on torch (plain, and
   `TorchTarget` + `TorchDraft`), through `compare_decoders`: a list that
   differs from plain greedy is a mismatch unless it is a near-tie (float rounding); no mismatches
   are allowed. Acceptance and per-list time of both engines are reported side by side.
   The draft's unforced round is compared the same way on batches without forced tokens; the
   ONNX Runtime engine of the list check runs it wherever a round has none (`OnnxDraft`).
3. Beams: top-K lists of the same test users by speculative beam search on ONNX Runtime
   (`OnnxTarget`'s tree forward + `OnnxDraftScorer` over the draft step graph, one row per request
   as served) against plain beam search on torch (a row per beam), at `BEAM_CHECK` (beam width, draft width); a differing list is a mismatch unless the
   two part at a near-tie (`padrec.beam_verification.differs`); no mismatches are allowed.
4. Latency (reported, not checked): one target forward at (batch, new tokens) = (1, 1) and (1, 5)
   and one draft round at batch 1 (with room for forced tokens, and unforced), torch eager vs ONNX
   Runtime, over a cache of `LATENCY_PAST`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from padrec.beam_verification import differs
from padrec.benchmark import compare_decoders
from padrec.config import DecodeConfig
from padrec.data.split import Example
from padrec.decoding.beam import BeamDecoder, beam_rows
from padrec.decoding.constraints import ItemTrie
from padrec.decoding.draft_tree import TreeDrafting
from padrec.decoding.engine import ListDecoder
from padrec.decoding.interfaces import BeamRequest
from padrec.decoding.onnx_draft import OnnxDraft, unforced_path
from padrec.decoding.onnx_draft_scorer import OnnxDraftScorer
from padrec.decoding.onnx_session import load_session, tree_path
from padrec.decoding.onnx_target import OnnxTarget
from padrec.decoding.torch_draft import TorchDraft
from padrec.decoding.torch_target import TorchTarget
from padrec.decoding.tree import TreeLayout
from padrec.export.graphs import (
    DraftGraph, DraftStepGraph, DraftStepTreeGraph, TargetGraph, TargetTreeGraph, unforced_round,
)
from padrec.export.onnx_files import tree_graph
from padrec.models.draft import Draft
from padrec.models.target import Target
from padrec.semantic_ids import NUM_SPECIAL

# fp32 graph vs eager differ by op order only: about 1e-6 on the tiny and default models
NUMERIC_ATOL = 1e-4
# (batch, new tokens, past lengths per row): prefill, a verification round, a ragged batch
SHAPES = ((1, 6, (0,)), (1, 5, (40,)), (3, 4, (23, 0, 9)))
LATENCY_PAST = 100  # cache positions in the latency runs: a 20-item history of 5-token items
LATENCY_REPEATS = 50
SAMPLING_TEMPERATURE = 0.8  # the sampling rows of the draft check
TREE_CHECK = 3  # tree width of the list check's token trees (narrower where a deep draft would pass max_tree_nodes)
BEAM_CHECK = (10, 10)  # (beam width, draft width) of the beam check: what a served speculative beam request fits in


@dataclass
class CheckReport:
    numerics: dict  # output name -> max abs difference (floats) or number of differing entries (tokens)
    lists: dict  # compare_decoders report: plain, torch and onnxruntime speculative entries
    beams: dict  # beam_check report
    latency_ms: dict  # "what, shape" -> {"torch": ms, "onnxruntime": ms}
    failures: list[str]

    @property
    def passed(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict:
        return {"passed": self.passed, "failures": self.failures, "atol": NUMERIC_ATOL, "numerics": self.numerics,
                "lists": self.lists, "beams": self.beams, "latency_ms": self.latency_ms}


def target_inputs(graph: TargetGraph, batch: int, new: int, past: tuple[int, ...], rng: np.random.Generator) -> dict:
    """Random inputs of the target graph; the cache slice is as long as the longest past."""
    target = graph.target
    c = target.config
    cache = (c.n_layers, batch, c.n_heads, max(past), c.head_dim)
    feeds = {"tokens": rng.integers(NUM_SPECIAL, target.vocab_size, (batch, new)),
             "past_k": rng.standard_normal(cache, dtype=np.float32),
             "past_v": rng.standard_normal(cache, dtype=np.float32),
             "past_lengths": np.array(past, dtype=np.int64)}
    if "items" in graph.inputs:
        feeds["items"] = rng.integers(0, target.num_items + 1, (batch, new))
    return feeds


def draft_inputs(graph: DraftGraph, batch: int, new: int, past: tuple[int, ...], rng: np.random.Generator) -> dict:
    """Random inputs of the draft graph: row 0 greedy, the others sampling; ragged fresh pairs; each
    row inside an item (a random inner trie node) or awaiting its separator, with a few bans."""
    draft, c, constraint = graph.draft, graph.draft.target_config, graph.constraint
    cache = (draft.config.n_layers, batch, c.n_heads, max(past), c.head_dim)
    temperatures = np.full(batch, SAMPLING_TEMPERATURE, dtype=np.float32)
    temperatures[0] = 0.0
    inner = np.flatnonzero(constraint.node_depth.numpy() < constraint.num_levels)
    awaiting = rng.random(batch) < 0.3
    return {"features": rng.standard_normal((batch, new, c.d_model), dtype=np.float32),
            "tokens": rng.integers(NUM_SPECIAL, draft.vocab_size, (batch, new)),
            "lengths": rng.integers(1, new + 1, batch),
            "past_k": rng.standard_normal(cache, dtype=np.float32),
            "past_v": rng.standard_normal(cache, dtype=np.float32),
            "past_lengths": np.array(past, dtype=np.int64),
            "forced": rng.integers(NUM_SPECIAL, draft.vocab_size, (batch, graph.forced_room)),
            "forced_counts": rng.integers(0, graph.forced_room + 1, batch),
            "node": np.where(awaiting, 0, rng.choice(inner, batch)),
            "awaiting_separator": awaiting,
            "banned": rng.integers(0, constraint.num_items + 1, (batch, 5)),  # num_items: padding
            "temperatures": temperatures,
            "uniform": rng.random((batch, graph.steps, draft.vocab_size), dtype=np.float32)}


def tree_inputs(graph: TargetTreeGraph, batch: int, new: int, past: tuple[int, ...], rng: np.random.Generator) -> dict:
    """`target_inputs` laid out as random token trees (each token's parent: -1 or an earlier token)."""
    parents = np.array([[int(rng.integers(-1, t)) for t in range(new)] for _ in range(batch)], dtype=np.int64)
    layout = TreeLayout.from_parents(parents)
    return target_inputs(graph, batch, new, past, rng) | {"depths": layout.depths, "ancestors": layout.ancestors}


def step_inputs(graph: DraftStepGraph, batch: int, new: int, past: tuple[int, ...], rng: np.random.Generator) -> dict:
    """Random inputs of the draft step graph, each row at a random depth (1: after a target feature)."""
    draft, c = graph.draft, graph.draft.target_config
    cache = (draft.config.n_layers, batch, c.n_heads, max(past), c.head_dim)
    return {"features": rng.standard_normal((batch, new, c.d_model), dtype=np.float32),
            "tokens": rng.integers(NUM_SPECIAL, draft.vocab_size, (batch, new)),
            "depth": rng.integers(1, draft.config.k_max + 2, batch),
            "past_k": rng.standard_normal(cache, dtype=np.float32),
            "past_v": rng.standard_normal(cache, dtype=np.float32),
            "past_lengths": np.array(past, dtype=np.int64)}


def step_tree_inputs(graph: DraftStepTreeGraph, batch: int, new: int, past: tuple[int, ...],
                     rng: np.random.Generator) -> dict:
    """`step_inputs` as token-tree nodes: random positions, each node seeing a random part of the cache."""
    feeds = step_inputs(graph, batch, new, past, rng)
    del feeds["past_lengths"]
    return feeds | {"positions": rng.integers(0, max(past) + new, (batch, new)),
                    "visible": rng.random((batch, new, max(past))) < 0.5}


def unforced_inputs(graph: DraftGraph, batch: int, new: int, past: tuple[int, ...], rng: np.random.Generator) -> dict:
    """`draft_inputs` of a batch without forced tokens, what an unforced round is run on."""
    return draft_inputs(graph, batch, new, past, rng) | {"forced_counts": np.zeros(batch, dtype=np.int64)}


@torch.inference_mode()
def compare_graph(graph: TargetGraph | DraftGraph, onnx_path: Path, cases: list[dict]) -> dict:
    """Largest |torch - ORT| per float output, count of differing entries per integer output."""
    session = load_session(onnx_path)
    worst = {name: 0.0 for name in graph.outputs}
    for feeds in cases:
        expected = graph(*(torch.from_numpy(feeds[name]) for name in graph.inputs))
        for name, want, got in zip(graph.outputs, expected, session.run(None, feeds)):
            want = want.numpy()
            diff = np.abs(want - got).max() if want.dtype.kind == "f" else np.count_nonzero(want != got)
            worst[name] = max(worst[name], float(diff))
    return worst


def numeric_failures(numerics: dict[str, dict[str, float]]) -> list[str]:
    """One line per output beyond the tolerance (floats) or with any differing token."""
    failures = []
    for graph, outputs in numerics.items():
        for name, diff in outputs.items():
            limit = 0 if name == "proposals" else NUMERIC_ATOL
            if diff > limit:
                failures.append(f"{graph} output {name!r}: onnxruntime differs from torch by {diff:g} "
                                f"(allowed {limit:g})")
    return failures


def list_check(target: Target, draft: Draft, onnx_files: dict[str, Path], trie: ItemTrie, examples: list[Example],
               num_draft_tokens: int) -> tuple[dict, list[str]]:
    """Greedy lists: ORT engine (chains from the draft graph, and token trees of `TREE_CHECK`
    from the draft step's tree forward) and torch speculative engine against torch plain decoding."""
    max_len = target.config.max_seq_len

    def onnx_target() -> OnnxTarget:
        return OnnxTarget(onnx_files["target"], 1, sids=trie.sids)

    trees = TreeDrafting(OnnxDraft(onnx_files["draft"], 1), OnnxDraftScorer(onnx_files["draft step"], 1))
    width = max(1, min(TREE_CHECK, DecodeConfig.max_tree_nodes // num_draft_tokens))
    decoders = {
        ("plain", 0): ListDecoder(trie, TorchTarget(target, 1, trie.sids), max_len),
        ("torch", num_draft_tokens): ListDecoder(trie, TorchTarget(target, 1, trie.sids), max_len,
                                                 proposer=TorchDraft(draft, trie.sids, 1)),
        ("onnxruntime", num_draft_tokens): ListDecoder(trie, onnx_target(), max_len,
                                                       proposer=OnnxDraft(onnx_files["draft"], 1)),
        ("onnxruntime tree", num_draft_tokens, width, (), 0, 0.0): ListDecoder(trie, onnx_target(), max_len,
                                                                               proposer=trees),
    }
    report = compare_decoders(target, decoders, trie, examples, progress=False)
    failures = [f"{e['drafter']} lists: {e['mismatches']} of {len(examples)} differ from torch greedy"
                for e in report["speculative"] if e["mismatches"]]
    return report, failures


def beam_check(target: Target, target_onnx: Path, step_onnx: Path, trie: ItemTrie, examples: list[Example],
               width: int = BEAM_CHECK[0], draft_width: int = BEAM_CHECK[1]) -> tuple[dict, list[str]]:
    """Top-K lists: speculative beam search on ONNX Runtime against plain beam search on torch."""
    request_rows = list(range(beam_rows(trie.sids.num_levels, width, draft_width)))
    rows, max_len = len(request_rows), target.config.max_seq_len
    plain = BeamDecoder(trie, TorchTarget(target, rows, trie.sids), max_len, width)
    # as served: each request's prefixes as one token tree in one row (the target's tree forward)
    speculative = BeamDecoder(trie, OnnxTarget(target_onnx, rows, sids=trie.sids), max_len, width,
                              OnnxDraftScorer(step_onnx, rows), draft_width, one_row=True)
    verdicts, accepted = [], []
    for e in examples:
        want = plain.generate([BeamRequest(tuple(e.history), min(10, width), width)], [request_rows[:width]])[0]
        request = BeamRequest(tuple(e.history), min(10, width), width, draft_width=draft_width)
        got = speculative.generate([request], [request_rows[: speculative.rows_needed(request)]])[0]
        verdicts.append(differs(want, got))
        accepted.append(got.stats.accepted)
    report = {"users": len(examples), "beam_width": width, "draft_width": draft_width,
              "mismatches": verdicts.count("mismatch"), "near_ties": verdicts.count("near_tie"),
              "accepted_levels": float(np.mean(accepted)) if accepted else 0.0}
    failures = ([f"onnxruntime speculative beams: {report['mismatches']} of {len(examples)} differ from torch "
                 "plain beam search"] if report["mismatches"] else [])
    return report, failures


def median_ms(run, repeats: int = LATENCY_REPEATS) -> float:
    """Median wall time of `run()` in milliseconds, after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1000)


@torch.inference_mode()
def latency(graph: TargetGraph | DraftGraph | DraftStepGraph, onnx_path: Path, feeds: dict) -> dict:
    """Median ms of one call, torch eager vs ONNX Runtime (the session's own thread setting)."""
    session = load_session(onnx_path, torch.get_num_threads())
    args = [torch.from_numpy(feeds[name]) for name in graph.inputs]
    return {"torch": median_ms(lambda: graph(*args)), "onnxruntime": median_ms(lambda: session.run(None, feeds))}


def run_checks(target_graph: TargetGraph, draft_graph: DraftGraph, step_graph: DraftStepGraph,
               onnx_files: dict[str, Path], trie: ItemTrie, examples: list[Example], seed: int = 0) -> CheckReport:
    """Numerics, lists and latency of an exported pair, `onnx_files` by graph kind (module docstring)."""
    rng = np.random.default_rng(seed)
    unforced = unforced_round(draft_graph)
    # name -> (torch graph, its ONNX file, its inputs at (batch, new tokens, past lengths))
    target_tree, step_tree = tree_graph(target_graph), tree_graph(step_graph)
    checked = {"target": (target_graph, onnx_files["target"], partial(target_inputs, target_graph)),
               "target tree": (target_tree, tree_path(onnx_files["target"]), partial(tree_inputs, target_tree)),
               "draft": (draft_graph, onnx_files["draft"], partial(draft_inputs, draft_graph)),
               "draft unforced": (unforced, unforced_path(onnx_files["draft"]), partial(unforced_inputs, unforced)),
               "draft step": (step_graph, onnx_files["draft step"], partial(step_inputs, step_graph)),
               "draft step tree": (step_tree, tree_path(onnx_files["draft step"]),
                                   partial(step_tree_inputs, step_tree))}
    numerics = {name: compare_graph(graph, path, [inputs(*shape, rng) for shape in SHAPES])
                for name, (graph, path, inputs) in checked.items()}
    lists, list_failures = list_check(target_graph.target, draft_graph.draft, onnx_files, trie, examples,
                                      draft_graph.proposals)
    beams, beam_failures = beam_check(target_graph.target, onnx_files["target"], onnx_files["draft step"], trie,
                                      examples)
    past = (min(LATENCY_PAST, target_graph.max_seq_len - 8),)
    latency_ms = {}
    for name, batch, new in (("target", 1, 1), ("target", 1, 5), ("draft", 1, 2), ("draft unforced", 1, 2)):
        graph, path, inputs = checked[name]
        latency_ms[f"{name} ({batch}, {new})"] = latency(graph, path, inputs(batch, new, past, rng))
    return CheckReport(numerics, lists, beams, latency_ms, numeric_failures(numerics) + list_failures + beam_failures)
