"""PAD-Rec against the EAGLE-style draft across datasets: the numbers `python -m perf datasets` measured
(one perf.run results file per dataset, concurrency 1, plain and both drafters at several k), put side
by side, and issue 8's criterion on them.

Pure logic over the JSON: no server, no files beyond reading them (`load`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean

from perf.analyzer import latency_summary
from perf.merge import configurations
from perf.plan import BATCH_MODEL

# Where `python -m perf datasets` writes, under the benchmark's folder (perf/): one folder per dataset
# holding its results.json, and an index of what the command was asked and what became of each dataset.
DATASETS_DIR = "datasets"
INDEX_FILE = "index.json"
DATASETS_REPORT = "DATASETS.md"
# Issue 8: PAD-Rec faster than EAGLE at equal k on at least 3 of 4 datasets.
DATASETS_GOAL = 3
DATASETS_TOTAL = 4


@dataclass(frozen=True)
class Row:
    """One dataset at one k: p50 latencies (ms; perf_analyzer's, the median over the repeats), the
    repeats' p50 ranges and the served tau (mean of the responses' TAU) of each drafter."""

    dataset: str
    k: int
    plain_p50: float | None
    eagle_p50: float
    padrec_p50: float
    eagle_tau: float
    padrec_tau: float
    eagle_range: tuple[float, float]
    padrec_range: tuple[float, float]
    repeats: int  # the fewer of the two drafters' measured repeats

    @property
    def ratio(self) -> float:
        """PAD-Rec's p50 over EAGLE's: below 1 means PAD-Rec is faster."""
        return self.padrec_p50 / self.eagle_p50

    @property
    def padrec_faster(self) -> bool:
        return self.padrec_p50 < self.eagle_p50

    @property
    def separated(self) -> bool:
        """Measured more than once, and the two drafters' p50 ranges over the repeats do not overlap: the
        difference is larger than what the machine's drift did to either between repeats."""
        apart = self.padrec_range[1] < self.eagle_range[0] or self.eagle_range[1] < self.padrec_range[0]
        return self.repeats > 1 and apart


@dataclass(frozen=True)
class Count:
    """At one k: how many datasets measured both drafters, and on which PAD-Rec was faster."""

    k: int
    measured: tuple[str, ...]
    faster: tuple[str, ...]
    separated: tuple[str, ...]  # ... of those, with the repeats' p50 ranges apart

    @property
    def met(self) -> bool:
        return len(self.faster) >= DATASETS_GOAL

    @property
    def decided(self) -> bool:
        """Met, or missed even if every dataset not measured were to count."""
        return self.met or len(self.faster) + DATASETS_TOTAL - len(self.measured) < DATASETS_GOAL


@dataclass
class Comparison:
    """Every measured dataset's rows, the datasets the command skipped or failed on, and how it ran."""

    ks: tuple[int, ...]
    rows: list[Row]
    skipped: dict[str, str] = field(default_factory=dict)  # dataset -> why
    failed: dict[str, str] = field(default_factory=dict)  # dataset -> what went wrong
    results: dict[str, dict] = field(default_factory=dict)  # dataset -> its results file
    order: list[str] = field(default_factory=list)  # every dataset the command was asked for
    command: str = ""
    note: str = ""

    @property
    def datasets(self) -> list[str]:
        """The datasets with at least one row, in the order measured."""
        return list(dict.fromkeys(row.dataset for row in self.rows))

    def counts(self) -> list[Count]:
        counts = []
        for k in self.ks:
            at_k = [row for row in self.rows if row.k == k]
            counts.append(Count(k, tuple(row.dataset for row in at_k),
                                tuple(row.dataset for row in at_k if row.padrec_faster),
                                tuple(row.dataset for row in at_k if row.padrec_faster and row.separated)))
        return counts


def _p50(run: dict) -> float:
    return latency_summary(run["csv"])["p50_ms"]


def _p50_range(run: dict) -> tuple[float, float]:
    p50s = [latency_summary(row)["p50_ms"] for row in run["csv_repeats"]]
    return min(p50s), max(p50s)


def dataset_rows(dataset: str, results: dict, ks: tuple[int, ...]) -> list[Row]:
    """One results file's rows: `recommend` at concurrency 1 and the settings' top_n, one row per k at
    which both drafters were measured (failed runs are left out by perf.merge)."""
    top_n = results["settings"]["top_n"]
    found = {(run["drafter"] if run["k"] else None, run["k"]): run for run in configurations(results["runs"])
             if (run["model"], run["concurrency"], run["top_n"], run["beam_width"]) == (BATCH_MODEL, 1, top_n, 0)}
    plain = found.get((None, 0))
    rows = []
    for k in ks:
        eagle, padrec = found.get(("eagle", k)), found.get(("padrec", k))
        if eagle and padrec:
            rows.append(Row(dataset, k, _p50(plain) if plain else None, _p50(eagle), _p50(padrec),
                            fmean(eagle["per_request"]["tau"]), fmean(padrec["per_request"]["tau"]),
                            _p50_range(eagle), _p50_range(padrec), min(eagle["repeats"], padrec["repeats"])))
    return rows


def compare(index: dict, results: dict[str, dict]) -> Comparison:
    """The comparison from the command's index and the results file of each dataset it measured."""
    ks = tuple(index["ks"])
    status = index.get("status", {})
    # a dataset this command skipped or failed on may still have an older run's results file
    current = [dataset for dataset in index["datasets"] if dataset in results
               and status.get(dataset, {}).get("state") not in ("skipped", "failed")]
    rows = [row for dataset in current for row in dataset_rows(dataset, results[dataset], ks)]
    skipped = {name: entry["reason"] for name, entry in status.items() if entry["state"] == "skipped"}
    failed = {name: entry["reason"] for name, entry in status.items() if entry["state"] == "failed"}
    return Comparison(ks, rows, skipped, failed, results, list(index["datasets"]), index.get("command", ""),
                      index.get("note", ""))


def load(out_dir: Path) -> Comparison | None:
    """The comparison under out_dir/datasets/, or None when `python -m perf datasets` has not written one."""
    folder = out_dir / DATASETS_DIR
    index_path = folder / INDEX_FILE
    if not index_path.is_file():
        return None
    index = json.loads(index_path.read_text())
    results = {}
    for dataset in index["datasets"]:
        path = folder / dataset / "results.json"
        if path.is_file():
            results[dataset] = json.loads(path.read_text())
    return compare(index, results)


def criterion(comparison: Comparison) -> tuple[str, str]:
    """Issue 8's cross-dataset criterion: (what was measured, whether it is met)."""
    counts = comparison.counts()
    measured = "; ".join(
        f"k={c.k}: faster on {len(c.faster)} of {len(c.measured)}"
        + (f" ({', '.join(c.faster)})" if c.faster else "") for c in counts)
    met = [c.k for c in counts if c.met]
    open_ = [c.k for c in counts if not c.decided]
    missed = [c.k for c in counts if c.decided and not c.met]
    listed = lambda ks: ", ".join(map(str, ks))  # noqa: E731
    if not comparison.rows:
        verdict = "not shown (no dataset measured)"
    elif len(met) == len(counts):
        verdict = "yes, at every k"
    elif not met and not open_:
        verdict = "no"
    else:
        parts = [f"yes at k={listed(met)}" if met else "",
                 f"no at k={listed(missed)}" if missed else "",
                 f"not shown at k={listed(open_)} (only {len(comparison.datasets)} of {DATASETS_TOTAL} datasets "
                 "measured)" if open_ else ""]
        verdict = "; ".join(part for part in parts if part)
    return measured, verdict
