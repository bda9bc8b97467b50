"""A whole run on a small real dataset: prepare (real encoder) -> train tiny target -> evaluate."""

import json

import pytest

from padrec.cli import main
from padrec.data.datasets import load_builtin


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    """The first 60 MovieLens-100K users in the generic (bring-your-own) format."""
    root = tmp_path_factory.mktemp("ml_small")
    ds = load_builtin("ml-100k")
    users = sorted(ds.sequences, key=int)[:60]
    (root / "inter.txt").write_text("".join(f"{u} {' '.join(ds.sequences[u])}\n" for u in users))
    items = {i for u in users for i in ds.sequences[u]}
    (root / "items.json").write_text(json.dumps({i: {"title": ds.item_text[i]} for i in items}))
    return root


@pytest.mark.slow
def test_prepare_train_evaluate(small_dataset, tmp_path, capsys):
    art = tmp_path / "artifacts"
    assert main(["prepare", "--dataset", "small", "--interactions", str(small_dataset / "inter.txt"),
                 "--item-text", str(small_dataset / "items.json"), "--artifacts", str(art)]) == 0
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert stats["users"] == 60 and stats["codebook_usage"][-1] == 1.0

    assert main(["train-target", "--dataset", "small", "--preset", "tiny", "--epochs", "2", "--quiet",
                 "--artifacts", str(art)]) == 0
    log = json.loads((art / "small" / "target_train.json").read_text())
    losses = [e["train_loss"] for e in log["epochs"]]
    assert len(losses) == 2 and losses[-1] < losses[0]
    assert log["best_epoch"] in (1, 2)
    capsys.readouterr()

    assert main(["eval", "--dataset", "small", "--json", "--artifacts", str(art), "--beam-users", "20"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["users"] == 60 and report["beam_search"]["users"] == 20
    for part in ("target", "popularity", "beam_search"):
        for key in ("recall@5", "recall@10", "ndcg@5", "ndcg@10"):
            assert 0.0 <= report[part][key] <= 1.0
        assert report[part]["recall@5"] <= report[part]["recall@10"]
        assert report[part]["ndcg@10"] <= report[part]["recall@10"]


def test_eval_without_checkpoint_says_what_to_run(tmp_path, capsys):
    art = tmp_path / "artifacts"
    (art / "x").mkdir(parents=True)
    (art / "x" / "dataset.json").write_text('{"kind": "builtin", "name": "ml-100k"}')
    (art / "x" / "item_ids.json").write_text(json.dumps(load_builtin("ml-100k").items))
    from padrec.semantic_ids import SemanticIds
    import numpy as np

    SemanticIds(np.arange(1682)[:, None], [1682]).save(art / "x" / "semantic_ids.npz")
    assert main(["eval", "--dataset", "x", "--artifacts", str(art)]) == 2
    assert "padrec train-target --dataset x" in capsys.readouterr().err
