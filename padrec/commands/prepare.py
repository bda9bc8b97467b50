"""`padrec prepare`: split a dataset and build its semantic IDs (built-in or bring-your-own)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from padrec.config import ARTIFACTS_DIR, SemanticIdConfig, SplitConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="built-in name, or the name to give your own dataset")
    parser.add_argument("--interactions", type=Path, help="your own: 'user item item ...' lines or JSON {user: [items]}")
    parser.add_argument("--item-text", type=Path, help="your own: JSON {item: {title: ..., ...}}")
    parser.add_argument("--artifacts", type=Path, default=ARTIFACTS_DIR, help="where derived files go")
    parser.add_argument("--no-separator", action="store_true", help="items without a separator token")
    parser.add_argument("--shared-vocabulary", action="store_true",
                        help="the k-means code levels share one vocabulary, so a token does not tell its level")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--interaction-weight", type=float, default=SemanticIdConfig.interaction_weight,
                        help="weight of the item vector's co-consumption part (SVD of the training item x user "
                             "matrix) beside text and attributes; 0 = off")


def run(args: argparse.Namespace) -> int:
    from padrec.artifacts import ArtifactPaths, load_raw
    from padrec.data.datasets import BUILTIN, DatasetError
    from padrec.data.split import leave_one_out
    from padrec.semantic_ids import build_semantic_ids

    if args.interaction_weight < 0:
        print("error: --interaction-weight must be >= 0", file=sys.stderr)
        return 2
    if args.interactions is None and args.dataset not in BUILTIN:
        print(f"error: {args.dataset!r} is not built-in ({', '.join(BUILTIN)}); pass --interactions", file=sys.stderr)
        return 2
    source = (
        {"kind": "builtin", "name": args.dataset}
        if args.interactions is None
        else {
            "kind": "generic",
            "name": args.dataset,
            "interactions": str(args.interactions.resolve()),
            "item_text": str(args.item_text.resolve()) if args.item_text else None,
        }
    )
    try:
        dataset = load_raw(source)
    except DatasetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    split = leave_one_out(dataset, SplitConfig())
    texts = [dataset.item_text.get(item, str(item)) for item in split.item_ids]
    attributes = [dataset.item_attributes.get(item, []) for item in split.item_ids] if dataset.item_attributes else None
    config = SemanticIdConfig(use_separator=not args.no_separator, seed=args.seed,
                              interaction_weight=args.interaction_weight, shared_vocabulary=args.shared_vocabulary)
    sids = build_semantic_ids(texts, attributes, config, list(split.train.values()))

    paths = ArtifactPaths.for_dataset(args.dataset, args.artifacts)
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.dataset.write_text(json.dumps(source, indent=1) + "\n")
    paths.item_ids.write_text(json.dumps(split.item_ids) + "\n")
    sids.save(paths.semantic_ids, config)
    stats = {**sids.stats(), "users": len(split.test), "train_interactions": sum(map(len, split.train.values())),
             "valid_first_code_in_history": sids.first_code_in_history([(e.history, e.target) for e in split.valid])}
    paths.semantic_id_stats.write_text(json.dumps(stats, indent=1) + "\n")
    print(json.dumps(stats))
    return 0
