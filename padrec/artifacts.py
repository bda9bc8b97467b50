"""Where each dataset's derived files live, and loading a prepared dataset.

    artifacts/<dataset>/
        dataset.json        how to reload the raw data (built-in name or generic file paths)
        item_ids.json       internal item index -> external item id
        semantic_ids.npz    the item <-> token mapping
        semantic_ids.json   its statistics (collision rate, codebook usage)
        target.pt           the trained target (fp16 weights + config)
        target_train.json   training log of the committed target
        draft_<name>.pt     a trained draft (eagle, padrec, item-only, step-only) + its _train.json
        decoding.json       optional: the dataset's decoding defaults, chosen on validation lists
                            (`padrec tune-prior`), with the evidence they were chosen on

    The checkpoints (*.pt) of every dataset but the default one are archived in git history and
    restored on demand (padrec/archive.py, artifacts/archived.json).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, fields, replace
from pathlib import Path

from padrec.config import ARTIFACTS_DIR, DecodeConfig, SplitConfig
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

    @property
    def decoding(self) -> Path:
        return self.root / "decoding.json"

    def draft(self, name: str) -> Path:
        return self.root / f"draft_{name}.pt"


@dataclass
class Prepared:
    """A dataset ready for training and decoding."""

    name: str
    split: Split
    sids: SemanticIds
    paths: ArtifactPaths
    decode: DecodeConfig  # DecodeConfig with the dataset's decoding.json applied


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _unknown_settings(defaults: dict) -> list[str]:
    return sorted(set(defaults) - {f.name for f in fields(DecodeConfig)})


def decode_defaults(paths: ArtifactPaths) -> DecodeConfig:
    """`DecodeConfig` with the defaults a dataset's decoding.json chose (none: the class defaults).

    Warns when the target was replaced after the choice: the defaults were chosen for another model.
    """
    if not paths.decoding.is_file():
        return DecodeConfig()
    saved = json.loads(paths.decoding.read_text())
    if unknown := _unknown_settings(saved["defaults"]):
        raise DatasetError(f"{paths.decoding}: unknown decoding settings {unknown}")
    if paths.target.is_file() and saved.get("target_sha256") not in (None, file_sha256(paths.target)):
        warnings.warn(f"{paths.decoding} was chosen for another {paths.target.name}; "
                      f"choose again with `padrec tune-prior`", stacklevel=2)
    return replace(DecodeConfig(), **saved["defaults"])


def save_decode_defaults(paths: ArtifactPaths, defaults: dict, evidence: dict) -> None:
    """Write decoding.json: the chosen settings, the target they were chosen for, and the evidence."""
    if unknown := _unknown_settings(defaults):
        raise ValueError(f"unknown decoding settings {unknown}")
    record = {"defaults": defaults, "target_sha256": file_sha256(paths.target), "chosen_on": evidence}
    paths.decoding.write_text(json.dumps(record, indent=1) + "\n")


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
    return Prepared(name, split, SemanticIds.load(paths.semantic_ids), paths, decode_defaults(paths))
