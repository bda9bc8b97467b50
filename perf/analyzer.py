"""perf_analyzer: the command for a run, running it, and reading what it writes.

Each run sends exactly `spec.requests` requests (`--request-count`), so its duration is set by the
request count rather than by perf_analyzer's stability search, which rarely settles on cores
shared with other work. It writes a CSV (`-f`: throughput and latency percentiles) and a profile
export (per request: timestamps and the response outputs, so TAU, ROUNDS, DRAFTED, ACCEPTED).
"""

from __future__ import annotations

import csv
import json
import shlex
import subprocess
import tempfile
from pathlib import Path

from padrec.server import REPO_ROOT
from perf.plan import RunSpec

PERF_ANALYZER = REPO_ROOT / "perf" / "perf_analyzer"
NS_PER_MS = 1e6
US_PER_MS = 1e3
# Per-request outputs of `recommend` (running totals in each `recommend_stream` response).
STAT_OUTPUTS = ("TAU", "ROUNDS", "DRAFTED", "ACCEPTED")
PERCENTILES = (50, 90, 95, 99)
OUTPUT_HEAD_CHARS = 2000


class AnalyzerError(RuntimeError):
    """perf_analyzer failed; the message ends with the start of its output."""


def command(spec: RunSpec, grpc_url: str, input_data: Path, csv_path: Path, profile_path: Path) -> list[str]:
    """The perf_analyzer command line of one run."""
    args = [str(PERF_ANALYZER), "-m", spec.model, "-i", "grpc", "-u", grpc_url,
            "--input-data", str(input_data),
            "--concurrency-range", f"{spec.concurrency}:{spec.concurrency}",
            "--request-count", str(spec.requests),
            "-f", str(csv_path), "--profile-export-file", str(profile_path)]
    if spec.streaming:
        args.append("--streaming")
    for name, value, kind in spec.parameters():
        args += ["--request-parameter", f"{name}:{value}:{kind}"]
    return args


def run(spec: RunSpec, grpc_url: str, input_data: Path, workdir: Path, timeout_s: float) -> dict:
    """Run perf_analyzer once; its command line, parsed CSV row and per-request records."""
    # perf_analyzer refuses a profile export path that exists: a fresh folder per invocation
    folder = Path(tempfile.mkdtemp(prefix=f"{spec.model}-c{spec.concurrency}-", dir=workdir))
    csv_path, profile_path = folder / "report.csv", folder / "profile.json"
    args = command(spec, grpc_url, input_data, csv_path, profile_path)
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise AnalyzerError(f"perf_analyzer did not finish within {timeout_s:.0f} s: {spec.label}") from None
    if done.returncode != 0:
        # on bad arguments it prints the error first, then its whole usage text
        output = (done.stderr + done.stdout)[:OUTPUT_HEAD_CHARS]
        raise AnalyzerError(f"perf_analyzer exited with {done.returncode} on {spec.label}:\n{output}")
    list_responses = spec.top_n if spec.streaming else 1
    return {"command": shlex.join(args), "csv": parse_csv(csv_path),
            "requests": parse_profile(profile_path, list_responses)}


def parse_csv(path: Path) -> dict[str, float]:
    """The one row perf_analyzer's `-f` CSV has for a single concurrency, every column as a number
    (latency columns are microseconds)."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if len(rows) != 1:
        raise AnalyzerError(f"{path}: expected one measurement row, found {len(rows)}")
    return {column: float(value) for column, value in rows[0].items()}


def latency_summary(row: dict[str, float]) -> dict[str, float]:
    """Throughput (requests/s) and latency percentiles (ms) from a parsed CSV row."""
    summary = {"throughput": row["Inferences/Second"]}
    summary.update({f"p{p}_ms": row[f"p{p} latency"] / US_PER_MS for p in PERCENTILES})
    return summary


def parse_profile(path: Path, list_responses: int) -> dict[str, list[float]]:
    """Per request, in the order sent: latency to the first response and to the one completing its
    list (ms), and the decoding stats that response carries.

    `list_responses` is 1 for `recommend`; for `recommend_stream` it is top_n, one response per item.
    A stream's final empty response is not used: perf_analyzer records garbage as its outputs.
    """
    (experiment,) = json.loads(path.read_text())["experiments"]
    records: dict[str, list[float]] = {"latency_ms": [], "first_response_ms": [],
                                       **{name.lower(): [] for name in STAT_OUTPUTS}}
    for request in experiment["requests"]:
        sent, received = request["timestamp"], request["response_timestamps"]
        if len(received) < list_responses:
            raise AnalyzerError(f"{path}: a request got {len(received)} responses, expected {list_responses}")
        records["latency_ms"].append(round((received[list_responses - 1] - sent) / NS_PER_MS, 3))
        records["first_response_ms"].append(round((received[0] - sent) / NS_PER_MS, 3))
        stats = request["response_outputs"][list_responses - 1]
        for name in STAT_OUTPUTS:
            records[name.lower()].append(round(float(stats[name]), 4))
    return records
