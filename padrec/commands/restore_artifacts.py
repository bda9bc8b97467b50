"""`padrec restore-artifacts`: bring back the trained models archived in git history (padrec/archive.py).

    padrec restore-artifacts                 list what is archived, and what is restored already
    padrec restore-artifacts sports toys     restore those folders' checkpoints under artifacts/
    padrec restore-artifacts --all           restore everything (about 100 MB; `make artifacts`)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from padrec.archive import Archive, ArchiveError, restore
from padrec.config import ARTIFACTS_DIR


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folders", nargs="*", metavar="FOLDER",
                        help="archived folders under artifacts/ (e.g. sports, shared-vocabulary/toys); none: list them")
    parser.add_argument("--all", action="store_true", help="restore every archived folder")
    parser.add_argument("--artifacts", type=Path, default=ARTIFACTS_DIR, help="where restored files go")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    archive = Archive.load()
    if not args.folders and not args.all:
        for folder in archive.folders:
            files = archive.in_folder(folder)
            present = sum((args.artifacts / folder / f.name).is_file() for f in files)
            print(f"{folder:26s} {sum(f.size for f in files) / 1e6:6.1f} MB  {len(files)} checkpoints, "
                  f"{present} present")
        print(f"archived at commit {archive.commit[:12]}; restore with `padrec restore-artifacts FOLDER...` or --all")
        return 0
    unknown = sorted(set(args.folders) - set(archive.folders))
    if unknown:
        print(f"error: not archived: {', '.join(unknown)} (archived: {', '.join(archive.folders)})", file=sys.stderr)
        return 2
    chosen = archive.folders if args.all else args.folders
    files = [f for folder in chosen for f in archive.in_folder(folder)]
    written = 0
    try:
        for file in tqdm(files, desc="restore", unit="file", disable=args.quiet):
            written += restore(file, archive.commit, args.artifacts)
    except ArchiveError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{written} restored, {len(files) - written} already present, under {args.artifacts}")
    return 0
