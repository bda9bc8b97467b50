"""`python -m perf datasets`: PAD-Rec against the EAGLE-style draft on several datasets through Triton.

For each dataset with a trained target and both drafts under artifacts/<dataset>/: its served
repository is built under build/perf-datasets/<dataset>/model_repository (model_repository/'s
committed models plus `padrec export --backend python` of that dataset's checkpoints; the committed
model_repository/ is never written), a server of its own is started on free loopback ports, and
perf.run measures `recommend` at concurrency 1 for plain decoding and each drafter at every k, with
the modes alternating and the whole plan repeated (perf.plan, perf.merge). Each dataset's results go
to <out>/datasets/<dataset>/results.json, what became of every dataset to <out>/datasets/index.json;
perf.comparison and perf.report turn them into <out>/DATASETS.md and issue 8's criterion row.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from padrec.archive import restore_hint
from padrec.config import ARTIFACTS_DIR
from padrec.server import REPO_ROOT, ServerConfig, ServerError, TritonServer, log_tail
from perf.comparison import DATASETS_DIR, INDEX_FILE
from perf.plan import Settings
from perf.run import Endpoints, benchmark

DATASETS = ("beauty", "sports", "toys", "yelp")
KS = (2, 3, 4)
DRAFTERS = ("eagle", "padrec")
BUILD_DIR = REPO_ROOT / "build" / "perf-datasets"
COMMITTED_REPOSITORY = REPO_ROOT / "model_repository"
# What `padrec export` writes into a model repository; the rest of model_repository/ is committed.
EXPORTED_ENTRIES = ("target", "draft_*", "padrec_export.json", "semantic_ids.npz", "item_ids.json")
# The export checks a few users' greedy lists against torch: a served repository that decodes
# differently from the trained models fails here rather than in the numbers.
EXPORT_CHECK_USERS = 3
EXPORT_STAMP = "export_stamp.json"
# The code an export depends on: any change under padrec/ re-exports (a few minutes at most).
EXPORT_CODE = REPO_ROOT / "padrec"


@dataclass(frozen=True)
class Plan:
    """What `python -m perf datasets` measures on each dataset."""

    datasets: tuple[str, ...] = DATASETS
    ks: tuple[int, ...] = KS
    users: int = 200
    # About 5 minutes per dataset on the shared 2-core machine: 7 configurations x 3 repeats x 30
    # requests of 0.1-0.3 s, plus the export and the server's start.
    requests: int = 30
    repeats: int = 3
    warmup_requests: int = 4

    def __post_init__(self) -> None:
        # Settings checks the request counts: check them now, not after the first dataset's export
        self.settings(DATASETS[0])

    def settings(self, dataset: str) -> Settings:
        """perf.run's settings for one dataset: `recommend` at concurrency 1 only, plain and both
        drafters at every k, no streaming; the calibration run is the plain one (same top_n)."""
        top_n = Settings.top_n
        return Settings(dataset=dataset, users=self.users, concurrency=(1,), drafters=DRAFTERS, k=max(self.ks),
                        sweep_k=self.ks, stream_concurrency=(), beam_widths=(), beam_drafts=(), trees=(), requests=self.requests,
                        requests_per_client=1, repeats=self.repeats, warmup_requests=self.warmup_requests, top_n=top_n,
                        calibration_top_n=top_n)


def checkpoints(dataset: str, artifacts: Path = ARTIFACTS_DIR) -> dict[str, Path]:
    """The checkpoints a dataset's served repository is exported from, by served model name."""
    root = artifacts / dataset
    return {"target": root / "target.pt", **{f"draft_{drafter}": root / f"draft_{drafter}.pt" for drafter in DRAFTERS}}


def missing(dataset: str, artifacts: Path = ARTIFACTS_DIR) -> str | None:
    """Why a dataset cannot be measured (no trained target or drafts), or None when it can."""
    absent = [path for path in checkpoints(dataset, artifacts).values() if not path.is_file()]
    if not absent:
        return None
    kinds = [kind for kind, prefix in (("target", "target"), ("drafts", "draft_"))
             if any(path.name.startswith(prefix) for path in absent)]
    hint = restore_hint(absent[0], artifacts)
    return f"no trained {' and '.join(kinds)}: {', '.join(_shown(path) for path in absent)} missing" + (
        f"; {hint}" if hint else "")


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _code_fingerprint() -> str:
    digest = hashlib.sha256()
    for path in sorted(EXPORT_CODE.rglob("*.py")):
        digest.update(str(path.relative_to(EXPORT_CODE)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _is_exported(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in EXPORTED_ENTRIES)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def refresh_committed(repository: Path) -> None:
    """Make `repository` hold model_repository/'s committed models as they are now, keeping only what an
    earlier export installed there."""
    repository.mkdir(parents=True, exist_ok=True)
    for entry in repository.iterdir():
        if not _is_exported(entry.name):
            _remove(entry)
    for entry in COMMITTED_REPOSITORY.iterdir():
        if _is_exported(entry.name) or entry.name == "__pycache__":
            continue
        if entry.is_dir():
            shutil.copytree(entry, repository / entry.name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(entry, repository / entry.name)


def export_repository(dataset: str, folder: Path, log: Callable[[str], None] = print) -> dict:
    """folder/model_repository served for `dataset`: re-exported unless an export of the same
    checkpoints by the same code is there already. What was served (for the results)."""
    repository = folder / "model_repository"
    sources = {name: _sha256(path) for name, path in checkpoints(dataset).items()}
    stamp = {"dataset": dataset, "sources": sources, "code": _code_fingerprint(), "check_users": EXPORT_CHECK_USERS}
    stamp_path = folder / EXPORT_STAMP
    refresh_committed(repository)
    exported = all((repository / name).exists() for name in [*sources, "padrec_export.json"])
    reused = exported and stamp_path.is_file() and json.loads(stamp_path.read_text()) == stamp
    started = time.monotonic()
    if reused:
        log(f"{dataset}: reusing the export in {_shown(repository)} (same checkpoints and code)")
    else:
        stamp_path.unlink(missing_ok=True)
        for entry in repository.iterdir():
            if _is_exported(entry.name):
                _remove(entry)
        args = [sys.executable, "-m", "padrec.cli", "export", "--dataset", dataset, "--backend", "python",
                "--out", str(repository), "--check-users", str(EXPORT_CHECK_USERS), "--threads", "1"]
        log_path = folder / "export.log"
        log(f"{dataset}: exporting into {_shown(repository)} (log {_shown(log_path)})")
        with log_path.open("w") as out:
            done = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  cwd=REPO_ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
        if done.returncode != 0:
            raise ExportError(f"padrec export --dataset {dataset} exited with {done.returncode}; "
                              f"its log ends:\n{log_tail(log_path)}")
        stamp_path.write_text(json.dumps(stamp, indent=1) + "\n")
    manifest = json.loads((repository / "padrec_export.json").read_text())
    return {"dataset": dataset, "repository": _shown(repository),
            "sources": {name: digest[:12] for name, digest in sources.items()},
            "graphs": manifest.get("graphs"), "export": "reused" if reused else "exported",
            "export_seconds": round(time.monotonic() - started, 1)}


class ExportError(RuntimeError):
    """`padrec export` failed for a dataset."""


def write_index(index: dict, out_dir: Path) -> None:
    folder = out_dir / DATASETS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    (folder / INDEX_FILE).write_text(json.dumps(index, indent=1) + "\n")


def starting_index(plan: Plan, out_dir: Path, command: str, note: str = "") -> dict:
    """The index this run starts from: its datasets pending, after the entries of an earlier run in
    out_dir for datasets this one does not measure (same ks), so that measuring one dataset again keeps
    the others in DATASETS.md. The kept run's command stays the index's; the note says what was redone."""
    fresh = {"command": command, "note": note, "datasets": list(plan.datasets), "ks": list(plan.ks),
             "status": {dataset: {"state": "pending"} for dataset in plan.datasets}}
    path = out_dir / DATASETS_DIR / INDEX_FILE
    earlier = json.loads(path.read_text()) if path.is_file() else None
    if earlier is None or earlier.get("ks") != list(plan.ks):
        return fresh
    kept = [dataset for dataset in earlier["datasets"] if dataset not in plan.datasets]
    if not kept:
        return fresh
    redone = f"{', '.join(plan.datasets)} measured again by `{command}`" + (f" ({note})" if note else "")
    return {"command": earlier["command"],
            "note": "; ".join(part for part in (earlier.get("note", ""), redone) if part),
            "datasets": kept + list(plan.datasets), "ks": list(plan.ks),
            "status": {**{dataset: earlier["status"][dataset] for dataset in kept}, **fresh["status"]}}


def measure(plan: Plan, out_dir: Path, command: str, note: str = "", build_dir: Path = BUILD_DIR,
            log: Callable[[str], None] = print) -> dict:
    """Every dataset of the plan in turn; the index (each dataset's state: measured, skipped or failed,
    with the reason; `starting_index` keeps an earlier run's other datasets). Results:
    out_dir/datasets/<dataset>/results.json."""
    index = starting_index(plan, out_dir, command, note)
    write_index(index, out_dir)
    for dataset in plan.datasets:
        started = time.monotonic()
        reason = missing(dataset)
        if reason:
            log(f"{dataset}: skipped, {reason}")
            index["status"][dataset] = {"state": "skipped", "reason": reason}
            write_index(index, out_dir)
            continue
        results_dir = out_dir / DATASETS_DIR / dataset
        try:
            served = export_repository(dataset, build_dir / dataset, log)
            config = ServerConfig(model_repository=build_dir / dataset / "model_repository", http_port=0,
                                  grpc_port=0, metrics_port=0, log_path=build_dir / dataset / "tritonserver.log")
            log(f"{dataset}: starting tritonserver")
            with TritonServer(config) as server:
                log(f"{dataset}: server ready, gRPC {server.grpc_url}, log {_shown(server.log_path)}")
                results = benchmark(plan.settings(dataset), Endpoints(server.grpc_url, server.metrics_url),
                                    results_dir, command, note, lambda line: log(f"{dataset}: {line}"),
                                    extra={"served": served})
        except (ExportError, ServerError) as error:
            log(f"{dataset}: failed, {error}")
            index["status"][dataset] = {"state": "failed", "reason": str(error).splitlines()[0]}
            write_index(index, out_dir)
            continue
        errors = [run["error"].splitlines()[0] for run in results["runs"] if "error" in run]
        index["status"][dataset] = {"state": "measured", "seconds": round(time.monotonic() - started, 1),
                                    "failed_runs": len(errors)}
        if errors:
            index["status"][dataset]["reason"] = errors[0]
        write_index(index, out_dir)
        log(f"{dataset}: measured in {time.monotonic() - started:.0f} s" + (f", {len(errors)} run(s) failed" if errors else ""))
    return index
