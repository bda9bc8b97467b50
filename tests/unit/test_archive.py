"""The checkout stays small enough to travel to a GPU machine, and what it leaves out comes back intact."""

import dataclasses
import hashlib
import subprocess

import pytest

from padrec.archive import Archive, ArchiveError, restore, restore_hint
from padrec.cli import main
from padrec.config import ARTIFACTS_DIR, REPO_ROOT
from padrec.models.draft import Draft

TRAVEL_LIMIT = 64 * 2**20  # DEVELOPERS.md, "The GPU machine": what travels is at most 64 MiB


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True)


def _has_commit(commit: str) -> bool:
    return _git("cat-file", "-e", f"{commit}^{{commit}}").returncode == 0


def test_the_tracked_tree_fits_what_travels_with_room_to_spare():
    tracked = _git("ls-files", "-z").stdout.split("\0")
    size = sum((REPO_ROOT / path).stat().st_size for path in tracked if path and (REPO_ROOT / path).is_file())
    assert size < 0.75 * TRAVEL_LIMIT, f"tracked files are {size / 2**20:.1f} MiB"


def test_archived_checkpoints_are_neither_tracked_nor_travelling():
    archive = Archive.load()
    paths = [f.repo_path for f in archive.files]
    assert len(paths) == 20 and {"sports", "toys", "yelp", "ml-100k"} <= set(archive.folders)
    assert _git("ls-files", *paths).stdout == ""
    # ignored, so a restored copy never counts towards what travels
    assert sorted(_git("check-ignore", *paths).stdout.split()) == sorted(paths)
    # the default dataset's models stay in the checkout: `make demo` and `make test` need no restore
    assert not [f for f in archive.files if f.folder == "beauty"]


def test_a_restored_checkpoint_is_byte_identical_and_loads(tmp_path):
    archive = Archive.load()
    if not _has_commit(archive.commit):
        pytest.skip(f"this clone lacks commit {archive.commit[:12]} (shallow): restore needs full history")
    draft = next(f for f in archive.files if f.folder == "sports" and f.name == "draft_padrec.pt")
    assert restore(draft, archive.commit, tmp_path) is True
    written = tmp_path / "sports" / "draft_padrec.pt"
    assert hashlib.sha256(written.read_bytes()).hexdigest() == draft.sha256
    assert Draft.load(written).config.item_position  # a PAD-Rec draft, whole
    assert restore(draft, archive.commit, tmp_path) is False  # already there: nothing rewritten
    assert [p.name for p in (tmp_path / "sports").iterdir()] == ["draft_padrec.pt"]  # no .partial left


def test_a_changed_blob_or_a_missing_commit_is_refused_and_writes_nothing(tmp_path):
    archive = Archive.load()
    draft = next(f for f in archive.files if f.name.startswith("draft_"))
    if _has_commit(archive.commit):
        with pytest.raises(ArchiveError, match="does not match its sha256"):
            restore(dataclasses.replace(draft, sha256="0" * 64), archive.commit, tmp_path)
    with pytest.raises(ArchiveError, match="full history"):
        restore(draft, "f" * 40, tmp_path)
    assert not list(tmp_path.rglob("*.pt*"))


def test_a_missing_archived_checkpoint_says_how_to_restore_it(tmp_path):
    hint = restore_hint(ARTIFACTS_DIR / "sports" / "target.pt")
    assert hint and "padrec restore-artifacts sports`" in hint
    assert "--artifacts" in restore_hint(tmp_path / "shared-vocabulary" / "toys" / "target.pt", tmp_path)
    assert restore_hint(ARTIFACTS_DIR / "beauty" / "target.pt") is None  # never archived: train it
    assert restore_hint(ARTIFACTS_DIR / "sports" / "draft_item-only.pt") is None


def test_the_command_lists_the_archive_and_rejects_unknown_folders(capsys):
    assert main(["restore-artifacts"]) == 0
    listing = capsys.readouterr().out
    assert "shared-vocabulary/toys" in listing and "archived at commit" in listing
    assert main(["restore-artifacts", "nope", "--quiet"]) == 2
    assert "not archived: nope" in capsys.readouterr().err
