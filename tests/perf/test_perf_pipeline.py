"""The perf_analyzer benchmark (`python -m perf`, `make perf`) end to end at a tiny scale against the
real served recommender, and the parsing of what perf_analyzer writes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from statistics import fmean

import pytest

from perf.analyzer import latency_summary, parse_csv
from perf.breakdown import run_costs
from perf.__main__ import parser
from perf.merge import configurations
from perf.plan import STREAM_MODEL, Settings, plan
from perf.report import render
from perf.run import RESULTS_FILE, Endpoints, benchmark

OFFLINE_BENCH = Path(__file__).resolve().parents[2] / "results" / "bench_beauty_onnxruntime.json"
# Every kind of run at concurrency 1, twice over with two measured requests each.
TINY = Settings(users=20, concurrency=(1,), sweep_k=(1,), requests=2, requests_per_client=1, repeats=2,
                warmup_requests=2, beam_widths=(10,), beam_concurrency=(1,), beam_drafts=((10, 4),),
                trees=((2, 0, ""),))
# A row as perf_analyzer 2.51 writes it for `recommend` (latencies in microseconds).
CSV = ("Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,"
       "Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency\n"
       "1,2.48363,11,4078,1,136,396823,848,6,391809,487835,492044,496736\n")


def test_csv_row_becomes_throughput_and_percentiles(tmp_path: Path):
    path = tmp_path / "report.csv"
    path.write_text(CSV)
    summary = latency_summary(parse_csv(path))
    assert summary == pytest.approx({"throughput": 2.48363, "p50_ms": 391.809, "p90_ms": 487.835,
                                     "p95_ms": 492.044, "p99_ms": 496.736})


def test_a_run_of_one_request_is_refused_before_anything_starts():
    # perf_analyzer's statistics of a lone request can miss the composing models' counts (it then
    # fails with "failed to find the requested model version"), so the plan never asks for one.
    for name in ("requests", "warmup_requests"):
        with pytest.raises(ValueError, match=f"{name} must be at least 2"):
            Settings(**{name: 1})
    with pytest.raises(ValueError, match="beam widths must be at least top_n"):
        Settings(beam_widths=(5,))
    with pytest.raises(ValueError, match="beam widths must be at least top_n"):
        Settings(beam_drafts=((5, 4),))
    with pytest.raises(ValueError, match="draft widths must be at least 1"):
        Settings(beam_drafts=((10, 0),))
    assert min(spec.requests for spec in plan(TINY)) == 2


def test_tree_runs_are_planned_per_drafter_and_their_option_parses():
    assert parser().parse_args(["run", "--trees", "3:0,2:6:1-2-2-1-1"]).trees == ((3, 0, ""), (2, 6, "1,2,2,1,1"))
    assert parser().parse_args(["run", "--trees", ""]).trees == ()
    for bad in ("3", "3:x", "3:0:1-a", "3:0:1:2"):
        with pytest.raises(SystemExit):
            parser().parse_args(["run", "--trees", bad])
    trees = [spec.mode for spec in plan(Settings(trees=((2, 6, "1,2,2,1,1"),))) if spec.mode.tree_width]
    assert [(m.drafter, m.k, m.name) for m in trees] == [
        ("eagle", 4, "eagle k=4 tree 2 wide by slot 1,2,2,1,1, 6 nodes"),
        ("padrec", 4, "padrec k=4 tree 2 wide by slot 1,2,2,1,1, 6 nodes")]
    assert ("tree_slot_widths", "1,2,2,1,1", "string") in trees[0].parameters()
    with pytest.raises(ValueError, match="tree widths must be at least 1"):
        Settings(trees=((0, 0, ""),))


@pytest.mark.server
@pytest.mark.slow
def test_benchmark_measures_every_run_and_renders_the_report(recommend_server, tmp_path: Path):
    endpoints = Endpoints(recommend_server.grpc_url, recommend_server.metrics_url)
    results = benchmark(TINY, endpoints, tmp_path, "test", log=lambda line: None)

    assert [run.get("error") for run in results["runs"]] == [None] * 24
    assert json.loads((tmp_path / RESULTS_FILE).read_text()) == results
    merged = configurations(results["runs"])
    assert len(merged) == 12 and [run["beam_width"] for run in merged].count(10) == 2
    assert [run["tree_width"] for run in merged].count(2) == 2  # a tree per drafter
    for run in merged:
        summary, costs, records = latency_summary(run["csv"]), run_costs(run), run["per_request"]
        assert summary["throughput"] > 0 and 0 < summary["p50_ms"] <= summary["p99_ms"]
        assert costs.requests == run["requests"] == len(records["latency_ms"]) == 4 and run["repeats"] == 2
        # prefill plus at least one decoding round; a draft call per round when drafting
        assert costs.target_calls >= 2 and (costs.draft_calls > 0) == (run["k"] > 0 or run["draft_width"] > 0)
        if run["tree_width"]:  # a draft step call per depth of a round; one target call per round (keeps ride along)
            assert costs.draft_calls > fmean(records["rounds"]) and costs.target_calls == fmean(records["rounds"])
        assert costs.exec_ms >= costs.target_ms + costs.draft_ms
        assert all(tau > 1 for tau in records["tau"]) == (run["k"] > 0)
        assert all(0 < first <= last for first, last in zip(records["first_response_ms"], records["latency_ms"]))
    stream = [run["per_request"] for run in merged if run["model"] == STREAM_MODEL]
    # ten items, one response each: the first arrives well before the last
    assert len(stream) == 2 and all(first < last for records in stream
                                    for first, last in zip(records["first_response_ms"], records["latency_ms"]))

    report = render(results, tmp_path, OFFLINE_BENCH).read_text()
    for heading in ("done criteria", "Latency and throughput", "Streaming", "Top-K by beam search", "Token trees",
                    "tau against k",
                    "Where the time goes", "Acceptance", "Machine and versions"):
        assert heading in report
    assert "| padrec k=4 | 1 | 4 |" in report and "| beam B=10 | 1 | 4 |" in report and "Failed runs" not in report
    assert "| padrec beam B=10 D=4 | 1 | 4 |" in report
    assert "| padrec k=4 tree 2 wide | 4 |" in report and "| eagle k=4 tree 2 wide | 4 |" in report
    figures = re.findall(r"!\[[^]]*\]\(([^)]+)\)", report)
    assert len(figures) == 4 and all((tmp_path / figure).stat().st_size > 0 for figure in figures)
