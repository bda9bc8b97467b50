"""`padrec` subcommands: each module has `add_arguments(parser)` and `run(args) -> int`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from padrec.artifacts import Prepared
    from padrec.decoding.constraints import ItemTrie
    from padrec.models.draft import Draft
    from padrec.models.target import Target


def add_report_arguments(parser) -> None:
    """`--artifacts`, `--json`, `--out` and `--quiet`: where a report command reads models, where its
    report goes (what `emit_report` takes), and whether it shows progress bars."""
    from padrec.config import ARTIFACTS_DIR

    parser.add_argument("--artifacts", type=Path, default=ARTIFACTS_DIR)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--out", type=Path, help="also write the JSON report here")
    # Bars go to stderr, so they stay on with --json: the report on stdout is unaffected, and a
    # half-hour run is not silent.
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def add_prior_argument(parser) -> None:
    """`--prefix-size-penalty`: the beta of the trie's prefix-size prior (`DecodeConfig`); read it
    with `prefix_size_penalty(args, data)`."""
    parser.add_argument("--prefix-size-penalty", type=float, metavar="BETA",
                        help="lower each code token's score by BETA x log(items below its prefix) (default: the "
                             "dataset's decoding.json from `padrec tune-prior`, else 0 = the target's own distribution)")


def prefix_size_penalty(args, data) -> float:
    """The BETA a command decodes with: `--prefix-size-penalty` if given, else the dataset's default."""
    return data.decode.prefix_size_penalty if args.prefix_size_penalty is None else args.prefix_size_penalty


def emit_report(report: dict, out: Path | None, as_json: bool) -> None:
    """Write a command's JSON report to `out` (if given) and print it when asked for JSON."""
    text = json.dumps(report, indent=1)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    if as_json:
        print(text)


def missing_checkpoint(what: str, path: Path, train_command: str) -> None:
    """Say on stderr that a checkpoint is missing, and how to get it: restore it where it is archived
    in git history (padrec/archive.py), else the `padrec` command that trains it."""
    from padrec.archive import restore_hint

    print(f"error: no {what} at {path} ({restore_hint(path) or f'run `padrec {train_command}`'})", file=sys.stderr)


def has_target(data: Prepared) -> bool:
    """Whether the prepared dataset has a trained target; if not, say so with the command that brings it."""
    if data.paths.target.is_file():
        return True
    missing_checkpoint("target", data.paths.target, f"train-target --dataset {data.name}")
    return False


class Models(NamedTuple):
    """What a decoding report command works with: the prepared dataset, its target, the drafts asked
    for, and the trie at the BETA the command decodes with."""

    data: Prepared
    target: Target
    drafts: dict[str, Draft]  # by drafter name
    trie: ItemTrie


def load_models(args, drafter_names: str) -> Models | None:
    """Set torch's threads to `args.threads` and load `args.dataset`'s target and the drafts named
    (comma-separated); None after printing which model is missing and the command that trains it."""
    import torch

    from padrec.artifacts import load_prepared
    from padrec.config import DRAFTERS
    from padrec.decoding.constraints import ItemTrie
    from padrec.models.draft import Draft
    from padrec.models.target import Target

    torch.set_num_threads(args.threads)
    data = load_prepared(args.dataset, args.artifacts)
    if not has_target(data):
        return None
    drafts = {}
    for name in drafter_names.split(","):
        path = data.paths.draft(name)
        if name not in DRAFTERS or not path.is_file():
            missing_checkpoint(f"{name!r} draft", path, f"train-draft --dataset {args.dataset} --drafter {name}")
            return None
        drafts[name] = Draft.load(path)
    return Models(data, Target.load(data.paths.target), drafts, ItemTrie(data.sids, prefix_size_penalty(args, data)))
