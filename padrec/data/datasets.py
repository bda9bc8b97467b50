"""Interaction datasets: user sequences in time order plus item text.

Built-in datasets read the files vendored under `data/raw/` (origins in `data/SOURCES.md`). Any other
dataset comes in the generic format, so a user needs no code to bring their own:

- interactions: a text file of lines `user item item ...` (time order), or a JSON object
  `{"user": ["item", ...]}`;
- item text (optional): a JSON object `{"item": {"title": ..., "any other field": ...}}`; every field
  is joined into the text that the sentence encoder embeds.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from padrec.config import RAW_DATA_DIR


class DatasetError(ValueError):
    """A dataset file is missing or malformed."""


@dataclass
class Dataset:
    """User sequences (external item ids, time order) and what is known about each item."""

    name: str
    sequences: dict[str, list[str]]
    item_text: dict[str, str] = field(default_factory=dict)
    item_attributes: dict[str, list[str]] = field(default_factory=dict)

    @property
    def items(self) -> list[str]:
        """Every item that occurs in a sequence, in first-seen order (stable across runs)."""
        seen: dict[str, None] = {}
        for seq in self.sequences.values():
            for item in seq:
                seen.setdefault(item, None)
        return list(seen)


def read_interactions(path: Path) -> dict[str, list[str]]:
    """Read `user item item ...` lines or a JSON `{user: [items]}` object."""
    if not path.is_file():
        raise DatasetError(f"interactions file not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json" or text.lstrip().startswith("{"):
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as err:
            raise DatasetError(f"{path}: not valid JSON ({err})") from None
        if not isinstance(raw, dict) or not all(isinstance(v, list) for v in raw.values()):
            raise DatasetError(f"{path}: expected a JSON object {{user: [items in time order]}}")
        return {str(u): [str(i) for i in items] for u, items in raw.items()}
    sequences: dict[str, list[str]] = {}
    for line_no, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise DatasetError(f"{path}:{line_no}: expected 'user item item ...', got {line!r}")
        sequences[parts[0]] = parts[1:]
    return sequences


def read_item_text(path: Path) -> dict[str, str]:
    """Read `{item: {field: value}}` and join each item's fields into one text."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise DatasetError(f"item text file {path}: {err}") from None
    if not isinstance(raw, dict):
        raise DatasetError(f"{path}: expected a JSON object {{item: {{title: ..., ...}}}}")
    texts = {}
    for item, fields in raw.items():
        if isinstance(fields, dict):
            texts[str(item)] = ". ".join(str(v) for v in fields.values() if v not in (None, ""))
        else:
            texts[str(item)] = str(fields)
    return texts


def load_generic(name: str, interactions: Path, item_text: Path | None = None) -> Dataset:
    """A dataset in the generic format (see the module docstring)."""
    sequences = read_interactions(Path(interactions))
    texts = read_item_text(Path(item_text)) if item_text else {}
    return Dataset(name=name, sequences=sequences, item_text=texts)


# --- built-in datasets ------------------------------------------------------------------------


def _amazon2014(folder: str, sequence_file: str, attribute_file: str | None) -> Callable[[], Dataset]:
    """Amazon 2014 5-core (S3Rec/P5 files): ids -> ASIN via datamaps, ASIN -> title-like phrase."""

    def load() -> Dataset:
        root = RAW_DATA_DIR / folder
        sequences = read_interactions(root / sequence_file)
        id2item = json.loads((root / "datamaps.json").read_text())["id2item"]
        phrases = {}
        for line in (root / "item_generative_indexing_phase_0.txt").read_text().splitlines():
            asin, _, phrase = line.partition(" ")
            phrases[asin] = phrase.strip()
        texts = {i: phrases.get(asin, "") for i, asin in id2item.items()}
        attributes = {}
        if attribute_file:
            raw = json.loads((root / attribute_file).read_text())
            attributes = {str(i): [str(a) for a in attrs] for i, attrs in raw.items()}
        return Dataset(folder, sequences, texts, attributes)

    return load


def _yelp() -> Dataset:
    root = RAW_DATA_DIR / "yelp"
    sequences = read_interactions(root / "Yelp.txt")
    raw = json.loads((root / "Yelp.item.json").read_text())
    # Yelp.item.json key k describes S3Rec item k + 1 (data/SOURCES.md).
    texts = {str(int(k) + 1): f"{v.get('title', '')}. {v.get('description', '')}" for k, v in raw.items()}
    return Dataset("yelp", sequences, texts)


def _ml100k() -> Dataset:
    root = RAW_DATA_DIR / "ml-100k"
    events: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    with open(root / "u.data", encoding="latin-1") as f:
        for row_no, (user, item, _rating, ts) in enumerate(csv.reader(f, delimiter="\t")):
            events[user].append((int(ts), row_no, item))  # row order breaks timestamp ties
    sequences = {u: [item for _, _, item in sorted(ev)] for u, ev in events.items()}
    genres = [line.split("|")[0] for line in (root / "u.genre").read_text().splitlines() if line]
    texts = {}
    with open(root / "u.item", encoding="latin-1") as f:
        for fields in csv.reader(f, delimiter="|"):
            flags = fields[5:]
            movie_genres = [g for g, flag in zip(genres, flags) if flag == "1"]
            texts[fields[0]] = f"{fields[1]}. Genres: {', '.join(movie_genres)}"
    return Dataset("ml-100k", sequences, texts)


BUILTIN: dict[str, Callable[[], Dataset]] = {
    "beauty": _amazon2014("beauty", "Beauty.txt", "Beauty_item2attributes.json"),
    "sports": _amazon2014("sports", "Sports_and_Outdoors.txt", "Sports_and_Outdoors_item2attributes.json"),
    # S3Rec's Toys ids cannot be mapped to ASINs; RDRec's sequential.txt is the same data in P5 ids.
    "toys": _amazon2014("toys", "sequential.txt", None),
    "yelp": _yelp,
    "ml-100k": _ml100k,
}


def load_builtin(name: str) -> Dataset:
    """One of the vendored datasets: beauty, sports, toys, yelp, ml-100k."""
    if name not in BUILTIN:
        raise DatasetError(f"unknown dataset {name!r}; built-in: {', '.join(BUILTIN)}")
    dataset = BUILTIN[name]()
    dataset.name = name
    return dataset
