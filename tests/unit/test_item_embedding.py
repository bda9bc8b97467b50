"""Item-embedding targets: item marks, their incremental bookkeeping, and cached decoding."""

import numpy as np
import pytest
import torch

from padrec.config import ModelConfig
from padrec.decoding.constraints import ItemTrie
from padrec.decoding.engine import ListDecoder
from padrec.decoding.interfaces import DecodeRequest
from padrec.decoding.item_marks import ItemMarkLog
from padrec.decoding.onnx_target import OnnxTarget
from padrec.decoding.torch_target import TorchTarget
from padrec.export.checks import compare_graph, numeric_failures, target_inputs
from padrec.export.graphs import TargetGraph
from padrec.export.onnx_files import export_graph
from padrec.export.repository import graph_io, stateful_io
from padrec.models.target import Target
from padrec.semantic_ids import BOS, SemanticIds, disambiguate
from padrec.serving.services import TargetService

from tests.unit.test_engine_plain import naive_greedy

CONFIG = ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, max_seq_len=128, item_embedding=True)


def catalogue(use_separator: bool) -> SemanticIds:
    rng = np.random.default_rng(0)
    codes = disambiguate(rng.integers(0, [6, 4, 3], size=(60, 3)))
    return SemanticIds(codes, [6, 4, 3, int(codes[:, -1].max()) + 1], use_separator)


@pytest.mark.parametrize("use_separator", [True, False])
def test_marks_name_each_item_at_its_last_token(use_separator):
    sids = catalogue(use_separator)
    items = [5, 17, 42, 0]
    tokens = np.array([BOS] + sids.encode_items(items))
    marks = sids.item_marks(tokens)
    last = [i * sids.tokens_per_item for i in range(1, len(items) + 1)]  # BOS shifts every item by one
    assert marks[last].tolist() == [i + 1 for i in items]
    assert np.count_nonzero(marks) == len(items)
    # a sequence cut inside an item marks only the whole items before the cut
    assert np.count_nonzero(sids.item_marks(tokens[: last[2]])) == 2


@pytest.mark.parametrize("use_separator", [True, False])
def test_incremental_marks_equal_whole_sequence_marks_through_rollbacks(use_separator):
    sids = catalogue(use_separator)
    rng = np.random.default_rng(3)
    final = np.array([BOS] + sids.encode_items(rng.choice(60, size=6, replace=False).tolist()))
    log = ItemMarkLog(sids, rows=3, capacity=64)
    row, written, got = np.array([2]), 0, np.zeros(len(final), dtype=np.int64)
    while written < len(final):
        n = int(rng.integers(1, 6))
        chunk = final[written : written + n].copy()
        wrong = rng.random() < 0.4 and len(chunk) > 1
        if wrong:  # rejected draft tokens: scored, then rolled back by not advancing the pointer
            chunk[-1] = sids.item_tokens[int(rng.integers(60)), 0]
        marks = log.marks(row, np.array([written]), chunk[None], np.array([len(chunk)]))[0]
        keep = len(chunk) - int(wrong)
        got[written : written + keep] = marks[:keep]
        written += keep
    assert got.tolist() == sids.item_marks(final).tolist()


@pytest.mark.parametrize("use_separator", [True, False])
def test_item_embedding_target_cached_decoding_equals_naive_greedy(use_separator):
    sids = catalogue(use_separator)
    trie = ItemTrie(sids)
    torch.manual_seed(0)
    model = Target(CONFIG, sids.vocab_size, sids.num_items).eval()
    with torch.no_grad():  # a trained model's item rows are far from zero; make these matter
        model.item_embed.weight[1:].normal_(0, 1.0)
    histories = [[3, 8, 1], [50, 7], [12, 30, 44, 9]]
    context = torch.tensor([[BOS] + sids.encode_items(histories[0])])
    marks = torch.from_numpy(sids.item_marks(context[0].numpy()))[None]
    with torch.no_grad():
        assert not torch.allclose(model(context, items=marks).logits, model(context, items=torch.zeros_like(marks)).logits)
    decoder = ListDecoder(trie, TorchTarget(model, 4, sids), CONFIG.max_seq_len)
    results = decoder.generate([DecodeRequest(tuple(h), top_n=5) for h in histories], [3, 0, 1])
    for h, r in zip(histories, results):
        assert r.items == naive_greedy(model, trie, h, 5)


def test_item_embedding_target_needs_marks_and_round_trips(tmp_path):
    sids = catalogue(True)
    with pytest.raises(ValueError, match="num_items"):
        Target(CONFIG, sids.vocab_size)
    model = Target(CONFIG, sids.vocab_size, sids.num_items).eval()
    with pytest.raises(ValueError, match="item marks"):
        model(torch.tensor([[BOS]]))
    with pytest.raises(ValueError, match="sids"):
        TorchTarget(model, 1)
    model.save(tmp_path / "t.pt")
    loaded = Target.load(tmp_path / "t.pt")
    assert loaded.num_items == sids.num_items
    tokens = torch.tensor([[BOS] + sids.encode_items([4, 9])])
    marks = torch.from_numpy(sids.item_marks(tokens[0].numpy()))[None]
    with torch.no_grad():
        # fp16 storage: equal to half precision
        torch.testing.assert_close(loaded(tokens, items=marks).logits, model(tokens, items=marks).logits, atol=2e-3, rtol=1e-2)


def test_item_embedding_target_on_onnxruntime_and_in_its_service(tmp_path):
    """The exported graph reads the marks as an `items` input; ONNX Runtime hosts keep them as the
    torch host does (same lists), and the served model makes them itself (not a served input)."""
    sids = catalogue(True)
    trie = ItemTrie(sids)
    torch.manual_seed(1)
    model = Target(CONFIG, sids.vocab_size, sids.num_items).eval()
    with torch.no_grad():
        model.item_embed.weight[1:].normal_(0, 1.0)
    graph = TargetGraph(model).eval()
    path = tmp_path / "repository" / "target" / "1" / "model.onnx"
    path.parent.mkdir(parents=True)
    export_graph(graph, path)
    rng = np.random.default_rng(4)
    numerics = {"target": compare_graph(graph, path, [target_inputs(graph, *s, rng) for s in [(1, 1, (0,)), (3, 5, (2, 9, 0))]])}
    assert numeric_failures(numerics) == []

    histories = [(3, 8, 1), (50, 7), (12, 30, 44, 9)]
    requests = [DecodeRequest(h, top_n=5) for h in histories]
    on_torch = ListDecoder(trie, TorchTarget(model, 4, sids), CONFIG.max_seq_len).generate(requests, [3, 0, 1])
    on_onnx = ListDecoder(trie, OnnxTarget(path, 4, sids=sids), CONFIG.max_seq_len).generate(requests, [3, 0, 1])
    assert [r.items for r in on_torch] == [r.items for r in on_onnx]
    with pytest.raises(ValueError, match="semantic IDs"):
        OnnxTarget(path, 1)

    served_inputs, _ = stateful_io(*graph_io(path))
    assert "items" not in {spec.name for spec in served_inputs}
    sids.save(tmp_path / "repository" / "semantic_ids.npz")
    service = TargetService(path, 4)
    prompt = np.array([[BOS] + sids.encode_items(list(histories[0]))])
    served = service.handle({"rows": np.array([2]), "start": np.array([0]), "tokens": prompt})
    direct = OnnxTarget(path, 1, sids=sids).score(np.array([0]), np.array([0]), prompt, np.array([prompt.shape[1]]))
    np.testing.assert_allclose(served["logits"], direct.logits, atol=1e-5)
