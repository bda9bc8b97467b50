"""PAD-Rec against EAGLE across datasets (`python -m perf datasets`): the rows, the counts per k, the
criterion and the rendered DATASETS.md / REPORT.md row, from small results files built here. No server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perf.comparison import DATASETS_DIR, INDEX_FILE, compare, criterion, dataset_rows, load
from perf.datasets import Plan, missing, starting_index, write_index
from perf.plan import plan
from perf.report import criteria_section, render_datasets, Runs

KS = (2, 3)


def run(drafter: str | None, k: int, p50_ms: float, tau: float, repeat: int = 0, **fields: object) -> dict:
    """One perf.run record with just what the comparison reads (latencies in microseconds, as perf_analyzer)."""
    return {"repeat": repeat, "model": "recommend", "drafter": drafter, "k": k, "concurrency": 1, "top_n": 10,
            "requests": 2, "load": [1.0, 1.0, 1.0],
            "csv": {"Inferences/Second": 1000 / p50_ms, **{f"p{p} latency": p50_ms * 1000 for p in (50, 90, 95, 99)}},
            "per_request": {"latency_ms": [p50_ms, p50_ms], "tau": [tau, tau]},
            "server": {"models": {}, "counters": {}}, **fields}


def results(p50s: dict[tuple[str | None, int], list[float]], taus: dict[str, float] | None = None,
            extra_runs: list[dict] = ()) -> dict:
    """A results file: each configuration's p50 per repeat."""
    taus = taus or {"eagle": 2.5, "padrec": 2.7}
    runs = [run(drafter, k, p50, taus.get(drafter, 1.0), repeat)
            for (drafter, k), values in p50s.items() for repeat, p50 in enumerate(values)]
    return {"command": "test", "started": "2026-01-01T00:00:00+00:00", "finished": "2026-01-01T00:05:00+00:00",
            "settings": {"dataset": "x", "users": 20, "top_n": 10, "requests": 2, "repeats": 2, "warmup_requests": 1,
                         "k": 3, "sweep_k": list(KS), "concurrency": [1], "drafters": ["eagle", "padrec"],
                         "calibration_top_n": 10},
            "machine": {}, "load_start": [1.0, 1.0, 1.0], "load_end": [2.0, 1.5, 1.0],
            "served": {"sources": {"target": "abc123"}}, "runs": runs + list(extra_runs)}


# PAD-Rec faster at k=2 on a, b, c (on c by less than the repeats' spread); at k=3 only on a.
RESULTS = {
    "a": results({(None, 0): [100, 110], ("eagle", 2): [90, 92], ("padrec", 2): [80, 82],
                  ("eagle", 3): [95, 96], ("padrec", 3): [85, 86]}),
    "b": results({(None, 0): [200, 200], ("eagle", 2): [150, 150], ("padrec", 2): [140, 140],
                  ("eagle", 3): [150, 150], ("padrec", 3): [160, 160]}),
    "c": results({(None, 0): [50, 50], ("eagle", 2): [40, 50], ("padrec", 2): [44, 45],
                  ("eagle", 3): [40, 40], ("padrec", 3): [40, 40]}),
}
INDEX = {"command": "python -m perf datasets --datasets a,b,c,d", "note": "", "datasets": ["a", "b", "c", "d"],
         "ks": list(KS), "status": {"a": {"state": "measured"}, "b": {"state": "measured"},
                                    "c": {"state": "measured"},
                                    "d": {"state": "skipped", "reason": "no trained drafts: draft_eagle.pt missing"}}}


def test_rows_take_the_median_p50_and_mean_tau_per_k():
    rows = dataset_rows("a", RESULTS["a"], KS)
    assert [row.k for row in rows] == [2, 3]
    first = rows[0]
    assert (first.plain_p50, first.eagle_p50, first.padrec_p50) == pytest.approx((105, 91, 81))
    assert first.ratio == pytest.approx(81 / 91) and first.padrec_faster and first.separated
    assert (first.eagle_tau, first.padrec_tau) == (2.5, 2.7)
    assert first.eagle_range == pytest.approx((90, 92))


def test_a_k_with_one_drafter_failed_or_missing_has_no_row():
    failed = run("padrec", 3, 1.0, 2.0, error="perf_analyzer did not finish")
    partial = results({(None, 0): [100], ("eagle", 2): [90], ("padrec", 2): [80], ("eagle", 3): [90]},
                      extra_runs=[failed])
    assert [row.k for row in dataset_rows("a", partial, KS)] == [2]


def test_counts_per_k_and_the_criterion():
    comparison = compare(INDEX, RESULTS)
    assert comparison.datasets == ["a", "b", "c"] and comparison.skipped == {"d": INDEX["status"]["d"]["reason"]}
    at2, at3 = comparison.counts()
    assert (at2.measured, at2.faster, at2.separated) == (("a", "b", "c"), ("a", "b", "c"), ("a", "b"))
    assert at2.met and at2.decided
    # a tie is not faster; with d not measured, 1 of 3 cannot reach 3 of 4 any more
    assert at3.faster == ("a",) and not at3.met and at3.decided
    measured, met = criterion(comparison)
    assert measured == "k=2: faster on 3 of 3 (a, b, c); k=3: faster on 1 of 3 (a)"
    assert met == "yes at k=2; no at k=3"


def test_an_older_results_file_of_a_skipped_dataset_is_left_out():
    comparison = compare(INDEX, {**RESULTS, "d": RESULTS["a"]})
    assert comparison.datasets == ["a", "b", "c"]


def test_criterion_is_open_while_datasets_are_missing():
    only_a = compare({**INDEX, "status": {}}, {"a": RESULTS["a"]})
    assert criterion(only_a)[1] == "not shown at k=2, 3 (only 1 of 4 datasets measured)"
    assert criterion(compare(INDEX, {}))[1] == "not shown (no dataset measured)"
    everywhere = compare(INDEX, {name: RESULTS["a"] for name in "abc"})
    assert criterion(everywhere)[1] == "yes, at every k"


def test_datasets_report_and_the_criterion_row(tmp_path: Path):
    folder = tmp_path / DATASETS_DIR
    for name, data in RESULTS.items():
        (folder / name).mkdir(parents=True)
        (folder / name / "results.json").write_text(json.dumps(data))
    (folder / INDEX_FILE).write_text(json.dumps(INDEX))
    comparison = load(tmp_path)
    assert comparison.datasets == ["a", "b", "c"]

    text = render_datasets(comparison, tmp_path).read_text()
    assert INDEX["command"] in text
    assert "| a | 2 | 105.0 | 91.0 | 81.0 | 0.89 | 2.50 | 2.70 | 90.0-92.0; 80.0-82.0 | PAD-Rec |" in text
    assert "| c | 2 | 50.0 | 45.0 | 44.5 | 0.99 | 2.50 | 2.70 | 40.0-50.0; 44.0-45.0 | PAD-Rec (within the repeats' spread) |" in text
    assert "| b | 3 | 200.0 | 150.0 | 160.0 | 1.07 |" in text
    assert "| 2 | 3 (a, b, c) | 3 (a, b, c) | 2 (a, b) | yes |" in text
    assert "| 3 | 3 (a, b, c) | 1 (a) | 1 (a) | no |" in text
    assert "| d | skipped | no trained drafts: draft_eagle.pt missing |" in text

    row = criteria_section(Runs(RESULTS["a"]), comparison)
    assert "faster on 3 of 3 (a, b, c)" in row and "yes at k=2; no at k=3" in row and "DATASETS.md" in row
    assert "one dataset measured" in criteria_section(Runs(RESULTS["a"]))


def test_plan_measures_concurrency_1_plain_and_both_drafters_at_each_k():
    settings = Plan(ks=(2, 3, 4), requests=5, repeats=2).settings("sports")
    runs = plan(settings)
    assert settings.dataset == "sports" and settings.repeats == 2
    assert [(spec.model, spec.concurrency, spec.top_n, spec.requests) for spec in runs] == [("recommend", 1, 10, 5)] * 7
    assert sorted((spec.mode.drafter, spec.mode.k) for spec in runs if spec.mode.k) == [
        (drafter, k) for drafter in ("eagle", "padrec") for k in (2, 3, 4)]


def test_a_dataset_without_drafts_is_skipped_with_the_missing_files(tmp_path: Path):
    (tmp_path / "toys").mkdir()
    (tmp_path / "toys" / "target.pt").write_bytes(b"")
    reason = missing("toys", tmp_path)
    assert reason.startswith("no trained drafts:") and "draft_eagle.pt" in reason and "draft_padrec.pt" in reason
    assert missing("yelp", tmp_path).startswith("no trained target and drafts:")
    for name in ("draft_eagle.pt", "draft_padrec.pt"):
        (tmp_path / "toys" / name).write_bytes(b"")
    assert missing("toys", tmp_path) is None


def test_one_repeat_is_never_clearly_apart():
    once = results({(None, 0): [100], ("eagle", 2): [90], ("padrec", 2): [50]})
    (row,) = dataset_rows("a", once, (2,))
    assert row.padrec_faster and row.repeats == 1 and not row.separated


def test_measuring_some_datasets_again_keeps_the_earlier_runs_other_datasets(tmp_path: Path):
    write_index(INDEX, tmp_path)
    index = starting_index(Plan(datasets=("c", "e"), ks=KS), tmp_path, "python -m perf datasets --datasets c,e")
    assert index["datasets"] == ["a", "b", "d", "c", "e"]
    assert index["status"]["a"] == {"state": "measured"} and index["status"]["d"]["state"] == "skipped"
    assert index["status"]["c"] == index["status"]["e"] == {"state": "pending"}
    assert index["command"] == INDEX["command"]
    assert index["note"] == "c, e measured again by `python -m perf datasets --datasets c,e`"
    # other ks, or nothing left to keep: the run's own index
    assert starting_index(Plan(datasets=("c",), ks=(2, 3, 4)), tmp_path, "x")["datasets"] == ["c"]
    every = starting_index(Plan(datasets=("a", "b", "c", "d"), ks=KS), tmp_path, "y", "note")
    assert (every["command"], every["note"], every["datasets"]) == ("y", "note", ["a", "b", "c", "d"])
