"""Experiment: how many draft rounds the exported draft's unforced round serves.

    python docs/experiments/unforced_rounds.py --repository model_repository --users 60 --k 4 \
        --out docs/experiments/unforced_rounds_beauty.json

Decodes the first test users of the repository's dataset one at a time with the engine on ONNX
Runtime over an exported repository (`padrec export --backend python`: `target/1/model.onnx`,
`draft_<name>/1/model.onnx` and its `model_unforced.onnx`, the trie's BETA from its
`padrec_export.json`), counting which of the draft's two graphs ran each round. Counts
only: no timing, so it may run beside other jobs. The counting wraps the sessions' `run` in this
process; the library is not changed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from padrec.artifacts import load_prepared
from padrec.decoding.constraints import ItemTrie
from padrec.decoding.engine import ListDecoder
from padrec.decoding.interfaces import DecodeRequest
from padrec.decoding.onnx_draft import OnnxDraft
from padrec.decoding.onnx_target import OnnxTarget
from padrec.export.repository import MANIFEST


def count_calls(session, counts: dict, key: str) -> None:
    """Make `session.run` count its calls in counts[key]."""
    run = session.run

    def counted(*args, **kwargs):
        counts[key] += 1
        return run(*args, **kwargs)

    session.run = counted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--drafters", default="padrec,eagle")
    parser.add_argument("--users", type=int, default=60)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    manifest = json.loads((args.repository / MANIFEST).read_text())
    data = load_prepared(manifest["dataset"])
    trie = ItemTrie(data.sids, manifest["graphs"]["prefix_size_penalty"])
    target_path = args.repository / "target" / "1" / "model.onnx"
    report = {"repository": str(args.repository), "dataset": manifest["dataset"], "users": args.users, "k": args.k,
              "forced_room": manifest["graphs"]["forced_room"], "drafters": {}}
    for drafter in args.drafters.split(","):
        draft = OnnxDraft(args.repository / f"draft_{drafter}" / "1" / "model.onnx", 1)
        if draft.unforced_session is None:
            raise SystemExit(f"draft_{drafter} has no unforced round: export again with this code")
        counts = {"with_room": 0, "unforced": 0}
        count_calls(draft.session, counts, "with_room")
        count_calls(draft.unforced_session, counts, "unforced")
        target = OnnxTarget(target_path, 1, sids=trie.sids)
        decoder = ListDecoder(trie, target, manifest["graphs"]["max_seq_len"], proposer=draft)
        for example in data.split.test[: args.users]:
            decoder.generate([DecodeRequest(tuple(example.history), top_n=10, num_draft_tokens=args.k)], [0])
        rounds = sum(counts.values())
        report["drafters"][drafter] = counts | {"rounds": rounds, "unforced_share": counts["unforced"] / rounds}
        print(drafter, report["drafters"][drafter])
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
