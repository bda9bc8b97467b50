"""`padrec` subcommands: each module has `add_arguments(parser)` and `run(args) -> int`."""

from __future__ import annotations

import json
from pathlib import Path


def emit_report(report: dict, out: Path | None, as_json: bool) -> None:
    """Write a command's JSON report to `out` (if given) and print it when asked for JSON."""
    text = json.dumps(report, indent=1)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    if as_json:
        print(text)
