"""Start NVIDIA Triton Inference Server on a model repository: the `padrec serve` command and the
`TritonServer` class that tests and benchmarks use.

The server is a `tritonserver` found on PATH (as in NVIDIA's containers), else the one that
`make setup` unpacks from the nvidia-pytriton wheel. Python-backend models run in stub processes;
the launcher makes them use the Python (and so the numpy) of the environment running it.
Only the standard library is used here: `padrec --help` imports this module.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import filecmp
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

REPO_ROOT = Path(__file__).resolve().parent.parent
# Where `make setup` unpacks the nvidia-pytriton wheel when no tritonserver is on PATH.
DEFAULT_WHEEL_DIR = REPO_ROOT / ".cache" / "triton" / "wheel"
STUB_NAME = "triton_python_backend_stub"
# No GPU here: these keep the server from reserving CUDA/pinned memory and from probing GPU metrics.
CPU_FLAGS = (
    "--allow-gpu-metrics=false",
    "--pinned-memory-pool-byte-size=0",
    "--cuda-memory-pool-byte-size=0:0",
)
LOG_TAIL_LINES = 12
LOG_LINE_CHARS = 300  # a failed model's traceback arrives as one very long line
POLL_INTERVAL_S = 0.2
# Hosts that bind every interface; clients reach them through loopback.
WILDCARD_HOSTS = ("0.0.0.0", "")
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
# The Python backend's shared memory between server and stubs; a killed server leaves it behind.
SHM_REGION_PREFIX = "/dev/shm/triton_python_backend_shm_region_"


class ServerError(Exception):
    """The server could not be started. The first line of the message is meant for the user as is."""


@dataclass(frozen=True)
class ServerConfig:
    """Everything that decides how a server is launched. A port of 0 means: pick a free one."""

    model_repository: Path
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    model_control_mode: str = "none"
    wheel_dir: Path = DEFAULT_WHEEL_DIR
    # None: a file in a fresh temporary folder, kept after the server stops for post-mortems.
    log_path: Path | None = None
    # About 3 s on an idle machine; far longer while training competes for the two cores.
    ready_timeout_s: float = 180.0
    stop_timeout_s: float = 30.0
    extra_args: tuple[str, ...] = ()

    def ports(self) -> dict[str, int]:
        """The three ports by endpoint name."""
        return {"http": self.http_port, "grpc": self.grpc_port, "metrics": self.metrics_port}


@dataclass(frozen=True)
class TritonInstall:
    """A runnable server: its executable and, for the unpacked wheel, the backend directory to pass."""

    executable: Path
    backend_dir: Path | None  # None: the server's own default (a system install)


def find_triton(wheel_dir: Path = DEFAULT_WHEEL_DIR) -> TritonInstall:
    """The `tritonserver` on PATH if there is one, else the unpacked wheel's, with its stub in place."""
    on_path = shutil.which("tritonserver")
    if on_path:
        return TritonInstall(Path(on_path), None)
    server_root = wheel_dir / "pytriton" / "tritonserver"
    executable = server_root / "bin" / "tritonserver"
    if not executable.is_file():
        raise ServerError(f"no tritonserver on PATH and none unpacked at {executable}: run `make setup`")
    _install_stub(server_root)
    return TritonInstall(executable, server_root / "backends")


def _install_stub(server_root: Path) -> None:
    """Put the stub for the running Python beside the wheel's Python backend.

    Inside `backends/python/` the stub's relative RPATH finds the wheel's bundled libraries.
    """
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = server_root / "python_backend_stubs" / version / STUB_NAME
    if not stub.is_file():
        raise ServerError(f"the Triton wheel has no Python-backend stub for Python {version}")
    target = server_root / "backends" / "python" / STUB_NAME
    if target.is_file() and filecmp.cmp(stub, target, shallow=False):
        return
    # Copy then rename, so that a server starting concurrently never sees half a stub.
    partial = target.with_name(f"{STUB_NAME}.{os.getpid()}.partial")
    shutil.copy2(stub, partial)
    os.replace(partial, target)


def server_environment() -> dict[str, str]:
    """The environment under which stubs run this Python's interpreter, libpython and packages."""
    env = dict(os.environ)
    # The stub looks up `python3` on PATH to find site-packages: it must be this environment's,
    # whose numpy is below 2 (numpy 2 makes this backend pass empty tensors).
    env["PATH"] = _prepend(str(Path(sys.executable).parent), env.get("PATH"))
    # The stub links libpython dynamically; take the one of the Python running us.
    env["LD_LIBRARY_PATH"] = _prepend(sysconfig.get_config_var("LIBDIR"), env.get("LD_LIBRARY_PATH"))
    return env


def _prepend(entry: str, search_path: str | None) -> str:
    return os.pathsep.join([entry, search_path]) if search_path else entry


def _client_host(host: str) -> str:
    return "127.0.0.1" if host in WILDCARD_HOSTS else host


def _check_port_free(host: str, port: int, name: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # The server binds with SO_REUSEADDR too: connections in TIME_WAIT do not block it.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise ServerError(f"{name} port {port} on {host} is already in use") from None
            raise ServerError(f"cannot bind {name} port {port} on {host}: {error.strerror}") from None


def _free_ports(host: str, count: int) -> list[int]:
    """Ports free right now; all probes stay open until the end so the ports are distinct."""
    probes = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for probe in probes:
            probe.bind((host, 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def _resolve_ports(config: ServerConfig) -> ServerConfig:
    """The config with every 0 port replaced by a free one, after checking the fixed ones are free."""
    ports = config.ports()
    fixed = [port for port in ports.values() if port]
    if len(set(fixed)) != len(fixed):
        raise ServerError(f"the HTTP, gRPC and metrics ports must differ, got {ports}")
    for name, port in ports.items():
        if port:
            _check_port_free(config.host, port, name)
    free = iter(_free_ports(config.host, sum(1 for port in ports.values() if not port)))
    chosen = {name: port or next(free) for name, port in ports.items()}
    return replace(config, http_port=chosen["http"], grpc_port=chosen["grpc"], metrics_port=chosen["metrics"])


def live_processes_in_group(pgid: int) -> list[int]:
    """Pids of the processes of a process group that are not zombies (Linux /proc)."""
    pids = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name in parentheses may contain spaces: split after its closing one.
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process exited while we looked
        state, group = fields[0], int(fields[2])
        if group == pgid and state != "Z":
            pids.append(int(stat_file.parent.name))
    return pids


def _shared_memory_regions(pids: list[int]) -> set[Path]:
    """The Python backend's /dev/shm regions that these processes have mapped."""
    regions = set()
    for pid in pids:
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
        except OSError:
            continue  # ended meanwhile
        for line in maps.splitlines():
            path = line.split(maxsplit=5)[-1] if line.count(" ") >= 5 else ""
            if path.startswith(SHM_REGION_PREFIX):
                regions.add(Path(path.removesuffix(" (deleted)")))
    return regions


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last telling lines of a server log, indented; the status tables and blank lines are skipped."""
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        return f"  (cannot read {path}: {error.strerror})"
    # The tables the server prints when it starts and stops fill the end of the log on a failure.
    telling = [
        line for line in text.splitlines()
        if not line.startswith(("|", "+")) and not line.rstrip().endswith("]") and line.strip()
    ]
    return "\n".join(f"  {line[:LOG_LINE_CHARS]}" for line in telling[-lines:])


class TritonServer:
    """One tritonserver process (and its stubs) in a process group of its own.

    Use as a context manager, or call `start()` and `stop()`. Start it from the main thread or a
    thread that outlives it: the server is told to exit when the launching thread exits.
    """

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def log_path(self) -> Path:
        """The file receiving the server's stdout and stderr."""
        if self.config.log_path is None:
            raise RuntimeError("the log path is chosen by start()")
        return self.config.log_path

    @property
    def grpc_url(self) -> str:
        """`host:port`, as `tritonclient.grpc` takes it."""
        return f"{_client_host(self.config.host)}:{self.config.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{_client_host(self.config.host)}:{self.config.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{_client_host(self.config.host)}:{self.config.metrics_port}/metrics"

    @property
    def pid(self) -> int:
        """The server's pid, which is also its process group's id."""
        if self._process is None:
            raise RuntimeError("the server is not running")
        return self._process.pid

    def command(self, install: TritonInstall) -> list[str]:
        """The tritonserver command line for this config."""
        cfg = self.config
        args = [
            str(install.executable),
            f"--model-repository={cfg.model_repository}",
            f"--model-control-mode={cfg.model_control_mode}",
            f"--http-address={cfg.host}",
            f"--http-port={cfg.http_port}",
            f"--grpc-address={cfg.host}",
            f"--grpc-port={cfg.grpc_port}",
            f"--metrics-address={cfg.host}",
            f"--metrics-port={cfg.metrics_port}",
            *CPU_FLAGS,
        ]
        if install.backend_dir is not None:
            args.append(f"--backend-directory={install.backend_dir}")
        return args + list(cfg.extra_args)

    def start(self) -> TritonServer:
        """Launch the server and return once it reports ready; raise ServerError otherwise."""
        return self.launch().wait_ready()

    def launch(self) -> TritonServer:
        """Start the server process and return at once; `wait_ready()` then waits for it. Several
        servers launched before waiting start side by side (a local cluster)."""
        if self._process is not None:
            raise RuntimeError("the server is already started")
        repository = self.config.model_repository.expanduser().resolve()
        if not repository.is_dir():
            raise ServerError(f"model repository {repository} does not exist or is not a directory")
        config = _resolve_ports(replace(self.config, model_repository=repository))
        if config.log_path is None:
            log_dir = Path(tempfile.mkdtemp(prefix="padrec-triton-"))
            config = replace(config, log_path=log_dir / "tritonserver.log")
        self.config = config
        install = find_triton(config.wheel_dir)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        # Resolved here, not in the forked child, where loading symbols could deadlock.
        prctl = ctypes.CDLL(None, use_errno=True).prctl
        try:
            self._process = subprocess.Popen(
                self.command(install),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=server_environment(),
                # Its own session: Ctrl-C reaches the launcher only, which then stops the whole group.
                start_new_session=True,
                # The kernel sends it SIGTERM if the launching thread dies without cleaning up
                # (SIGKILL, a CI time-out).
                preexec_fn=lambda: prctl(PR_SET_PDEATHSIG, signal.SIGTERM),
            )
        except OSError as error:
            self._log.close()
            raise ServerError(f"cannot run {install.executable}: {error.strerror}") from None
        return self

    def wait_ready(self) -> TritonServer:
        """Return once a launched server reports ready; stop it and raise ServerError if it ends or
        stays unready past the config's time-out."""
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.config.ready_timeout_s
        while not self._is_ready():
            ended = self.exit_report()
            if ended is not None:
                raise ServerError(f"tritonserver ended during start-up: {ended}")
            if time.monotonic() > deadline:
                raise ServerError(
                    f"tritonserver not ready after {self.config.ready_timeout_s:.0f} s "
                    f"(log {self.log_path}); its last lines:\n{log_tail(self.log_path)}"
                )
            time.sleep(POLL_INTERVAL_S)

    def exit_report(self) -> str | None:
        """None while the server runs (or was never started); once it has ended on its own, how
        (exit code or signal) and the last lines of its log."""
        returncode = None if self._process is None else self._process.poll()
        if returncode is None:
            return None
        how = f"killed by {signal.Signals(-returncode).name}" if returncode < 0 else f"exit code {returncode}"
        return f"{how} (log {self.log_path}); its last lines:\n{log_tail(self.log_path)}"

    def _is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=1) as response:
                return response.status == 200
        except (OSError, http.client.HTTPException):  # URLError and socket errors are OSErrors
            return False

    def wait(self) -> int:
        """Block until the server exits on its own; its exit code."""
        if self._process is None:
            raise RuntimeError("the server is not running")
        return self._process.wait()

    def stop(self) -> int | None:
        """Stop the server and every process of its group; its exit code (None if it was not running).

        The server alone gets SIGTERM so that it unloads its models and ends their stubs itself;
        whatever is left after the time-out gets SIGKILL.
        """
        if self._process is None:
            return None
        process, pgid = self._process, self._process.pid
        self._process = None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(self.config.stop_timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(pgid, signal.SIGKILL)
                process.wait()
        self._end_group(pgid)
        if self._log is not None:
            self._log.close()
        return process.returncode

    def kill(self) -> None:
        """SIGKILL the server and its stubs at once, as a crash or an evicted pod would end them:
        nothing unloads, clients in flight see their connections break. The shared-memory regions
        its stubs leave in /dev/shm are removed afterwards (a pod's would go with its container)."""
        if self._process is None:
            return
        process, self._process = self._process, None
        regions = _shared_memory_regions(live_processes_in_group(process.pid))
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
        self._end_group(process.pid)
        for region in regions:
            region.unlink(missing_ok=True)
        if self._log is not None:
            self._log.close()

    def _end_group(self, pgid: int) -> None:
        """Wait briefly for stubs to follow their server out, then kill any that remain."""
        deadline = time.monotonic() + self.config.stop_timeout_s
        while live_processes_in_group(pgid) and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL_S)
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # the group is empty, as it should be

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# --- the `padrec serve` command ------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `padrec serve`."""
    defaults = ServerConfig(model_repository=Path("model_repository"))
    parser.add_argument(
        "--model-repository", type=Path, default=defaults.model_repository,
        help="the Triton model repository to serve (default: %(default)s)",
    )
    parser.add_argument(
        "--host", default=defaults.host,
        help="address to bind, for example 0.0.0.0 for every interface (default: %(default)s)",
    )
    for name, port in defaults.ports().items():
        parser.add_argument(
            f"--{name}-port", type=int, default=port,
            help=f"{name} port, 0 picks a free one (default: %(default)s)",
        )
    parser.add_argument(
        "--model-control-mode", choices=("none", "poll", "explicit"), default=defaults.model_control_mode,
        help="how models are loaded (default: %(default)s, all at start-up)",
    )
    parser.add_argument("--log-file", type=Path, help="where the server log goes (default: a temporary file)")
    parser.add_argument(
        "--ready-timeout", type=float, default=defaults.ready_timeout_s,
        help="seconds to wait for the server to become ready (default: %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C or SIGTERM, then stop the server cleanly."""
    server = TritonServer(
        ServerConfig(
            model_repository=args.model_repository,
            host=args.host,
            http_port=args.http_port,
            grpc_port=args.grpc_port,
            metrics_port=args.metrics_port,
            model_control_mode=args.model_control_mode,
            log_path=args.log_file,
            ready_timeout_s=args.ready_timeout,
        )
    )
    with stops_cleanly(server.stop):
        try:
            server.start()
            _print_endpoints(server)
            returncode = server.wait()
            print(
                f"padrec serve: tritonserver exited on its own with code {returncode}; log {server.log_path}",
                file=sys.stderr,
            )
            return 1
        except ServerError as error:
            print(f"padrec serve: error: {error}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("padrec serve: stopping tritonserver", file=sys.stderr)
            return 0


@contextmanager
def stops_cleanly(stop: Callable[[], object]) -> Iterator[None]:
    """Runs the block with Ctrl-C and SIGTERM raising KeyboardInterrupt (even where SIGINT came
    in ignored, as in a background job of a script), then `stop()` with both ignored, so that a
    second Ctrl-C cannot cut the shutdown short and leave stubs behind."""
    previous_handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous_handlers:
        signal.signal(sig, signal.default_int_handler)
    try:
        yield
    finally:
        for sig in previous_handlers:
            signal.signal(sig, signal.SIG_IGN)
        stop()
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)


def _print_endpoints(server: TritonServer) -> None:
    print(
        f"tritonserver ready (pid {server.pid}) serving {server.config.model_repository}\n"
        f"  gRPC     {server.grpc_url}\n"
        f"  HTTP     {server.http_url}\n"
        f"  metrics  {server.metrics_url}\n"
        f"  log      {server.log_path}\n"
        "Ctrl-C stops it.",
        flush=True,
    )
