"""REPORT.md and its plots from a benchmark's results (perf.run's JSON): tables, figures, the issue's
done criteria, and where the time goes (perf.breakdown)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from statistics import fmean, median

from perf import plots
from perf.analyzer import latency_summary
from perf.breakdown import (
    SpeedUp, TargetCost, acceptance_by_depth, effective_tau, run_costs, speed_up, target_cost,
)
from perf.comparison import DATASETS_DIR, DATASETS_GOAL, DATASETS_REPORT, DATASETS_TOTAL, INDEX_FILE, Comparison
from perf.comparison import criterion as datasets_criterion
from perf.comparison import load as load_comparison
from perf.merge import configurations
from perf.plan import BATCH_MODEL, STREAM_MODEL, Mode

REPORT_FILE = "REPORT.md"
PLOTS_DIR = "plots"
# Issue 8's done criteria.
P50_RATIO_GOAL = 0.55


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def mode_name(run: dict) -> str:
    return Mode(run["drafter"], run["k"], run["beam_width"], run["draft_width"], run["tree_width"],
                run["tree_budget"], run["tree_slot_widths"]).name


class Runs:
    """A results file's configurations (their repeats merged), found by what they measured."""

    def __init__(self, results: dict):
        self.settings = results["settings"]
        self.machine = results["machine"]
        self.measured = configurations(results["runs"])
        self.failed = [run for run in results["runs"] if "error" in run]

    def find(self, model: str = BATCH_MODEL, k: int = 0, drafter: str | None = None, concurrency: int = 1,
             top_n: int | None = None, beam_width: int = 0) -> dict | None:
        top_n = self.settings["top_n"] if top_n is None else top_n
        for run in self.measured:
            if (run["model"], run["k"], run["beam_width"], run["tree_width"], run["concurrency"], run["top_n"]) == \
                    (model, k, beam_width, 0, concurrency, top_n) and (k == 0 or run["drafter"] == drafter):
                return run
        return None

    def tree_runs(self) -> list[dict]:
        """Token-tree lists, by drafter, width and budget."""
        return sorted((run for run in self.measured if run["tree_width"]),
                      key=lambda run: (run["drafter"], run["tree_width"], run["tree_slot_widths"], run["tree_budget"]))

    def beam_runs(self) -> list[dict]:
        """`recommend` in beam mode, by concurrency, beam width and draft width (plain first)."""
        return sorted((run for run in self.measured if run["beam_width"]),
                      key=lambda run: (run["concurrency"], run["beam_width"], run["draft_width"]))

    def modes(self, k: int) -> list[tuple[str | None, int]]:
        """Plain, then each drafter at k, as (drafter, k)."""
        return [(None, 0)] + [(drafter, k) for drafter in self.settings["drafters"]]

    def load_runs(self) -> list[dict]:
        """`recommend` at every load concurrency, for plain and each drafter at the settings' k."""
        found = [self.find(BATCH_MODEL, k, drafter, c)
                 for drafter, k in self.modes(self.settings["k"]) for c in self.settings["concurrency"]]
        return [run for run in found if run]

    def sweep_runs(self) -> list[dict]:
        """Concurrency 1, every drafter and k, ordered by drafter then k."""
        ks = sorted(set(self.settings["sweep_k"]) | {self.settings["k"]})
        found = [self.find(BATCH_MODEL, k, drafter) for drafter in self.settings["drafters"] for k in ks]
        return [run for run in found if run]

    def stream_runs(self) -> list[dict]:
        return [run for run in self.measured if run["model"] == STREAM_MODEL]

    def plain(self) -> dict | None:
        return self.find()

    def target_cost(self) -> TargetCost | None:
        """The calibration fit, when both plain runs it needs were measured."""
        plain, short = self.plain(), self.find(top_n=self.settings["calibration_top_n"])
        if plain is None or short is None or short is plain:
            return None
        return target_cost(run_costs(plain), run_costs(short))


def _ms(value: float) -> str:
    return f"{value:.1f}"


def _ratio(value: float) -> str:
    return f"{value:.2f}x"


def _mean(run: dict, field: str) -> float:
    return fmean(run["per_request"][field])


# --- sections ------------------------------------------------------------------------------------


def machine_section(results: dict) -> str:
    m = results["machine"]
    versions = ", ".join(f"{name} {version}" for name, version in m["versions"].items())
    dirty = m["git"]["uncommitted_served_files"]
    start, end = results["load_start"], results.get("load_end")
    # the benchmark itself keeps one or two processes busy (server, stubs, perf_analyzer)
    shared = max(start[0], (end or start)[0]) > m["cores"]
    rows = [
        ("CPU", f"{m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, {m['os']}"),
        ("load average (1, 5, 15 min)", f"start {' '.join(map(str, start))}; end "
                                        f"{' '.join(map(str, end)) if end else 'not reached'}; per run in the tables"),
        ("shared", f"yes: load averages above the {m['cores']} cores, so other processes competed with the "
                   "benchmark; absolute times are inflated and noisy, compare runs close in time" if shared
         else "no sign of other load"),
        *([("note", results["note"])] if results.get("note") else []),
        ("versions", f"Python {m['python']}, {versions}"),
        ("code", f"commit {m['git']['commit'][:12]}" + (f"; uncommitted changes in {', '.join(dirty)}" if dirty else "")),
        ("serving config", ", ".join(f"{key} {value}" for key, value in m["serving_config"].items())),
    ]
    return "## Machine and versions\n\n" + table(("", ""), rows)


def settings_section(results: dict) -> str:
    s = results["settings"]
    padrec = Runs(results).find(k=s["k"], drafter="padrec")
    example = padrec.get("perf_analyzer") if padrec else None
    repeats = s.get("repeats", 1)
    listed = lambda values: ", ".join(map(str, values))  # noqa: E731
    lines = [
        f"- Input: the first {s['users']} {s['dataset']} test users' histories (external item IDs), sent in order; "
        f"top_n {s['top_n']}, greedy decoding.",
        f"- Runs: `recommend` at concurrency {listed(s['concurrency'])} for plain and each drafter at k={s['k']}; "
        f"each drafter at k={listed(s['sweep_k'])} at concurrency 1; "
        + (f"`recommend_stream` at concurrency {listed(s['stream_concurrency'])}; " if s["stream_concurrency"] else "")
        + f"plain at top_n {s['calibration_top_n']} (the prefill calibration)"
        + (f"; beam search at B={listed(s['beam_widths'])}"
           + (f", speculative at (B, D) = {listed(tuple(map(tuple, s['beam_drafts'])))}" if s.get("beam_drafts") else "")
           + f", concurrency {listed(s.get('beam_concurrency', (1,)))}" if s.get("beam_widths") else "")
        + ("; token trees (each drafter, concurrency 1): "
           + "; ".join(f"k={s['k']} " + Mode(tree_width=w, tree_budget=b, tree_slot_widths=c).tree_shape
                       for w, b, c in s["trees"]) + "."
           if s.get("trees") else "."),
        f"- Each run sends exactly {s['requests']} requests, at least {s['requests_per_client']} per concurrent "
        f"client (perf_analyzer `--request-count`), after {s['warmup_requests']} unmeasured warm-up requests per "
        "model and drafter at the start.",
        f"- The whole plan ran {repeats} times over" + (
            ", so a configuration's repeats lie minutes apart; tables give the median of the repeats' perf_analyzer "
            "numbers, pool their per-request outputs and sum their server statistics." if repeats > 1 else "."),
        f"- Measured {results['started']} to {results.get('finished', '(interrupted)')}.",
    ]
    if example:
        lines.append(f"- One run's perf_analyzer command (its ports and temporary paths were the run's own):\n\n"
                     f"  ```sh\n  {example}\n  ```")
    return "## Settings\n\n" + "\n".join(lines)


def criteria_section(runs: Runs, comparison: Comparison | None = None) -> str:
    s = runs.settings
    rows = []
    plain, padrec = runs.plain(), runs.find(k=s["k"], drafter="padrec")
    if plain and padrec:
        ratio = latency_summary(padrec["csv"])["p50_ms"] / latency_summary(plain["csv"])["p50_ms"]
        rows.append((f"PAD-Rec p50 <= {P50_RATIO_GOAL}x plain at concurrency 1 (k={s['k']})",
                     f"{_ratio(ratio)} ({_ms(latency_summary(padrec['csv'])['p50_ms'])} vs "
                     f"{_ms(latency_summary(plain['csv'])['p50_ms'])} ms)", "yes" if ratio <= P50_RATIO_GOAL else "no"))
    pairs = [(k, runs.find(k=k, drafter="padrec"), runs.find(k=k, drafter="eagle")) for k in sorted(set(s["sweep_k"]))]
    pairs = [(k, p, e) for k, p, e in pairs if p and e]
    if comparison is not None and comparison.rows:
        measured, met = datasets_criterion(comparison)
        rows.append((f"PAD-Rec faster than EAGLE at equal k (p50, concurrency 1), on {DATASETS_GOAL} of "
                     f"{DATASETS_TOTAL} datasets", f"{measured} ([{DATASETS_REPORT}]({DATASETS_REPORT}))", met))
    elif pairs:
        faster = [k for k, p, e in pairs if latency_summary(p["csv"])["p50_ms"] < latency_summary(e["csv"])["p50_ms"]]
        detail = "; ".join(f"k={k}: {_ms(latency_summary(p['csv'])['p50_ms'])} vs "
                           f"{_ms(latency_summary(e['csv'])['p50_ms'])} ms" for k, p, e in pairs)
        rows.append(("PAD-Rec faster than EAGLE at equal k (p50, concurrency 1), on 3 of 4 datasets",
                     f"{s['dataset']} only: faster at {len(faster)} of {len(pairs)} k ({detail})",
                     "not shown (one dataset measured)"))
    top = max(s["concurrency"])
    plain_top, padrec_top = runs.find(concurrency=top), runs.find(k=s["k"], drafter="padrec", concurrency=top)
    if plain_top and padrec_top:
        a, b = latency_summary(padrec_top["csv"])["throughput"], latency_summary(plain_top["csv"])["throughput"]
        rows.append((f"PAD-Rec throughput >= plain at concurrency {top}",
                     f"{a:.2f} vs {b:.2f} requests/s ({_ratio(a / b)})", "yes" if a >= b else "no"))
    return "## Issue 8's done criteria\n\n" + table(("criterion", "measured", "met"), rows)


def latency_section(runs: Runs, plots_dir: Path) -> str:
    rows, series = [], {}
    for run in runs.load_runs():
        summary = latency_summary(run["csv"])
        p50s = [latency_summary(row)["p50_ms"] for row in run["csv_repeats"]]
        rows.append((mode_name(run), run["concurrency"], run["requests"], f"{summary['throughput']:.2f}",
                     _ms(summary["p50_ms"]), f"{_ms(min(p50s))}-{_ms(max(p50s))}", _ms(summary["p95_ms"]),
                     _ms(summary["p99_ms"]),
                     _ms(_mean(run, "latency_ms")), f"{_mean(run, 'drafted'):.1f}", f"{_mean(run, 'tau'):.2f}",
                     run["load"][0]))
        series.setdefault(mode_name(run), []).append(
            (run["concurrency"], summary["p50_ms"], summary["p95_ms"], summary["throughput"]))
    figure = plots.latency_vs_concurrency(series, plots_dir / "latency_vs_concurrency.png")
    return ("## Latency and throughput: `recommend`\n\nThroughput and p50/p95/p99 are perf_analyzer's (its `-f` "
            "CSV; the median over the repeats); mean latency, draft tokens and tau per request come from each "
            "response's outputs (its profile export). Requests: over all repeats. Load: the 1-minute load average "
            "when the runs started (mean over the repeats).\n\n"
            + table(("mode", "concurrency", "requests", "requests/s", "p50 ms", "p50 range over repeats",
                     "p95 ms", "p99 ms", "mean ms", "drafted/request", "tau", "load"), rows)
            + f"\n\n![latency and throughput against concurrency]({PLOTS_DIR}/{figure.name})")


def stream_section(runs: Runs) -> str:
    rows = []
    for run in runs.stream_runs():
        summary = latency_summary(run["csv"])
        first = run["per_request"]["first_response_ms"]
        rows.append((mode_name(run), run["concurrency"], run["requests"], f"{summary['throughput']:.2f}",
                     _ms(median(first)), _ms(max(first)), _ms(summary["p50_ms"]), _ms(summary["p95_ms"]),
                     _ms(summary["p99_ms"]), run["load"][0]))
    if not rows:
        return "## Streaming: `recommend_stream`\n\nNot measured."
    return ("## Streaming: `recommend_stream`\n\nperf_analyzer with `--streaming`; one response per item. First item: "
            "from sending to the first response (profile export); p50/p95/p99: perf_analyzer's, to the end of the "
            "stream.\n\n" + table(("mode", "concurrency", "requests", "requests/s", "first item p50 ms",
                                   "first item max ms", "p50 ms", "p95 ms", "p99 ms", "load"), rows))


def beam_section(runs: Runs) -> str:
    """Top-K by beam search beside the greedy list it replaces, and speculative beside plain beam
    search of the same width, at each concurrency measured."""
    beams = runs.beam_runs()
    lists = {run["concurrency"]: runs.find(concurrency=run["concurrency"]) for run in beams}
    if not beams or None in lists.values():
        return "## Top-K by beam search: `recommend` with mode \"beam\"\n\nNot measured."
    p50 = {id(run): latency_summary(run["csv"])["p50_ms"] for run in [*beams, *lists.values()]}
    rows = []
    for concurrency in sorted(lists):
        plain = lists[concurrency]
        here = [b for b in beams if b["concurrency"] == concurrency]
        plain_beams = {b["beam_width"]: b for b in here if not b["draft_width"]}
        for run in [plain, *here]:
            summary = latency_summary(run["csv"])
            reference = plain_beams.get(run["beam_width"]) if run["draft_width"] else None
            rows.append((mode_name(run) + (" (greedy list)" if run is plain else ""), run["concurrency"],
                         run["requests"], f"{summary['throughput']:.2f}", _ms(summary["p50_ms"]),
                         _ms(summary["p95_ms"]), _ratio(p50[id(run)] / p50[id(plain)]),
                         _ratio(p50[id(reference)] / p50[id(run)]) if reference else "-",
                         f"{_mean(run, 'rounds'):.1f}", f"{_mean(run, 'accepted'):.2f}" if run["draft_width"] else "-"))
    return ("## Top-K by beam search: `recommend` with mode \"beam\"\n\nThe top_n best items by beam search, "
            "plain and speculative (`draft_width` D: the PAD-Rec draft proposes D prefixes per level, the same "
            "items come back), against the plain greedy list of the same top_n at the same concurrency. A plain "
            "beam request holds one decoding slot (its beams scored as a token tree in one cache row), a "
            "speculative one max(B, D), or without the one-row layout a slot per beam (and per drafted prefix "
            "below the first level); beam requests that one execution of `padrec_decode` batches beyond its "
            "free slots are searched in waves. Target forwards per request: the response's ROUNDS output; accepted levels: "
            "its ACCEPTED (levels the draft's tree covered).\n\n"
            + table(("mode", "concurrency", "requests", "requests/s", "p50 ms", "p95 ms", "p50 / greedy list",
                     "speed-up over plain beam (p50)", "target forwards/request", "accepted levels/request"), rows))


def tree_section(runs: Runs) -> str:
    """Token trees beside the chain of the same depth and plain decoding, at concurrency 1."""
    trees, plain = runs.tree_runs(), runs.plain()
    if not trees or plain is None:
        return "## Token trees: `recommend` with `tree_width`\n\nNot measured."
    p50 = lambda run: latency_summary(run["csv"])["p50_ms"]  # noqa: E731
    rows = []
    for drafter in dict.fromkeys(run["drafter"] for run in trees):
        chain = runs.find(k=trees[0]["k"], drafter=drafter)
        for run in [chain, *(t for t in trees if t["drafter"] == drafter)]:
            if run is None:
                continue
            costs = run_costs(run)
            rows.append((mode_name(run), run["requests"], _ms(p50(run)), _ratio(p50(plain) / p50(run)),
                         _ratio(p50(chain) / p50(run)) if chain else "-", f"{_mean(run, 'drafted'):.1f}",
                         f"{_mean(run, 'rounds'):.1f}", f"{_mean(run, 'tau'):.2f}", _ms(costs.target_ms),
                         f"{costs.target_calls:.1f}", _ms(costs.draft_ms), f"{costs.draft_calls:.1f}",
                         _ms(costs.host_ms)))
    return ("## Token trees: `recommend` with `tree_width` (concurrency 1)\n\nEach round the drafter's step model "
            "grows a token tree k deep and `tree_width` wide (each node's continuations by within-item slot where "
            "`tree_slot_widths` says; its `tree_budget` likeliest nodes kept, 0: all), one "
            "call per depth; the target verifies it in one forward and keeps the accepted path when the row's next "
            "call arrives; the lists are plain greedy's. Drafted: tree nodes per request (the response's DRAFTED); "
            "target forwards: its ROUNDS; tau: its TAU. Per request, from the server's statistics: time in target "
            "calls and their number, in draft calls (a chain's: the round model, one per round; a tree's: the step "
            "model, one per depth) and in the rest (engine Python and BLS transport).\n\n"
            + table(("mode", "requests", "p50 ms", "speed-up over plain (p50)", "over the chain (p50)",
                     "drafted/request", "target forwards/request", "tau", "target ms", "target calls",
                     "draft ms", "draft calls", "engine + BLS ms"), rows))


def sweep_section(runs: Runs, plots_dir: Path) -> str:
    plain = runs.plain()
    rows, series = [], {}
    for run in runs.sweep_runs():
        costs = run_costs(run)
        p50 = latency_summary(run["csv"])["p50_ms"]
        tau_effective = effective_tau(costs, run_costs(plain)) if plain else float("nan")
        speed = _ratio(latency_summary(plain["csv"])["p50_ms"] / p50) if plain else "-"
        acceptance = sum(run["per_request"]["accepted"]) / max(1.0, sum(run["per_request"]["drafted"]))
        rows.append((run["drafter"], run["k"], _ms(p50), speed, f"{_mean(run, 'tau'):.2f}", f"{tau_effective:.2f}",
                     f"{acceptance:.2f}", f"{costs.target_calls:.1f}", run["load"][0]))
        series.setdefault(run["drafter"], []).append((run["k"], _mean(run, "tau"), tau_effective))
    if not rows:
        return "## tau against k\n\nNot measured."
    figure = plots.tau_vs_k(series, plots_dir / "tau_vs_k.png")
    plain_note = f"Plain decoding: p50 {_ms(latency_summary(plain['csv'])['p50_ms'])} ms, " \
                 f"{run_costs(plain).target_calls:.1f} target forwards per request. " if plain else ""
    return ("## tau against k (concurrency 1)\n\n" + plain_note
            + "tau is the engine's (mean of the responses' TAU: tokens per target forward, bonus included, forced "
              "tokens excluded); effective tau is plain decoding's decoding rounds over this one's on the same "
              "users, which is what shortens decoding (see below why it is lower). Acceptance: accepted / drafted.\n\n"
            + table(("drafter", "k", "p50 ms", "speed-up (p50)", "tau", "effective tau", "acceptance",
                     "target forwards/request", "load"), rows)
            + f"\n\n![tau against k]({PLOTS_DIR}/{figure.name})")


def breakdown_section(runs: Runs, plots_dir: Path) -> str:
    plain, cost = runs.plain(), runs.target_cost()
    if plain is None or cost is None:
        return "## Where the time goes\n\nNot measured (needs plain decoding at concurrency 1 and its calibration run)."
    request_rows, bars, round_rows = [], {}, []
    for run in [plain, *runs.sweep_runs()]:
        costs = run_costs(run)
        bars[mode_name(run)] = {
            "target: prefill": cost.prefill_ms, "target: decoding rounds": costs.target_ms - cost.prefill_ms,
            "draft calls": costs.draft_ms, "engine Python + BLS": costs.host_ms,
            "decode queue": costs.queue_ms, "outside decode": costs.outside_ms}
        request_rows.append((mode_name(run), f"{costs.target_calls:.1f}", _ms(costs.target_ms), _ms(costs.draft_ms),
                             _ms(costs.host_ms), _ms(costs.exec_ms), _ms(costs.queue_ms), _ms(costs.outside_ms),
                             _ms(_mean(run, "latency_ms"))))
        if run["k"]:
            s = speed_up(run, plain, cost)
            round_rows.append((run["drafter"], run["k"], f"{s.tau:.2f}", f"{s.tau_effective:.2f}", _ms(s.draft_ms),
                               _ms(s.verify_ms), f"{(s.draft_ms + s.verify_ms) / cost.round_ms:.2f}",
                               _ratio(s.ideal), _ratio(s.ideal_effective), _ratio(s.measured_decode),
                               _ratio(s.measured_p50)))
    figure = plots.breakdown(bars, plots_dir / "breakdown.png")
    return (
        "## Where the time goes\n\n"
        "From Triton's own statistics, snapshotted before and after each run (no server code involved): the "
        "decode model's execution time splits into its BLS calls to `target` and `draft_<drafter>` (their request "
        "durations as Triton counts them) and the rest, which is the engine's own Python (constraints, acceptance, "
        "batching) plus the BLS transport the callees do not see. Outside decode: perf_analyzer's mean latency "
        "minus the decode model's mean request duration (gRPC and, for `recommend`, preprocess, postprocess and "
        "the ensemble; `recommend_stream` is its own decode model).\n\n"
        f"T_target, one plain decoding round of the target (1 chosen token, plus the forced tokens riding along), "
        f"and the prefill come from a fit over the two plain runs at concurrency 1 (top_n {runs.settings['top_n']} "
        f"and {runs.settings['calibration_top_n']}): **T_target = {_ms(cost.round_ms)} ms, prefill = "
        f"{_ms(cost.prefill_ms)} ms**.\n\n"
        "### Per request, concurrency 1 (ms, means)\n\n"
        + table(("mode", "target forwards", "target calls", "draft calls", "engine + BLS", "decode execution",
                 "decode queue", "outside decode", "client latency"), request_rows)
        + f"\n\n![where the time goes]({PLOTS_DIR}/{figure.name})\n\n"
        "### Per round: measured against ideal speed-up\n\n"
        "T_draft(k): one draft call; T_verify: one verification call of the target (its time less the prefill, "
        "over the rounds after it). Ideal = tau x T_target / (T_draft + T_verify), as the issue defines it, and the "
        "same with the effective tau. Measured: plain's decode execution time over this one's (what the ideal "
        "models), and plain's p50 latency over this one's (end to end).\n\n"
        + table(("drafter", "k", "tau", "effective tau", "T_draft ms", "T_verify ms", "round / T_target",
                 "ideal", "ideal (effective tau)", "measured (decode)", "measured (p50)"), round_rows))


def load_section(runs: Runs) -> str:
    rows = []
    for run in runs.load_runs():
        c = run_costs(run)
        rounds = c.target_calls
        rows.append((mode_name(run), run["concurrency"], f"{c.batch:.1f}", _ms(c.queue_ms), _ms(c.exec_ms),
                     _ms(c.target_ms), _ms(c.draft_ms), _ms(c.host_ms), f"{rounds:.1f}",
                     _ms(c.exec_ms / rounds) if rounds else "-", f"{_mean(run, 'drafted'):.1f}"))
    return ("### Under load (`recommend`, per decode execution = one engine batch)\n\n"
            "One `padrec_decode` instance decodes the requests that arrive together as one engine batch, so a "
            "request waits (decode queue) while the batch before it runs.\n\n"
            + table(("mode", "concurrency", "requests/batch", "decode queue ms/request", "batch ms", "target ms",
                     "draft ms", "engine + BLS ms", "target forwards/batch", "ms per round", "drafted/request"), rows))


def acceptance_section(runs: Runs, offline_bench: Path | None, plots_dir: Path) -> str:
    k = runs.settings["k"]
    served = [run for run in runs.sweep_runs() if run["k"] == k]
    by_depth = acceptance_by_depth(served)
    by_slot, source = {}, "not available"
    if offline_bench is not None and offline_bench.is_file():
        bench = json.loads(offline_bench.read_text())
        by_slot = {entry["drafter"]: entry["acceptance_by_slot"] for entry in bench["speculative"] if entry["k"] == k}
        source = f"`{offline_bench.name}` (`padrec bench`, {bench['users']} users, offline)"
    fmt = lambda rates: " ".join(f"{rate:.2f}" for rate in rates)  # noqa: E731
    rows = [(drafter, fmt(by_depth.get(drafter, [])), fmt(by_slot.get(drafter, [])))
            for drafter in sorted(set(by_depth) | set(by_slot))]
    figure = plots.acceptance(by_depth, by_slot, plots_dir / "acceptance.png")
    return (f"## Acceptance (k={k})\n\nConditional acceptance rates (accepted / reached). By depth: the served "
            f"decoder's `padrec_draft_depth_total` counters over the concurrency-1 runs at k={k}. By within-item slot "
            f"(code levels 0-3, then the separator): {source}; the served counters do not split by slot.\n\n"
            + table(("drafter", "by depth 1..k (served)", "by slot 0..4 (offline)"), rows)
            + f"\n\n![acceptance]({PLOTS_DIR}/{figure.name})")


def findings_section(runs: Runs) -> str:
    """The reading of the numbers, computed from them so that a re-run keeps it true."""
    s, plain, cost = runs.settings, runs.plain(), runs.target_cost()
    padrec = runs.find(k=s["k"], drafter="padrec")
    if not (plain and padrec and cost):
        return ""
    p, q = run_costs(plain), run_costs(padrec)
    up: SpeedUp = speed_up(padrec, plain, cost)
    share = lambda part, whole: f"{100 * part / whole:.0f}%"  # noqa: E731
    verify, draft = up.verify_ms / cost.round_ms, up.draft_ms / cost.round_ms
    lines = [
        f"- At concurrency 1, PAD-Rec (k={s['k']}) decodes in {q.target_calls:.1f} target forwards against plain's "
        f"{p.target_calls:.1f} ({up.tau_effective:.2f}x fewer), but its decode execution takes {_ms(q.exec_ms)} "
        f"against {_ms(p.exec_ms)} ms (a speed-up of {_ratio(up.measured_decode)}): a round costs "
        f"T_draft + T_verify = {_ms(up.draft_ms)} + {_ms(up.verify_ms)} = {_ms(up.draft_ms + up.verify_ms)} ms, "
        f"{(up.draft_ms + up.verify_ms) / cost.round_ms:.2f}x a plain round (T_target {_ms(cost.round_ms)} ms).",
        f"- Verifying the pending and k draft tokens costs T_verify = {verify:.2f} T_target, "
        + ("about one plain round: the target's cost here is per call rather than per token. " if verify < 1.3 else
           "more than a plain round: extra tokens are not free for the target here. ")
        + f"A draft call costs T_draft = {draft:.2f} T_target"
        + (", about as much as a target call, where speculation pays only if it is a small fraction." if draft > 0.5
           else "."),
        f"- PAD-Rec's decode time splits into target {share(q.target_ms, q.exec_ms)}, draft "
        f"{share(q.draft_ms, q.exec_ms)} and engine Python + BLS {share(q.host_ms, q.exec_ms)} "
        f"({_ms(q.host_ms / q.target_calls)} ms per round); plain's into target {share(p.target_ms, p.exec_ms)} and "
        f"engine Python + BLS {share(p.host_ms, p.exec_ms)} ({_ms(p.host_ms / p.target_calls)} ms per round).",
        f"- For the goal ({P50_RATIO_GOAL}x plain's time) with these {q.target_calls:.1f} target forwards, a PAD-Rec "
        f"round with its engine Python and BLS would have to cost at most "
        f"{_ms(P50_RATIO_GOAL * p.exec_ms / q.target_calls)} ms; it costs {_ms(q.exec_ms / q.target_calls)} ms "
        f"(decode execution per target forward, prefill included), against plain's {_ms(p.exec_ms / p.target_calls)} ms.",
        f"- The ideal speed-up with the engine's tau ({up.tau:.2f}) is {_ratio(up.ideal)}; with the effective tau "
        f"({up.tau_effective:.2f}) {_ratio(up.ideal_effective)}; measured {_ratio(up.measured_decode)} (decode) and "
        f"{_ratio(up.measured_p50)} (p50)."
        + (" tau overstates the saving: tokens the catalogue constraints force (the separator, single-continuation "
           "codes) are free in plain decoding but count as accepted draft tokens when the draft proposes them."
           if up.tau > up.tau_effective else ""),
    ]
    eagle = runs.find(k=s["k"], drafter="eagle")
    if eagle:
        # same target, same k, nearly the same tokens per round: any difference is the machine's
        other = speed_up(eagle, plain, cost).verify_ms
        spread = abs(up.verify_ms - other) / min(up.verify_ms, other)
        lines.append(f"- Noise: T_verify at k={s['k']}, the same target work for both drafters, measured "
                     f"{_ms(up.verify_ms)} ms in PAD-Rec's runs and {_ms(other)} ms in EAGLE's ({100 * spread:.0f}% "
                     f"apart): differences between configurations smaller than that are within this machine's noise.")
    top = max(s["concurrency"])
    plain_top, padrec_top = runs.find(concurrency=top), runs.find(k=s["k"], drafter="padrec", concurrency=top)
    if plain_top and padrec_top:
        a, b = run_costs(padrec_top), run_costs(plain_top)
        serving = runs.machine["serving_config"]
        lines.append(
            f"- At concurrency {top} the decoder runs batches of {a.batch:.1f} (PAD-Rec) and {b.batch:.1f} (plain) "
            f"requests; a PAD-Rec round of the batch costs {_ms(a.exec_ms / a.target_calls)} ms against plain's "
            f"{_ms(b.exec_ms / b.target_calls)} ms, with {_mean(padrec_top, 'drafted'):.1f} draft tokens per request "
            f"against {_mean(padrec, 'drafted'):.1f} at concurrency 1"
            + (f" (engine batches of more than load_threshold = {serving['load_threshold']} requests decode with at "
               f"most {serving['draft_tokens_under_load']} draft tokens)." if "load_threshold" in serving else "."))
    return "## Findings\n\n" + "\n".join(lines)


def failed_section(runs: Runs) -> str:
    if not runs.failed:
        return ""
    rows = [(run["model"], mode_name(run), run["concurrency"], run["top_n"], run.get("repeat", 0),
             run["error"].splitlines()[0]) for run in runs.failed]
    return "## Failed runs\n\n" + table(("model", "mode", "concurrency", "top_n", "repeat", "error"), rows)


def render(results: dict, out_dir: Path, offline_bench: Path | None = None) -> Path:
    """Write out_dir/REPORT.md and out_dir/plots/*.png; the report's path. The cross-dataset criterion
    comes from out_dir/datasets/ (`python -m perf datasets`) when it is there."""
    runs = Runs(results)
    plots_dir = out_dir / PLOTS_DIR
    sections = [
        "# padrec through Triton: perf_analyzer benchmark\n\n"
        f"Measured with `{results['command']}` (`make perf`); this report is rendered from `results.json` beside "
        "it by `python -m perf report` (`make perf-report`).",
        criteria_section(runs, load_comparison(out_dir)),
        findings_section(runs),
        latency_section(runs, plots_dir),
        stream_section(runs),
        beam_section(runs),
        tree_section(runs),
        sweep_section(runs, plots_dir),
        breakdown_section(runs, plots_dir),
        load_section(runs),
        acceptance_section(runs, offline_bench, plots_dir),
        machine_section(results),
        settings_section(results),
        failed_section(runs),
    ]
    path = out_dir / REPORT_FILE
    path.write_text("\n\n".join(section for section in sections if section) + "\n")
    return path


# --- DATASETS.md: PAD-Rec against EAGLE across datasets (perf.comparison) ------------------------


def _range(bounds: tuple[float, float]) -> str:
    return f"{_ms(bounds[0])}-{_ms(bounds[1])}"


def _dataset_rows(comparison: Comparison) -> list[tuple]:
    rows = []
    for dataset in comparison.order:
        results = comparison.results.get(dataset)
        if dataset in comparison.skipped:
            rows.append((dataset, "skipped", comparison.skipped[dataset], "", "", "", ""))
        elif dataset in comparison.failed:
            rows.append((dataset, "failed", comparison.failed[dataset], "", "", "", ""))
        elif results is None:
            rows.append((dataset, "not measured", "no results file", "", "", "", ""))
        else:
            s, served = results["settings"], results.get("served", {})
            errors = [run for run in results["runs"] if "error" in run]
            end = results.get("load_end")
            rows.append((
                dataset, "measured" if "finished" in results else "interrupted",
                f"{results['started']} to {results.get('finished', '-')}",
                f"{s['users']} users; {s['requests']} requests x {s['repeats']} repeats",
                f"{' '.join(map(str, results['load_start']))} / {' '.join(map(str, end)) if end else '-'}",
                ", ".join(f"{name} {digest}" for name, digest in served.get("sources", {}).items()) or "-",
                f"{len(errors)}: {errors[0]['error'].splitlines()[0]}" if errors else "0"))
    return rows


def render_datasets(comparison: Comparison, out_dir: Path) -> Path:
    """Write out_dir/DATASETS.md from a comparison (perf.comparison.load); its path."""
    measured, met = datasets_criterion(comparison)
    ks = ", ".join(map(str, comparison.ks))
    rows = []
    for row in comparison.rows:
        winner = "PAD-Rec" if row.padrec_faster else "EAGLE"
        rows.append((row.dataset, row.k, _ms(row.plain_p50) if row.plain_p50 is not None else "-", _ms(row.eagle_p50),
                     _ms(row.padrec_p50), f"{row.ratio:.2f}", f"{row.eagle_tau:.2f}", f"{row.padrec_tau:.2f}",
                     f"{_range(row.eagle_range)}; {_range(row.padrec_range)}",
                     winner + ("" if row.separated else " (one repeat)" if row.repeats == 1
                               else " (within the repeats' spread)")))
    listed = lambda names: ", ".join(names) or "-"  # noqa: E731
    counts = [(c.k, f"{len(c.measured)} ({listed(c.measured)})", f"{len(c.faster)} ({listed(c.faster)})",
               f"{len(c.separated)} ({listed(c.separated)})", "yes" if c.met else ("no" if c.decided else "not shown"))
              for c in comparison.counts()]
    first = next(iter(comparison.results.values()), None)
    settings = first["settings"] if first else None
    method = (
        f"Per dataset: its trained target and drafts (`artifacts/<dataset>/`) exported with `padrec export "
        f"--backend python` into a model repository of its own beside model_repository/'s committed models, served "
        f"by a fresh `tritonserver`, and perf_analyzer against `recommend` at concurrency 1: plain decoding and "
        f"each drafter at k = {ks}"
        + (f", top_n {settings['top_n']}, greedy, the first {settings['users']} test users' histories sent in order; "
           f"every run sends {settings['requests']} requests, and the whole plan ran "
           + ("once" if settings["repeats"] == 1 else f"{settings['repeats']} times over")
           + f" with the modes alternating, after {settings['warmup_requests']} warm-up request(s) per drafter"
           if settings else "")
        + ". p50: perf_analyzer's, the median over the repeats; the range is the repeats' own p50s. tau: the served "
          "engine's (mean of the responses' TAU: tokens per target forward, bonus included, forced tokens excluded). "
          "PAD-Rec / EAGLE below 1 means PAD-Rec is faster; a difference within the repeats' spread is within this "
          "machine's drift.")
    sections = [
        "# PAD-Rec against the EAGLE-style draft across datasets (through Triton, concurrency 1)\n\n"
        f"Measured with `{comparison.command}` (`make perf-datasets`); this file is rendered from "
        f"`{DATASETS_DIR}/{INDEX_FILE}` and `{DATASETS_DIR}/<dataset>/results.json` by `python -m perf "
        "datasets-report`." + (f"\n\nNote: {comparison.note}" if comparison.note else "")
        + ("\n\n[REPORT.md](REPORT.md) has the full benchmark of the default (Beauty) repository."
           if (out_dir / REPORT_FILE).is_file() else ""),
        "## Issue 8's criterion\n\n" + table(("criterion", "measured", "met"), [
            (f"PAD-Rec faster than EAGLE at equal k (p50, concurrency 1), on at least {DATASETS_GOAL} of "
             f"{DATASETS_TOTAL} datasets", measured, met)]),
        "## p50 latency at equal k\n\n" + method + "\n\n"
        + (table(("dataset", "k", "plain p50 ms", "EAGLE p50 ms", "PAD-Rec p50 ms", "PAD-Rec / EAGLE", "EAGLE tau",
                  "PAD-Rec tau", "p50 over repeats ms (EAGLE; PAD-Rec)", "faster"), rows) if rows else "Nothing measured."),
        "## Datasets where PAD-Rec is faster, per k\n\n"
        + table(("k", "datasets measured", "PAD-Rec faster on", "... with the repeats' p50 ranges apart",
                 f"at least {DATASETS_GOAL} of {DATASETS_TOTAL}"), counts),
        "## Datasets and runs\n\nLoad: the 1, 5 and 15-minute load averages at the start and end of the dataset's "
        "runs (2 cores). Checkpoints: the first hex digits of the SHA-256 of each served model's checkpoint.\n\n"
        + table(("dataset", "state", "measured", "runs", "load start / end", "checkpoints served", "failed runs"),
                _dataset_rows(comparison)),
    ]
    path = out_dir / DATASETS_REPORT
    path.write_text("\n\n".join(sections) + "\n")
    return path
