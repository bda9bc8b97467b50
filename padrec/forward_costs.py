"""What one target forward and one draft step cost at batch 1, for target shapes of your choosing.

Speculation pays when a draft step is a small fraction of a target forward. At batch 1 on a CPU
both are bound by reading weights and by per-op overhead, so the ratio follows the number of
layers more than the parameter count: a deeper, narrower target of the same size costs more per
forward while its one-layer draft costs less. Weights are random (timing does not depend on them);
the models run as the offline hosts run them (`for_inference`, the draft's input from
`InferenceDraftInput`). The engine adds its own work per draft step (constraints, cache
bookkeeping), so in-engine ratios are lower than these raw ones.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from padrec.config import DraftConfig, ModelConfig
from padrec.models.draft import Draft
from padrec.models.inference import InferenceDraftInput, for_inference
from padrec.models.target import Target


def parse_shape(text: str) -> ModelConfig:
    """A target shape written `<d_model>x<n_layers>`, e.g. `256x8` (the default target)."""
    try:
        d_model, n_layers = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"a shape is <d_model>x<n_layers>, e.g. 256x8; got {text!r}") from None
    if n_layers < 1:
        raise ValueError(f"n_layers must be >= 1; got {text!r}")
    try:
        return ModelConfig(n_layers=n_layers).with_width(d_model)
    except ValueError as error:
        raise ValueError(f"{error} (shape {text!r})") from None


def _median_ms(call: Callable[[], object], calls: int) -> float:
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def _timed_calls(config: ModelConfig, vocab_size: int, num_slots: int, past: int,
                 verify_tokens: int) -> tuple[int, dict[str, Callable[[], object]]]:
    """The target's parameter count, and the three calls to time for its shape, each on a cache
    holding `past` positions."""
    model = Target(config, vocab_size)
    target = for_inference(model)
    draft = for_inference(Draft.from_target(DraftConfig(), target, num_slots))
    draft_input = InferenceDraftInput(draft, num_slots)
    lengths = torch.tensor([past])
    target_kv = [torch.randn(config.n_layers, 1, config.n_heads, past, config.head_dim) for _ in range(2)]
    draft_kv = [torch.randn(1, 1, config.n_heads, past, config.head_dim) for _ in range(2)]
    one, verify = torch.tensor([[5]]), torch.arange(5, 5 + verify_tokens)[None]
    feature = torch.randn(1, 1, config.d_model)
    return model.num_parameters(), {
        "target_ms": lambda: target(one, *target_kv, lengths),
        "verify_ms": lambda: target(verify, *target_kv, lengths),
        # as `TorchDraft` steps: the prepared input, no mask for one token of one row
        "draft_step_ms": lambda: draft.decode(draft_input(feature, one, lengths[:, None], 2), lengths[:, None], None,
                                               *draft_kv),
    }


@torch.inference_mode()
def forward_costs(shapes: list[ModelConfig], vocab_size: int, num_slots: int = 5, past: int = 60,
                  verify_tokens: int = 6, repeats: int = 5, calls: int = 40) -> list[dict]:
    """Per shape: parameters, the median ms of a one-token target forward, of a verification forward
    of `verify_tokens`, of a draft step, and target / draft. The shapes take turns `repeats` times
    (`calls` calls per turn), so a busy moment of the machine hits them all; a turn's median counts,
    and the median over turns is reported."""
    parameters, calls_by_shape = zip(*(_timed_calls(c, vocab_size, num_slots, past, verify_tokens) for c in shapes))
    for timed in calls_by_shape:  # warm-up: first calls allocate and pick kernels
        for call in timed.values():
            _median_ms(call, 3)
    turns: list[dict[str, list[float]]] = [{name: [] for name in timed} for timed in calls_by_shape]
    for _ in range(repeats):
        for timed, measured in zip(calls_by_shape, turns):
            for name, call in timed.items():
                measured[name].append(_median_ms(call, calls))
    rows = []
    for config, count, measured in zip(shapes, parameters, turns):
        row = {"shape": f"{config.d_model}x{config.n_layers}", "d_model": config.d_model,
               "n_layers": config.n_layers, "parameters": count,
               **{name: statistics.median(values) for name, values in measured.items()}}
        row["target_over_draft"] = row["target_ms"] / row["draft_step_ms"]
        rows.append(row)
    return rows
