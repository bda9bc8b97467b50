"""Trained models kept in git history instead of the checkout, and bringing them back.

The checkout carries what `make demo`, `make test` and the GPU benchmark need: the default
dataset's (Beauty's) models. The other datasets' checkpoints, about 100 MB, would push the checkout
over the 64 MiB that travels to a GPU machine, so they live in one commit of this repository's own
history, listed with their sha256 in artifacts/archived.json. `padrec restore-artifacts` reads them
back with `git show` (no network) into artifacts/, where .gitignore keeps them out of the checkout.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from padrec.config import ARTIFACTS_DIR, REPO_ROOT

MANIFEST = ARTIFACTS_DIR / "archived.json"


class ArchiveError(RuntimeError):
    """An archived file cannot be restored (no git history, a shallow clone, a changed file)."""


@dataclass(frozen=True)
class ArchivedFile:
    folder: str  # under artifacts/, e.g. "sports" or "shared-vocabulary/toys"
    name: str  # e.g. "target.pt"
    sha256: str
    size: int

    @property
    def repo_path(self) -> str:
        return f"artifacts/{self.folder}/{self.name}"


@dataclass(frozen=True)
class Archive:
    commit: str
    files: tuple[ArchivedFile, ...]

    @classmethod
    def load(cls, manifest: Path = MANIFEST) -> "Archive":
        record = json.loads(Path(manifest).read_text())
        files = tuple(ArchivedFile(folder, name, entry["sha256"], entry["bytes"])
                      for folder, entries in record["folders"].items() for name, entry in entries.items())
        return cls(record["commit"], files)

    @property
    def folders(self) -> list[str]:
        return list(dict.fromkeys(f.folder for f in self.files))

    def in_folder(self, folder: str) -> list[ArchivedFile]:
        return [f for f in self.files if f.folder == folder]


def restore_hint(path: Path, artifacts: Path = ARTIFACTS_DIR) -> str | None:
    """'restore it with ...' when `path` is an archived file not yet restored, else None."""
    try:
        folder = Path(path).parent.relative_to(artifacts).as_posix()
    except ValueError:
        return None
    if not MANIFEST.is_file() or not any(f.name == Path(path).name for f in Archive.load().in_folder(folder)):
        return None
    elsewhere = "" if Path(artifacts).resolve() == ARTIFACTS_DIR.resolve() else f" --artifacts {artifacts}"
    return f"it is archived in git history: restore it with `padrec restore-artifacts {folder}{elsewhere}`"


def _git_blob(commit: str, repo_path: str, repo: Path) -> bytes:
    run = subprocess.run(["git", "-C", str(repo), "show", f"{commit}:{repo_path}"], capture_output=True)
    if run.returncode != 0:
        reason = run.stderr.decode(errors="replace").strip()
        raise ArchiveError(f"cannot read {repo_path} from commit {commit[:12]}: {reason}. The archive needs this "
                           "repository's full history (a shallow clone: `git fetch --unshallow`).")
    return run.stdout


def restore(file: ArchivedFile, commit: str, artifacts: Path = ARTIFACTS_DIR, repo: Path = REPO_ROOT) -> bool:
    """Write one archived file under `artifacts`, checked against its sha256; False if it was already there."""
    dest = Path(artifacts) / file.folder / file.name
    if dest.is_file() and hashlib.sha256(dest.read_bytes()).hexdigest() == file.sha256:
        return False
    blob = _git_blob(commit, file.repo_path, repo)
    if hashlib.sha256(blob).hexdigest() != file.sha256:
        raise ArchiveError(f"{file.repo_path} at {commit[:12]} does not match its sha256 in {MANIFEST.name}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    partial.write_bytes(blob)
    partial.replace(dest)  # a cut-off restore leaves no half-written checkpoint behind
    return True
