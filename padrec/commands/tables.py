"""`padrec tables`: the markdown tables of results/ (evaluations and offline benchmarks)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from padrec.config import REPO_ROOT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "results", help="folder of eval_*.json, bench_*.json")


def eval_table(reports: list[dict]) -> str:
    rows = ["| dataset | test users | target R@5 | target R@10 | target N@5 | target N@10 | popularity R@10 | "
            "popularity N@10 | R@10 / popularity | beam-20 R@10 | beam-20 N@10 (users) |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in reports:
        t, p, b = r["target"], r["popularity"], r.get("beam_search", {})
        ratio = t["recall@10"] / p["recall@10"] if p["recall@10"] else float("inf")
        beam = f"{b['recall@10']:.4f} | {b['ndcg@10']:.4f} ({b['users']})" if b else "- | -"
        rows.append(f"| {r['dataset']} | {r['users']} | {t['recall@5']:.4f} | {t['recall@10']:.4f} | "
                    f"{t['ndcg@5']:.4f} | {t['ndcg@10']:.4f} | {p['recall@10']:.4f} | {p['ndcg@10']:.4f} | "
                    f"{ratio:.2f}x | {beam} |")
    return "\n".join(rows)


def bench_table(report: dict) -> str:
    p = report["plain"]
    cpu = f" (CPU time {p['median_cpu_ms']:.1f} ms)" if "median_cpu_ms" in p else ""
    rows = [f"{report['dataset']} ({report.get('runtime', 'torch')}): {report['users']} test users, batch 1, "
            f"{report['threads']} thread(s); plain decoding "
            f"{p['median_ms']:.1f} ms per list (median){cpu}, {p['target_calls_per_list']:.1f} target forwards per list.",
            "", "| drafter | k | median ms | speed-up | CPU ms | CPU speed-up | tau | acceptance | by depth | by slot | "
            "mismatches | near-ties |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in report["speculative"]:
        fmt = lambda xs: " ".join("-" if x is None else f"{x:.2f}" for x in xs)  # noqa: E731
        cpu = f"{e['median_cpu_ms']:.1f} | {e['cpu_speedup']:.2f}x" if "median_cpu_ms" in e else "- | -"
        rows.append(f"| {e['drafter']} | {e['k']} | {e['median_ms']:.1f} | {e['speedup']:.2f}x | {cpu} | {e['tau']:.2f} | "
                    f"{e['acceptance_rate']:.2f} | {fmt(e['acceptance_by_depth'])} | {fmt(e['acceptance_by_slot'])} | "
                    f"{e['mismatches']} | {e['near_ties']} |")
    return "\n".join(rows)


def run(args: argparse.Namespace) -> int:
    evals = [json.loads(p.read_text()) for p in sorted(args.results.glob("eval_*.json"))]
    if evals:
        print("### Recommendation quality\n\n" + eval_table(evals) + "\n")
    for path in sorted(args.results.glob("bench*.json")):
        print("### Offline speculative decoding\n\n" + bench_table(json.loads(path.read_text())) + "\n")
    return 0
