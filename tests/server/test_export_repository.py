"""A real Triton server loads the Python-backend repository that `padrec export` writes, and its
`target` and `draft` models answer as ONNX Runtime does in process."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import np_to_triton_dtype

from padrec.decoding.onnx_session import load_session
from padrec.export.checks import draft_inputs, target_inputs
from padrec.export.graphs import DraftGraph, TargetGraph

pytestmark = pytest.mark.server


def infer(client: grpcclient.InferenceServerClient, model: str, feeds: dict[str, np.ndarray]) -> dict:
    inputs = []
    for name, array in feeds.items():
        tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    result = client.infer(model, inputs)
    return {output["name"]: result.as_numpy(output["name"]) for output in result.get_response(as_json=True)["outputs"]}


def test_python_backend_repository_serves_target_and_draft(exported_tiny, start_triton):
    e = exported_tiny
    sizes = e.manifest["graphs"]
    rng = np.random.default_rng(0)
    cases = {"target": target_inputs(TargetGraph(e.target), 2, 3, (5, 0), rng),
             "draft": draft_inputs(DraftGraph(e.draft, e.trie, sizes["draft_tokens"], sizes["forced_room"]),
                                   2, 3, (5, 0), rng)}
    server = start_triton(e.repository)
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        for name, feeds in cases.items():
            assert client.is_model_ready(name)
            served = infer(client, name, feeds)
            session = load_session(e.repository / name / "1" / "model.onnx")
            expected = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
            assert served.keys() == expected.keys()
            for output, array in expected.items():
                np.testing.assert_allclose(served[output], array, rtol=0, atol=1e-6)
        # a request ONNX Runtime rejects gets its own error response; the model keeps serving
        bad = dict(cases["target"], tokens=np.full_like(cases["target"]["tokens"], e.target.vocab_size))
        with pytest.raises(grpcclient.InferenceServerException, match="indices"):
            infer(client, "target", bad)
        assert set(infer(client, "target", cases["target"])) == set(TargetGraph.outputs)
