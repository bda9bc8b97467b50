"""Static-shape calls of a torch host's models, replayed as CUDA graphs on a GPU.

At these model sizes a GPU forward is bound by kernel launches: a 12-layer target launches a few
hundred small kernels per call, each costing the host more than the device. A CUDA graph records
one call's kernels once and replays them with one launch, but only for fixed shapes and fixed
memory. So a graphed host pads each call to a *bucket*: the batch to the next power of two (the
padding rows point at a scratch cache row nobody reads), the new tokens likewise, and it reads
its cache over the whole capacity (masked by length) instead of up to the longest row. Each
bucket's first call captures its graph; later calls copy their inputs into the graph's input
tensors and replay it.

On a CPU there are no graphs: the same padded calls run eagerly, which is what the CPU tests
check (padding and full-capacity reads change no list). A capture that fails (an op that needs
the host mid-call) raises `GraphCaptureError` with the bucket's shapes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from padrec.models.target import KVCache


class GraphCaptureError(RuntimeError):
    """A call could not be captured as a CUDA graph."""


def bucket(n: int) -> int:
    """The padded size of a dimension of n: the next power of two."""
    return 1 << max(0, n - 1).bit_length()


def padded(array: np.ndarray, shape: tuple[int, ...], fill) -> np.ndarray:
    """`array` in the top-left corner of a `shape` array of `fill`."""
    out = np.full(shape, fill, dtype=array.dtype)
    out[tuple(slice(0, n) for n in array.shape)] = array
    return out


def cache_bucket(cache: KVCache, rows: np.ndarray, start: np.ndarray, new_tokens: int,
                 scratch_row: int) -> tuple[int, int, np.ndarray, np.ndarray]:
    """The static shape of a call writing `new_tokens` per row after each row's `start` in `cache`:
    (rows, new tokens) padded to their buckets (new tokens only as far as the cache's slack holds
    them), and rows and starts padded with the scratch row at position 0. ValueError when even the
    unpadded call would overrun the cache."""
    room = cache.k.shape[3] - int(start.max())
    if new_tokens > room:
        raise ValueError(f"KV cache full: {int(start.max()) + new_tokens} positions, capacity {cache.capacity}")
    batch = bucket(len(rows))
    return (batch, bucket(new_tokens) if bucket(new_tokens) <= room else new_tokens,
            padded(rows.astype(np.int64), (batch,), scratch_row), padded(start.astype(np.int64), (batch,), 0))


class GraphedCalls:
    """Calls `fn(**inputs)` (tensors in, a tuple of tensors out), one CUDA graph per key on a CUDA
    `device`, eagerly elsewhere. Outputs of a replay are the graph's own tensors: read them before
    the next call. `fn` may write state the graph owns (a KV cache): the first call of a key runs
    it twice, once to warm up and once replayed, so such writes must be idempotent (writing the
    same entries again), as cache writes past a row's length are."""

    def __init__(self, fn: Callable[..., tuple[torch.Tensor, ...]], device: torch.device):
        self.fn = fn
        self.capture = device.type == "cuda"
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, dict[str, torch.Tensor], tuple[torch.Tensor, ...]]] = {}

    def __call__(self, key: tuple, **inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if not self.capture:
            return self.fn(**inputs)
        if key not in self.graphs:
            self.graphs[key] = self._capture(key, inputs)
        graph, static_inputs, outputs = self.graphs[key]
        for name, value in inputs.items():
            static_inputs[name].copy_(value, non_blocking=True)
        graph.replay()
        return outputs

    def _capture(self, key: tuple, inputs: dict[str, torch.Tensor]):
        static_inputs = {name: value.clone() for name, value in inputs.items()}
        try:
            # kernels pick their workspaces on a first run, which a capture may not do
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self.fn(**static_inputs)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            # a memory pool of its own: graphs of different shapes replay in any order
            with torch.cuda.graph(graph):
                outputs = self.fn(**static_inputs)
        except RuntimeError as error:
            raise GraphCaptureError(f"no CUDA graph for shapes {key}: {error}") from error
        return graph, static_inputs, outputs

    @property
    def captured(self) -> int:
        """How many graphs have been captured."""
        return len(self.graphs)
