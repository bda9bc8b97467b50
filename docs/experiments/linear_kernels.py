"""Time the CPU kernels a torch host could use for one linear layer at batch 1, by number of rows.

    python docs/experiments/linear_kernels.py --out docs/experiments/linear_kernels_<machine>.json

Kernels: `x @ W_t` (the weight stored transposed, what `padrec.models.inference.InferenceLinear`
runs), oneDNN's pre-packed weight (`torch.ops.mkldnn._linear_pointwise`), and `F.linear`. Shapes:
every linear layer of the default 256-wide target and draft and of a 128-wide one. One thread;
medians of `--turns` turns of `--calls` calls each, in microseconds per call.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F

SHAPES = [(256, 768), (256, 256), (256, 1536), (768, 256), (512, 256), (256, 790),
          (128, 384), (128, 128), (128, 768), (384, 128), (256, 128), (128, 790)]
ROWS = [1, 2, 3, 6, 8, 16, 64]


def per_call_us(fn, calls: int, turns: int) -> float:
    for _ in range(calls // 4):
        fn()
    times = []
    for _ in range(turns):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - started) / calls * 1e6)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--turns", type=int, default=7)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows_out = []
    with torch.inference_mode():
        for n_in, n_out in SHAPES:
            weight = torch.randn(n_out, n_in)
            weight_t = weight.t().contiguous()
            packed = torch.ops.mkldnn._reorder_linear_weight(weight, 8)
            for rows in ROWS:
                x = torch.randn(1, rows, n_in)
                entry = {"in": n_in, "out": n_out, "rows": rows,
                         "transposed_us": per_call_us(lambda: x @ weight_t, args.calls, args.turns),
                         "packed_us": per_call_us(lambda: torch.ops.mkldnn._linear_pointwise(
                             x, packed, None, "none", [], ""), args.calls, args.turns),
                         "f_linear_us": per_call_us(lambda: F.linear(x, weight), args.calls, args.turns)}
                rows_out.append(entry)
                print(f"{n_in}->{n_out} rows {rows:3d}: transposed {entry['transposed_us']:6.1f}  "
                      f"packed {entry['packed_us']:6.1f}  F.linear {entry['f_linear_us']:6.1f} us")
    wins = sum(e["transposed_us"] <= e["packed_us"] for e in rows_out)
    report = {"machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__},
              "threads": 1, "calls": args.calls, "turns": args.turns, "kernels": rows_out,
              "transposed_wins": f"{wins} of {len(rows_out)}"}
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    print(f"x @ W_t at most as slow as the packed kernel in {wins} of {len(rows_out)} cases")


if __name__ == "__main__":
    main()
