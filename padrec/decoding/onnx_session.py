"""What the ONNX Runtime hosts share: loading a graph, and the cache pool it reads from.

An exported graph describes itself: cache shapes come from its `past_k` input, the capacity from
the metadata export writes (`MAX_SEQ_LEN_KEY`). The caches are the same `KVCache` the torch hosts
use, rows addressed by the caller (a Triton model maps its sequence ids to rows).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from padrec.models.target import KVCache

MAX_SEQ_LEN_KEY = "padrec.max_seq_len"
GRAPH_KIND_KEY = "padrec.graph"  # which graph of padrec.export.graphs a file holds: its `kind`


def load_session(path: Path, threads: int = 1) -> ort.InferenceSession:
    """A CPU session over one graph, with `threads` intra-op threads and no inter-op parallelism."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def new_cache(session: ort.InferenceSession, rows: int) -> KVCache:
    """An empty cache pool of `rows` rows shaped for the session's `past_k` input [L, B, H, S, hd]."""
    shape = next(i.shape for i in session.get_inputs() if i.name == "past_k")
    capacity = int(session.get_modelmeta().custom_metadata_map[MAX_SEQ_LEN_KEY])
    return KVCache(shape[0], rows, shape[2], capacity, shape[4])


def cached_past(cache: KVCache, rows: torch.Tensor, start: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The cache's K/V of `rows` up to the longest start, as the contiguous arrays ORT reads.

    At prefill the length is 0: ORT runs these graphs on empty past tensors.
    """
    past_k, past_v = cache.view(rows, start)
    return np.ascontiguousarray(past_k.numpy()), np.ascontiguousarray(past_v.numpy())


def tree_path(path: Path) -> Path:
    """Where export writes the token-tree forward of the graph at `path` (`TargetTreeGraph` beside the
    target, `DraftStepTreeGraph` beside a draft step)."""
    return path.with_name(f"{path.stem}_tree{path.suffix}")
