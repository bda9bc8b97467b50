"""One measurement per configuration from its repeated runs.

A benchmark measures every configuration `repeats` times, in passes over the whole plan, so that a
drift in the machine's background load spreads over all of them. Here the repeats of one
configuration become one record of the shape perf.run writes: perf_analyzer's CSV columns are the
median over the repeats, per-request records are pooled, and the server's counts are summed (they
are differences of cumulative counters, so their sum is what the repeats together did).
"""

from __future__ import annotations

from statistics import fmean, median

CONFIGURATION = ("model", "drafter", "k", "beam_width", "draft_width", "tree_width", "tree_budget", "tree_slot_widths",
                 "concurrency", "top_n")
# what a record from before a field existed measured
DEFAULTS = {"beam_width": 0, "draft_width": 0, "tree_width": 0, "tree_budget": 0, "tree_slot_widths": ""}


def configuration(run: dict) -> tuple:
    """The fields that make two runs the same configuration."""
    return tuple(run.get(field, DEFAULTS.get(field)) for field in CONFIGURATION)


def configurations(runs: list[dict]) -> list[dict]:
    """The measured runs (those without an error) merged per configuration, in the order first run."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        if "error" not in run:
            groups.setdefault(configuration(run), []).append(run)
    return [merge(group) for group in groups.values()]


def merge(repeats: list[dict]) -> dict:
    """One record for the repeats of a configuration; `repeats` says how many there were."""
    first = repeats[0]
    return {
        **dict(zip(CONFIGURATION, configuration(first))),
        "repeats": len(repeats),
        "requests": sum(run["requests"] for run in repeats),
        "load": [round(fmean(run["load"][i] for run in repeats), 2) for i in range(len(first["load"]))],
        "perf_analyzer": first.get("perf_analyzer"),
        "csv": {column: median(run["csv"][column] for run in repeats) for column in first["csv"]},
        "csv_repeats": [run["csv"] for run in repeats],  # the spread says how noisy the machine was
        "per_request": {name: [value for run in repeats for value in run["per_request"][name]]
                        for name in first["per_request"]},
        "server": {"models": _sum_nested([run["server"]["models"] for run in repeats]),
                   "counters": _sum([run["server"]["counters"] for run in repeats])},
    }


def _sum(counts: list[dict[str, float]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for count in counts:
        for key, value in count.items():
            total[key] = total.get(key, 0.0) + value
    return total


def _sum_nested(per_model: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    names = {name for models in per_model for name in models}
    return {name: _sum([models.get(name, {}) for models in per_model]) for name in names}
