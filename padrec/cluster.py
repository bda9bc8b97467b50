"""A local cluster: several real `tritonserver` replicas serving one model repository on free
ports, the way a Deployment's pods serve one repository behind a Service. The `padrec cluster`
command (`make cluster N=2`) and the failover test and benchmark use it.

Only the standard library is used here, as in `padrec.server`: `padrec --help` imports it.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

from padrec.server import ServerConfig, ServerError, TritonServer, stops_cleanly

SUPERVISE_INTERVAL_S = 1.0
# The first Beauty test user's history: the sample request the command prints.
SAMPLE_HISTORY = "1,2,3,4"


class LocalCluster:
    """`replicas` servers made from one config; ports left at 0 are chosen per replica.

    Use as a context manager, or call `start()` and `stop()`; like `TritonServer`, start it from a
    thread that outlives it.
    """

    def __init__(self, config: ServerConfig, replicas: int, log_dir: Path) -> None:
        if replicas < 1:
            raise ValueError(f"a cluster needs at least one replica, not {replicas}")
        self.config = config
        self.log_dir = log_dir
        self.servers = [self._server(index, config) for index in range(replicas)]
        self.restarts = [0] * replicas

    def _server(self, index: int, config: ServerConfig, restart: int = 0) -> TritonServer:
        suffix = f"-restart{restart}" if restart else ""
        return TritonServer(replace(config, log_path=self.log_dir / f"replica-{index}{suffix}.log"))

    @property
    def grpc_urls(self) -> list[str]:
        """Each replica's gRPC endpoint, in replica order."""
        return [server.grpc_url for server in self.servers]

    def start(self) -> LocalCluster:
        """Launches every replica, then waits for each: they load their models side by side."""
        try:
            for server in self.servers:
                server.launch()
            for server in self.servers:
                server.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def restart(self, index: int) -> TritonServer:
        """Starts replica `index` again on the ports it had (after it died or was killed), waits
        until it is ready, and returns it."""
        old = self.servers[index]
        old.stop()  # reaps a crashed process group; a no-op after kill()
        self.restarts[index] += 1
        self.servers[index] = self._server(index, old.config, self.restarts[index])
        return self.servers[index].start()

    def dead(self) -> dict[int, str]:
        """The replicas that have ended on their own, with how they ended."""
        return {index: report for index, server in enumerate(self.servers)
                if (report := server.exit_report()) is not None}

    def stop(self) -> None:
        """Stops every replica (each one's whole process group)."""
        for server in self.servers:
            server.stop()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# --- the `padrec cluster` command ----------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `padrec cluster`."""
    defaults = ServerConfig(model_repository=Path("model_repository"))
    parser.add_argument("--replicas", type=int, default=2, metavar="N", help="how many servers (default: %(default)s)")
    parser.add_argument("--model-repository", type=Path, default=defaults.model_repository,
                        help="the Triton model repository every replica serves (default: %(default)s)")
    parser.add_argument("--host", default=defaults.host, help="address every replica binds (default: %(default)s)")
    parser.add_argument("--log-dir", type=Path, default=Path(".cache/cluster"),
                        help="where the replicas' logs go (default: %(default)s)")
    parser.add_argument("--ready-timeout", type=float, default=defaults.ready_timeout_s,
                        help="seconds to wait for each replica to become ready (default: %(default)s)")
    parser.add_argument("--no-restart", dest="restart", action="store_false",
                        help="leave a replica that dies down (default: start it again on its ports)")


def run(args: argparse.Namespace) -> int:
    """Serve with `args.replicas` replicas until Ctrl-C or SIGTERM, restarting any that dies."""
    if args.replicas < 1:
        print(f"padrec cluster: error: --replicas must be at least 1, not {args.replicas}", file=sys.stderr)
        return 2
    config = ServerConfig(model_repository=args.model_repository, host=args.host, http_port=0, grpc_port=0,
                          metrics_port=0, ready_timeout_s=args.ready_timeout)
    args.log_dir.mkdir(parents=True, exist_ok=True)
    cluster = LocalCluster(config, args.replicas, args.log_dir.resolve())
    with stops_cleanly(cluster.stop):
        try:
            cluster.start()
            _print_cluster(cluster)
            while True:
                time.sleep(SUPERVISE_INTERVAL_S)
                for index, report in cluster.dead().items():
                    print(f"padrec cluster: replica {index} ({cluster.servers[index].grpc_url}) ended: {report}",
                          file=sys.stderr)
                    if not args.restart:
                        return 1
                    cluster.restart(index)
                    print(f"padrec cluster: replica {index} restarted on {cluster.servers[index].grpc_url}",
                          file=sys.stderr, flush=True)
        except ServerError as error:
            print(f"padrec cluster: error: {error}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("padrec cluster: stopping the replicas", file=sys.stderr)
            return 0


def _print_cluster(cluster: LocalCluster) -> None:
    lines = [f"{len(cluster.servers)} tritonserver replicas ready, serving {cluster.config.model_repository}"]
    for index, server in enumerate(cluster.servers):
        lines.append(f"  replica {index}: gRPC {server.grpc_url}  HTTP {server.http_url}  "
                     f"metrics {server.metrics_url}  (pid {server.pid}, log {server.log_path})")
    urls = ",".join(cluster.grpc_urls)
    lines += ["Ask any of them, failing over between them:",
              f"  padrec-client recommend --url {urls} --history {SAMPLE_HISTORY}",
              f"  padrec-client health --url {urls}",
              "Ctrl-C stops them."]
    print("\n".join(lines), flush=True)
