"""The served graphs decoded in this process: the lists a served repository must answer with.

Tests and the failover benchmark compare what Triton sends back against these, so that "served
equals offline" is checked against the very ONNX graphs the server runs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from padrec.decoding.beam import BeamDecoder, beam_rows
from padrec.decoding.constraints import ItemTrie
from padrec.decoding.engine import ListDecoder
from padrec.decoding.interfaces import BeamRequest, DecodeRequest, DecodeResult
from padrec.decoding.onnx_draft import OnnxDraft
from padrec.decoding.onnx_draft_scorer import OnnxDraftScorer
from padrec.decoding.onnx_target import OnnxTarget
from padrec.export.repository import MANIFEST, TARGET_MODEL, VERSION, draft_model_name, draft_step_model_name
from padrec.serving.decoder import repository_trie

OFFLINE_BATCH = 25


def offline_lists(repository: Path, histories: Sequence[Sequence[int]], drafter: str | None,
                  num_draft_tokens: int, top_n: int = DecodeRequest.top_n) -> list[list[int]]:
    """Each history's greedy list of `top_n` items (internal indices) from the engine on
    `repository`'s exported graphs, `OFFLINE_BATCH` users per batch; `drafter` None decodes plainly."""
    manifest, trie = _served_catalogue(repository)
    target = _served_target(repository, OFFLINE_BATCH, trie)
    proposer = (OnnxDraft(repository / draft_model_name(drafter) / VERSION / "model.onnx", OFFLINE_BATCH)
                if drafter else None)
    decoder = ListDecoder(trie, target, manifest["graphs"]["max_seq_len"], proposer=proposer)
    lists: list[list[int]] = []
    for begin in range(0, len(histories), OFFLINE_BATCH):
        requests = [DecodeRequest(tuple(h), top_n=top_n, num_draft_tokens=num_draft_tokens)
                    for h in histories[begin: begin + OFFLINE_BATCH]]
        lists += [list(r.items) for r in decoder.generate(requests, list(range(len(requests))))]
    return lists


def offline_beams(repository: Path, histories: Sequence[Sequence[int]], beam_width: int = BeamRequest.beam_width,
                  top_n: int = BeamRequest.top_n, drafter: str | None = None, draft_width: int = 0,
                  one_row: bool = False) -> list[DecodeResult]:
    """Each history's top `top_n` items by beam search (`BeamDecoder`) on `repository`'s target graph,
    one user at a time; speculative with `drafter`'s step graph when draft_width > 0; with `one_row`
    in the one-row layout (the target's tree forward)."""
    manifest, trie = _served_catalogue(repository)
    rows = beam_rows(trie.sids.num_levels, beam_width, draft_width)  # the most either layout holds
    target = _served_target(repository, rows, trie)
    scorer = (OnnxDraftScorer(repository / draft_step_model_name(drafter) / VERSION / "model.onnx", rows)
              if draft_width else None)
    decoder = BeamDecoder(trie, target, manifest["graphs"]["max_seq_len"], beam_width, scorer, draft_width, one_row)
    requests = [BeamRequest(tuple(h), top_n=top_n, beam_width=beam_width, draft_width=draft_width) for h in histories]
    return [decoder.generate([r], [list(range(decoder.rows_needed(r)))])[0] for r in requests]


def _served_catalogue(repository: Path) -> tuple[dict, ItemTrie]:
    """The repository's manifest and trie."""
    manifest = json.loads((repository / MANIFEST).read_text())
    return manifest, repository_trie(repository, manifest)


def _served_target(repository: Path, rows: int, trie: ItemTrie) -> OnnxTarget:
    """The repository's target graph, with a cache of `rows` rows."""
    return OnnxTarget(repository / TARGET_MODEL / VERSION / "model.onnx", rows, sids=trie.sids)
