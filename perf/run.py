"""A benchmark run: input data from real test users, a server (started here or given), every planned
perf_analyzer run with the server's statistics around it, and the results as JSON.

The JSON is rewritten after every run, so an interrupted benchmark keeps what it measured.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import tritonclient.grpc as grpcclient

from padrec.server import ServerConfig, TritonServer
from perf import analyzer, machine, server_stats
from perf.breakdown import DECODE_MODELS
from perf.inputs import test_histories, write_input_data
from perf.plan import BATCH_MODEL, RunSpec, Settings, plan, warmups

RESULTS_FILE = "results.json"
# A run's perf_analyzer gets this long per measured request before it counts as hung.
TIMEOUT_PER_REQUEST_S = 30.0
TIMEOUT_MIN_S = 300.0


@dataclasses.dataclass(frozen=True)
class Endpoints:
    """Where a running server answers: gRPC `host:port` and the Prometheus metrics URL."""

    grpc_url: str
    metrics_url: str


def benchmark(settings: Settings, endpoints: Endpoints, out_dir: Path, command: str, note: str = "",
              log: Callable[[str], None] = print, extra: dict | None = None) -> dict:
    """Measure every run of `plan(settings)` against the server at `endpoints`; write and return the
    results. `note`: what the operator knows about the machine (other jobs running, ...); `extra`: more
    entries for the results' head (what was served, ...)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    client = grpcclient.InferenceServerClient(endpoints.grpc_url)
    results = {
        "command": command,
        "note": note,
        "started": _now(),
        "settings": dataclasses.asdict(settings),
        "machine": machine.describe(client.get_server_metadata(as_json=True)["version"],
                                    client.get_model_config(DECODE_MODELS[BATCH_MODEL], as_json=True)["config"]),
        "load_start": machine.load_average(),
        **(extra or {}),
        "runs": [],
    }
    specs = plan(settings)
    with tempfile.TemporaryDirectory(prefix="padrec-perf-") as work:
        workdir = Path(work)
        input_data = write_input_data(test_histories(settings.dataset, settings.users), workdir / "input.json")
        for spec in warmups(specs, settings.warmup_requests):
            log(f"warm-up: {spec.label}")
            analyzer.run(spec, endpoints.grpc_url, input_data, workdir, _timeout(spec))
        passes = [(repeat, spec) for repeat in range(settings.repeats) for spec in specs]
        for number, (repeat, spec) in enumerate(passes, start=1):
            log(f"[{number}/{len(passes)}] {spec.label}, {spec.requests} requests, load {machine.load_average()[0]}")
            results["runs"].append({"repeat": repeat, **_measure(spec, client, endpoints, input_data, workdir)})
            _write(results, out_dir)
    results["finished"] = _now()
    results["load_end"] = machine.load_average()
    _write(results, out_dir)
    return load_results(out_dir)  # as JSON has it, so a report from either is the same


def _measure(spec: RunSpec, client: grpcclient.InferenceServerClient, endpoints: Endpoints,
             input_data: Path, workdir: Path) -> dict:
    """One run's record: what was asked, the load, perf_analyzer's numbers and the server's."""
    record = {"model": spec.model, "drafter": spec.mode.drafter, "k": spec.mode.k, "beam_width": spec.mode.beam_width,
              "draft_width": spec.mode.draft_width, "tree_width": spec.mode.tree_width,
              "tree_budget": spec.mode.tree_budget, "tree_slot_widths": spec.mode.tree_slot_widths,
              "concurrency": spec.concurrency, "top_n": spec.top_n, "requests": spec.requests,
              "load": machine.load_average()}
    before = server_stats.take(client, endpoints.metrics_url)
    started = time.monotonic()
    try:
        measured = analyzer.run(spec, endpoints.grpc_url, input_data, workdir, _timeout(spec))
    except analyzer.AnalyzerError as error:
        # One failed configuration (a time-out on a crowded machine) should not cost the others.
        return {**record, "error": str(error)}
    after = server_stats.take(client, endpoints.metrics_url)
    return {**record, "seconds": round(time.monotonic() - started, 1), "perf_analyzer": measured["command"],
            "csv": measured["csv"], "per_request": measured["requests"], "server": server_stats.delta(before, after)}


def benchmark_with_server(settings: Settings, repository: Path, out_dir: Path, command: str, note: str = "",
                          log: Callable[[str], None] = print) -> dict:
    """Start a server on free loopback ports on `repository`, benchmark it, stop it."""
    config = ServerConfig(model_repository=repository, http_port=0, grpc_port=0, metrics_port=0)
    log(f"starting tritonserver on {repository}")
    with TritonServer(config) as server:
        log(f"server ready: gRPC {server.grpc_url}, log {server.log_path}")
        return benchmark(settings, Endpoints(server.grpc_url, server.metrics_url), out_dir, command, note, log)


def load_results(out_dir: Path) -> dict:
    return json.loads((out_dir / RESULTS_FILE).read_text())


def _timeout(spec: RunSpec) -> float:
    return max(TIMEOUT_MIN_S, TIMEOUT_PER_REQUEST_S * spec.requests / spec.concurrency)


def _write(results: dict, out_dir: Path) -> None:
    """The results as JSON with one line per run (a run's per-request lists would take hundreds)."""
    head = json.dumps({key: value for key, value in results.items() if key != "runs"}, indent=1)
    runs = ",\n".join(f"  {json.dumps(run)}" for run in results["runs"])
    path = out_dir / RESULTS_FILE
    partial = path.with_suffix(".partial")
    # the indented head ends its object with "\n}": the runs go in before that brace
    partial.write_text(f'{head[:-2]},\n "runs": [\n{runs}\n ]\n}}\n')
    partial.replace(path)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
