"""The `padrec-client` command: recommendations from a running server, from the shell.

Exit status: 0 on success, 2 for an invalid argument (the command line's or, with its message on
stderr, the server's), 1 when the server is unavailable or anything else fails.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, TextIO

from . import __version__
from .errors import InvalidArgument, RecommendError, Unavailable
from .params import DRAFTERS, MODES
from .replicas import parse_endpoints
from .result import DecodeStats
from .retry import RetryPolicy
from .sync import RecommendClient

__all__ = ["main", "build_parser", "parse_history"]

PROG = "padrec-client"
EXIT_OK, EXIT_FAILURE, EXIT_INVALID = 0, 1, 2
HEADER = f"{'rank':>4}  {'item':<12} score"


def parse_history(text: str) -> list[str]:
    """Comma-separated item IDs, oldest first, as a list: 12,55,9 -> ["12", "55", "9"]."""
    items = [part.strip() for part in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise argparse.ArgumentTypeError(f"expected comma-separated item IDs like 12,55,9, got {text!r}")
    return items


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _timeout(text: str) -> float | None:
    value = float(text)
    return None if value <= 0 else value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; exposed for tests and documentation."""
    connection = argparse.ArgumentParser(add_help=False)
    group = connection.add_argument_group("connection")
    group.add_argument("--url", default="localhost:8001",
                       help="the server's gRPC endpoint HOST:PORT, or several replicas' comma-separated; "
                            "dns:///NAME:PORT stands for every address NAME resolves to (default: %(default)s)")
    group.add_argument("--timeout", type=_timeout, default=30.0,
                       help="deadline of the call in seconds, retries included; 0 = none (default: %(default)s)")
    group.add_argument("--retries", type=_positive_int, default=3, metavar="N",
                       help="attempts when the server is unavailable, the first included (default: %(default)s)")
    group.add_argument("--ssl", action="store_true", help="connect over TLS")
    group.add_argument("--root-certificates", metavar="PEM", help="CA certificates for TLS")
    group.add_argument("--private-key", metavar="PEM", help="client key for mutual TLS")
    group.add_argument("--certificate-chain", metavar="PEM", help="client certificate chain for mutual TLS")

    request = argparse.ArgumentParser(add_help=False)
    group = request.add_argument_group("request")
    group.add_argument("--history", type=parse_history, required=True,
                       help="the user's item IDs, oldest first, comma-separated: 12,55,9")
    group.add_argument("--top-n", type=int, default=10, help="how many items (default: %(default)s)")
    group.add_argument("--mode", choices=MODES,
                       help="list: one generated list (server default); beam: the top-N items by beam search")
    group.add_argument("--beam-width", type=int, metavar="B", help="beams of --mode beam (server default: 20)")
    group.add_argument("--draft-width", type=int, metavar="D",
                       help="--mode beam: prefixes the draft proposes per level (speculative, the same items); "
                            "0 = plain (server default)")
    group.add_argument("--drafter", choices=DRAFTERS, help="draft model (server default: padrec)")
    group.add_argument("--num-draft-tokens", type=int, metavar="K", help="draft tokens per round; 0 = plain decoding")
    group.add_argument("--tree-width", type=int, metavar="W",
                       help="draft a token tree K deep and W wide each round (greedy only; 0 = a chain)")
    group.add_argument("--tree-budget", type=int, metavar="N", help="verify the tree's N likeliest nodes (0 = all)")
    group.add_argument("--tree-slot-widths", metavar="LIST",
                       help="continuations per node at each within-item slot, e.g. 1,3,2,1,1 (default: W everywhere)")
    group.add_argument("--tree-min-prob", type=float, metavar="P",
                       help="draft no node whose path the draft gives less than P")
    group.add_argument("--temperature", type=float, metavar="T", help="sampling temperature; 0 = greedy")
    group.add_argument("--top-p", type=float, metavar="P", help="nucleus sampling mass, in (0, 1]")
    group.add_argument("--seed", type=int, metavar="S", help="sampling seed")
    group.add_argument("--include-history", action="store_true",
                       help="allow items of the history in the list (excluded by default)")
    group.add_argument("--json", action="store_true",
                       help="print JSON (stream: one JSON object per line) instead of a table")

    parser = argparse.ArgumentParser(prog=PROG, description="Ask a running padrec server for recommendations.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("recommend", parents=[connection, request], help="one user's list of items",
                        description="Print one user's recommended items with their scores.")
    commands.add_parser("stream", parents=[connection, request], help="the same list, printed as items arrive",
                        description="Print a user's recommended items one by one, as the server decides them.")
    ready = commands.add_parser("ready", parents=[connection], help="wait until the server is ready",
                                description="Wait until the server and the recommend models are ready.")
    ready.add_argument("--wait", type=float, default=60.0, metavar="S", help="seconds to wait (default: %(default)s)")
    commands.add_parser("metadata", parents=[connection], help="server and model metadata as JSON",
                        description="Print the server's and the recommend models' metadata as JSON.")
    commands.add_parser("health", parents=[connection], help="whether each replica is ready",
                        description="Ask every replica whether it is ready; exit 1 if any is not.")
    return parser


def _client(args: argparse.Namespace) -> RecommendClient:
    try:
        parse_endpoints(args.url)
    except ValueError as error:
        raise InvalidArgument(str(error)) from None
    return RecommendClient(
        args.url,
        ssl=args.ssl,
        root_certificates=args.root_certificates,
        private_key=args.private_key,
        certificate_chain=args.certificate_chain,
        timeout=args.timeout,
        retry=RetryPolicy(attempts=args.retries),
    )


def _request_params(args: argparse.Namespace) -> dict[str, Any]:
    # None leaves a parameter to the server's default.
    return {
        "mode": args.mode,
        "beam_width": args.beam_width,
        "draft_width": args.draft_width,
        "num_draft_tokens": args.num_draft_tokens,
        "tree_width": args.tree_width,
        "tree_budget": args.tree_budget,
        "tree_slot_widths": args.tree_slot_widths,
        "tree_min_prob": args.tree_min_prob,
        "drafter": args.drafter,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "seed": args.seed,
        "exclude_history": False if args.include_history else None,
    }


def _stats_line(stats: DecodeStats, truncated: bool, replica: str | None) -> str:
    line = f"rounds {stats.rounds}  drafted {stats.drafted}  accepted {stats.accepted}  tau {stats.tau:.2f}"
    line += f"  from {replica}" if replica else ""
    return line + ("  (history truncated to its most recent items)" if truncated else "")


def _recommend(client: RecommendClient, args: argparse.Namespace, out: TextIO) -> None:
    rec = client.recommend(args.history, args.top_n, **_request_params(args))
    if args.json:
        print(json.dumps(rec.to_dict()), file=out)
        return
    print(HEADER, file=out)
    for rank, (item, score) in enumerate(zip(rec.items, rec.scores), start=1):
        print(f"{rank:>4}  {item:<12} {score:.4f}", file=out)
    print(_stats_line(rec.stats, rec.history_truncated, rec.replica), file=out)


def _stream(client: RecommendClient, args: argparse.Namespace, out: TextIO) -> None:
    last = None
    for last in client.stream(args.history, args.top_n, **_request_params(args)):
        if args.json:
            print(json.dumps(last.to_dict()), file=out, flush=True)
            continue
        if last.rank == 0:
            print(HEADER, file=out)
        print(f"{last.rank + 1:>4}  {last.item:<12} {last.score:.4f}", file=out, flush=True)
    if last is not None and not args.json:
        print(_stats_line(last.stats, last.history_truncated, last.replica), file=out)


def _ready(client: RecommendClient, args: argparse.Namespace, out: TextIO) -> None:
    client.wait_until_ready(timeout=args.wait)
    print(f"{args.url} is ready", file=out)


def _metadata(client: RecommendClient, args: argparse.Namespace, out: TextIO) -> None:
    report = {
        "server": asdict(client.server_metadata()),
        "models": [asdict(client.model_metadata(name)) for name in (client.model, client.stream_model)],
    }
    print(json.dumps(report, indent=2), file=out)


def _health(client: RecommendClient, args: argparse.Namespace, out: TextIO) -> None:
    health = client.check_health(timeout=min(args.timeout or 5.0, 5.0))
    for url, ready in health.items():
        print(f"{url}  {'ready' if ready else 'NOT READY'}", file=out)
    down = [url for url, ready in health.items() if not ready]
    if down:
        raise Unavailable(f"{len(down)} of {len(health)} replicas not ready: {', '.join(down)}", status="UNAVAILABLE")


COMMANDS = {"recommend": _recommend, "stream": _stream, "ready": _ready, "metadata": _metadata, "health": _health}


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Runs the command line; returns the exit status (see the module's docstring)."""
    out = out or sys.stdout
    err = err or sys.stderr
    args = build_parser().parse_args(argv)
    try:
        with _client(args) as client:
            COMMANDS[args.command](client, args, out)
    except InvalidArgument as error:
        print(f"{PROG}: invalid argument: {error}", file=err)
        return EXIT_INVALID
    except RecommendError as error:
        kind = (error.status or "error").lower().replace("_", " ")
        tries = f" (after {error.attempts} attempts)" if error.attempts > 1 else ""
        print(f"{PROG}: {kind}: {error}{tries}", file=err)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
