"""perf_analyzer, as set up by `make setup`, measures a model on a real server."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import pytest

from padrec.server import REPO_ROOT

pytestmark = pytest.mark.server

PERF_ANALYZER = REPO_ROOT / "perf" / "perf_analyzer"


def test_perf_analyzer_measures_echo(roundtrip_server, tmp_path: Path):
    report = tmp_path / "echo.csv"
    command = [
        PERF_ANALYZER, "-m", "echo", "-i", "grpc", "-u", roundtrip_server.grpc_url,
        "--shape", "FP32_IN:2,3", "--shape", "INT64_IN:2,3",
        "--concurrency-range", "1:1", "--measurement-interval", "500",
        # Windows count as stable within a factor of 2: the cores may be busy with other work.
        "--stability-percentage", "100",
        "-f", report,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    with report.open() as rows:
        (row,) = csv.DictReader(rows)
    assert int(row["Concurrency"]) == 1
    assert float(row["Inferences/Second"]) > 0
    assert 0 < int(row["p50 latency"]) <= int(row["p99 latency"])
    assert "Throughput:" in result.stdout
