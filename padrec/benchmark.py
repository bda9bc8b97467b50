"""Offline benchmark: plain vs speculative decoding, same process, same runtime, side by side.

Every user is decoded at batch 1 by the plain decoder and by every (drafter, k) configuration in
turn, so machine noise hits all configurations alike; speed-ups are ratios of medians. Wall-clock
is the measure; CPU time of the process is reported beside it, because on a shared machine a
list's wall-clock also counts the time the process waited for a core. Greedy
speculative lists must equal the plain ones; differences are judged as near-ties or mismatches
by `padrec.verification`.
"""

from __future__ import annotations

import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from padrec.data.split import Example
from padrec.decoding.constraints import ItemTrie
from padrec.decoding.engine import ListDecoder
from padrec.decoding.interfaces import DecodeRequest, DecodeResult
from padrec.decoding.torch_draft import TorchDraft
from padrec.decoding.torch_target import TorchTarget
from padrec.evaluation import ranking_metrics
from padrec.models.draft import Draft
from padrec.models.inference import for_inference
from padrec.models.target import Target
from padrec.verification import NEAR_TIE_GAP, compare_to_plain

# the drafter name of a draft whose whole round runs on the device (`RoundDraft`): 'padrec/round'
ROUND_SUFFIX = "/round"


@dataclass
class _Runs:
    """One decoder's measurements: per list (its batch's wall-clock is its latency) and per batch."""

    seconds: list[float] = field(default_factory=list)  # per list
    cpu_seconds: list[float] = field(default_factory=list)  # per list
    target_seconds: list[float] = field(default_factory=list)  # per list: inside its batch's target calls
    draft_seconds: list[float] = field(default_factory=list)  # per list: inside its batch's draft calls
    # all batches together: wall-clock, time inside target and draft calls, and the (batched) calls
    wall_seconds: float = 0.0
    target_total_seconds: float = 0.0
    draft_total_seconds: float = 0.0
    target_calls: int = 0
    draft_calls: int = 0
    lists: list[list[int]] = field(default_factory=list)
    results: list[DecodeResult] = field(default_factory=list)


class _Stopwatch:
    """Stands in for `inner`, adding the wall-clock time spent in its method `method` to `seconds`
    and counting the calls; every other attribute is `inner`'s."""

    def __init__(self, inner, method: str):
        self.inner, self.method, self.seconds, self.calls = inner, method, 0.0, 0

    def __getattr__(self, name: str):
        attribute = getattr(self.inner, name)
        if name != self.method:
            return attribute

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return attribute(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started
                self.calls += 1

        return timed


def _summary(runs: _Runs, targets: list[int]) -> dict:
    ms = np.array(runs.seconds) * 1000
    cpu_ms = np.array(runs.cpu_seconds) * 1000
    stats = [r.stats for r in runs.results]
    drafted, accepted = sum(s.drafted for s in stats), sum(s.accepted for s in stats)

    def rates(reached_attr, accepted_attr):
        width = max((len(getattr(s, reached_attr)) for s in stats), default=0)
        reached = np.zeros(width)
        acc = np.zeros(width)
        for s in stats:
            reached[: len(getattr(s, reached_attr))] += getattr(s, reached_attr)
            acc[: len(getattr(s, accepted_attr))] += getattr(s, accepted_attr)
        return [round(float(a / r), 4) if r else None for a, r in zip(acc, reached)]

    target_ms, draft_ms = np.mean(runs.target_seconds) * 1000, np.mean(runs.draft_seconds) * 1000
    return {
        "median_ms": float(np.median(ms)), "mean_ms": float(ms.mean()), "p90_ms": float(np.percentile(ms, 90)),
        "median_cpu_ms": float(np.median(cpu_ms)),
        "items_per_s": sum(len(items) for items in runs.lists) / runs.wall_seconds,
        # where a list's time goes (means, so the three add up to mean_ms); the prefill is the target's
        "time_split_ms": {"target": float(target_ms), "draft": float(draft_ms),
                          "host": float(ms.mean() - target_ms - draft_ms)},
        # per (batched) call; the prefill calls are among the target's
        "ms_per_target_call": runs.target_total_seconds * 1000 / max(1, runs.target_calls),
        "ms_per_draft_call": runs.draft_total_seconds * 1000 / max(1, runs.draft_calls),
        "tau": float(np.mean([s.tau for s in stats])),
        "target_calls_per_list": float(np.mean([s.rounds for s in stats])),
        "drafted": int(drafted), "accepted": int(accepted),
        "acceptance_rate": accepted / drafted if drafted else None,
        "acceptance_by_depth": rates("reached_by_depth", "accepted_by_depth"),
        "acceptance_by_slot": rates("reached_by_slot", "accepted_by_slot"),
        **ranking_metrics(runs.lists, targets),
    }


def torch_decoders(target: Target, drafts: dict[str, Draft], trie: ItemTrie, ks: list[int], rows: int = 1,
                   device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                   trees: list[tuple[int, int, tuple[int, ...], int, float]] = (), round_ks: list[int] = (),
                   round_room: int = 0, graphs: bool = False) -> dict:
    """Plain, (drafter, k) and, per token tree (k, width, children by slot, budget, min_prob) of
    `trees` (`padrec.commands.bench.tree_shapes`), (drafter, k, width, children, budget, min_prob)
    decoders on torch eager with `rows` cache rows each, sharing one inference copy of each model on
    `device` in `dtype`; per k of `round_ks`, also (drafter + ROUND_SUFFIX, k): the draft's whole
    round on the device (`RoundDraft`, forced tokens up to `round_room`). With `graphs`, the
    targets and rounds make static-shape calls, CUDA graphs on a GPU (`padrec.decoding.cuda_graphs`)."""
    from padrec.decoding.round_draft import RoundDraft

    max_len = target.config.max_seq_len
    target = for_inference(target, device, dtype)
    prepared = {name: for_inference(d, device, dtype) for name, d in drafts.items()}

    def decoder(proposer=None) -> ListDecoder:
        return ListDecoder(trie, TorchTarget(target, rows, trie.sids, device, dtype, graphs), max_len, proposer=proposer)

    decoders = {("plain", 0): decoder()}
    shapes = [(k,) for k in ks] + [tuple(tree) for tree in trees]
    decoders.update({(name, *shape): decoder(TorchDraft(d, trie.sids, rows, device, dtype))
                     for name, d in prepared.items() for shape in shapes})
    decoders.update({(name + ROUND_SUFFIX, k): decoder(RoundDraft(d, trie, rows, k, round_room, device, dtype, graphs))
                     for name, d in drafts.items() for k in round_ks})
    return decoders


def onnx_decoders(target: Target, drafts: dict[str, Draft], trie: ItemTrie, ks: list[int], workdir: Path,
                  forced_room: int, trees: list[tuple[int, int, tuple[int, ...], int, float]] = ()) -> dict:
    """The same decoders on ONNX Runtime: the graphs are exported into `workdir` (one draft graph
    per k, since a draft graph always runs its fixed number of steps; with `trees`, each drafter's
    step graph and its tree forward too, which grow the trees as the served draft step does)."""
    from padrec.decoding.draft_tree import TreeDrafting
    from padrec.decoding.onnx_draft import OnnxDraft
    from padrec.decoding.onnx_draft_scorer import OnnxDraftScorer
    from padrec.decoding.onnx_target import OnnxTarget
    from padrec.export.graphs import DraftGraph, DraftStepGraph, TargetGraph
    from padrec.export.onnx_files import export_graphs

    workdir.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    tree_ks = sorted({tree[0] for tree in trees})
    # keyed like the decoders: ("plain", 0) is the target's graph, (drafter, k) a draft graph,
    # (drafter, "step") a draft step graph
    graphs = {("plain", 0): TargetGraph(target).eval()} | {
        (name, k): DraftGraph(draft, trie, k, forced_room).eval() for name, draft in drafts.items()
        for k in sorted(set(ks) | set(tree_ks))} | {
        (name, "step"): DraftStepGraph(draft, trie.sids.tokens_per_item).eval() for name, draft in drafts.items()
        if trees}
    paths = {key: workdir / ("target.onnx" if key == ("plain", 0) else f"draft_{key[0]}_{key[1]}.onnx")
             for key in graphs}
    export_graphs(graphs, paths)
    max_len = target.config.max_seq_len

    def decoder(proposer=None) -> ListDecoder:
        return ListDecoder(trie, OnnxTarget(paths[("plain", 0)], 1, threads, trie.sids), max_len, proposer=proposer)

    decoders = {("plain", 0): decoder()} | {(name, k): decoder(OnnxDraft(paths[(name, k)], 1, threads))
                                            for name in drafts for k in ks}
    decoders.update({(name, *tree): decoder(TreeDrafting(OnnxDraft(paths[(name, tree[0])], 1, threads),
                                                         OnnxDraftScorer(paths[(name, "step")], 1, threads)))
                     for name in drafts for tree in trees})
    return decoders


def run_benchmark(target: Target, drafts: dict[str, Draft], trie: ItemTrie, examples: list[Example],
                  ks: list[int], top_n: int = 10, progress: bool = True, runtime: str = "torch",
                  workdir: Path | None = None, forced_room: int | None = None,
                  trees: list[tuple[int, int, tuple[int, ...], int, float]] = ()) -> dict:
    """Decode every example with every configuration on one runtime; returns the report dict.
    onnxruntime needs the draft graphs' `forced_room` (`padrec.export.forced_room`); token `trees`
    are as for `torch_decoders` (on onnxruntime grown by the draft step's tree forward, as served)."""
    if runtime == "torch":
        decoders = torch_decoders(target, drafts, trie, ks, trees=trees)
    else:
        if forced_room is None:
            raise ValueError("the onnxruntime benchmark needs the draft graphs' forced_room")
        decoders = onnx_decoders(target, drafts, trie, ks, workdir or Path(tempfile.mkdtemp(prefix="padrec_bench_")),
                                 forced_room, trees)
    report = compare_decoders(target, decoders, trie, examples, top_n, progress)
    report["runtime"] = runtime
    return report


def compare_decoders(target: Target, decoders: dict[tuple[str, int], ListDecoder], trie: ItemTrie,
                     examples: list[Example], top_n: int = 10, progress: bool = True, batch_size: int = 1,
                     warm_up: bool = False, near_tie_gap: float = NEAR_TIE_GAP) -> dict:
    """Time each (name, k) decoder on every example against the ("plain", 0) one, `batch_size`
    users per engine batch (a list's latency is its batch's wall-clock); the decoders take turns on
    each batch, so machine noise hits them alike. The decoders' target and draft are wrapped so that
    each list's time splits into target calls, draft calls and the rest (the engine's host work).
    `warm_up` decodes the first batch once with every decoder, untimed (a GPU's first calls pick
    kernels and allocate).

    Speculative entries report speed-up, acceptance, the speed-up their tau would give if the engine
    cost nothing (`tau_limit_speedup`), and how their lists differ from plain greedy (near-ties
    below `near_tie_gap` and mismatches, judged by `target`, on its device in its dtype).
    """
    runs = {key: _Runs() for key in decoders}
    batches = [examples[i : i + batch_size] for i in range(0, len(examples), batch_size)]
    if warm_up and batches:
        for key, decoder in decoders.items():
            decoder.generate(_requests(batches[0], top_n, key), list(range(len(batches[0]))))
    watches = {}
    for key, decoder in decoders.items():  # the decoders now time their target and draft calls
        decoder.target = _Stopwatch(decoder.target, "score")
        decoder.proposer = _Stopwatch(decoder.proposer, "propose") if decoder.proposer else None
        watches[key] = (decoder.target, decoder.proposer)
    for batch in tqdm(batches, desc=f"bench batch {batch_size}", disable=not progress):
        for key, decoder in decoders.items():
            _time_batch(decoder, watches[key], _requests(batch, top_n, key), runs[key])
    targets = [e.target for e in examples]
    base = _summary(runs[("plain", 0)], targets)
    report = {"users": len(examples), "top_n": top_n, "batch_size": batch_size, "threads": torch.get_num_threads(),
              "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
                          "torch": torch.__version__},
              "plain": base, "speculative": []}
    for key, r in runs.items():
        name, k, *tree = key
        if name == "plain":
            continue
        summary = _summary(r, targets)
        shape = {}
        if tree:
            width, children, budget, min_prob = tree
            shape = {"tree_width": width, "tree_budget": budget, "tree_slot_widths": list(children),
                     "tree_min_prob": min_prob}
        entry = {"drafter": name, "k": k, **shape, **summary, "speedup": base["median_ms"] / summary["median_ms"],
                 "cpu_speedup": base["median_cpu_ms"] / summary["median_cpu_ms"],
                 # tau x T_target / (k T_draft + T_verify), the draft's k steps being one draft call
                 "tau_limit_speedup": summary["tau"] * base["ms_per_target_call"]
                 / (summary["ms_per_draft_call"] + summary["ms_per_target_call"])}
        differences = compare_to_plain(target, trie, examples, runs[("plain", 0)].results, r.results, near_tie_gap)
        entry.update({key: differences[key] for key in ("near_ties", "mismatches", "divergence_gaps")})
        report["speculative"].append(entry)
    return report


def _requests(batch: list[Example], top_n: int, key: tuple) -> list[DecodeRequest]:
    """The requests of a decoder keyed (name, k) or, for token trees, (name, k, width, children by
    slot, budget, min_prob)."""
    _, k, *tree = key
    width, children, budget, min_prob = tree or (0, (), 0, 0.0)
    return [DecodeRequest(tuple(e.history), top_n=top_n, num_draft_tokens=k, tree_width=width, tree_budget=budget,
                          tree_slot_widths=tuple(children), tree_min_prob=min_prob) for e in batch]


def _time_batch(decoder: ListDecoder, watches: tuple, requests: list[DecodeRequest], runs: _Runs) -> None:
    """Decode one batch (cache rows 0..B-1) and add its times to `runs`, once per list."""
    target_watch, draft_watch = watches
    before = (target_watch.seconds, target_watch.calls, *((draft_watch.seconds, draft_watch.calls) if draft_watch
                                                          else (0.0, 0)))
    started, cpu_started = time.perf_counter(), time.process_time()
    results = decoder.generate(requests, list(range(len(requests))))
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    after = (target_watch.seconds, target_watch.calls, *((draft_watch.seconds, draft_watch.calls) if draft_watch
                                                         else (0.0, 0)))
    target_s, target_calls, draft_s, draft_calls = (a - b for a, b in zip(after, before))
    runs.wall_seconds += seconds
    runs.target_total_seconds += target_s
    runs.draft_total_seconds += draft_s
    runs.target_calls += target_calls
    runs.draft_calls += draft_calls
    for result in results:
        runs.seconds.append(seconds)
        runs.cpu_seconds.append(cpu_seconds)
        runs.target_seconds.append(target_s)
        runs.draft_seconds.append(draft_s)
        runs.lists.append(result.items)
        runs.results.append(result)
