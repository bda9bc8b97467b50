"""Where each dataset's derived files live, and loading a prepared dataset.

    artifacts/<dataset>/
        dataset.json        how to reload the raw data (built-in name or generic file paths)
        item_ids.json       internal item index -> external item id
        semantic_ids.npz    the item <-> token mapping
        semantic_ids.json   its statistics (collision rate, codebook usage)
        target.pt           the trained target (fp16 weights + config)
        target_train.json   training log of the committed target
        draft_<name>.pt     a trained draft (eagle, padrec, item-only, step-only) + its _train.json
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from padrec.config import ARTIFACTS_DIR, SplitConfig
from padrec.data.datasets import Dataset, DatasetError, load_builtin, load_generic
from padrec.data.split import Split, leave_one_out
from padrec.semantic_ids import SemanticIds


@dataclass(frozen=True)
class ArtifactPaths:
    root: Path

    @classmethod
    def for_dataset(cls, name: str, base: Path = ARTIFACTS_DIR) -> "ArtifactPaths":
        return cls(Path(base) / name)

    @property
    def dataset(self) -> Path:
        return self.root / "dataset.json"

    @property
    def item_ids(self) -> Path:
        return self.root / "item_ids.json"

    @property
    def semantic_ids(self) -> Path:
        return self.root / "semantic_ids.npz"

    @property
    def semantic_id_stats(self) -> Path:
        return self.root / "semantic_ids.json"

    @property
    def target(self) -> Path:
        return self.root / "target.pt"

    @property
    def target_log(self) -> Path:
        return self.root / "target_train.json"

    def draft(self, name: str) -> Path:
        return self.root / f"draft_{name}.pt"


@dataclass
class Prepared:
    """A dataset ready for training and decoding."""

    name: str
    split: Split
    sids: SemanticIds
    paths: ArtifactPaths


def dataset_source(paths: ArtifactPaths) -> dict:
    if not paths.dataset.is_file():
        raise DatasetError(
            f"dataset not prepared: {paths.dataset} is missing (run `padrec prepare --dataset NAME`)"
        )
    return json.loads(paths.dataset.read_text())


def load_raw(source: dict) -> Dataset:
    if source["kind"] == "builtin":
        return load_builtin(source["name"])
    return load_generic(source["name"], Path(source["interactions"]), source.get("item_text") and Path(source["item_text"]))


def load_prepared(name: str, base: Path = ARTIFACTS_DIR, split_config: SplitConfig = SplitConfig()) -> Prepared:
    """Reload raw data, split it, and attach the saved semantic IDs (checked for consistency)."""
    paths = ArtifactPaths.for_dataset(name, base)
    source = dataset_source(paths)
    split = leave_one_out(load_raw(source), split_config)
    saved_ids = json.loads(paths.item_ids.read_text())
    if saved_ids != split.item_ids:
        raise DatasetError(f"{paths.item_ids} does not match the raw data; run `padrec prepare` again")
    return Prepared(name, split, SemanticIds.load(paths.semantic_ids), paths)
