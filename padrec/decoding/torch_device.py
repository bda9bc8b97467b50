"""Moving arrays between the engine (numpy, on the host) and a torch host's models (CPU or GPU)."""

from __future__ import annotations

import numpy as np
import torch


def on_device(array: np.ndarray, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A host array as a tensor on `device` (in `dtype` if given; no copy on the CPU when it already matches)."""
    tensor = torch.from_numpy(array)
    return tensor.to(device=device, dtype=dtype or tensor.dtype)


def to_host(tensor: torch.Tensor) -> np.ndarray:
    """A float32 host array of a model output (no copy for a float32 CPU tensor); from a GPU this is
    where the host waits for the device."""
    return tensor.float().cpu().numpy()
