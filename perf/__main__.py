"""`python -m perf run` (benchmark, then report), `python -m perf report` (re-render from the JSON),
`python -m perf datasets` (PAD-Rec against EAGLE on several datasets, then DATASETS.md) and
`python -m perf datasets-report` (re-render DATASETS.md) and `python -m perf failover` (replicas under
load, one killed and restarted, then FAILOVER.md)."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

from padrec.server import REPO_ROOT, ServerError
from perf import comparison, datasets, failover, machine
from perf.plan import Settings
from perf.report import render, render_datasets
from perf.run import RESULTS_FILE, Endpoints, benchmark, benchmark_with_server, load_results

DEFAULT_OUT = REPO_ROOT / "perf"
QUICK_OUT = REPO_ROOT / "build" / "perf-quick"
# A few minutes: fewer requests and concurrency levels, the k sweep's ends only.
QUICK = {"requests": 10, "requests_per_client": 2, "repeats": 1, "concurrency": (1, 4, 16), "sweep_k": (1, 4),
         "beam_widths": (20,), "beam_concurrency": (1,), "beam_drafts": ((20, 20),)}
DEFAULT_OFFLINE_BENCH = REPO_ROOT / "results" / "bench_beauty_onnxruntime.json"
DATASETS_QUICK_OUT = REPO_ROOT / "build" / "perf-datasets-quick"
# A minute or two per dataset: is everything wired up?
DATASETS_QUICK = {"users": 10, "requests": 2, "repeats": 1, "warmup_requests": 2, "ks": (2,)}


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part)


def _pairs(text: str) -> tuple[tuple[int, int], ...]:
    """"10:10,20:6" -> ((10, 10), (20, 6)); "" -> ()."""
    try:
        return tuple((int(a), int(b)) for a, b in (part.split(":") for part in text.split(",") if part))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected pairs of whole numbers like 10:10,20:6, got {text!r}") from None


def _trees(text: str) -> tuple[tuple[int, int, str], ...]:
    """"3:0,3:8:1-3-2-1-1" -> ((3, 0, ""), (3, 8, "1,3,2,1,1")); "" -> ()."""
    trees = []
    for part in filter(None, text.split(",")):
        fields = part.split(":")
        numbers = fields[:2] + (fields[2].split("-") if len(fields) == 3 else [])
        if len(fields) not in (2, 3) or not all(number.isdigit() for number in numbers):
            raise argparse.ArgumentTypeError(f"expected width:budget[:widths-by-slot] like 3:0,3:8:1-3-2-1-1, "
                                             f"got {part!r}")
        trees.append((int(fields[0]), int(fields[1]), fields[2].replace("-", ",") if len(fields) == 3 else ""))
    return tuple(trees)


def _tree_text(tree: tuple[int, int, str]) -> str:
    """The --trees form of one tree."""
    width, budget, slot_widths = tree
    return f"{width}:{budget}" + (f":{slot_widths.replace(',', '-')}" if slot_widths else "")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m perf", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)
    defaults = Settings()
    run = commands.add_parser("run", help="benchmark the served recommender with perf_analyzer, then render the report")
    run.add_argument("--out", type=Path, help=f"folder for results.json, REPORT.md, plots/ (default {DEFAULT_OUT}, "
                                              f"with --quick {QUICK_OUT})")
    run.add_argument("--quick", action="store_true", help=f"a run of a few minutes: {QUICK}")
    run.add_argument("--repository", type=Path, default=REPO_ROOT / "model_repository",
                     help="model repository to serve (default: %(default)s)")
    run.add_argument("--grpc-url", help="benchmark this running server (host:port) instead of starting one")
    run.add_argument("--metrics-url", help="its Prometheus endpoint (with --grpc-url)")
    run.add_argument("--dataset", default=defaults.dataset)
    run.add_argument("--users", type=int, help=f"test users as input data (default {defaults.users})")
    run.add_argument("--requests", type=int, help=f"measured requests per run (default {defaults.requests})")
    run.add_argument("--repeats", type=int, help=f"passes over the whole plan (default {defaults.repeats})")
    run.add_argument("--requests-per-client", type=int,
                     help=f"at least this many per concurrent client (default {defaults.requests_per_client})")
    run.add_argument("--concurrency", type=_ints, help=f"load runs' concurrency levels (default {defaults.concurrency})")
    run.add_argument("--sweep-k", type=_ints, help=f"draft tokens of the tau-vs-k runs (default {defaults.sweep_k})")
    run.add_argument("--stream-concurrency", type=_ints,
                     help=f"concurrency levels of recommend_stream (default {defaults.stream_concurrency})")
    run.add_argument("--warmup-requests", type=int, help=f"default {defaults.warmup_requests}")
    run.add_argument("--beam-widths", type=_ints,
                     help=f"beam widths of the top-K runs (default {defaults.beam_widths})")
    run.add_argument("--beam-concurrency", type=_ints,
                     help=f"concurrency levels of the top-K runs (default {defaults.beam_concurrency})")
    run.add_argument("--beam-drafts", type=_pairs,
                     help="speculative top-K runs as beam width:draft width pairs, PAD-Rec draft; '' for none "
                          f"(default {','.join(f'{b}:{d}' for b, d in defaults.beam_drafts)})")
    run.add_argument("--trees", type=_trees,
                     help="token-tree runs at concurrency 1, each drafter at k, as width:budget (0: every node) or "
                          "width:budget:widths-by-slot (1-3-2-1-1), comma-separated; '' for none (default "
                          f"{','.join(_tree_text(tree) for tree in defaults.trees)})")
    run.add_argument("--note", default="", help="recorded in the report, e.g. what else ran on the machine")
    run.add_argument("--offline-bench", type=Path, default=DEFAULT_OFFLINE_BENCH,
                     help="padrec bench JSON for acceptance by slot (default: %(default)s)")
    report = commands.add_parser("report", help="render REPORT.md and plots/ from a saved results.json")
    report.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder holding results.json (default: %(default)s)")
    report.add_argument("--offline-bench", type=Path, default=DEFAULT_OFFLINE_BENCH,
                        help="padrec bench JSON for acceptance by slot (default: %(default)s)")
    plan = datasets.Plan()
    across = commands.add_parser(
        "datasets", help="PAD-Rec against EAGLE at equal k on several datasets (concurrency 1), then DATASETS.md")
    across.add_argument("--datasets", type=_names, default=plan.datasets,
                        help=f"comma-separated (default {','.join(plan.datasets)}); one without trained drafts is skipped")
    across.add_argument("--k", dest="ks", type=_ints, help=f"draft tokens compared (default {_listed(plan.ks)})")
    across.add_argument("--users", type=int, help=f"test users as input data (default {plan.users})")
    across.add_argument("--requests", type=int, help=f"measured requests per run (default {plan.requests})")
    across.add_argument("--repeats", type=int, help=f"passes over each dataset's plan (default {plan.repeats})")
    across.add_argument("--warmup-requests", type=int, help=f"default {plan.warmup_requests}")
    across.add_argument("--quick", action="store_true", help=f"a minute or two per dataset: {DATASETS_QUICK}")
    across.add_argument("--out", type=Path, help=f"folder of datasets/ and DATASETS.md (default {DEFAULT_OUT}, with "
                                                 f"--quick {DATASETS_QUICK_OUT}); REPORT.md there is re-rendered")
    across.add_argument("--build", type=Path, default=datasets.BUILD_DIR,
                        help="where each dataset's model repository is exported (default: %(default)s)")
    across.add_argument("--note", default="", help="recorded in DATASETS.md, e.g. what else ran on the machine")
    across_report = commands.add_parser("datasets-report", help="render DATASETS.md from a saved datasets/ folder")
    across_report.add_argument("--out", type=Path, default=DEFAULT_OUT,
                               help="folder holding datasets/ (default: %(default)s)")
    failover_plan = failover.FailoverPlan()
    fail = commands.add_parser("failover", help="replicas under load, one SIGKILLed and restarted: FAILOVER.md")
    fail.add_argument("--repository", type=Path, default=REPO_ROOT / "model_repository",
                      help="model repository every replica serves (default: %(default)s)")
    fail.add_argument("--dataset", default="beauty", help="whose test users are sent (default: %(default)s)")
    fail.add_argument("--users", type=int, default=64, help="distinct test users (default: %(default)s)")
    fail.add_argument("--replicas", type=int, default=2, help="default: %(default)s")
    for name in ("duration_s", "clients", "kill_at_s", "restart_at_s"):
        fail.add_argument(f"--{name.removesuffix('_s').replace('_', '-')}", dest=name,
                          type=type(getattr(failover_plan, name)),
                          help=f"default: {getattr(failover_plan, name)}")
    fail.add_argument("--out", type=Path, default=DEFAULT_OUT,
                      help="folder of failover.json, FAILOVER.md, plots/ (default: %(default)s)")
    return top


def failover_main(args: argparse.Namespace, argv: list[str] | None) -> int:
    import tempfile

    import tritonclient.grpc as grpcclient

    from padrec.cluster import LocalCluster
    from padrec.server import ServerConfig

    overrides = {name: getattr(args, name) for name in ("duration_s", "clients", "kill_at_s", "restart_at_s")
                 if getattr(args, name) is not None}
    try:
        plan = failover.FailoverPlan(**overrides)
    except ValueError as error:
        print(f"python -m perf failover: {error}", file=sys.stderr)
        return 2
    print(f"decoding {args.users} {args.dataset} test users offline for the reference lists", file=sys.stderr)
    cases = failover.user_cases(args.repository, args.dataset, args.users, plan)
    config = ServerConfig(model_repository=args.repository, http_port=0, grpc_port=0, metrics_port=0)
    log_dir = Path(tempfile.mkdtemp(prefix="padrec-failover-"))
    try:
        with LocalCluster(config, args.replicas, log_dir) as cluster:
            print(f"{args.replicas} replicas ready ({', '.join(cluster.grpc_urls)}); load for {plan.duration_s:g} s",
                  file=sys.stderr)
            report = failover.run_failover(cluster, cases, plan)
            with grpcclient.InferenceServerClient(cluster.grpc_urls[1]) as client:
                triton_version = client.get_server_metadata(as_json=True)["version"]
    except ServerError as error:
        print(f"python -m perf failover: {error}", file=sys.stderr)
        return 1
    machine_info = machine.describe(triton_version, {})
    written = failover.write_report(report, args.out, command_line(argv), machine_info)
    summary = report.summary()
    print(f"{summary['requests']} requests, {summary['failed']} failed, {summary['differing']} differing; wrote "
          + ", ".join(map(str, written)))
    return 0 if summary["failed"] == summary["differing"] == 0 else 1


def _names(text: str) -> tuple[str, ...]:
    return tuple(part for part in text.split(",") if part)


def _listed(values: tuple) -> str:
    return ",".join(map(str, values))


def plan_from(args: argparse.Namespace) -> datasets.Plan:
    """The datasets plan: defaults, then --quick's, then every option given."""
    chosen = dict(DATASETS_QUICK) if args.quick else {}
    names = [field.name for field in dataclasses.fields(datasets.Plan)]
    chosen.update({name: getattr(args, name) for name in names if getattr(args, name, None) is not None})
    return datasets.Plan(**chosen)


def render_datasets_and_report(out: Path) -> list[Path]:
    """DATASETS.md from out/datasets/, and REPORT.md again if out/ holds a benchmark (its criterion row)."""
    found = comparison.load(out)
    if found is None:
        return []
    written = [render_datasets(found, out)]
    if (out / RESULTS_FILE).is_file():
        written.append(render(load_results(out), out, DEFAULT_OFFLINE_BENCH))
    return written


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings: defaults, then --quick's, then every option given."""
    chosen = dict(QUICK) if args.quick else {}
    names = [field.name for field in dataclasses.fields(Settings)]
    chosen.update({name: getattr(args, name) for name in names if getattr(args, name, None) is not None})
    return Settings(**chosen)


def command_line(argv: list[str] | None) -> str:
    """The command that was run, as a shell line results files record."""
    return shlex.join(["python", "-m", "perf", *(sys.argv[1:] if argv is None else argv)])


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command in ("datasets", "datasets-report"):
        return datasets_main(args, argv)
    if args.command == "failover":
        return failover_main(args, argv)
    if args.command == "report":
        render(load_results(args.out), args.out, args.offline_bench)
        found = comparison.load(args.out)
        if found is not None:
            render_datasets(found, args.out)
        print(f"wrote {args.out / 'REPORT.md'}" + (f" and {args.out / comparison.DATASETS_REPORT}" if found else ""))
        return 0
    out = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)
    command = command_line(argv)
    try:
        settings = settings_from(args)
    except ValueError as error:
        print(f"python -m perf: {error}", file=sys.stderr)
        return 2
    try:
        if args.grpc_url:
            if not args.metrics_url:
                print("python -m perf: --grpc-url needs --metrics-url", file=sys.stderr)
                return 2
            results = benchmark(settings, Endpoints(args.grpc_url, args.metrics_url), out, command, args.note)
        else:
            results = benchmark_with_server(settings, args.repository, out, command, args.note)
    except ServerError as error:
        print(f"python -m perf: {error}", file=sys.stderr)
        return 1
    render(results, out, args.offline_bench)
    failed = [run for run in results["runs"] if "error" in run]
    print(f"wrote {out / 'results.json'} and {out / 'REPORT.md'}" + (f"; {len(failed)} run(s) failed" if failed else ""))
    return 1 if failed else 0


def datasets_main(args: argparse.Namespace, argv: list[str] | None) -> int:
    if args.command == "datasets-report":
        written = render_datasets_and_report(args.out)
        if not written:
            print(f"python -m perf datasets-report: no {args.out / comparison.DATASETS_DIR / comparison.INDEX_FILE}",
                  file=sys.stderr)
            return 1
        print("wrote " + " and ".join(map(str, written)))
        return 0
    out = args.out or (DATASETS_QUICK_OUT if args.quick else DEFAULT_OUT)
    command = command_line(argv)
    try:
        plan = plan_from(args)
    except ValueError as error:
        print(f"python -m perf datasets: {error}", file=sys.stderr)
        return 2
    index = datasets.measure(plan, out, command, args.note, args.build)
    written = render_datasets_and_report(out)
    states = [entry["state"] for entry in index["status"].values()]
    failed_runs = sum(entry.get("failed_runs", 0) for entry in index["status"].values())
    print(f"measured {states.count('measured')}, skipped {states.count('skipped')}, failed {states.count('failed')} "
          f"of {len(states)} datasets" + (f" ({failed_runs} run(s) failed)" if failed_runs else "")
          + "; wrote " + " and ".join(map(str, written)))
    return 1 if states.count("failed") or failed_runs else 0


if __name__ == "__main__":
    sys.exit(main())
