"""A whole run on a small real dataset: prepare (real encoder) -> train tiny target -> evaluate ->
distil a draft from it."""

import hashlib
import json
from dataclasses import replace

import numpy as np
import pytest

from padrec.artifacts import load_prepared
from padrec.cli import main
from padrec.config import DRAFTERS, DraftTrainConfig
from padrec.data.datasets import load_builtin
from padrec.evaluation import best_setting
from padrec.models.draft import Draft
from padrec.models.target import Target
from padrec.training.draft import distillation_sequences, target_features, train_draft
from padrec.training.target import training_sequences


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
                 "--item-text", str(small_dataset / "items.json"), "--artifacts", str(art),
                 "--interaction-weight", "1.0"]) == 0
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert stats["users"] == 60 and stats["codebook_usage"][-1] == 1.0
    assert 0.0 <= stats["valid_first_code_in_history"] <= 1.0
    with np.load(art / "small" / "semantic_ids.npz") as saved:
        assert json.loads(str(saved["config"]))["interaction_weight"] == 1.0

    # an item-embedding target: the rest of the pipeline (eval, beam search, draft training) reads its marks
    assert main(["train-target", "--dataset", "small", "--preset", "tiny", "--epochs", "2", "--quiet",
                 "--artifacts", str(art), "--layers", "3", "--item-embedding"]) == 0
    log = json.loads((art / "small" / "target_train.json").read_text())
    losses = [e["train_loss"] for e in log["epochs"]]
    assert len(losses) == 2 and losses[-1] < losses[0]
    assert log["best_epoch"] in (1, 2)
    capsys.readouterr()

    # a warm restart starts from the checkpoint's weights and keeps the log of the run that made it
    assert main(["train-target", "--dataset", "small", "--preset", "tiny", "--epochs", "1", "--quiet",
                 "--artifacts", str(art), "--init-from", str(art / "small" / "target.pt"),
                 "--out", str(art / "small" / "target_warm.pt"), "--shuffle-tail-items", "3", "--dropout", "0.1"]) == 0
    warm = json.loads((art / "small" / "target_warm_train.json").read_text())
    assert warm["warm_start"] and warm["init_from"]["log"]["epochs"] == log["epochs"]
    assert warm["train"]["shuffle_tail_items"] == 3 and log["train"]["shuffle_tail_items"] == 0
    assert warm["epochs"][0]["train_loss"] < losses[0]
    assert warm["model"]["dropout"] == 0.1 and log["model"]["dropout"] == 0.0
    # the warm restart took the checkpoint's depth, not the preset's
    assert warm["model"]["n_layers"] == log["model"]["n_layers"] == 3
    assert main(["train-target", "--dataset", "small", "--preset", "tiny", "--artifacts", str(art),
                 "--layers", "0"]) == 2
    assert main(["train-target", "--dataset", "small", "--preset", "tiny", "--artifacts", str(art),
                 "--dropout", "1"]) == 2
    assert "--dropout must be in [0, 1)" in capsys.readouterr().err
    assert main(["train-target", "--dataset", "small", "--preset", "tiny", "--artifacts", str(art),
                 "--d-model", "96"]) == 2
    assert "positive multiple of 64, got 96" in capsys.readouterr().err
    capsys.readouterr()

    # a refit trains on every user's items but the test item, for the epochs it is told, keeping the last
    data = load_prepared("small", art)
    lines = (small_dataset / "inter.txt").read_text().splitlines()
    everything_but_test = {u: [data.split.item_ids.index(i) for i in rest[:-1]]
                           for u, *rest in (line.split() for line in lines)}
    assert dict(zip(data.split.train, training_sequences(data, with_valid=True))) == everything_but_test
    assert training_sequences(data, with_valid=False) == list(data.split.train.values())
    assert main(["train-target", "--dataset", "small", "--preset", "tiny", "--artifacts", str(art),
                 "--refit-with-valid"]) == 2
    assert "--refit-with-valid needs --epochs" in capsys.readouterr().err
    assert main(["train-target", "--dataset", "small", "--preset", "tiny", "--epochs", "2", "--quiet",
                 "--artifacts", str(art), "--layers", "3", "--d-model", "128", "--refit-with-valid",
                 "--no-item-embedding", "--out", str(art / "small" / "target_refit.pt")]) == 0
    refit = json.loads((art / "small" / "target_refit_train.json").read_text())
    assert refit["train"]["refit_with_valid"] and not log["train"]["refit_with_valid"]
    assert (refit["model"]["d_model"], refit["model"]["n_heads"], refit["model"]["d_ff"]) == (128, 2, 384)
    # the target trained above embeds items (and so does its warm restart); a flag turns it off
    assert log["model"]["item_embedding"] and warm["model"]["item_embedding"] and not refit["model"]["item_embedding"]
    assert refit["train_tokens_per_epoch"] > log["train_tokens_per_epoch"]
    assert refit["best_epoch"] == 2 and "last epoch (refit)" in capsys.readouterr().out

    assert main(["eval", "--dataset", "small", "--json", "--artifacts", str(art), "--beam-users", "20"]) == 0
    out = capsys.readouterr()
    report = json.loads(out.out)  # progress bars stay on stderr, so stdout is the report alone
    assert "generate" in out.err and "beam" in out.err
    assert report["users"] == 60 and report["beam_search"]["users"] == 20
    for part in ("target", "popularity", "beam_search"):
        for key in ("recall@5", "recall@10", "ndcg@5", "ndcg@10"):
            assert 0.0 <= report[part][key] <= 1.0
        assert report[part]["recall@5"] <= report[part]["recall@10"]
        assert report[part]["ndcg@10"] <= report[part]["recall@10"]
    assert report["decoding"]["prefix_size_penalty"] == 0.0

    # beam search alone: the same beam metrics, no lists, no popularity
    assert main(["eval", "--dataset", "small", "--json", "--artifacts", str(art), "--users", "20", "--no-list",
                 "--quiet"]) == 0
    beam_only = json.loads(capsys.readouterr().out)
    assert "target" not in beam_only and "popularity" not in beam_only
    assert {k: v for k, v in beam_only["beam_search"].items() if k != "seconds"} == {
        k: v for k, v in report["beam_search"].items() if k != "seconds"}
    assert main(["eval", "--dataset", "small", "--artifacts", str(art), "--no-list", "--no-beam"]) == 2
    assert "leave nothing to evaluate" in capsys.readouterr().err

    # with the prefix-size prior the lists change, the popularity baseline does not
    assert main(["eval", "--dataset", "small", "--json", "--artifacts", str(art), "--no-beam",
                 "--prefix-size-penalty", "2.0", "--quiet"]) == 0
    out = capsys.readouterr()
    prior = json.loads(out.out)
    assert "generate" not in out.err
    assert prior["decoding"]["prefix_size_penalty"] == 2.0 and prior["popularity"] == report["popularity"]
    assert 0.0 <= prior["target"]["recall@10"] <= 1.0

    # BETA chosen on validation lists becomes the dataset's default; a flag still overrides it
    assert main(["tune-prior", "--dataset", "small", "--betas", "0,2", "--json", "--artifacts", str(art)]) == 0
    tuned = json.loads(capsys.readouterr().out)
    assert tuned["split"] == "valid" and tuned["users"] == 60 and set(tuned["metrics"]) == {"0", "2"}
    assert tuned["prefix_size_penalty"] == best_setting({float(b): m for b, m in tuned["metrics"].items()})
    saved = json.loads((art / "small" / "decoding.json").read_text())
    assert saved["defaults"] == {"prefix_size_penalty": tuned["prefix_size_penalty"]}
    assert main(["eval", "--dataset", "small", "--json", "--artifacts", str(art), "--no-beam"]) == 0
    assert json.loads(capsys.readouterr().out)["decoding"]["prefix_size_penalty"] == tuned["prefix_size_penalty"]
    assert main(["eval", "--dataset", "small", "--json", "--artifacts", str(art), "--no-beam",
                 "--prefix-size-penalty", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["target"] == report["target"]

    assert main(["train-draft", "--dataset", "small", "--drafter", "padrec", "--users", "60", "--epochs", "1",
                 "--quiet", "--artifacts", str(art), "--cache", str(tmp_path / "distill"),
                 "--item-coefficient-init", "1.0", "--position-init-std", "0.1", "--prefix-size-penalty", "0.5"]) == 0
    assert Draft.load(art / "small" / "draft_padrec.pt").config == replace(
        DRAFTERS["padrec"], item_coefficient_init=1.0, position_init_std=0.1)
    draft_log = json.loads((art / "small" / "draft_padrec_train.json").read_text())
    assert draft_log["distilled_with_prefix_size_penalty"] == 0.5
    # named by the artifacts root and the prior: not the cache of BETA-0 lists, nor of another root
    assert [f.name for f in (tmp_path / "distill").iterdir()] == [
        f"small_{hashlib.sha1(str((art / 'small').resolve()).encode()).hexdigest()[:8]}_60_0_prior0.5.pt"]
    capsys.readouterr()

    assert main(["draft-signals", "--dataset", "small", "--users", "8", "--k", "2", "--batch-size", "4",
                 "--json", "--artifacts", str(art)]) == 0
    signals = json.loads(capsys.readouterr().out)
    assert signals["sizes"]["item"]["share"] > 0 and len(signals["sizes"]["step"]["share_by_depth"]) == 3
    # both decoders are lossless, so their lists agree whatever the position terms do to acceptance
    assert signals["acceptance"]["differing_lists"] == 0 and signals["acceptance"]["users"] == 8

    # verify decodes with the dataset's BETA; a drafter that was never trained is named with its command
    assert main(["verify", "--dataset", "small", "--users", "6", "--k", "2", "--drafters", "padrec",
                 "--batch-size", "3", "--json", "--artifacts", str(art)]) == 0
    verified = json.loads(capsys.readouterr().out)
    assert verified["prefix_size_penalty"] == tuned["prefix_size_penalty"] and verified["users"] == 6
    assert [c["mismatches"] for c in verified["checks"]] == [0]
    # speculative beam search (the barely trained draft misses beams: fallbacks) equals plain beam search
    assert main(["verify-beam", "--dataset", "small", "--beam-widths", "4", "--artifacts", str(art)]) == 2
    assert "at least --top-n (10)" in capsys.readouterr().err
    assert main(["verify-beam", "--dataset", "small", "--users", "5", "--beam-widths", "4", "--draft-widths", "2,6",
                 "--top-n", "3", "--json", "--quiet", "--artifacts", str(art)]) == 0
    beams = json.loads(capsys.readouterr().out)["checks"]
    assert [(c["beam_width"], c["draft_width"], c["users"], c["mismatches"]) for c in beams] == [(4, 2, 5, 0), (4, 6, 5, 0)]
    assert all(c["drafted"] > 0 and c["plain_target_calls"] >= 2 for c in beams)
    assert main(["bench", "--dataset", "small", "--users", "2", "--k", "2", "--drafters", "padrec,eagle",
                 "--json", "--artifacts", str(art)]) == 2
    assert "padrec train-draft --dataset small --drafter eagle" in capsys.readouterr().err
    # only the exported draft graph has a forced room; torch drafts step through forced tokens
    assert main(["bench", "--dataset", "small", "--users", "2", "--k", "2", "--drafters", "padrec",
                 "--forced-room", "3", "--artifacts", str(art)]) == 2
    assert "--forced-room" in capsys.readouterr().err

    # with a schedule short enough for 60 users, agreement with the target's argmax grows at every depth
    data = load_prepared("small", art)
    target = Target.load(data.paths.target)
    seqs = distillation_sequences(target, data, 60, progress=False)
    config = DraftTrainConfig(epochs=12, warmup_steps=2, tokens_per_batch=1024, threads=1)
    _, log = train_draft(target, data, DRAFTERS["padrec"], config, seqs, target_features(target, data.sids, seqs), progress=False)
    first, last = log["epochs"][0]["accuracy_by_step"], log["epochs"][-1]["accuracy_by_step"]
    assert len(last) == config.unroll_steps and all(b > a for a, b in zip(first, last)), (first, last)


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
    assert main(["verify", "--dataset", "x", "--artifacts", str(art)]) == 2
    assert "padrec train-target --dataset x" in capsys.readouterr().err
