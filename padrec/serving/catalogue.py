"""External item IDs <-> the model's internal item indices, with the checks a served request needs."""

from __future__ import annotations

import json
from pathlib import Path

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

    def to_ids(self, indices: list[int]) -> list[str]:
        return [self.item_ids[i] for i in indices]
