"""`padrec cluster` (what `make cluster N=2` runs): replicas on free ports, a client line that names
them all, a replica that dies started again on its ports, and Ctrl-C leaving nothing behind.

The cheap `roundtrip` fixture repository stands in for the recommender: what is tested here is the
supervision, not the models.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from padrec_client import RecommendClient

pytestmark = pytest.mark.server

PADREC = Path(sys.executable).parent / "padrec"
START_TIMEOUT_S = 240
REPLICA_LINE = re.compile(r"  replica (\d+): gRPC (\S+)  HTTP (\S+)  metrics \S+  \(pid (\d+), log")


def ready(http_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{http_url}/v2/health/ready", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def processes_mentioning(text: str) -> int:
    count = 0
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            count += text in cmdline.read_bytes().decode(errors="replace")
        except OSError:
            continue
    return count


def test_cluster_serves_restarts_a_dead_replica_and_stops_cleanly(private_repository, tmp_path):
    repository = private_repository("roundtrip")
    launcher = subprocess.Popen(
        [PADREC, "cluster", "--replicas", "2", "--model-repository", repository, "--log-dir", tmp_path],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        replicas, client_line = {}, None
        for line in launcher.stdout:
            if match := REPLICA_LINE.match(line):
                replicas[int(match[1])] = (match[2], match[3], int(match[4]))
            if "padrec-client recommend --url" in line:
                client_line = line
            if line.startswith("Ctrl-C"):
                break
        assert len(replicas) == 2, launcher.stderr.read()
        grpc_urls = [replicas[i][0] for i in range(2)]
        assert f"--url {','.join(grpc_urls)}" in client_line
        assert all(ready(http) for _, http, _ in replicas.values())
        with RecommendClient(grpc_urls) as client:
            assert client.check_health() == dict.fromkeys(grpc_urls, True)

        stderr_lines: list[str] = []
        reader = threading.Thread(target=lambda: stderr_lines.extend(launcher.stderr), daemon=True)
        reader.start()
        os.killpg(replicas[0][2], signal.SIGKILL)  # replica 0 crashes, stubs and all
        restarted = f"replica 0 restarted on {grpc_urls[0]}"
        deadline = time.monotonic() + START_TIMEOUT_S
        while not any(restarted in line for line in stderr_lines):
            assert time.monotonic() < deadline and launcher.poll() is None, f"not restarted: {stderr_lines}"
            time.sleep(0.5)
        assert ready(replicas[0][1])
        launcher.send_signal(signal.SIGINT)
        assert launcher.wait(timeout=START_TIMEOUT_S) == 0
        reader.join(10)
        stderr = "".join(stderr_lines)
        assert f"replica 0 ({grpc_urls[0]}) ended: killed by SIGKILL" in stderr
        assert "Traceback" not in stderr
        assert processes_mentioning(str(repository)) == 0
    finally:
        launcher.kill()
        launcher.wait()


def test_cluster_refuses_zero_replicas(tmp_path):
    done = subprocess.run([PADREC, "cluster", "--replicas", "0", "--log-dir", tmp_path], capture_output=True, text=True)
    assert done.returncode == 2
    assert "--replicas must be at least 1" in done.stderr
