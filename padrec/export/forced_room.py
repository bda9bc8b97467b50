"""How many forced tokens an exported draft graph makes room for.

A speculative round starts on the row's pending tokens: the token the target just chose, then the
tokens the constraints force after it (the rest of an item whose prefix leaves one continuation,
the separator). The draft graph has a fixed number of steps, `forced_room` of them for those forced
tokens; a row with more proposes nothing that round. How long the forced runs are depends on the
catalogue and on the prefix-size prior, which steers lists towards prefixes with few items below
them. Every step of room is one more draft step in every round that starts with a forced token;
rounds without one (89% of Beauty's at k=4) run the unforced round (`padrec.export.graphs`), which
has none. So the room holds nearly every run, read off greedy lists of the target the graphs serve.
Measured on ONNX Runtime (k=4, 40 test users; docs/findings.md, "The draft graph's forced room" and
"The draft's unforced round"): before the unforced round, a room of 3 instead of 2 raised Yelp's tau
(BETA 1: at most 2 forced tokens follow 77% of the chosen tokens) from 2.30 to 2.83 and cut its time
per list by 15%, but cost Beauty time; with it, a room of 3 is faster than 2 on Sports (94%: tau
3.39 -> 3.62, speed-up 1.055x -> 1.075x PAD-Rec, 1.094x -> 1.124x EAGLE-style) and on Beauty (98%:
1.03x -> 1.054x, 1.083x -> 1.122x). All four datasets then get 3.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from padrec.decoding.constraints import ItemTrie, ListConstraint

if TYPE_CHECKING:
    from padrec.data.split import Example
    from padrec.models.target import Target

COVERAGE = 0.99  # share of chosen tokens whose forced run must fit in the room
ROOM_USERS = 50  # test users whose greedy lists `measured_room` reads


def forced_runs(trie: ItemTrie, history: Sequence[int], items: Sequence[int]) -> list[int]:
    """For a list of `items` decoded after `history` (excluded), the number of tokens the constraints
    force right after each token that was a choice, in list order."""
    constraint = ListConstraint(trie, history)
    runs: list[int] = []
    tokens = trie.sids.encode_items(list(items))
    if trie.sids.use_separator:
        tokens = tokens[:-1]  # a list ends on its last code token: no separator is decoded after it
    for token in tokens:
        if len(constraint.allowed()) > 1:
            runs.append(0)
        elif runs:  # forced before the first choice: part of the prompt, not of a round
            runs[-1] += 1
        constraint.advance(token)
    return runs


def room_for(runs: Iterable[int], coverage: float = COVERAGE) -> int:
    """The smallest room (at least 1) that holds at least `coverage` of the forced runs."""
    ordered = sorted(runs)
    if not ordered:
        return 1
    return max(1, ordered[max(0, math.ceil(coverage * len(ordered)) - 1)])


def measured_room(target: Target, trie: ItemTrie, examples: list[Example], users: int = ROOM_USERS,
                  coverage: float = COVERAGE) -> int:
    """`room_for` the forced runs of the target's greedy lists (decoded with `trie`) for the first
    `users` examples."""
    from padrec.evaluation import generated_lists

    examples = examples[:users]
    lists = generated_lists(target, trie, examples, progress=False)
    return room_for((run for e, items in zip(examples, lists) for run in forced_runs(trie, e.history, items)), coverage)
