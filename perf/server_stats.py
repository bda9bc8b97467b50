"""What the server itself counted during a run: Triton's per-model inference statistics and padrec's
Prometheus counters, snapshotted before and after, so nothing in the server has to change.

Triton counts a BLS call to `target` or `draft_<name>` as a request of that model, so their totals
split the decoder's time into target calls, draft calls and the rest.
"""

from __future__ import annotations

import re
import urllib.request
from dataclasses import dataclass

import tritonclient.grpc as grpcclient

COUNTER_PREFIX = "padrec_"
_SERIES = re.compile(r"^(?P<series>[a-zA-Z_:][\w:]*(?:\{[^}]*\})?)\s+(?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class Snapshot:
    """Cumulative counts: per model, its statistics flattened (`<kind>_count`, `<kind>_ns`, ...);
    per Prometheus series (`name{labels}`), its value."""

    models: dict[str, dict[str, float]]
    counters: dict[str, float]


def take(client: grpcclient.InferenceServerClient, metrics_url: str) -> Snapshot:
    """The server's statistics and padrec's counters right now."""
    stats = client.get_inference_statistics(as_json=True)
    models = {entry["name"]: _flatten(entry) for entry in stats.get("model_stats", [])}
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        counters = parse_counters(response.read().decode())
    return Snapshot(models, counters)


def _flatten(entry: dict) -> dict[str, float]:
    """One model's statistics as flat numbers; `exec_<kind>_ns` sums its batch statistics, i.e. the
    time of its executions (a request's own `compute_*` repeats the time of the batch it was in)."""
    flat = {"inference_count": float(entry.get("inference_count", 0)),
            "execution_count": float(entry.get("execution_count", 0))}
    for kind, duration in entry.get("inference_stats", {}).items():
        flat[f"{kind}_count"] = float(duration.get("count", 0))
        flat[f"{kind}_ns"] = float(duration.get("ns", 0))
    for batch in entry.get("batch_stats", []):
        for kind in ("compute_input", "compute_infer", "compute_output"):
            flat[f"exec_{kind}_ns"] = flat.get(f"exec_{kind}_ns", 0.0) + float(batch[kind].get("ns", 0))
    return flat


def parse_counters(text: str) -> dict[str, float]:
    """padrec's series from Prometheus text format."""
    counters = {}
    for line in text.splitlines():
        match = _SERIES.match(line.strip())
        if match and line.startswith(COUNTER_PREFIX):
            counters[match["series"]] = float(match["value"])
    return counters


def labels(series: str) -> tuple[str, dict[str, str]]:
    """A series' metric name and its labels."""
    name, _, rest = series.partition("{")
    return name, dict(_LABEL.findall(rest))


def delta(before: Snapshot, after: Snapshot) -> dict:
    """What happened between two snapshots, only what changed: {"models": ..., "counters": ...}."""
    models = {}
    for name, now in after.models.items():
        then = before.models.get(name, {})
        changed = {key: value - then.get(key, 0.0) for key, value in now.items()}
        if any(changed.values()):
            models[name] = changed
    counters = {series: value - before.counters.get(series, 0.0) for series, value in after.counters.items()}
    return {"models": models, "counters": {series: value for series, value in counters.items() if value}}
