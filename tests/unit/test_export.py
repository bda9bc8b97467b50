"""Export: the ONNX graphs compute what the torch models do, the engine on ONNX Runtime decodes what
the engine on torch decodes, the generated Triton configs parse for every backend, and the
TensorRT path refuses cleanly where TensorRT is missing."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from google.protobuf import text_format
from hypothesis import given, settings
from hypothesis import strategies as st
from tritonclient.grpc import model_config_pb2

from padrec.cli import main
from padrec.commands.export import BACKENDS
from padrec.decoding.constraints import ItemTrie, ListConstraint
from padrec.decoding.engine import ListDecoder
from padrec.decoding.interfaces import DecodeRequest
from padrec.decoding.beam import BeamDecoder, beam_rows
from padrec.decoding.interfaces import BeamRequest
from padrec.decoding.onnx_draft import OnnxDraft, unforced_path
from padrec.decoding.onnx_draft_scorer import OnnxDraftScorer
from padrec.decoding.onnx_session import load_session, tree_path
from padrec.decoding.onnx_target import OnnxTarget
from padrec.decoding.torch_draft import TorchDraft
from padrec.decoding.torch_target import TorchTarget
from padrec.export.checks import (
    compare_graph, draft_inputs, numeric_failures, step_inputs, step_tree_inputs, target_inputs, tree_inputs,
    unforced_inputs,
)
from padrec.export.constraint_graph import GraphConstraint
from padrec.decoding.draft_tree import TreeDrafting
from padrec.export.graphs import DraftGraph, DraftStepGraph, TargetGraph, TargetTreeGraph
from padrec.export.onnx_files import tree_graph
from padrec.config import ServingConfig
from padrec.export.repository import graph_io, install, model_config, python_model_io, stateful_io
from padrec.models.draft import Draft
from padrec.semantic_ids import SemanticIds, disambiguate

MODELS = ("target", "draft_padrec", "draft_eagle", "draft_padrec_step", "draft_eagle_step")
KINDS = {"target": "target", "draft_padrec": "draft", "draft_eagle": "draft", "draft_padrec_step": "draft_step",
         "draft_eagle_step": "draft_step"}
TENSORRT_MISSING = importlib.util.find_spec("tensorrt") is None


def onnx_file(exported, name: str):
    return exported.repository / name / "1" / "model.onnx"


def graphs(exported) -> tuple[TargetGraph, DraftGraph]:
    sizes = exported.manifest["graphs"]
    return (TargetGraph(exported.target).eval(),
            DraftGraph(exported.draft, exported.trie, sizes["draft_tokens"], sizes["forced_room"]).eval())


class Recording:
    """A proposer that records, per call, the tokens each row proposed."""

    def __init__(self, inner):
        self.inner, self.k_max, self.calls = inner, inner.k_max, []
        self.proposes_trees = getattr(inner, "proposes_trees", False)

    def propose(self, batch):
        proposal = self.inner.propose(batch)
        parents = proposal.parents if proposal.parents is not None else np.full(proposal.tokens.shape, -2)
        self.calls.append([(proposal.tokens[r, :n].tolist(), parents[r, :n].tolist())
                           for r, n in enumerate(proposal.counts)])
        return proposal


def test_export_passed_its_checks_and_wrote_the_repository(exported_tiny):
    # the BETA of the dataset's decoding.json (no flag given), the one the fixture's trie holds
    assert exported_tiny.manifest["graphs"]["prefix_size_penalty"] == exported_tiny.trie.prefix_size_penalty > 0
    assert exported_tiny.manifest["checks"].keys() == {"padrec", "eagle"}
    for checks in exported_tiny.manifest["checks"].values():
        assert checks["passed"], checks["failures"]
        assert {e["drafter"] for e in checks["lists"]["speculative"]} == {"torch", "onnxruntime", "onnxruntime tree"}
        assert all(e["mismatches"] == 0 for e in checks["lists"]["speculative"])
        assert checks["numerics"].keys() == {"target", "target tree", "draft", "draft unforced", "draft step",
                                             "draft step tree"}
        assert checks["beams"]["users"] == 10 and checks["beams"]["mismatches"] == 0
    repository = exported_tiny.repository
    for name in MODELS:  # (a server that loaded the model may have added __pycache__)
        files = {p.name for p in (repository / name / "1").iterdir()}
        assert {"model.onnx", "model.py"} <= files
        assert ("model_unforced.onnx" in files) == (KINDS[name] == "draft")
        assert ("model_tree.onnx" in files) == (KINDS[name] in ("target", "draft_step"))
    assert {"semantic_ids.npz", "item_ids.json", "padrec_export.json"} <= {p.name for p in repository.iterdir()}


def test_graphs_match_torch_on_prefill_verification_and_ragged_batches(exported_tiny):
    rng = np.random.default_rng(1)
    target_graph, draft_graph = graphs(exported_tiny)
    shapes = [(1, 1, (0,)), (2, 7, (3, 30)), (4, 2, (11, 0, 5, 1))]
    numerics = {
        "target": compare_graph(target_graph, onnx_file(exported_tiny, "target"),
                                [target_inputs(target_graph, *s, rng) for s in shapes]),
        "draft": compare_graph(draft_graph, onnx_file(exported_tiny, "draft_padrec"),
                               [draft_inputs(draft_graph, *s, rng) for s in shapes]),
    }
    target_tree = TargetTreeGraph(exported_tiny.target).eval()
    numerics["target tree"] = compare_graph(target_tree, tree_path(onnx_file(exported_tiny, "target")),
                                            [tree_inputs(target_tree, *s, rng) for s in shapes])
    for drafter in ("padrec", "eagle"):  # with and without the step embedding (depth read, or not)
        draft = exported_tiny.draft if drafter == "padrec" else Draft.load(exported_tiny.artifacts / "tiny" / "draft_eagle.pt")
        step_graph = DraftStepGraph(draft, exported_tiny.trie.sids.tokens_per_item).eval()
        numerics[f"{drafter} step"] = compare_graph(step_graph, onnx_file(exported_tiny, f"draft_{drafter}_step"),
                                                    [step_inputs(step_graph, *s, rng) for s in shapes])
        assert numerics[f"{drafter} step"]["logits"] < 1e-4
        step_tree = tree_graph(step_graph)
        numerics[f"{drafter} step tree"] = compare_graph(
            step_tree, tree_path(onnx_file(exported_tiny, f"draft_{drafter}_step")),
            [step_tree_inputs(step_tree, *s, rng) for s in shapes])
    assert numeric_failures(numerics) == []


def test_engine_on_onnxruntime_equals_engine_on_torch(exported_tiny):
    """Greedy: the same lists, and the draft graph proposes exactly what TorchDraft proposes."""
    e = exported_tiny
    max_len = e.target.config.max_seq_len
    rng = np.random.default_rng(2)
    histories = [tuple(rng.choice(e.trie.sids.num_items, size=int(n), replace=False).tolist())
                 for n in rng.integers(1, 8, size=6)]
    requests = [DecodeRequest(h, top_n=6, num_draft_tokens=k) for h, k in zip(histories, [0, 1, 2, 3, 3, 2])]
    torch_draft = Recording(TorchDraft(e.draft, e.trie.sids, 8))
    onnx_draft = Recording(OnnxDraft(onnx_file(e, "draft_padrec"), 8))
    on_torch = ListDecoder(e.trie, TorchTarget(e.target, 8, e.trie.sids), max_len, proposer=torch_draft)
    on_onnx = ListDecoder(e.trie, OnnxTarget(onnx_file(e, "target"), 8, sids=e.trie.sids), max_len, proposer=onnx_draft)
    graph_runs = {"with room": 0, "unforced": 0}  # rounds run by each of the draft's two graphs
    for which, session in (("with room", onnx_draft.inner.session), ("unforced", onnx_draft.inner.unforced_session)):
        session.run = counted(session.run, graph_runs, which)
    rows = [7, 0, 3, 5, 1, 2]  # cache rows out of order: the pools are addressed by the caller
    for a, b in zip(on_torch.generate(requests, rows), on_onnx.generate(requests, rows)):
        assert a.items == b.items and a.tokens == b.tokens
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
        assert (a.stats.drafted, a.stats.accepted) == (b.stats.drafted, b.stats.accepted)
    assert onnx_draft.calls == torch_draft.calls and onnx_draft.calls
    # both kinds of round occurred, each run by its own graph
    assert graph_runs["with room"] > 0 and graph_runs["unforced"] > 0
    assert sum(graph_runs.values()) == len(onnx_draft.calls)


def test_token_trees_on_onnxruntime_are_the_trees_torch_grows(exported_tiny):
    """The draft step's tree forward grows TorchDraft's trees (same tokens, same parents, round by
    round), and the ONNX Runtime engine verifying them decodes plain greedy's lists."""
    e = exported_tiny
    max_len = e.target.config.max_seq_len
    rng = np.random.default_rng(3)
    histories = [tuple(rng.choice(e.trie.sids.num_items, size=int(n), replace=False).tolist())
                 for n in rng.integers(1, 8, size=5)]
    shapes = [(3, 2, 0, ()), (2, 3, 4, ()), (3, 4, 0, (1, 3, 2, 1, 1)), (1, 1, 0, ()), (3, 0, 0, ())]
    requests = [DecodeRequest(h, top_n=5, num_draft_tokens=k, tree_width=w, tree_budget=b, tree_slot_widths=c)
                for h, (k, w, b, c) in zip(histories, shapes)]
    assert len(requests[2].tree_slot_widths) == e.trie.sids.tokens_per_item
    torch_draft = Recording(TorchDraft(e.draft, e.trie.sids, 8))
    onnx_draft = Recording(TreeDrafting(OnnxDraft(onnx_file(e, "draft_padrec"), 8),
                                        OnnxDraftScorer(onnx_file(e, "draft_padrec_step"), 8)))
    on_torch = ListDecoder(e.trie, TorchTarget(e.target, 8, e.trie.sids), max_len, proposer=torch_draft)
    on_onnx = ListDecoder(e.trie, OnnxTarget(onnx_file(e, "target"), 8, sids=e.trie.sids), max_len, proposer=onnx_draft)
    plain = ListDecoder(e.trie, TorchTarget(e.target, 8, e.trie.sids), max_len)
    rows = [6, 0, 3, 5, 1]
    expected = plain.generate([DecodeRequest(h, top_n=5) for h in histories], rows)
    for a, b, want in zip(on_torch.generate(requests, rows), on_onnx.generate(requests, rows), expected):
        assert a.tokens == b.tokens == want.tokens
        assert a.stats.as_dict() == b.stats.as_dict()
    tree_calls = [c for c in onnx_draft.calls if any(len(parents) and -2 not in parents for _, parents in c)]
    assert onnx_draft.calls == torch_draft.calls and tree_calls


def test_draft_step_on_onnxruntime_scores_what_torch_scores_and_serves_speculative_beams(exported_tiny):
    """The step graph behind `OnnxDraftScorer` gives TorchDraft.score's distributions, rows copied
    from others included; and speculative beam search over it equals plain beam search."""
    e = exported_tiny
    rng = np.random.default_rng(5)
    on_torch, on_onnx = TorchDraft(e.draft, e.trie.sids, 6), OnnxDraftScorer(onnx_file(e, "draft_padrec_step"), 6)
    dim = e.target.config.d_model
    calls = [  # (rows, start, new pairs, depth, sources): a prompt into rows 0 and 3, then steps continued from them
        ([0, 3], [0, 0], 5, 1, None), ([1, 2, 4], [5, 5, 5], 1, 2, [0, 0, 3]), ([5, 0], [6, 6], 1, 3, [1, 2])]
    for rows, start, new, depth, sources in calls:
        args = (np.array(rows), np.array(start), rng.standard_normal((len(rows), new, dim), dtype=np.float32),
                rng.integers(4, e.trie.sids.vocab_size, (len(rows), new)), np.full(len(rows), new), depth,
                None if sources is None else np.array(sources))
        want, got = on_torch.score(*args), on_onnx.score(*args)
        np.testing.assert_allclose(got.logits, want.logits, atol=1e-4)
        np.testing.assert_allclose(got.features, want.features, atol=1e-4)
    rows = beam_rows(e.trie.sids.num_levels, 6, 6)
    max_len = e.target.config.max_seq_len
    plain = BeamDecoder(e.trie, TorchTarget(e.target, rows, e.trie.sids), max_len, max_beam_width=6)
    for one_row in (False, True):  # a row per path, or every prefix in one row (the target's tree forward)
        speculative = BeamDecoder(e.trie, OnnxTarget(onnx_file(e, "target"), rows, sids=e.trie.sids), max_len,
                                  max_beam_width=6, draft=OnnxDraftScorer(onnx_file(e, "draft_padrec_step"), rows),
                                  max_draft_width=6, one_row=one_row)
        for history in [(1, 5, 9), (2,), (30, 4, 17, 8)]:
            want = plain.generate([BeamRequest(history, 4, 6)], [list(range(6))])[0]
            for draft_width in (0, 6):
                request = BeamRequest(history, 4, 6, draft_width=draft_width)
                got = speculative.generate([request], [list(range(speculative.rows_needed(request)))])[0]
                assert got.items == want.items and (got.stats.drafted > 0) == (draft_width > 0)
                np.testing.assert_allclose(got.scores, want.scores, atol=1e-4)


def counted(run, counts: dict, key: str):
    """`run`, counting its calls in counts[key]."""
    def wrapper(*args, **kwargs):
        counts[key] += 1
        return run(*args, **kwargs)
    return wrapper


def test_unforced_round_proposes_what_the_round_with_room_proposes(exported_tiny):
    """On batches without forced tokens the two exported graphs are interchangeable."""
    _, draft_graph = graphs(exported_tiny)
    path = onnx_file(exported_tiny, "draft_padrec")
    with_room, unforced = load_session(path), load_session(unforced_path(path))
    rng = np.random.default_rng(4)
    for batch, new, past in [(1, 1, (0,)), (3, 4, (23, 0, 9)), (5, 2, (1, 2, 3, 4, 5))]:
        feeds = unforced_inputs(draft_graph, batch, new, past, rng)
        for want, got in zip(with_room.run(None, feeds), unforced.run(None, feeds)):
            np.testing.assert_allclose(got, want, atol=1e-5)
    with pytest.raises(ValueError, match="room"):
        DraftGraph(exported_tiny.draft, exported_tiny.trie, 3, forced_room=1, room=2)


def test_sampled_proposals_are_gumbel_max_draws_from_the_returned_q(exported_tiny):
    _, draft_graph = graphs(exported_tiny)
    feeds = draft_inputs(draft_graph, 5, 3, (4, 0, 9, 2, 6), np.random.default_rng(3))
    proposals, q, _, _ = load_session(onnx_file(exported_tiny, "draft_padrec")).run(None, feeds)
    np.testing.assert_allclose(q.sum(-1), 1.0, atol=1e-5)
    # proposal j of row r was drawn at step forced_counts[r] + j, with that step's noise
    steps = feeds["forced_counts"][:, None] + np.arange(proposals.shape[1])
    gumbel = -np.log(-np.log(np.take_along_axis(feeds["uniform"], steps[:, :, None], axis=1)))
    with np.errstate(divide="ignore"):
        draws = np.argmax(np.log(q) + gumbel, axis=-1)
    sampling = feeds["temperatures"] > 0
    assert sampling.any() and not sampling.all()
    np.testing.assert_array_equal(proposals[sampling], draws[sampling])
    np.testing.assert_array_equal(proposals[~sampling], q[~sampling].argmax(-1))


def test_sampling_on_onnxruntime_gives_valid_lists(exported_tiny):
    e = exported_tiny
    decoder = ListDecoder(e.trie, OnnxTarget(onnx_file(e, "target"), 4, sids=e.trie.sids), e.target.config.max_seq_len,
                          proposer=OnnxDraft(onnx_file(e, "draft_padrec"), 4))
    history = (1, 2, 3)
    requests = [DecodeRequest(history, top_n=5, num_draft_tokens=3, temperature=1.0, seed=s) for s in range(4)]
    results = decoder.generate(requests, list(range(4)))
    for result in results:
        assert len(result.items) == 5 == len(set(result.items)) and not set(result.items) & set(history)
    assert len({tuple(r.items) for r in results}) > 1


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), use_separator=st.booleans())
def test_graph_constraint_walks_like_list_constraint(seed, use_separator):
    rng = np.random.default_rng(seed)
    codes = disambiguate(rng.integers(0, [4, 3, 2], size=(30, 3)))
    trie = ItemTrie(SemanticIds(codes, [4, 3, 2, int(codes[:, -1].max()) + 1], use_separator), prefix_size_penalty=0.6)
    graph = GraphConstraint(trie)
    constraints = [ListConstraint(trie, rng.choice(30, size=int(n), replace=False)) for n in (0, 3, 9)]
    width = max(1, *(len(c.banned_items) for c in constraints))
    banned = torch.tensor([c.banned_items + [30] * (width - len(c.banned_items)) for c in constraints])
    no = torch.zeros(3, dtype=torch.bool)
    node, banned_nodes = graph.initial(torch.zeros(3, dtype=torch.long), no, banned)
    for _ in range(40):
        children = graph.child_nodes(node)
        allowed = graph.allowed(banned_nodes, children)
        prior = graph.prior(children)
        tokens = []
        for r, c in enumerate(constraints):
            assert torch.nonzero(allowed[r])[:, 0].tolist() == sorted(c.allowed().tolist())
            expected_prior = c.prior() if c.prior() is not None else np.zeros(1)  # the separator's: none
            np.testing.assert_allclose(prior[r, c.allowed().tolist()].numpy(), expected_prior, rtol=1e-6)
            tokens.append(int(rng.choice(c.allowed())))
            c.advance(tokens[-1])
        node, banned_nodes = graph.advance(node, banned_nodes, children, torch.tensor(tokens), ~no)
        # the separator's virtual child stands for the root
        expected = [graph.sep_node if c.awaiting_separator else c.node for c in constraints]
        assert torch.where(node == graph.sep_node + 1, 0, node).tolist() == expected
        if any(c.exhausted() for c in constraints):
            break


@pytest.mark.parametrize("backend", BACKENDS)
def test_generated_configs_parse_for_every_backend(exported_tiny, backend):
    for name in MODELS:
        inputs, outputs = graph_io(onnx_file(exported_tiny, name))
        if backend == "python":  # the Python backend's models keep the cache: rows and start replace it
            copies = KINDS[name] != "draft"
            inputs, outputs = python_model_io(onnx_file(exported_tiny, name))
            # the target and the draft steps copy rows (beam search), and a request may leave that input
            # out; both also score token trees when sent one (one-row beam search, tree drafting), and
            # the target first keeps the accepted path of the tree call before when sent `kept`
            tree_inputs_of = {"target": ["depths", "ancestors", "kept", "kept_tokens"],
                              "draft_step": ["positions", "visible"]}
            tree = tree_inputs_of.get(KINDS[name], [])
            plain = stateful_io(*graph_io(onnx_file(exported_tiny, name)), copies_rows=copies)[0]
            assert inputs[: len(inputs) - len(tree)] == plain
            assert [s.name for s in inputs][:2] == ["rows", "start"]
            optional = (["sources"] if copies else []) + tree
            assert [s.name for s in inputs if s.optional] == optional
            assert not {s.name for s in (*inputs, *outputs)} & {"past_k", "past_v", "past_lengths", "new_k", "new_v"}
        slots = ServingConfig().target_slots
        config = text_format.Parse(model_config(name, backend, inputs, outputs, slots=slots, kind=KINDS[name]),
                                   model_config_pb2.ModelConfig())
        assert config.name == name and config.max_batch_size == 0
        assert (config.backend or config.platform) == {"python": "python", "onnxruntime": "onnxruntime_onnx",
                                                        "tensorrt": "tensorrt_plan"}[backend]
        assert [t.name for t in config.input] == [s.name for s in inputs]
        assert [t.name for t in config.output] == [s.name for s in outputs]
        assert [list(t.dims) for t in config.input] == [[d if isinstance(d, int) else -1 for d in s.dims]
                                                         for s in inputs]
        assert [t.name for t in config.input if t.optional] == [s.name for s in inputs if s.optional]
        gpu = config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
        assert gpu == (backend == "tensorrt")
        if backend == "python":  # the repository holds exactly what the generator writes
            written = (exported_tiny.repository / name / "config.pbtxt").read_text()
            assert written == model_config(name, backend, inputs, outputs, slots=slots, kind=KINDS[name])
            assert config.parameters["service"].string_value == KINDS[name]


def test_install_replaces_only_what_export_owns(tmp_path):
    out, staged = tmp_path / "repository", tmp_path / "staged"
    for folder in (out / "target" / "1", out / "recommend" / "1", staged / "target" / "1"):
        folder.mkdir(parents=True)
    (out / "target" / "1" / "old.onnx").write_text("old")
    (out / "README.md").write_text("kept")
    (staged / "target" / "1" / "model.onnx").write_text("new")
    (staged / "item_ids.json").write_text("[]")
    install(staged, out)
    assert [p.name for p in (out / "target" / "1").iterdir()] == ["model.onnx"]
    assert (out / "recommend").is_dir() and (out / "README.md").read_text() == "kept"
    assert (out / "item_ids.json").is_file()


def test_fp16_is_refused_for_onnx_runtime_backends(capsys):
    assert main(["export", "--dataset", "tiny", "--backend", "python", "--fp16"]) == 2
    assert "TensorRT engines only" in capsys.readouterr().err


@pytest.mark.skipif(not TENSORRT_MISSING, reason="TensorRT is installed here: the refusal cannot happen")
def test_tensorrt_backend_refuses_where_tensorrt_is_missing(tmp_path, capsys):
    out = tmp_path / "repository"
    assert main(["export", "--dataset", "tiny", "--backend", "tensorrt", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "import tensorrt" in err[0] and "nothing was written" in err[0]
    assert not out.exists()


@pytest.mark.skipif(TENSORRT_MISSING, reason="TensorRT is not installed here (it needs NVIDIA's libraries and a GPU)")
def test_tensorrt_builds_engines_from_the_exported_graphs(exported_tiny, tmp_path):
    from padrec.export.tensorrt import TensorRTError, build_engine, dim_ranges, profile_shapes, require_tensorrt

    trt = require_tensorrt()
    for name in MODELS:
        onnx_path, plan = onnx_file(exported_tiny, name), tmp_path / f"{name}.plan"
        shapes = profile_shapes(graph_io(onnx_path)[0], dim_ranges(4, exported_tiny.target.config.max_seq_len, 4))
        try:
            build_engine(trt, onnx_path, plan, shapes, fp16=False)
        except TensorRTError as error:
            if "GPU" in str(error):
                pytest.skip(f"TensorRT is installed but has no GPU here: {error}")
            raise
        assert plan.stat().st_size > 0
