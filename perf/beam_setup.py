"""What the beam probes share: their `B:D` settings and a one-row speculative beam decoder."""

from __future__ import annotations

from collections.abc import Callable

from padrec.artifacts import Prepared
from padrec.decoding.beam import BeamDecoder, one_row_rows
from padrec.decoding.constraints import ItemTrie
from padrec.decoding.torch_draft import TorchDraft
from padrec.decoding.torch_target import TorchTarget
from padrec.models.draft import Draft
from padrec.models.target import Target


def parse_settings(text: str) -> list[tuple[int, int]]:
    """'10:10,20:20' -> [(beam_width, draft_width), ...]."""
    return [tuple(int(x) for x in s.split(":")) for s in text.split(",")]


def one_row_decoder(data: Prepared, target: Target, draft: Draft, settings: list[tuple[int, int]],
                    wrap: Callable = lambda scorer: scorer) -> BeamDecoder:
    """A one-row beam decoder with room for every setting, ranking by the target's own
    log-probabilities; `wrap` is applied to the target and draft scorers (to time them, say)."""
    rows = max(one_row_rows(b, d) for b, d in settings)
    return BeamDecoder(ItemTrie(data.sids, 0.0), wrap(TorchTarget(target, rows, data.sids)),
                       target.config.max_seq_len, max(b for b, _ in settings),
                       wrap(TorchDraft(draft, data.sids, rows)), max(d for _, d in settings), one_row=True)
