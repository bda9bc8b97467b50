"""Figures of the offline benchmarks (`padrec bench` reports): what `padrec tables --plots DIR` draws.

Two views of the torch reports, one panel per dataset: the speed-up over plain decoding against k
for each drafter, and where a list's time goes (target calls, draft calls, the engine's own work)
for plain decoding and each drafter at one k. A third for `padrec bench-gpu` reports: the
speed-up against k per drafter and batch size, a panel per precision. Each function returns the numbers it drew, so that
what a figure shows can be checked without reading pixels.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: benchmark machines have no display
import matplotlib.pyplot as plt  # noqa: E402

SPLIT_PARTS = ("target", "draft", "host")


def speedup_vs_k(reports: list[dict], path: Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """Per dataset and drafter, (k, speed-up) points; drawn into `path`, a panel per dataset."""
    series = {r["dataset"]: _by_drafter(r) for r in reports}
    figure, panels = plt.subplots(1, len(series), figsize=(3.6 * len(series), 3.4), squeeze=False)
    for axes, (dataset, drafters) in zip(panels[0], series.items()):
        for drafter, points in drafters.items():
            axes.plot([k for k, _ in points], [s for _, s in points], marker="o", label=drafter)
        axes.axhline(1.0, color="grey", linewidth=0.8)  # plain decoding
        axes.set_title(dataset)
        axes.set_xlabel("draft tokens per round (k)")
        axes.grid(True, alpha=0.3)
    panels[0][0].set_ylabel("speed-up over plain decoding")
    panels[0][0].legend(fontsize=8)
    _write(figure, path)
    return series


def time_split(reports: list[dict], k: int, path: Path) -> dict[str, dict[str, tuple[float, float, float]]]:
    """Per dataset, mean ms per list in target calls, draft calls and elsewhere, for plain decoding
    and each drafter at `k`; drawn into `path` as stacked bars, a panel per dataset."""
    splits = {}
    for report in reports:
        bars = {"plain": _split(report["plain"])}
        bars.update({e["drafter"]: _split(e) for e in report["speculative"] if e["k"] == k})
        splits[report["dataset"]] = bars
    figure, panels = plt.subplots(1, len(splits), figsize=(3.6 * len(splits), 3.6), squeeze=False)
    colours = dict(zip(SPLIT_PARTS, ("tab:blue", "tab:orange", "tab:grey")))
    for axes, (dataset, bars) in zip(panels[0], splits.items()):
        bottom = [0.0] * len(bars)
        for i, part in enumerate(SPLIT_PARTS):
            heights = [split[i] for split in bars.values()]
            axes.bar(list(bars), heights, bottom=bottom, color=colours[part], label=part)
            bottom = [b + h for b, h in zip(bottom, heights)]
        axes.set_title(f"{dataset}, k={k}")
        axes.tick_params(axis="x", labelrotation=30)
    panels[0][0].set_ylabel("mean ms per list")
    panels[0][0].legend(fontsize=8)
    _write(figure, path)
    return splits


def speedup_by_batch(report: dict, path: Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """Per precision (and graphs) and `drafter, batch B` line, (k, speed-up) points of a `bench_grid`
    report; drawn into `path`, a panel per precision (and graphs)."""
    series: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for cell in report["cells"]:
        if "skipped" in cell:
            continue
        lines = series.setdefault(cell["dtype"] + (", CUDA graphs" if cell.get("graphs") else ""), {})
        for drafter, points in _by_drafter(cell).items():
            lines[f"{drafter}, batch {cell['batch_size']}"] = points
    figure, panels = plt.subplots(1, max(1, len(series)), figsize=(4.2 * max(1, len(series)), 3.6), squeeze=False)
    for axes, (dtype, lines) in zip(panels[0], series.items()):
        for label, points in lines.items():
            axes.plot([k for k, _ in points], [s for _, s in points], marker="o", label=label)
        axes.axhline(1.0, color="grey", linewidth=0.8)  # plain decoding
        axes.set_title(f"{report['device']}, {dtype}", fontsize=9)
        axes.set_xlabel("draft tokens per round (k)")
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=7)
    panels[0][0].set_ylabel("speed-up over plain decoding")
    _write(figure, path)
    return series


def decoder_label(entry: dict) -> str:
    """A report entry's drafter, and its tree when it has one: 'padrec', 'padrec tree 3 wide@1-3-2-1-1, 8 nodes'."""
    if "tree_width" not in entry:
        return entry["drafter"]
    shaped = "@" + "-".join(map(str, entry["tree_slot_widths"])) if entry.get("tree_slot_widths") else ""
    budget = f", {entry['tree_budget']} nodes" if entry["tree_budget"] else ""
    stop = f", p >= {entry['tree_min_prob']:g}" if entry.get("tree_min_prob") else ""
    return f"{entry['drafter']} tree {entry['tree_width']} wide{shaped}{budget}{stop}"


def _by_drafter(report: dict) -> dict[str, list[tuple[int, float]]]:
    points: dict[str, list[tuple[int, float]]] = {}
    for entry in sorted(report["speculative"], key=lambda e: e["k"]):
        points.setdefault(decoder_label(entry), []).append((entry["k"], entry["speedup"]))
    return points


def _split(entry: dict) -> tuple[float, float, float]:
    return tuple(float(entry["time_split_ms"][part]) for part in SPLIT_PARTS)


def _write(figure: plt.Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
