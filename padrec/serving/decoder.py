"""Served decoding: the engines of `padrec.decoding` over calls to the target and draft models.

A host (the Triton BLS model, or a test) supplies `call(model_name, inputs, output_names) -> outputs`; this module
does the rest: one `ListDecoder` and one `BeamDecoder` per served drafter (all sharing the target;
a list decoder grows token trees through the drafter's `draft_<name>_step` model where it and the
target have their tree forward, and proposes chains through `draft_<name>`;
a beam decoder drafts through the drafter's `draft_<name>_step` model where the repository has
one, and scores each request's prefixes in one row where the target has its tree forward:
`ServingConfig.one_row_beams`), cache slots per request (one for a list, `BeamDecoder.rows_needed`
for a beam request) held
from prefill to the end and released however decoding ends, and per-request errors that leave the
other requests of a batch alone.

Beam requests of a batch that need more slots than are free wait for the ones before them: the
batch's lists decode first, then its beam requests in waves, each wave the waiting requests (in
order) that fit the pool, so a batch of 16 concurrent beam-20 requests is served 1 or 2 at a
time instead of answered UNAVAILABLE.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from padrec.config import DecodeConfig, ServingConfig
from padrec.decoding.beam import BeamDecoder
from padrec.decoding.constraints import ItemTrie
from padrec.decoding.draft_tree import TreeDrafting
from padrec.decoding.engine import ListDecoder
from padrec.decoding.interfaces import DecodeResult, InvalidRequest
from padrec.decoding.onnx_draft import DraftGraphLayout
from padrec.decoding.onnx_session import tree_path
from padrec.export.repository import MANIFEST, TARGET_MODEL, VERSION, draft_model_name, draft_step_model_name, graph_io
from padrec.semantic_ids import SemanticIds
from padrec.serving.parameters import ServedRequest
from padrec.serving.remote import RemoteDraft, RemoteDraftScorer, RemoteTarget
from padrec.serving.slots import PoolFull, SlotPool

ModelCall = Callable[[str, dict[str, np.ndarray], tuple[str, ...]], dict[str, np.ndarray]]


def draft_layout(repository: Path, drafter: str) -> DraftGraphLayout:
    """The draft graph's sizes, read from the served graph itself."""
    inputs, outputs = graph_io(repository / draft_model_name(drafter) / VERSION / "model.onnx")
    return DraftGraphLayout.from_shapes({spec.name: list(spec.dims) for spec in (*inputs, *outputs)})


def repository_trie(repository: Path, manifest: dict) -> ItemTrie:
    """The served catalogue's trie, with the prefix-size prior its draft graphs were exported with (a
    repository exported before the prior existed has none)."""
    return ItemTrie(SemanticIds.load(repository / "semantic_ids.npz"),
                    manifest["graphs"].get("prefix_size_penalty", 0.0))


class ServedDecoder:
    """Decodes batches of served requests in cache rows `rows` of the target and draft models."""

    def __init__(self, repository: Path, call: ModelCall, rows: range, serving: ServingConfig = ServingConfig(),
                 decode: DecodeConfig = DecodeConfig()):
        manifest = json.loads((repository / MANIFEST).read_text())
        trie = repository_trie(repository, manifest)
        target = RemoteTarget(lambda inputs, outputs: call(TARGET_MODEL, inputs, outputs))
        max_seq_len = manifest["graphs"]["max_seq_len"]
        target_trees = tree_path(repository / TARGET_MODEL / VERSION / "model.onnx").is_file()
        one_row = serving.one_row_beams and target_trees
        self.decoders, self.beams = {}, {}
        for drafter in serving.drafters:
            name = draft_model_name(drafter)
            proposer = RemoteDraft(lambda inputs, outputs, name=name: call(name, inputs, outputs),
                                   draft_layout(repository, drafter))
            step = draft_step_model_name(drafter)
            # a repository exported before draft steps were: plain beam search only
            scorer = (RemoteDraftScorer(lambda inputs, outputs, step=step: call(step, inputs, outputs))
                      if (repository / step).is_dir() else None)
            # token trees where the target and the draft step both have their tree forward (a
            # repository exported before trees were: chains only)
            if scorer is not None and target_trees and tree_path(repository / step / VERSION / "model.onnx").is_file():
                proposer = TreeDrafting(proposer, scorer)
            self.decoders[drafter] = ListDecoder(trie, target, max_seq_len, decode.max_top_n, proposer,
                                                 decode.max_tree_nodes)
            self.beams[drafter] = BeamDecoder(trie, target, max_seq_len, decode.max_beam_width, scorer,
                                              decode.max_draft_width, one_row)
        self.pool = SlotPool(rows)
        self.serving = serving

    def decode(self, requests: list[ServedRequest], on_item: Callable[[int, DecodeResult], None] | None = None,
               cancelled: Callable[[int], bool] | None = None) -> list[DecodeResult | Exception]:
        """Per request, its result or the exception that ended it: InvalidRequest (the client's
        fault), PoolFull (no free slot), or whatever a model call raised (the server's fault)."""
        outcomes: list[DecodeResult | Exception | None] = [None] * len(requests)
        held: dict[int, list[int]] = {}  # request index -> its slots (one per beam of a beam request)
        waiting: list[int] = []  # valid beam requests, in order, until their wave
        try:
            for i, served in enumerate(requests):
                try:
                    if served.mode == "beam":
                        beam = self.beams[served.drafter]
                        beam.validate(served.request)
                        needed = beam.rows_needed(served.request)
                        if needed > len(self.pool.rows):  # could never be served
                            raise InvalidRequest(f"beam_width {served.request.beam_width} with draft_width "
                                                 f"{served.request.draft_width} needs {needed} decoding slots; "
                                                 f"this model has {len(self.pool.rows)}")
                        waiting.append(i)
                    else:
                        self.decoders[served.drafter].validate(served.request)
                        held[i] = self.pool.acquire()
                except (InvalidRequest, PoolFull) as error:
                    outcomes[i] = error
            # checked as asked, decoded as the load allows (a bad request is refused under load too)
            requests = self._under_load(requests)
            # one engine batch per drafter, then beam requests in waves: target calls are batched
            # within each, the groups run in turn
            for drafter, decoder in self.decoders.items():
                group = [i for i in held if requests[i].drafter == drafter]
                if group:
                    self._generate(decoder, requests, group, held, outcomes, on_item, cancelled)
                    self._release(held, group)
            while waiting:
                wave = self._admit(requests, waiting, held)
                if not wave:  # the pool is held elsewhere: the rest cannot wait for it here
                    for i in waiting:
                        outcomes[i] = PoolFull(f"{self._slots(requests[i])} decoding slots asked for, "
                                               f"{len(self.pool.rows) - self.pool.in_use} free; retry later")
                    break
                self._search(requests, wave, held, outcomes, cancelled)
                self._release(held, wave)
        finally:
            self._release(held, list(held))
        return outcomes

    def _admit(self, requests: list[ServedRequest], waiting: list[int], held: dict[int, list[int]]) -> list[int]:
        """The next wave: the waiting beam requests, in order, whose slots the pool has now (taken off `waiting`)."""
        wave = []
        while waiting:
            try:
                held[waiting[0]] = self.pool.acquire(self._slots(requests[waiting[0]]))
            except PoolFull:
                break
            wave.append(waiting.pop(0))
        return wave

    def _slots(self, served: ServedRequest) -> int:
        """The decoding slots a beam request holds."""
        return self.beams[served.drafter].rows_needed(served.request)

    def _release(self, held: dict[int, list[int]], group: list[int]) -> None:
        """Give back the slots of the requests of `group`, which are done."""
        for i in group:
            self.pool.release(held.pop(i))

    def _under_load(self, requests: list[ServedRequest]) -> list[ServedRequest]:
        """The requests with draft tokens capped when the batch is above the load threshold; a token
        tree then drafts a chain (a tree verifies several times a chain's tokens: under load, the
        costliest way to draft)."""
        if sum(r.mode == "list" for r in requests) <= self.serving.load_threshold:
            return requests
        cap = self.serving.draft_tokens_under_load
        return [r if r.mode == "beam" else
                replace(r, request=r.request.as_chain(min(r.request.num_draft_tokens, cap)))
                for r in requests]

    def _search(self, requests: list[ServedRequest], wave: list[int], held: dict[int, list[int]],
                outcomes: list, cancelled) -> None:
        """Search a wave's beam requests, one engine batch per drafter (plain ones all with the default
        drafter's: their drafter drafts nothing)."""
        drafters = {i: requests[i].drafter if requests[i].request.draft_width else self.serving.drafter for i in wave}
        for drafter, beam in self.beams.items():
            group = [i for i in wave if drafters[i] == drafter]
            if not group:
                continue
            try:
                results = beam.generate([requests[i].request for i in group], [held[i] for i in group],
                                        cancelled=None if cancelled is None else lambda j: cancelled(group[j]))
            except Exception as error:  # noqa: BLE001 - a failed model call fails its group, not the server
                results = [error] * len(group)
            for i, result in zip(group, results):
                outcomes[i] = result

    @staticmethod
    def _generate(decoder: ListDecoder, requests: list[ServedRequest], group: list[int], held: dict[int, list[int]],
                  outcomes: list, on_item, cancelled) -> None:
        try:
            results = decoder.generate(
                [requests[i].request for i in group], [held[i][0] for i in group],
                on_item=None if on_item is None else lambda j, result: on_item(group[j], result),
                cancelled=None if cancelled is None else lambda j: cancelled(group[j]))
        except Exception as error:  # noqa: BLE001 - a failed model call fails its group, not the server
            results = [error] * len(group)
        for i, result in zip(group, results):
            outcomes[i] = result
