"""`padrec` subcommands: each module has `add_arguments(parser)` and `run(args) -> int`."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def add_report_arguments(parser) -> None:
    """`--artifacts`, `--json` and `--out`: where a report command reads models, and where its
    report goes (what `emit_report` takes)."""
    from padrec.config import ARTIFACTS_DIR

    parser.add_argument("--artifacts", type=Path, default=ARTIFACTS_DIR)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", type=Path, help="also write the JSON report here")


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


def load_drafts(data, names: str, dataset: str) -> dict | None:
    """The trained drafts named (comma-separated) for a prepared dataset, or None after printing
    which one is missing and the command that trains it."""
    from padrec.config import DRAFTERS
    from padrec.models.draft import Draft

    drafts = {}
    for name in names.split(","):
        path = data.paths.draft(name)
        if name not in DRAFTERS or not path.is_file():
            print(f"error: no {name!r} draft at {path} (run `padrec train-draft --dataset {dataset} "
                  f"--drafter {name}`)", file=sys.stderr)
            return None
        drafts[name] = Draft.load(path)
    return drafts
