"""External item IDs <-> the model's internal item indices, with the checks a served request needs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from padrec.decoding.interfaces import InvalidRequest


class ItemCatalogue:
    """The served dataset's items: `item_ids[i]` is the external ID of internal item i."""

    def __init__(self, item_ids: list[str]):
        self.item_ids = [str(i) for i in item_ids]
        self.index = {item: i for i, item in enumerate(self.item_ids)}

    @classmethod
    def load(cls, path: Path) -> ItemCatalogue:
        return cls(json.loads(Path(path).read_text()))

    def to_indices(self, history: list[str], max_history: int) -> tuple[list[int], bool]:
        """Internal indices of the last `max_history` items, and whether older ones were cut off.

        Every item is checked, the cut ones too: an unknown ID is a client error wherever it is.
        """
        if not history:
            raise InvalidRequest("history is empty: send at least one item ID")
        unknown = [item for item in history if item not in self.index]
        if unknown:
            shown = ", ".join(repr(item) for item in unknown[:5])
            raise InvalidRequest(f"unknown item IDs in history: {shown}"
                                 + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""))
        indices = [self.index[item] for item in history]
        return indices[-max_history:], len(indices) > max_history

    def history_tensor_to_indices(self, history: np.ndarray, max_history: int) -> tuple[list[int], bool]:
        """`to_indices` of a served HISTORY tensor: one history per request, shape [1, n], of
        strings (Triton's BYTES arrive as bytes objects)."""
        if history.ndim != 2 or history.shape[0] != 1:
            raise InvalidRequest(f"HISTORY must hold one history per request (shape [1, n]), got {list(history.shape)}")
        try:
            items = [item.decode() if isinstance(item, bytes) else str(item) for item in history[0]]
        except UnicodeDecodeError as error:
            raise InvalidRequest(f"HISTORY items must be UTF-8 strings: {error}") from None
        return self.to_indices(items, max_history)

    def to_ids(self, indices: list[int]) -> list[str]:
        return [self.item_ids[i] for i in indices]

    def ids_array(self, indices: np.ndarray) -> np.ndarray:
        """External IDs of an array of internal indices, as a served ITEM_IDS tensor: bytes objects
        (Triton's BYTES), same shape."""
        ids = [item.encode() for item in self.to_ids(indices.reshape(-1).tolist())]
        return np.array(ids, dtype=np.object_).reshape(indices.shape)
