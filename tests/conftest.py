"""Shared fixtures: real Triton servers on free loopback ports, always stopped afterwards."""

from __future__ import annotations

import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from padrec.server import ServerConfig, TritonServer

MODEL_REPOSITORIES = Path(__file__).parent / "fixtures" / "model_repositories"


def pytest_configure(config: pytest.Config) -> None:
    # A CI time-out or `kill` sends SIGTERM: taking Ctrl-C's path lets fixture teardown stop servers.
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def loopback_config(repository: Path, log_dir: Path, **overrides: object) -> ServerConfig:
    """A server on 127.0.0.1 with free ports, logging into log_dir."""
    return ServerConfig(
        model_repository=repository,
        http_port=0,
        grpc_port=0,
        metrics_port=0,
        log_path=log_dir / "tritonserver.log",
        **overrides,
    )


@pytest.fixture
def start_triton(tmp_path: Path) -> Iterator[Callable[..., TritonServer]]:
    """Factory: `start_triton(repository, **config_overrides)` returns a ready server.

    Every server it started is stopped when the test ends, whether it passed or failed.
    """
    servers: list[TritonServer] = []

    def start(repository: Path, **overrides: object) -> TritonServer:
        server = TritonServer(loopback_config(repository, tmp_path / f"server-{len(servers)}", **overrides))
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def roundtrip_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """One server for the whole session on the `echo` / `bls_echo` repository."""
    config = loopback_config(MODEL_REPOSITORIES / "roundtrip", tmp_path_factory.mktemp("roundtrip-server"))
    with TritonServer(config) as server:
        yield server


@pytest.fixture
def private_repository(tmp_path: Path) -> Callable[[str], Path]:
    """Copies a fixture repository, by name, to a path that only this test's processes mention."""

    def copy(name: str) -> Path:
        return Path(shutil.copytree(MODEL_REPOSITORIES / name, tmp_path / f"repository-{name}"))

    return copy
