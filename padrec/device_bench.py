"""The benchmark for one device across precisions and batch sizes: what `padrec bench-gpu` runs.

Speculative decoding is built for GPUs, where a decoder step at these model sizes is bound by
memory traffic and kernel launches, so verifying k+1 tokens costs about one step. Each cell of the
grid (precision x batch size) runs `compare_decoders` on the same users: plain greedy and every
(drafter, k), taking turns on each batch, with the lists of each speculative decoder checked against
plain greedy of the same precision and batch. Cells run in the order given (batch 1 first, the
headline), each while the time budget lasts; a cell the budget leaves out is reported as skipped.
"""

from __future__ import annotations

import platform
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from padrec.beam_verification import NEAR_TIE_SCORE, check_beams, timed_search
from padrec.bench_plots import decoder_label
from padrec.benchmark import compare_decoders, torch_decoders
from padrec.data.split import Example
from padrec.decoding.beam import BeamDecoder, beam_rows
from padrec.decoding.constraints import ItemTrie
from padrec.decoding.cuda_graphs import GraphCaptureError
from padrec.decoding.interfaces import BeamRequest
from padrec.decoding.torch_draft import TorchDraft
from padrec.decoding.torch_target import TorchTarget
from padrec.models.draft import Draft
from padrec.models.target import Target
from padrec.semantic_ids import SemanticIds
from padrec.verification import NEAR_TIE_GAP

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# Below this top-2 gap a differing list counts as a near-tie, per precision: bf16 keeps 8 bits of
# mantissa, so logits of magnitude 8-16 round to steps of 1/16, and a one-token forward and a
# (k+1)-token forward (differently shaped products, summed in another order) part by a few steps.
NEAR_TIE_GAPS = {"fp32": NEAR_TIE_GAP, "bf16": 0.25}
# The same for beam search, whose near-ties are items whose summed log-probabilities agree to within
# this where two top-K lists part: in bf16 a code's log-probability moves by a few hundredths
# between a prefix scored alone and inside a longer path (measured: 0.05 on a Beauty test user).
NEAR_TIE_SCORES = {"fp32": NEAR_TIE_SCORE, "bf16": 0.25}


def device_name(device: torch.device) -> str:
    """What the device is, in words: the GPU's name, or the CPU's."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def file_stem(name: str) -> str:
    """A device name as a file name: `NVIDIA H100 80GB HBM3` -> `nvidia-h100-80gb-hbm3`."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "device"


@dataclass(frozen=True)
class Cell:
    """One cell of the grid: users decoded `batch_size` at a time in `dtype`, with static-shape calls
    (CUDA graphs on a GPU) or eager ones."""

    batch_size: int
    dtype: str
    graphs: bool = False


def parse_cells(text: str) -> list[Cell]:
    """Cells written `B:dtype[:graphs]`, comma-separated, e.g. `1:bf16:graphs,1:bf16,16:fp32`."""
    cells = []
    for spec in filter(None, text.split(",")):
        parts = spec.split(":")
        if len(parts) not in (2, 3) or not parts[0].isdigit() or int(parts[0]) < 1 or parts[2:] not in ([], ["graphs"]):
            raise ValueError(f"bad cell {spec!r}: write B:dtype or B:dtype:graphs, e.g. 1:bf16:graphs")
        cells.append(Cell(int(parts[0]), parts[1], len(parts) == 3))
    return cells


def bench_grid(target: Target, drafts: dict[str, Draft], trie: ItemTrie, examples: list[Example], ks: list[int],
               cells: list[Cell], device: torch.device, max_minutes: float, progress: bool = True,
               on_cell: Callable[[dict], None] | None = None,
               trees: list[tuple[int, int, tuple[int, ...], int, float]] = (), round_ks: list[int] = (),
               round_room: int = 0) -> dict:
    """Every cell in the order given, starting none after `max_minutes` of wall-clock; each cell
    measures plain, every (drafter, k) chain, every token tree of `trees` and every (drafter, k in
    `round_ks`) chain whose draft round runs on the device, with forced tokens up to `round_room`
    (`padrec.benchmark.torch_decoders`). A cell whose graphs cannot be captured is reported as
    skipped, with why. `on_cell(report so far)` hears of each finished cell (what a run that may be
    cut off writes down)."""
    unknown = [c.dtype for c in cells if c.dtype not in DTYPES]
    if unknown:
        raise ValueError(f"unknown precision {unknown[0]!r}; choose from {sorted(DTYPES)}")
    started = time.perf_counter()
    cells_done: list[dict] = []
    report = {"device": device_name(device), "device_type": device.type, "torch": torch.__version__,
              "cuda": torch.version.cuda if device.type == "cuda" else None, "users": len(examples), "ks": ks,
              "drafters": sorted(drafts), "round_ks": list(round_ks), "round_room": round_room, "minutes": 0.0,
              "cells": cells_done}
    for spec in cells:
        cell = {"dtype": spec.dtype, "batch_size": spec.batch_size, "graphs": spec.graphs}
        elapsed = (time.perf_counter() - started) / 60
        if elapsed > max_minutes:
            cells_done.append({**cell, "skipped": f"time budget of {max_minutes} min spent ({elapsed:.1f} min)"})
            continue
        decoders = torch_decoders(target, drafts, trie, ks, rows=spec.batch_size, device=device,
                                  dtype=DTYPES[spec.dtype], trees=trees, round_ks=round_ks, round_room=round_room,
                                  graphs=spec.graphs)
        judge = decoders[("plain", 0)].target.model  # the plain decoder's own copy: same device and dtype
        try:
            measured = compare_decoders(judge, decoders, trie, examples, progress=progress,
                                        batch_size=spec.batch_size, warm_up=True,
                                        near_tie_gap=NEAR_TIE_GAPS[spec.dtype])
        except GraphCaptureError as error:
            measured = {"skipped": str(error)}
        report["minutes"] = (time.perf_counter() - started) / 60
        cells_done.append({**cell, "near_tie_gap": NEAR_TIE_GAPS[spec.dtype],
                           "minutes": report["minutes"] - elapsed, **measured})
        del decoders, judge
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if on_cell is not None:
            on_cell(report)
    report["minutes"] = (time.perf_counter() - started) / 60
    return report


def bench_beams(target: Target, draft: Draft, sids: SemanticIds, examples: list[Example],
                settings: list[tuple[int, int]], dtypes: list[str], device: torch.device, top_n: int = 10,
                progress: bool = True) -> list[dict]:
    """Plain against speculative beam search (`padrec.beam_verification.check_beams`: one request at
    a time, each setting (beam width, draft width) on every example) in each precision, the torch
    hosts on `device`; ranked by the target's own log-probabilities (no prefix-size prior)."""
    rows = max(beam_rows(sids.num_levels, w, d) for w, d in settings)
    out = []
    for dtype in dtypes:
        decoder = BeamDecoder(ItemTrie(sids), TorchTarget(target, rows, sids, device, DTYPES[dtype]),
                              target.config.max_seq_len, max(w for w, _ in settings),
                              TorchDraft(draft, sids, rows, device, DTYPES[dtype]), max(d for _, d in settings))
        timed_search(decoder, BeamRequest(tuple(examples[0].history), top_n, settings[0][0]))  # warm-up
        out.append({"dtype": dtype, "near_tie_score": NEAR_TIE_SCORES[dtype],
                    "checks": check_beams(decoder, examples, settings, top_n, progress, NEAR_TIE_SCORES[dtype])})
    return out


def markdown_table(report: dict) -> str:
    """The grid as a markdown table: a row per cell and decoder."""
    lines = [f"# {report['device']}: {report.get('dataset', '')} plain vs speculative decoding",
             "", f"{report['users']} test users per cell, torch {report['torch']}"
             + (f", CUDA {report['cuda']}" if report["cuda"] else "") + f", {report['minutes']:.1f} min in all.",
             "T_target: ms per plain target call; T_verify: ms per verify call; T_draft: ms per draft call "
             "(its k steps); tau-limit: tau x T_target / (T_draft + T_verify).", "",
             "| precision | batch | graphs | decoder | k | tau | p50 ms | p90 ms | items/s | speed-up | tau-limit | "
             "T_target | T_verify | T_draft | mismatches | near-ties |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for cell in report["cells"]:
        head = f"| {cell['dtype']} | {cell['batch_size']} | {'yes' if cell.get('graphs') else 'no'} "
        if "skipped" in cell:
            lines.append(head + f"| skipped: {cell['skipped']} |" + " |" * 12)
            continue
        p = cell["plain"]
        lines.append(head + f"| plain | 0 | 1.00 | {p['median_ms']:.1f} | {p['p90_ms']:.1f} | {p['items_per_s']:.0f} "
                     f"| 1.00 | | {p['ms_per_target_call']:.2f} | | | | |")
        for e in cell["speculative"]:
            lines.append(head + f"| {decoder_label(e)} | {e['k']} | {e['tau']:.2f} | {e['median_ms']:.1f} | "
                         f"{e['p90_ms']:.1f} | {e['items_per_s']:.0f} | {e['speedup']:.2f} | "
                         f"{e['tau_limit_speedup']:.2f} | {p['ms_per_target_call']:.2f} | "
                         f"{e['ms_per_target_call']:.2f} | {e['ms_per_draft_call']:.2f} | {e['mismatches']} | "
                         f"{e['near_ties']} |")
    if report.get("beam"):
        lines += ["", f"## Top-{report['beam_top_n']} by beam search, one request at a time", "",
                  "| precision | beams B | draft width | users | differing (near-ties) | target forwards plain / "
                  "speculative | accepted levels | p50 ms plain / speculative | speed-up |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for run in report["beam"]:
            for c in run["checks"]:
                lines.append(f"| {run['dtype']} | {c['beam_width']} | {c['draft_width']} | {c['users']} | "
                             f"{c['mismatches']} ({c['near_ties']}) | {c['plain_target_calls']:.2f} / "
                             f"{c['spec_target_calls']:.2f} | {c['accepted_levels']:.2f} | {c['plain_ms_median']:.1f} / "
                             f"{c['spec_ms_median']:.1f} | {c['speedup_median']:.2f} |")
    return "\n".join(lines) + "\n"

