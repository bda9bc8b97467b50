"""The report's figures, drawn with matplotlib from numbers `perf.report` has already chosen."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on the benchmark machines
import matplotlib.pyplot as plt  # noqa: E402

DPI = 110


def _save(figure: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path


def latency_vs_concurrency(series: dict[str, list[tuple[int, float, float, float]]], path: Path) -> Path:
    """Per mode, points (concurrency, p50 ms, p95 ms, throughput): latency (p50 solid, p95 dashed)
    and throughput against concurrency."""
    figure, (latency, throughput) = plt.subplots(1, 2, figsize=(10, 4))
    for mode, points in series.items():
        concurrency = [p[0] for p in points]
        (line,) = latency.plot(concurrency, [p[1] for p in points], marker="o", label=f"{mode} p50")
        latency.plot(concurrency, [p[2] for p in points], linestyle="--", color=line.get_color(), label=f"{mode} p95")
        throughput.plot(concurrency, [p[3] for p in points], marker="o", color=line.get_color(), label=mode)
    for axes, label in ((latency, "latency (ms)"), (throughput, "throughput (requests/s)")):
        axes.set_xscale("log", base=2)
        axes.set_xlabel("concurrency")
        axes.set_ylabel(label)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8)
    latency.set_title("recommend: latency against concurrency")
    throughput.set_title("recommend: throughput against concurrency")
    return _save(figure, path)


def tau_vs_k(series: dict[str, list[tuple[int, float, float]]], path: Path) -> Path:
    """Per drafter, points (k, tau, effective tau) at concurrency 1."""
    figure, axes = plt.subplots(figsize=(6, 4))
    for drafter, points in series.items():
        ks = [p[0] for p in points]
        (line,) = axes.plot(ks, [p[1] for p in points], marker="o", label=f"{drafter}: tau")
        axes.plot(ks, [p[2] for p in points], marker="x", linestyle="--", color=line.get_color(),
                  label=f"{drafter}: plain rounds / rounds")
    axes.set_xlabel("draft tokens per round (k)")
    axes.set_ylabel("tokens per target forward")
    axes.set_xticks(sorted({p[0] for points in series.values() for p in points}))
    axes.set_title("tau against k (concurrency 1)")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    return _save(figure, path)


def breakdown(bars: dict[str, dict[str, float]], path: Path) -> Path:
    """Stacked bars: per mode, the mean ms of each part of a request (insertion order of the parts)."""
    figure, axes = plt.subplots(figsize=(10, 4))
    modes = list(bars)
    bottoms = [0.0] * len(modes)
    for part in next(iter(bars.values())):
        values = [bars[mode][part] for mode in modes]
        axes.bar(modes, values, bottom=bottoms, label=part)
        bottoms = [b + v for b, v in zip(bottoms, values)]
    axes.set_ylabel("ms per request (mean)")
    axes.set_title("where a request's time goes (concurrency 1)")
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes.tick_params(axis="x", labelsize=8)
    return _save(figure, path)


def acceptance(by_depth: dict[str, list[float]], by_slot: dict[str, list[float]], path: Path) -> Path:
    """Conditional acceptance rates per drafter: by draft depth (served) and by within-item slot (offline)."""
    figure, (depth_axes, slot_axes) = plt.subplots(1, 2, figsize=(10, 4))
    for axes, rates, label, title in ((depth_axes, by_depth, "draft depth (1 = first proposal of a round)",
                                       "by depth (served, counters)"),
                                      (slot_axes, by_slot, "within-item slot (code level; 4 = separator)",
                                       "by slot (offline padrec bench)")):
        drafters = list(rates)
        width = 0.8 / max(1, len(drafters))
        for i, drafter in enumerate(drafters):
            positions = [j + (i - (len(drafters) - 1) / 2) * width for j in range(len(rates[drafter]))]
            axes.bar(positions, rates[drafter], width=width, label=drafter)
        axes.set_xticks(range(max((len(r) for r in rates.values()), default=0)))
        axes.set_xticklabels([str(j + (1 if axes is depth_axes else 0)) for j in range(len(axes.get_xticks()))])
        axes.set_ylim(0, 1.15)  # room for the legend above rates of 1
        axes.set_xlabel(label)
        axes.set_ylabel("accepted / reached")
        axes.set_title(title)
        axes.legend(fontsize=8, loc="upper left", ncol=2)
    return _save(figure, path)
