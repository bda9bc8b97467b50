"""perf_analyzer's input data: real test users' histories as variable-length BYTES tensors."""

from __future__ import annotations

import json
from pathlib import Path

INPUT_NAME = "HISTORY"


def test_histories(dataset: str, users: int) -> list[list[str]]:
    """The first `users` test users' histories (external item IDs, oldest first), as clients send them."""
    from padrec.artifacts import load_prepared  # loads the dataset: only when inputs are made

    split = load_prepared(dataset).split
    return [[split.item_ids[i] for i in example.history] for example in split.test[:users]]


def write_input_data(histories: list[list[str]], path: Path) -> Path:
    """perf_analyzer's JSON: one entry per request, each with its own shape (the batch dimension,
    1, is perf_analyzer's own and not part of it)."""
    if not histories or not all(histories):
        raise ValueError("every request needs a non-empty history")
    entries = [{INPUT_NAME: {"content": list(history), "shape": [len(history)]}} for history in histories]
    path.write_text(json.dumps({"data": entries}))
    return path
