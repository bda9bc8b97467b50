"""The machine and software a benchmark ran on, so that its numbers can be read in context."""

from __future__ import annotations

import dataclasses
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from padrec.server import REPO_ROOT
from perf.analyzer import PERF_ANALYZER

PACKAGES = ("torch", "onnxruntime", "numpy", "tritonclient")
# Where the served code lives: uncommitted changes there are part of what was measured.
SERVED_PATHS = ("padrec", "model_repository", "export")


def load_average() -> list[float]:
    """1, 5 and 15-minute load averages: how busy the shared cores were."""
    return [round(value, 2) for value in os.getloadavg()]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def describe(triton_version: str, decode_model_config: dict) -> dict:
    """CPU, cores, memory, versions, the code's commit and the served configuration (ServingConfig
    with the decode model's config.pbtxt `parameters`, as the server reports its config)."""
    from padrec.serving.parameters import serving_config

    memory_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                     if line.startswith("MemTotal"))
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": round(memory_kb / 2**20, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": {"triton": triton_version, "perf_analyzer": _perf_analyzer_version(),
                     **{name: metadata.version(name) for name in PACKAGES}},
        "git": _git_state(),
        "serving_config": dataclasses.asdict(serving_config(decode_model_config.get("parameters", {}))),
    }


def _perf_analyzer_version() -> str:
    done = subprocess.run([str(PERF_ANALYZER), "--version"], capture_output=True, text=True, timeout=60)
    return (done.stdout + done.stderr).strip().removeprefix("Perf Analyzer Version ").split(" ")[0]


def _git_state() -> dict:
    """The commit, and the served paths with uncommitted changes (shared working tree)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60).stdout

    # porcelain lines are "XY path": the status takes the first three characters
    changed = git("status", "--porcelain", "--", *SERVED_PATHS).splitlines()
    return {"commit": git("rev-parse", "HEAD").strip(), "uncommitted_served_files": [line[3:] for line in changed]}
