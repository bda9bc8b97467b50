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
    assert [(c["dtype"], c["batch_size"], c["graphs"]) for c in report["cells"]] == [
        ("fp32", 1, False), ("bf16", 1, True), ("fp32", 4, True), ("bf16", 4, False)]
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
    assert table.count("| 1 | yes | plain |") == 1 and table.count("| 4 | no | plain |") == 1
    assert report["round_room"] >= 1
    # top-K by beam search: plain against speculative, in each precision, the same items
    assert [(run["dtype"], [(c["beam_width"], c["draft_width"], c["users"]) for c in run["checks"]])
            for run in report["beam"]] == [("fp32", [(10, 10, 3)]), ("bf16", [(10, 10, 3)])]
    assert all(c["mismatches"] == 0 and c["plain_target_calls"] > 0 for run in report["beam"] for c in run["checks"])
    assert table.count("| fp32 | 10 | 10 | 3 | 0 (") == 1
    assert sorted(p.name for p in copied.iterdir()) == sorted(report_path.with_suffix(s).name
                                                              for s in (".json", ".md", ".png"))


def test_the_gpu_run_refuses_a_machine_without_a_gpu(tmp_path):
    env = {**os.environ, "OUT_DIR": str(tmp_path), "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run(["bash", str(REPO_ROOT / "perf" / "gpu" / "run.sh")], env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode != 0 and "sees no CUDA device" in run.stderr
    assert not list(tmp_path.iterdir())


def test_cells_are_written_batch_precision_and_graphs_and_bad_ones_are_refused(tmp_path, capsys):
    from padrec.cli import main
    from padrec.device_bench import Cell, parse_cells

    assert parse_cells("1:bf16:graphs,16:fp32") == [Cell(1, "bf16", True), Cell(16, "fp32", False)]
    for bad in ("1", "0:fp32", "x:fp32", "1:fp32:fast", "1:fp32:graphs:2"):
        try:
            main(["bench-gpu", "--out-dir", str(tmp_path), "--cells", bad])
        except SystemExit as stop:
            assert stop.code == 2
        assert "bad cell" in capsys.readouterr().err
    assert main(["bench-gpu", "--device", "cpu", "--out-dir", str(tmp_path), "--forced-room", "2"]) == 2
    assert "--forced-room needs --draft-rounds" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_the_gpu_runs_options_parse_so_the_one_shot_run_cannot_die_on_a_typo():
    import re
    import shlex

    from padrec.cli import build_parser

    script = (REPO_ROOT / "perf" / "gpu" / "run.sh").read_text()
    gpu = re.search(r"args=\((--device cuda.*?)\)\n", script, flags=re.S).group(1)
    args = build_parser().parse_args(["bench-gpu", "--out-dir", "results/gpu", *shlex.split(gpu)])
    assert args.device == "cuda" and args.users >= 200 and args.cells[0].graphs and args.beams
    gpu_limit = int(re.findall(r"limit=(\d+)", script)[-1])  # the GPU branch comes second
    assert args.max_minutes * 60 + 60 < gpu_limit  # a minute for loading and the last cell's tail
