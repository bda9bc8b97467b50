"""`padrec tables`: the markdown tables of results/ (evaluations, offline benchmarks, lossless checks)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from padrec.config import REPO_ROOT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "results",
                        help="folder of eval_*.json, tune_prior_*.json, bench_*.json, verify_*.json, draft_signals_*.json "
                             "and trees/bench_*.json")
    parser.add_argument("--plots", type=Path, metavar="DIR",
                        help="also draw the torch benchmarks into DIR: speedup_vs_k.png, time_split_k<K>.png")
    parser.add_argument("--split-k", type=int, default=4, help="the k of time_split_k<K>.png (default 4)")
    parser.add_argument("--summary", action="store_true",
                        help="only the one table of current results per dataset that README.md shows")


def eval_table(reports: list[dict]) -> str:
    rows = ["| dataset | test users | prior BETA | target R@5 | target R@10 | target N@5 | target N@10 | popularity R@10 | "
            "popularity N@10 | R@10 / popularity | beam-20 R@10 | beam-20 N@10 (users) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in reports:
        t, p, b = r["target"], r["popularity"], r.get("beam_search", {})
        ratio = t["recall@10"] / p["recall@10"] if p["recall@10"] else float("inf")
        beam = f"{b['recall@10']:.4f} | {b['ndcg@10']:.4f} ({b['users']})" if b else "- | -"
        rows.append(f"| {r['dataset']} | {r['users']} | {_beta(r.get('decoding', {}))} | {t['recall@5']:.4f} | "
                    f"{t['recall@10']:.4f} | {t['ndcg@5']:.4f} | {t['ndcg@10']:.4f} | {p['recall@10']:.4f} | "
                    f"{p['ndcg@10']:.4f} | {ratio:.2f}x | {beam} |")
    return "\n".join(rows)


def _beta(report: dict) -> str:
    """The prefix-size prior a report decoded with (reports from before it existed decoded without)."""
    return f"{report.get('prefix_size_penalty', 0.0):g}"


def prior_table(reports: list[dict]) -> str:
    """Each dataset's prefix-size prior as `padrec tune-prior` chose it on validation lists."""
    rows = ["| dataset | validation users | BETA: R@10 (N@10) | chosen |", "|---|---|---|---|"]
    for r in reports:
        cells = "; ".join(f"{b}: {m['recall@10']:.4f} ({m['ndcg@10']:.4f})" for b, m in r["metrics"].items())
        rows.append(f"| {r['dataset']} | {r['users']} | {cells} | {r['prefix_size_penalty']:g} |")
    return "\n".join(rows)


def _time_split(entry: dict) -> str:
    """'target / draft / host' mean ms per list, or '-' for reports from before the split was measured."""
    split = entry.get("time_split_ms")
    return f"{split['target']:.1f} / {split['draft']:.1f} / {split['host']:.1f}" if split else "-"


def bench_table(report: dict) -> str:
    p = report["plain"]
    cpu = f" (CPU time {p['median_cpu_ms']:.1f} ms)" if "median_cpu_ms" in p else ""
    split = (f"; mean ms per list in target calls {p['time_split_ms']['target']:.1f}, elsewhere "
             f"{p['time_split_ms']['host']:.1f}" if "time_split_ms" in p else "")
    room = f", draft graphs' forced room {report['forced_room']}" if "forced_room" in report else ""
    rows = [f"{report['dataset']} ({report.get('runtime', 'torch')}): {report['users']} test users, batch 1, "
            f"{report['threads']} thread(s), prior BETA {_beta(report)}{room}; plain decoding "
            f"{p['median_ms']:.1f} ms per list (median){cpu}, {p['target_calls_per_list']:.1f} target forwards per "
            f"list{split}.",
            "", "| drafter | k | median ms | speed-up | CPU ms | CPU speed-up | tau | target forwards | acceptance | "
            "by depth | by slot | mean ms target / draft / host | mismatches | near-ties |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in report["speculative"]:
        fmt = lambda xs: " ".join("-" if x is None else f"{x:.2f}" for x in xs)  # noqa: E731
        cpu = f"{e['median_cpu_ms']:.1f} | {e['cpu_speedup']:.2f}x" if "median_cpu_ms" in e else "- | -"
        rows.append(f"| {e['drafter']} | {e['k']} | {e['median_ms']:.1f} | {e['speedup']:.2f}x | {cpu} | {e['tau']:.2f} | "
                    f"{e['target_calls_per_list']:.1f} | {e['acceptance_rate']:.2f} | {fmt(e['acceptance_by_depth'])} | "
                    f"{fmt(e['acceptance_by_slot'])} | {_time_split(e)} | {e['mismatches']} | {e['near_ties']} |")
    return "\n".join(rows)


def verify_table(reports: list[dict]) -> str:
    """Greedy speculative vs plain greedy lists per dataset and drafter (`padrec verify`)."""
    rows = ["| dataset | users checked (of test users) | prior BETA | drafter | k | tau | identical lists | near-ties | "
            "mismatches |", "|---|---|---|---|---|---|---|---|---|"]
    for r in reports:
        for c in r["checks"]:
            same = r["users"] - c["near_ties"] - c["mismatches"]
            rows.append(f"| {r['dataset']} | {r['users']} ({r['test_users']}) | {_beta(r)} | {c['drafter']} | {c['k']} | "
                        f"{c['tau']:.2f} | {same} | {c['near_ties']} | {c['mismatches']} |")
    return "\n".join(rows)


def paired_table(reports: list[dict]) -> str:
    """Each drafter's tau against the baseline drafter's at the same k, paired per user (`padrec
    verify --baseline`): ratio of mean tau with its paired-bootstrap 95% interval."""
    rows = ["| report | dataset | users | drafter | k | tau | baseline | baseline tau | ratio | 95% CI | "
            "users higher / lower |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in reports:
        for c in r["checks"]:
            v = c.get("versus_baseline")
            if v is None:
                continue
            rows.append(f"| {r['report_file']} | {r['dataset']} | {v['users']} | {c['drafter']} | {c['k']} | "
                        f"{v['mean']:.3f} | {r['baseline']} | {v['baseline_mean']:.3f} | {v['ratio']:.3f} | "
                        f"{v['ratio_ci95'][0]:.3f}-{v['ratio_ci95'][1]:.3f} | {v['users_higher']} / {v['users_lower']} |")
    return "\n".join(rows)


def drafter_table(reports: list[dict], first: str = "padrec", second: str = "eagle") -> str:
    """tau of two drafters at equal k on each dataset's offline benchmark, and where the first wins."""
    rows = [f"| dataset | runtime | k | {first} tau | {second} tau | {first} higher | {first} speed-up | "
            f"{second} speed-up |", "|---|---|---|---|---|---|---|---|"]
    wins, datasets = {}, set()
    for r in reports:
        by = {(e["drafter"], e["k"]): e for e in r["speculative"]}
        for k in sorted({k for d, k in by if d == first and (second, k) in by}):
            a, b = by[(first, k)], by[(second, k)]
            datasets.add(r["dataset"])
            wins.setdefault(k, set())
            if a["tau"] > b["tau"]:
                wins[k].add(r["dataset"])
            rows.append(f"| {r['dataset']} | {r.get('runtime', 'torch')} | {k} | {a['tau']:.3f} | {b['tau']:.3f} | "
                        f"{'yes' if a['tau'] > b['tau'] else 'no'} | {a['speedup']:.2f}x | {b['speedup']:.2f}x |")
    summary = "; ".join(f"k={k}: {len(w)} of {len(datasets)}" for k, w in sorted(wins.items()))
    return "\n".join(rows) + f"\n\nDatasets where {first}'s tau is higher: {summary}."


def signals_table(reports: list[dict]) -> str:
    """PAD-Rec's position terms beside the fused input they are added to, and tau without them
    (`padrec draft-signals`)."""
    rows = ["| dataset | drafter | init: coefficient, std | item coefficient | item term / fused input | step term / fused input (depth 1, 2, ...) | "
            "embedding norms: item; step (at init) | k | tau | tau without the terms | differing lists |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    span = lambda xs: f"{min(xs):.2f}-{max(xs):.2f}"  # noqa: E731
    for r in reports:
        sizes, a = r["sizes"], r["acceptance"]
        item, step = sizes.get("item"), sizes.get("step")
        init = sizes["init"]
        cells = [r["dataset"], r["drafter"], f"{init['item_coefficient']:g}, {init['embedding_std']:g}",
                 f"{item['coefficient']:.3f}" if item else "-",
                 f"{item['share']:.3f}" if item else "-",
                 " ".join(f"{x:.3f}" for x in step["share_by_depth"]) if step else "-",
                 f"{span(item['embedding_norms']) if item else '-'}; {span(step['embedding_norms']) if step else '-'} "
                 f"({sizes['embedding_init_norm']:.2f})",
                 str(a["k"]), f"{a['tau_with_signals']:.3f}", f"{a['tau_without_signals']:.3f}", str(a["differing_lists"])]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def tree_table(report: dict) -> str:
    """Chains and token trees of one `padrec bench --trees` report: what each verifies per round, its
    tau, speed-up and costs, and acceptance by slot."""
    p = report["plain"]
    rows = [f"{report['dataset']}: {report['users']} test users, batch 1, {report['threads']} thread(s); plain "
            f"decoding {p['median_ms']:.1f} ms per list (median), {p['ms_per_target_call']:.2f} ms per target call.",
            "",
            "| drafter | k | tree: width, continuations by slot, budget[, stop] | verified tokens / round | tau | speed-up | "
            "ms / target call | ms / draft call | host ms / list | acceptance by slot | mismatches |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in report["speculative"]:
        tree = "chain"
        if "tree_width" in e:
            children = "-".join(map(str, e.get("tree_slot_widths") or [])) or "-"
            tree = f"{e['tree_width']}, {children}, {e['tree_budget'] or 'all'}"
            if e.get("tree_min_prob"):
                tree += f", p >= {e['tree_min_prob']:g}"
        per_round = e["drafted"] / (e["target_calls_per_list"] * report["users"])
        rows.append(f"| {e['drafter']} | {e['k']} | {tree} | {per_round:.1f} | {e['tau']:.2f} | {e['speedup']:.2f}x | "
                    f"{e['ms_per_target_call']:.2f} | {e['ms_per_draft_call']:.2f} | {e['time_split_ms']['host']:.1f} | "
                    f"{' '.join(f'{a:.2f}' for a in e['acceptance_by_slot'])} | {e['mismatches']} |")
    return "\n".join(rows)


def beam_quality_table(pairs: list[tuple[dict, dict]]) -> str:
    """Top-10 by the greedy list against top-10 by beam search, each on every test user: pairs of an
    `eval_<d>.json` (its list) and a `beam/eval_<d>_all-users_beam20.json` (`padrec eval --no-list`)."""
    rows = ["| dataset | test users | prior BETA | greedy list R@5 | R@10 | N@10 | beam-B | beam R@5 | R@10 | N@10 | "
            "R@10 beam / list |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for listed, beamed in pairs:
        t, b = listed["target"], beamed["beam_search"]
        rows.append(f"| {listed['dataset']} | {b['users']} | {_beta(beamed.get('decoding', {}))} | {t['recall@5']:.4f} | "
                    f"{t['recall@10']:.4f} | {t['ndcg@10']:.4f} | {b['width']} | {b['recall@5']:.4f} | "
                    f"{b['recall@10']:.4f} | {b['ndcg@10']:.4f} | {b['recall@10'] / t['recall@10']:.2f}x |")
    return "\n".join(rows)


def beam_verify_table(reports: list[dict]) -> str:
    """Speculative against plain beam search, one request at a time (`padrec verify-beam`)."""
    rows = ["| dataset | drafter | users | beams B | draft width | differing top-K (near-ties) | target forwards plain / "
            "speculative | accepted levels | median ms plain / speculative | speed-up |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in reports:
        for c in r["checks"]:
            rows.append(f"| {r['dataset']} | {r['drafter']} | {c['users']} | {c['beam_width']} | {c['draft_width']} | "
                        f"{c['mismatches']} ({c['near_ties']}) | {c['plain_target_calls']:.2f} / {c['spec_target_calls']:.2f} | "
                        f"{c['accepted_levels']:.2f} | {c['plain_ms_median']:.1f} / {c['spec_ms_median']:.1f} | "
                        f"{c['speedup_median']:.2f}x |")
    return "\n".join(rows)


def beam_one_row_table(reports: list[dict]) -> str:
    """Plain beam search a row per beam, against plain and speculative beam search in one row
    (`padrec verify-beam --one-row`): what the layout gains, and what the draft adds to it."""
    rows = ["| dataset | users | beams B | draft width | differing top-K, one-row plain; speculative (near-ties) | "
            "target forwards plain / speculative | accepted levels | median ms: plain in rows / plain in one row / "
            "speculative in one row | one row over rows (plain) | speculative over plain (one row) |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in reports:
        for c in r["checks"]:
            rows.append(f"| {r['dataset']} | {c['users']} | {c['beam_width']} | {c['draft_width']} | "
                        f"{c['layout_mismatches']} ({c['layout_near_ties']}); {c['mismatches']} ({c['near_ties']}) | "
                        f"{c['plain_target_calls']:.2f} / {c['spec_target_calls']:.2f} | {c['accepted_levels']:.2f} | "
                        f"{c['plain_ms_median']:.1f} / {c['layout_plain_ms_median']:.1f} / {c['spec_ms_median']:.1f} | "
                        f"{c['speedup_layout_plain_median']:.2f}x | {c['speedup_over_layout_plain_median']:.2f}x |")
    return "\n".join(rows)


def beam_pairs(results: Path) -> list[tuple[dict, dict]]:
    """Each dataset's whole-test-set list evaluation beside its whole-test-set beam evaluation, where both exist."""
    listed = {r["dataset"]: r for r in load_reports(results, "eval_*.json") if "target" in r}
    return [(listed[b["dataset"]], b) for b in load_reports(results / "beam", "eval_*_all-users_beam*.json")
            if b["dataset"] in listed and listed[b["dataset"]]["users"] == b["beam_search"]["users"]]


def summary_table(results: Path, drafter: str = "padrec", baseline: str = "eagle", k: int = 4) -> str:
    """One row per dataset of what matters now: quality of the greedy list and of beam search on every
    test user, the drafter's tau and offline speed-up at k, and how many users were checked lossless."""
    beams = {listed["dataset"]: beamed["beam_search"] for listed, beamed in beam_pairs(results)}
    benches = {b["dataset"]: b for b in load_reports(results, "bench_*_torch.json")}
    verified = {v["dataset"]: v for v in load_reports(results, "verify_*.json")}
    rows = [f"| dataset | test users | greedy list R@10 | beam-20 R@10 | {drafter} tau, k={k} ({baseline}) | offline "
            f"speed-up, k={k} | lists checked lossless, k={k} (mismatches) |", "|---|---|---|---|---|---|---|"]
    for r in load_reports(results, "eval_*.json"):
        d = r["dataset"]
        beam = f"{beams[d]['recall@10']:.4f}" if d in beams else "-"
        spec = {(e["drafter"], e["k"]): e for e in benches[d]["speculative"]} if d in benches else {}
        ours, theirs = spec.get((drafter, k)), spec.get((baseline, k))
        tau = f"{ours['tau']:.2f} ({theirs['tau']:.2f})" if ours and theirs else "-"
        speedup = f"{ours['speedup']:.2f}x" if ours else "-"
        checks = [c for c in verified[d]["checks"] if c["k"] == k] if d in verified else []
        lossless = (f"{verified[d]['users']} of {verified[d]['test_users']} x {len(checks)} drafters "
                    f"({sum(c['mismatches'] for c in checks)})" if checks else "-")
        rows.append(f"| {d} | {r['users']} | {r['target']['recall@10']:.4f} | {beam} | {tau} | {speedup} | {lossless} |")
    return "\n".join(rows)


def load_reports(results: Path, pattern: str) -> list[dict]:
    """The JSON reports in `results` whose names match `pattern`, in name order, each with its file
    name as `report_file`."""
    return [{**json.loads(path.read_text()), "report_file": path.name} for path in sorted(results.glob(pattern))]


def print_section(title: str, reports: list[dict], render) -> None:
    """A markdown section of `render(reports)` under `title`; nothing when there are no reports."""
    if reports:
        print(f"### {title}\n\n{render(reports)}\n")


def run(args: argparse.Namespace) -> int:
    if args.summary:
        print(summary_table(args.results))
        return 0
    benches = load_reports(args.results, "bench*.json")
    print_section("Recommendation quality", load_reports(args.results, "eval_*.json"), eval_table)
    print_section("The prefix-size prior, chosen on validation lists (`padrec tune-prior`)",
                  load_reports(args.results, "tune_prior_*.json"), prior_table)
    print_section("PAD-Rec against the EAGLE-style draft (tau at equal k)",
                  [b for b in benches if b.get("runtime", "torch") == "torch"], drafter_table)
    verified = load_reports(args.results, "verify_*.json")
    print_section("Losslessness on test sets (`padrec verify`)", verified, verify_table)
    print_section("Drafters against the baseline drafter, paired per user (`padrec verify --baseline`)",
                  [r for r in verified if "baseline" in r], paired_table)
    print_section("What the PAD-Rec drafts make of their position terms (`padrec draft-signals`)",
                  load_reports(args.results, "draft_signals_*.json"), signals_table)
    print_section("Top-10: the greedy list against beam search, on every test user", beam_pairs(args.results),
                  beam_quality_table)
    beam_checks = load_reports(args.results / "beam", "verify_beam_*.json")
    print_section("Speculative beam search against plain beam search (`padrec verify-beam`)",
                  [r for r in beam_checks if r.get("layout", "rows") == "rows"], beam_verify_table)
    print_section("Beam search in one cache row (`padrec verify-beam --one-row`)",
                  [r for r in beam_checks if r.get("layout") == "one_row"], beam_one_row_table)
    for bench in benches:
        print(f"### Offline speculative decoding\n\n{bench_table(bench)}\n")
    for trees in load_reports(args.results / "trees", "bench_*.json"):
        print(f"### Chains and token trees (`padrec bench --trees`, {trees['report_file']})\n\n{tree_table(trees)}\n")
    torch_benches = [b for b in benches if b.get("runtime", "torch") == "torch"]
    if args.plots is not None and torch_benches:
        from padrec import bench_plots  # matplotlib only when asked for

        bench_plots.speedup_vs_k(torch_benches, args.plots / "speedup_vs_k.png")
        bench_plots.time_split(torch_benches, args.split_k, args.plots / f"time_split_k{args.split_k}.png")
    return 0
