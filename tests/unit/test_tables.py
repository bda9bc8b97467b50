"""`padrec tables` renders the committed result files."""

import json

from padrec import bench_plots
from padrec.cli import main


def test_tables_render_eval_and_bench(tmp_path, capsys):
    metrics = {"recall@5": 0.02, "recall@10": 0.04, "ndcg@5": 0.01, "ndcg@10": 0.02}
    (tmp_path / "eval_x.json").write_text(json.dumps({
        "dataset": "x", "users": 10, "target": metrics, "decoding": {"prefix_size_penalty": 0.5},
        "popularity": {**metrics, "recall@10": 0.01}, "beam_search": {**metrics, "users": 5}}))
    (tmp_path / "bench_x.json").write_text(json.dumps({
        "dataset": "x", "users": 3, "threads": 1,
        "plain": {"median_ms": 100.0, "median_cpu_ms": 90.0, "target_calls_per_list": 33.0,
                  "time_split_ms": {"target": 95.0, "draft": 0.0, "host": 5.5}},
        "speculative": [{"drafter": "padrec", "k": 3, "median_ms": 50.0, "speedup": 2.0, "median_cpu_ms": 60.0,
                         "cpu_speedup": 1.5, "tau": 2.5, "target_calls_per_list": 14.5, "acceptance_rate": 0.5,
                         "acceptance_by_depth": [0.6, None], "acceptance_by_slot": [0.1],
                         "time_split_ms": {"target": 30.0, "draft": 15.25, "host": 4.75},
                         "mismatches": 0, "near_ties": 1}]}))
    assert main(["tables", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| x | 10 | 0.5 | 0.0200 | 0.0400 |" in out and "4.00x" in out and "0.0400 | 0.0200 (5)" in out
    assert ("| padrec | 3 | 50.0 | 2.00x | 60.0 | 1.50x | 2.50 | 14.5 | 0.50 | 0.60 - | 0.10 | 30.0 / 15.2 / 4.8 | 0 | 1 |"
            in out)
    assert "1 thread(s), prior BETA 0; plain decoding 100.0 ms per list (median) (CPU time 90.0 ms)" in out
    assert "mean ms per list in target calls 95.0, elsewhere 5.5." in out


def _bench(dataset, taus):
    entry = {"median_ms": 50.0, "speedup": 1.5, "target_calls_per_list": 15.0, "acceptance_rate": 0.5, "acceptance_by_depth": [],
             "acceptance_by_slot": [], "mismatches": 0, "near_ties": 0}
    return {"dataset": dataset, "users": 3, "threads": 1, "runtime": "torch",
            "plain": {"median_ms": 75.0, "target_calls_per_list": 33.0},
            "speculative": [{**entry, "drafter": d, "k": 4, "tau": t} for d, t in taus.items()]}


def test_tables_compare_drafters_and_render_lossless_checks(tmp_path, capsys):
    (tmp_path / "bench_a.json").write_text(json.dumps(_bench("a", {"eagle": 2.5, "padrec": 2.6})))
    (tmp_path / "bench_b.json").write_text(json.dumps(_bench("b", {"eagle": 3.0, "padrec": 2.9})))
    (tmp_path / "verify_a.json").write_text(json.dumps({
        "dataset": "a", "users": 500, "test_users": 900, "prefix_size_penalty": 0.25,
        "checks": [{"drafter": "padrec", "k": 4, "tau": 2.61, "near_ties": 2, "mismatches": 0}]}))
    assert main(["tables", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| a | torch | 4 | 2.600 | 2.500 | yes |" in out and "| b | torch | 4 | 2.900 | 3.000 | no |" in out
    assert "Datasets where padrec's tau is higher: k=4: 1 of 2." in out
    assert "| a | 500 (900) | 0.25 | padrec | 4 | 2.61 | 498 | 2 | 0 |" in out


def test_tables_render_the_prior_each_dataset_chose(tmp_path, capsys):
    m = lambda r, n: {"recall@10": r, "ndcg@10": n}  # noqa: E731
    (tmp_path / "tune_prior_a.json").write_text(json.dumps({
        "dataset": "a", "users": 300, "prefix_size_penalty": 0.5,
        "metrics": {"0": m(0.01, 0.005), "0.5": m(0.02, 0.01)}}))
    assert main(["tables", "--results", str(tmp_path)]) == 0
    assert "| a | 300 | 0: 0.0100 (0.0050); 0.5: 0.0200 (0.0100) | 0.5 |" in capsys.readouterr().out


def test_tables_render_what_the_drafts_make_of_their_position_terms(tmp_path, capsys):
    (tmp_path / "draft_signals_a.json").write_text(json.dumps({
        "dataset": "a", "drafter": "padrec",
        "sizes": {"pairs": 10, "fused_input_norm": 6.0, "embedding_init_norm": 0.32,
                  "init": {"item_coefficient": 0.1, "embedding_std": 0.02},
                  "item": {"coefficient": 0.11, "norm": 0.036, "share": 0.006, "embedding_norms": [0.31, 0.36]},
                  "step": {"norm_by_depth": [0.15, 0.16], "share_by_depth": [0.025, 0.027],
                           "embedding_norms": [0.29, 0.35, 0.3]}},
        "acceptance": {"k": 4, "users": 200, "tau_with_signals": 3.7, "tau_without_signals": 3.65,
                       "differing_lists": 0}}))
    assert main(["tables", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| a | padrec | 0.1, 0.02 | 0.110 | 0.006 | 0.025 0.027 | 0.31-0.36; 0.29-0.35 (0.32) | 4 | 3.700 | 3.650 | 0 |" in out


def test_plots_draw_the_speedups_and_time_splits_of_the_reports(tmp_path):
    report = _bench("a", {"eagle": 2.5, "padrec": 2.6})
    split = {"target": 40.0, "draft": 20.0, "host": 3.0}
    report["plain"]["time_split_ms"] = {"target": 70.0, "draft": 0.0, "host": 5.0}
    report["speculative"] = [{**e, "time_split_ms": split} for e in report["speculative"]]
    report["speculative"].append({**report["speculative"][1], "k": 2, "speedup": 1.1})
    series = bench_plots.speedup_vs_k([report], tmp_path / "s.png")
    assert series == {"a": {"eagle": [(4, 1.5)], "padrec": [(2, 1.1), (4, 1.5)]}}
    splits = bench_plots.time_split([report], 4, tmp_path / "t.png")
    assert splits == {"a": {"plain": (70.0, 0.0, 5.0), "eagle": (40.0, 20.0, 3.0), "padrec": (40.0, 20.0, 3.0)}}
    for name in ("s.png", "t.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tables_draw_plots_when_asked(tmp_path, capsys):
    report = _bench("a", {"padrec": 2.6})
    report["plain"]["time_split_ms"] = {"target": 70.0, "draft": 0.0, "host": 5.0}
    report["speculative"][0]["time_split_ms"] = {"target": 40.0, "draft": 20.0, "host": 3.0}
    (tmp_path / "bench_a.json").write_text(json.dumps(report))
    assert main(["tables", "--results", str(tmp_path), "--plots", str(tmp_path / "plots")]) == 0
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["speedup_vs_k.png", "time_split_k4.png"]


def test_tables_render_drafters_paired_with_the_baseline(tmp_path, capsys):
    versus = {"users": 1000, "mean": 3.15, "baseline_mean": 3.0, "difference": 0.15, "difference_ci95": [0.1, 0.2],
              "ratio": 1.05, "ratio_ci95": [1.03, 1.07], "users_higher": 600, "users_lower": 300}
    (tmp_path / "verify_a_shared.json").write_text(json.dumps({
        "dataset": "a", "users": 1000, "test_users": 2000, "prefix_size_penalty": 0, "baseline": "eagle",
        "checks": [{"drafter": "eagle", "k": 4, "tau": 3.0, "near_ties": 0, "mismatches": 0},
                   {"drafter": "padrec", "k": 4, "tau": 3.15, "near_ties": 0, "mismatches": 0,
                    "versus_baseline": versus}]}))
    assert main(["tables", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert ("| verify_a_shared.json | a | 1000 | padrec | 4 | 3.150 | eagle | 3.000 | 1.050 | 1.030-1.070 | 600 / 300 |"
            in out)
    assert "| eagle | 4 | 3.000 | eagle |" not in out  # the baseline is not compared with itself


def test_tables_render_chains_beside_token_trees(tmp_path, capsys):
    entry = {"drafter": "padrec", "k": 4, "tau": 2.5, "speedup": 1.1, "ms_per_target_call": 5.0, "ms_per_draft_call": 2.0,
             "time_split_ms": {"host": 4.5}, "acceptance_by_slot": [0.4, 1.0], "mismatches": 0, "drafted": 60,
             "target_calls_per_list": 10.0}
    tree = {**entry, "tree_width": 3, "tree_slot_widths": [1, 3], "tree_budget": 0, "drafted": 200, "tau": 3.0}
    (tmp_path / "trees").mkdir()
    (tmp_path / "trees" / "bench_x.json").write_text(json.dumps({
        "dataset": "x", "users": 2, "threads": 1, "plain": {"median_ms": 100.0, "ms_per_target_call": 4.0},
        "speculative": [entry, tree]}))
    assert main(["tables", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Chains and token trees (`padrec bench --trees`, bench_x.json)" in out
    assert "| padrec | 4 | chain | 3.0 | 2.50 | 1.10x | 5.00 | 2.00 | 4.5 | 0.40 1.00 | 0 |" in out
    assert "| padrec | 4 | 3, 1-3, all | 10.0 | 3.00 |" in out


def _eval(dataset, users, recall10, beam=None):
    metrics = {"recall@5": recall10 / 2, "recall@10": recall10, "ndcg@5": recall10 / 4, "ndcg@10": recall10 / 3}
    report = {"dataset": dataset, "users": users, "decoding": {"prefix_size_penalty": 0.5}}
    if beam is None:
        return {**report, "target": metrics, "popularity": metrics}
    return {**report, "beam_search": {**metrics, "recall@10": beam, "width": 20, "users": users}}


def test_tables_put_beam_search_beside_the_list_on_the_same_users(tmp_path, capsys):
    (tmp_path / "beam").mkdir()
    (tmp_path / "eval_a.json").write_text(json.dumps(_eval("a", 100, 0.02)))
    (tmp_path / "eval_b.json").write_text(json.dumps(_eval("b", 100, 0.02)))
    (tmp_path / "beam" / "eval_a_all-users_beam20.json").write_text(json.dumps(_eval("a", 100, 0.0, beam=0.03)))
    (tmp_path / "beam" / "eval_b_all-users_beam20.json").write_text(json.dumps(_eval("b", 50, 0.0, beam=0.03)))
    (tmp_path / "beam" / "verify_beam_a_9users.json").write_text(json.dumps({
        "dataset": "a", "drafter": "padrec", "checks": [{
            "beam_width": 10, "draft_width": 20, "users": 9, "mismatches": 0, "near_ties": 1, "plain_target_calls": 4.0,
            "spec_target_calls": 3.5, "accepted_levels": 0.5, "plain_ms_median": 30.0, "spec_ms_median": 40.0,
            "speedup_median": 0.75}]}))
    assert main(["tables", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| a | 100 | 0.5 | 0.0100 | 0.0200 | 0.0067 | 20 | 0.0000 | 0.0300 | 0.0000 | 1.50x |" in out
    assert "| b | 50 |" not in out  # a beam run on fewer users is no comparison
    assert "| a | padrec | 9 | 10 | 20 | 0 (1) | 4.00 / 3.50 | 0.50 | 30.0 / 40.0 | 0.75x |" in out


def test_the_summary_has_one_row_per_evaluated_dataset(tmp_path, capsys):
    (tmp_path / "beam").mkdir()
    (tmp_path / "eval_a.json").write_text(json.dumps(_eval("a", 100, 0.02)))
    (tmp_path / "eval_b.json").write_text(json.dumps(_eval("b", 70, 0.05)))
    (tmp_path / "beam" / "eval_a_all-users_beam20.json").write_text(json.dumps(_eval("a", 100, 0.0, beam=0.03)))
    (tmp_path / "bench_a_torch.json").write_text(json.dumps(_bench("a", {"eagle": 2.5, "padrec": 2.6})))
    (tmp_path / "verify_a.json").write_text(json.dumps({
        "dataset": "a", "users": 100, "test_users": 100, "checks": [
            {"drafter": d, "k": 4, "tau": 2.6, "near_ties": 0, "mismatches": m} for d, m in (("padrec", 1), ("eagle", 0))]}))
    assert main(["tables", "--results", str(tmp_path), "--summary"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[2:] == ["| a | 100 | 0.0200 | 0.0300 | 2.60 (2.50) | 1.50x | 100 of 100 x 2 drafters (1) |",
                        "| b | 70 | 0.0500 | - | - | - | - |"]
