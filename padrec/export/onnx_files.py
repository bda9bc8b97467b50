"""Writing the target and draft graphs as ONNX files (opset 18, dynamo exporter).

Dynamic dimensions carry names that later steps rely on: `BATCH` rows, `NEW` tokens (the target's
new tokens, the draft's fresh pairs), `PAST` cache positions and `BANNED` items (the draft's
constraint state); TensorRT profiles and Triton configs are derived from them. Example inputs
have every dynamic size >= 2, since the exporter specialises sizes 0 and 1 (`example_inputs` of
each graph). A past length of 0 (prefill) runs on ONNX Runtime as is.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from onnx_ir.passes.common import DeduplicateInitializersPass

from padrec.decoding.onnx_draft import unforced_path
from padrec.decoding.onnx_session import GRAPH_KIND_KEY, MAX_SEQ_LEN_KEY, tree_path
from padrec.export.graphs import (
    DraftGraph, DraftStepGraph, DraftStepTreeGraph, TargetGraph, TargetTreeGraph, unforced_round,
)

OPSET = 18  # from opset 23 attention may become an `Attention` op that TensorRT 10 does not parse
BATCH, NEW, PAST, BANNED = "batch", "new", "past", "banned"


def export_graph(graph: TargetGraph | DraftGraph | DraftStepGraph, path: Path) -> None:
    """Write `graph` as ONNX with its dynamic dims named, weights deduplicated and its cache capacity
    in the metadata (`MAX_SEQ_LEN_KEY`)."""
    batch, new, past = torch.export.Dim(BATCH), torch.export.Dim(NEW), torch.export.Dim(PAST)
    # axes by input name; inputs not listed have only a batch axis first
    axes = {"tokens": {0: batch, 1: new}, "items": {0: batch, 1: new}, "features": {0: batch, 1: new},
            "depths": {0: batch, 1: new}, "ancestors": {0: batch, 1: new, 2: new},
            "positions": {0: batch, 1: new}, "visible": {0: batch, 1: new, 2: past},
            "past_k": {1: batch, 3: past}, "past_v": {1: batch, 3: past},
            "banned": {0: batch, 1: torch.export.Dim(BANNED)}}
    dynamic = {name: axes.get(name, {0: batch}) for name in graph.inputs}
    # The exporter warns about unavailable torchvision ops (unused here), axes sharing a name
    # (intended: every input's batch axis is the same batch) and its own deprecated internals.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)
        program = torch.onnx.export(graph.eval(), graph.example_inputs(), dynamo=True, opset_version=OPSET,
                                    dynamic_shapes=dynamic, input_names=list(graph.inputs),
                                    output_names=list(graph.outputs), verbose=False)
    # Constant folding gives each use of a weight its own transposed copy: one per unrolled draft step.
    DeduplicateInitializersPass(size_limit=1 << 62)(program.model)
    program.model.metadata_props.update({MAX_SEQ_LEN_KEY: str(graph.max_seq_len), GRAPH_KIND_KEY: graph.kind})
    path.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(path))


def tree_graph(graph: TargetGraph | DraftStepGraph) -> TargetTreeGraph | DraftStepTreeGraph:
    """The token-tree forward of a target graph or a draft step graph (same weights)."""
    if isinstance(graph, DraftStepGraph):
        return DraftStepTreeGraph(graph.draft, graph.input.tokens_per_item).eval()
    return TargetTreeGraph(graph.target).eval()


def export_graphs(graphs: dict[object, TargetGraph | DraftGraph | DraftStepGraph], paths: dict[object, Path],
                  workers: int | None = None) -> None:
    """`export_graph` for each graph, to the path under the same key, each draft graph's unforced
    round beside it (`unforced_path`), and the token-tree forward of the target and of each draft
    step beside it (`tree_path`),
    in up to `workers` processes (default: one per CPU core this process may use).

    Exporting is mostly single-threaded Python (tracing, decomposition, the ONNX optimizer), so
    graphs exported side by side take about the time of the slowest one instead of their sum.
    """
    unforced = {(key, "unforced"): unforced_round(graph) for key, graph in graphs.items()
                if isinstance(graph, DraftGraph) and graph.room > 0}
    trees = {(key, "tree"): tree_graph(graph) for key, graph in graphs.items()
             if type(graph) in (TargetGraph, DraftStepGraph)}
    paths = paths | {key: unforced_path(paths[key[0]]) for key in unforced} | {key: tree_path(paths[key[0]]) for key in trees}
    graphs = graphs | unforced | trees
    workers = min(len(graphs), workers or len(os.sched_getaffinity(0)))
    if workers <= 1:
        for name, graph in graphs.items():
            export_graph(graph, paths[name])
        return
    # The draft graphs (k unrolled steps) take longest: they go first, so the target fills the gaps.
    order = sorted(graphs, key=lambda name: graphs[name].kind.startswith("target"))
    # spawn: a forked torch (its thread pools, the caller's locks) is not safe to use
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=torch.set_num_threads, initargs=(1,)) as pool:
        for done in [pool.submit(export_graph, graphs[name], paths[name]) for name in order]:
            done.result()
