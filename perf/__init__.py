"""Benchmarks of the served recommender: perf_analyzer runs against Triton and the report made from them.

`python -m perf run` measures (`perf.run`), `python -m perf report` renders `REPORT.md` and its plots
from the saved results (`perf.report`); `make perf` does both.
"""
