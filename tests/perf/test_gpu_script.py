"""The GPU benchmark script's CPU path: the code a GPU run will execute, run small on every CI run."""

import json
import os
import subprocess
import sys

from padrec.server import REPO_ROOT


def test_the_gpu_script_runs_its_cpu_path_losslessly_and_writes_its_three_files(tmp_path):
    results, copied = tmp_path / "results", tmp_path / "out"
    copied.mkdir()
    env = {**os.environ, "OUT_DIR": str(results), "OUT": str(copied), "PYTHON": sys.executable}
    run = subprocess.run(["bash", str(REPO_ROOT / "perf" / "gpu" / "run.sh"), "--smoke"], env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout + run.stderr
    [report_path] = results.glob("*.json")
    report = json.loads(report_path.read_text())
    assert report["dataset"] == "beauty" and report["device_type"] == "cpu" and report["users"] == 6
    assert [(c["dtype"], c["batch_size"]) for c in report["cells"]] == [("fp32", 1), ("bf16", 1), ("fp32", 4),
                                                                         ("bf16", 4)]
    for cell in report["cells"]:
        assert cell["users"] == 6 and cell["batch_size"] in (1, 4)
        assert [(e["drafter"], e["k"], e.get("tree_width")) for e in cell["speculative"]] == [
            ("eagle", 2, None), ("eagle", 2, 2), ("padrec", 2, None), ("padrec", 2, 2), ("eagle/round", 2, None),
            ("padrec/round", 2, None)]
        for entry in cell["speculative"]:
            assert entry["mismatches"] == 0  # lossless in each precision against plain in that precision
            assert entry["tau"] > 1.0 and entry["tau_limit_speedup"] > 0 and entry["items_per_s"] > 0
            assert entry["recall@10"] == cell["plain"]["recall@10"] or entry["near_ties"] > 0
    table = report_path.with_suffix(".md").read_text()
    assert table.count("| padrec | 2 |") == 4 and table.count("| plain | 0 |") == 4
    assert table.count("| padrec tree 2 wide | 2 |") == 4
    assert table.count("| padrec/round | 2 |") == 4  # the whole draft round on the device
    assert report["round_room"] >= 1
    assert sorted(p.name for p in copied.iterdir()) == sorted(report_path.with_suffix(s).name
                                                              for s in (".json", ".md", ".png"))


def test_the_gpu_run_refuses_a_machine_without_a_gpu(tmp_path):
    env = {**os.environ, "OUT_DIR": str(tmp_path), "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run(["bash", str(REPO_ROOT / "perf" / "gpu" / "run.sh")], env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode != 0 and "sees no CUDA device" in run.stderr
    assert not list(tmp_path.iterdir())
