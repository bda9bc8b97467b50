"""`padrec export`: the target and the drafts as ONNX graphs (or TensorRT engines), checked against
torch, installed as the Triton models `target`, `draft_<drafter>` (a draft round, for lists) and
`draft_<drafter>_step` (a draft step, for speculative beam search) of a model repository.

Nothing is installed unless every check passes (`padrec.export.checks`); the repository's other
models and files are left alone. `export/README.md` describes the graphs and the repository.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from padrec.commands import add_prior_argument, emit_report, missing_checkpoint, prefix_size_penalty
from padrec.config import ARTIFACTS_DIR, DRAFTERS, REPO_ROOT, ServingConfig
from padrec.export.forced_room import COVERAGE, ROOM_USERS, measured_room

BACKENDS = ("python", "onnxruntime", "tensorrt")
# The Python backend is what this project's server runs, so its repository is the one `make serve`
# serves; the others are built to be copied to hosts with those backends.
DEFAULT_OUT = {"python": REPO_ROOT / "model_repository",
               "onnxruntime": REPO_ROOT / "build" / "model_repository-onnxruntime",
               "tensorrt": REPO_ROOT / "build" / "model_repository-tensorrt"}
DEFAULT_DRAFT_TOKENS = 4  # proposals per round in the draft graph: the engine's k_max on this graph


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--backend", required=True, choices=BACKENDS)
    parser.add_argument("--drafters", default=",".join(ServingConfig.drafters),
                        help=f"comma-separated drafters, each served as `draft_<name>` (known: {', '.join(sorted(DRAFTERS))})")
    parser.add_argument("--out", type=Path, help="model repository (default: model_repository/ for python, "
                                                 "build/model_repository-<backend>/ otherwise)")
    parser.add_argument("--fp16", action="store_true", help="TensorRT engines with fp16 kernels allowed")
    parser.add_argument("--draft-tokens", type=int, default=DEFAULT_DRAFT_TOKENS, help="proposals per draft round")
    parser.add_argument("--forced-room", type=int,
                        help="forced tokens a draft round can take before proposing (default: the fewest that "
                             f"hold the forced runs after {COVERAGE * 100:.0f}%% of the chosen tokens of "
                             f"{ROOM_USERS} test users' greedy lists)")
    parser.add_argument("--check-users", type=int, default=100, help="test users whose greedy lists are compared")
    parser.add_argument("--max-batch", type=int, default=8, help="largest batch of the TensorRT profile")
    parser.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime threads (checks and models)")
    parser.add_argument("--artifacts", type=Path, default=ARTIFACTS_DIR)
    parser.add_argument("--json", action="store_true", help="print the manifest (with the check report) as JSON")
    add_prior_argument(parser)


def run(args: argparse.Namespace) -> int:
    from padrec.export.tensorrt import TensorRTError, require_tensorrt

    if args.fp16 and args.backend != "tensorrt":
        print("error: --fp16 applies to TensorRT engines only (--backend tensorrt)", file=sys.stderr)
        return 2
    args.drafters = [d for d in args.drafters.split(",") if d]
    unknown = sorted(set(args.drafters) - set(DRAFTERS))
    if unknown or not args.drafters:
        print(f"error: --drafters takes names from {sorted(DRAFTERS)}, got {unknown or 'none'}", file=sys.stderr)
        return 2
    if min(args.draft_tokens, 1 if args.forced_room is None else args.forced_room, args.check_users, args.max_batch,
           args.threads) < 1:
        print("error: --draft-tokens, --forced-room, --check-users, --max-batch and --threads must be >= 1",
              file=sys.stderr)
        return 2
    try:
        trt = require_tensorrt() if args.backend == "tensorrt" else None
        return _export(args, trt)
    except TensorRTError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _export(args: argparse.Namespace, trt) -> int:
    import torch

    from padrec.artifacts import file_sha256, load_prepared
    from padrec.decoding.constraints import ItemTrie
    from padrec.export.checks import run_checks
    from padrec.export.graphs import DraftGraph, DraftStepGraph, TargetGraph
    from padrec.export.onnx_files import OPSET, export_graphs
    from padrec.export.repository import (
        MANIFEST, TARGET_MODEL, draft_model_name, draft_step_model_name, graph_io, install, staging, write_model,
    )
    from padrec.export.tensorrt import build_engine, dim_ranges, profile_shapes
    from padrec.models.draft import Draft
    from padrec.models.target import Target

    torch.set_num_threads(args.threads)
    data = load_prepared(args.dataset, args.artifacts)
    beta = prefix_size_penalty(args, data)
    sources = {TARGET_MODEL: data.paths.target} | {draft_model_name(d): data.paths.draft(d) for d in args.drafters}
    for (name, path), command in zip(sources.items(), ["train-target", *(f"train-draft --drafter {d}" for d in args.drafters)]):
        if not path.is_file():
            missing_checkpoint(f"{name} checkpoint", path, f"{command} --dataset {args.dataset}")
            return 2
    trie = ItemTrie(data.sids, beta)
    target = Target.load(sources[TARGET_MODEL])
    forced_room = measured_room(target, trie, data.split.test) if args.forced_room is None else args.forced_room
    drafts = {d: Draft.load(sources[draft_model_name(d)]) for d in args.drafters}
    graphs = {TARGET_MODEL: TargetGraph(target).eval()}
    for drafter, draft in drafts.items():
        graphs[draft_model_name(drafter)] = DraftGraph(draft, trie, args.draft_tokens, forced_room).eval()
        graphs[draft_step_model_name(drafter)] = DraftStepGraph(draft, data.sids.tokens_per_item).eval()
    out = args.out or DEFAULT_OUT[args.backend]

    with staging(out) as scratch:
        onnx_files = {name: scratch / f"{name}.onnx" for name in graphs}
        export_graphs(graphs, onnx_files)
        checks = {}
        for drafter in args.drafters:
            name, step = draft_model_name(drafter), draft_step_model_name(drafter)
            checks[drafter] = run_checks(graphs[TARGET_MODEL], graphs[name], graphs[step],
                                         {"target": onnx_files[TARGET_MODEL], "draft": onnx_files[name],
                                          "draft step": onnx_files[step]},
                                         trie, data.split.test[: args.check_users])
        manifest = {
            "dataset": args.dataset, "drafters": args.drafters, "backend": args.backend, "fp16": args.fp16,
            "sources": {name: {"path": str(path), "sha256": file_sha256(path)} for name, path in sources.items()},
            "graphs": {"opset": OPSET, "max_seq_len": target.config.max_seq_len,
                       "draft_tokens": args.draft_tokens, "forced_room": forced_room,
                       "prefix_size_penalty": beta},
            "checks": {drafter: report.as_dict() for drafter, report in checks.items()},
        }
        failures = [f"{drafter}: {failure}" for drafter, report in checks.items() for failure in report.failures]
        if failures:
            emit_report(manifest, None, args.json)
            print("error: the exported graphs failed their checks; nothing was installed:\n  "
                  + "\n  ".join(failures), file=sys.stderr)
            return 1
        plans = {}
        if trt is not None:
            ranges = dim_ranges(args.max_batch, target.config.max_seq_len, args.draft_tokens + 1)
            for name, onnx_path in onnx_files.items():
                plans[name] = scratch / f"{name}.plan"
                build_engine(trt, onnx_path, plans[name], profile_shapes(graph_io(onnx_path)[0], ranges), args.fp16)
        repository = scratch / "repository"
        for name, onnx_path in onnx_files.items():
            write_model(repository, name, args.backend, onnx_path, plans.get(name), args.threads,
                        ServingConfig().target_slots)
        for asset in (data.paths.semantic_ids, data.paths.item_ids):
            shutil.copy2(asset, repository / asset.name)
        (repository / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        installed = install(repository, out)

    emit_report(manifest, None, args.json)
    if not args.json:
        for drafter, report in checks.items():
            print(f"== checks with draft {drafter}")
            _print_summary(report.as_dict())
        print("installed " + ", ".join(str(p) for p in installed))
    return 0


def _print_summary(checks: dict) -> None:
    for graph, outputs in checks["numerics"].items():
        print(f"numerics {graph:6s} " + "  ".join(f"{name} {diff:.1e}" for name, diff in outputs.items())
              + f"  (max |torch - onnxruntime|; allowed {checks['atol']:g}, tokens 0)")
    lists = checks["lists"]
    print(f"lists    plain torch {lists['plain']['median_ms']:.1f} ms/list")
    for e in lists["speculative"]:
        same = lists["users"] - e["near_ties"] - e["mismatches"]
        print(f"lists    {e['drafter']:11s} k={e['k']}  {same}/{lists['users']} equal to plain greedy "
              f"(near-ties {e['near_ties']})  acceptance {e['acceptance_rate'] or 0:.3f}  tau {e['tau']:.2f}  "
              f"{e['median_ms']:.1f} ms/list")
    for what, ms in checks["latency_ms"].items():
        print(f"latency  {what:18s} torch {ms['torch']:.3f} ms  onnxruntime {ms['onnxruntime']:.3f} ms")
