"""`padrec serve` and `TritonServer`: one clear line for each start-up failure, and a stop that
leaves no server or stub process behind.

Each test serves its own copy of a fixture repository, so the processes it started are the ones
whose command line names that copy.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from padrec.server import ServerError

PADREC = Path(sys.executable).parent / "padrec"
START_TIMEOUT_S = 240  # the launcher's own ready time-out (180 s) comes first
TRACEBACK = "Traceback (most recent call last)"


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes containing text: a server and its stubs name their repository."""
    found = []
    for cmdline_file in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            cmdline = cmdline_file.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # the process exited while we looked
        if text in cmdline:
            found.append(cmdline)
    return found


def serve(*args: object, timeout: float = START_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """Run `padrec serve` to completion: for the cases where it must give up."""
    command = [PADREC, "serve", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def free_ports_args() -> list[str]:
    return ["--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"]


def test_missing_repository_is_one_line(tmp_path):
    result = serve("--model-repository", tmp_path / "absent")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"padrec serve: error: model repository {tmp_path / 'absent'} does not exist or is not a directory"
    ]


def test_port_in_use_is_refused_before_launch(private_repository):
    repository = private_repository("roundtrip")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = serve("--model-repository", repository, *free_ports_args(), "--grpc-port", port)
        assert result.returncode == 1
        expected = f"padrec serve: error: grpc port {port} on 127.0.0.1 is already in use"
        assert result.stderr.splitlines() == [expected]
    assert processes_mentioning(str(repository)) == []


@pytest.mark.server
def test_server_dying_at_start_up_shows_its_log(private_repository):
    repository = private_repository("broken")
    result = serve("--model-repository", repository, *free_ports_args())
    assert result.returncode == 1
    first_line, *log_lines = result.stderr.splitlines()
    assert first_line.startswith("padrec serve: error: tritonserver ended during start-up: exit code 1 (log ")
    assert any("raises_at_import: this model fails on purpose" in line for line in log_lines)
    assert TRACEBACK not in result.stderr
    assert processes_mentioning(str(repository)) == []


@pytest.mark.server
def test_api_raises_server_error_when_start_up_fails(start_triton, private_repository):
    with pytest.raises(ServerError, match="during start-up"):
        start_triton(private_repository("broken"))


@pytest.mark.server
def test_stop_leaves_no_process(start_triton, private_repository):
    repository = private_repository("roundtrip")
    server = start_triton(repository)
    # The server and one stub per model instance (echo, bls_echo).
    assert len(processes_mentioning(str(repository))) == 3
    assert server.stop() == 0
    assert processes_mentioning(str(repository)) == []


@pytest.mark.server
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_serve_stops_cleanly_on_signal(private_repository, stop_signal):
    repository = private_repository("roundtrip")
    launcher = subprocess.Popen(
        [PADREC, "serve", "--model-repository", repository, *free_ports_args()],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Endpoints come as `  <name>  <address>` lines; the last line says how to stop.
        endpoints = {}
        for line in launcher.stdout:
            if line.startswith("Ctrl-C"):
                break
            if line.startswith("  "):
                name, address = line.split()
                endpoints[name] = address
        assert set(endpoints) == {"gRPC", "HTTP", "metrics", "log"}, launcher.stderr.read()
        with urllib.request.urlopen(f"{endpoints['HTTP']}/v2/health/ready", timeout=5) as response:
            assert response.status == 200
        launcher.send_signal(stop_signal)
        assert launcher.wait(timeout=START_TIMEOUT_S) == 0
        assert TRACEBACK not in launcher.stderr.read()
        assert processes_mentioning(str(repository)) == []
    finally:
        launcher.kill()
        launcher.wait()
