"""Speculative beam search against plain beam search, user by user: same items in the same order,
and how many target forwards and how much time each took (and, for a decoder of the one-row
layout, its own plain search beside both).

Both searches run on the same machine, one request at a time, interleaved user by user (so noise
hits both alike). A differing top-K is a near-tie when the two lists part at a rank where their
scores agree to within `NEAR_TIE_SCORE` (float rounding of a prefix scored inside a longer path
can reorder candidates that tie), otherwise a mismatch (a bug).
"""

from __future__ import annotations

import time

import numpy as np
from tqdm import tqdm

from padrec.data.split import Example
from padrec.decoding.beam import BeamDecoder
from padrec.decoding.interfaces import BeamRequest, DecodeResult

NEAR_TIE_SCORE = 1e-5


def timed_search(decoder: BeamDecoder, request: BeamRequest) -> tuple[DecodeResult, float]:
    """One request alone in rows 0.., and the seconds it took."""
    started = time.perf_counter()
    result = decoder.generate([request], [list(range(decoder.rows_needed(request)))])[0]
    return result, time.perf_counter() - started


def differs(plain: DecodeResult, other: DecodeResult, near_tie: float = NEAR_TIE_SCORE) -> str | None:
    """None when two top-K lists agree, else "near_tie" (their scores where they part agree to within
    `near_tie`) or "mismatch" (see the module docstring)."""
    if plain.items == other.items:
        return None
    rank = next((i for i, (a, b) in enumerate(zip(plain.items, other.items)) if a != b), None)
    if rank is None:
        return "mismatch"  # different lengths
    return "near_tie" if abs(plain.scores[rank] - other.scores[rank]) < near_tie else "mismatch"


def check_beams(decoder: BeamDecoder, examples: list[Example], settings: list[tuple[int, int]], top_n: int = 10,
                progress: bool = True, near_tie: float = NEAR_TIE_SCORE,
                reference: BeamDecoder | None = None) -> list[dict]:
    """For each (beam_width, draft_width) setting, plain search by `reference` (default: `decoder`)
    and speculative search by `decoder` of every example; per setting: differing lists (near-ties
    within `near_tie`), mean target forwards, accepted levels and drafted prefixes per request, and
    the speed-up (total plain time / total speculative time, and the median per user).

    A `decoder` of another layout than `reference` (`one_row`) also runs its own plain search of
    each example: checked against the reference's like the speculative one, and the baseline of a
    second speed-up (`layout_*` fields), so a row separates what the layout gains from what the
    draft does."""
    reference = reference or decoder
    rows = []
    for width, draft_width in settings:
        times = {"plain": [], "layout": [], "spec": []}
        calls, accepted, drafted = [], [], []
        verdicts = {"near_tie": [], "mismatch": [], "layout_near_tie": [], "layout_mismatch": []}
        for u, e in enumerate(tqdm(examples, desc=f"beam {width} draft {draft_width}", disable=not progress)):
            history = tuple(e.history)
            plain, t_plain = timed_search(reference, BeamRequest(history, top_n, width))
            times["plain"].append(t_plain)
            if decoder is not reference:
                layout, t_layout = timed_search(decoder, BeamRequest(history, top_n, width))
                times["layout"].append(t_layout)
                verdict = differs(plain, layout, near_tie)
                if verdict:
                    verdicts[f"layout_{verdict}"].append(u)
            spec, t_spec = timed_search(decoder, BeamRequest(history, top_n, width, draft_width=draft_width))
            times["spec"].append(t_spec)
            calls.append((plain.stats.target_calls, spec.stats.target_calls))
            accepted.append(spec.stats.accepted)
            drafted.append(spec.stats.drafted)
            verdict = differs(plain, spec, near_tie)
            if verdict:
                verdicts[verdict].append(u)
        calls = np.array(calls)
        row = {"beam_width": width, "draft_width": draft_width, "users": len(examples),
               "mismatches": len(verdicts["mismatch"]), "near_ties": len(verdicts["near_tie"]),
               "mismatched_users": verdicts["mismatch"], "near_tie_users": verdicts["near_tie"],
               "plain_target_calls": float(calls[:, 0].mean()), "spec_target_calls": float(calls[:, 1].mean()),
               "accepted_levels": float(np.mean(accepted)), "drafted": float(np.mean(drafted)),
               "plain_ms_median": 1e3 * float(np.median(times["plain"])),
               "spec_ms_median": 1e3 * float(np.median(times["spec"])),
               **_speedups("", times["plain"], times["spec"])}
        if times["layout"]:
            row |= {"layout_mismatches": len(verdicts["layout_mismatch"]),
                    "layout_near_ties": len(verdicts["layout_near_tie"]),
                    "layout_plain_ms_median": 1e3 * float(np.median(times["layout"])),
                    **_speedups("layout_plain_", times["plain"], times["layout"]),
                    **_speedups("over_layout_plain_", times["layout"], times["spec"])}
        rows.append(row)
    return rows


def _speedups(prefix: str, before: list[float], after: list[float]) -> dict[str, float]:
    """`speedup_<prefix>total` (total before / total after) and `speedup_<prefix>median` (per user)."""
    return {f"speedup_{prefix}total": float(np.sum(before) / np.sum(after)),
            f"speedup_{prefix}median": float(np.median(np.array(before) / np.array(after)))}
