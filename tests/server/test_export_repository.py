"""A real Triton server loads the Python-backend repository that `padrec export` writes; its
`target` and `draft_*` models keep their KV caches themselves and answer, call after call, exactly
as the same services in this process do."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import np_to_triton_dtype

from padrec.config import ServingConfig
from padrec.export.checks import draft_inputs, target_inputs
from padrec.export.graphs import DraftGraph, TargetGraph
from padrec.export.repository import KEPT_INPUTS
from padrec.serving.services import DraftService, TargetService

pytestmark = pytest.mark.server


def infer(client: grpcclient.InferenceServerClient, model: str, feeds: dict[str, np.ndarray]) -> dict:
    inputs = []
    for name, array in feeds.items():
        tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    result = client.infer(model, inputs)
    return {output["name"]: result.as_numpy(output["name"]) for output in result.get_response(as_json=True)["outputs"]}


def without_cache(feeds: dict[str, np.ndarray], rows: list[int], start: list[int]) -> dict[str, np.ndarray]:
    kept = {k: v for k, v in feeds.items() if k not in KEPT_INPUTS}  # what the served models make themselves
    return {"rows": np.array(rows, dtype=np.int64), "start": np.array(start, dtype=np.int64), **kept}


def test_python_backend_models_keep_their_caches_and_match_in_process_services(exported_tiny, start_triton):
    e = exported_tiny
    sizes, slots = e.manifest["graphs"], ServingConfig().target_slots
    rng = np.random.default_rng(0)
    draft_graph = DraftGraph(e.draft, e.trie, sizes["draft_tokens"], sizes["forced_room"])
    # prefill rows 7 and 2, then extend row 2 only: the second call reads what the first one cached
    calls = {
        "target": [without_cache(target_inputs(TargetGraph(e.target), 2, 6, (0, 0), rng), [7, 2], [0, 0]),
                   without_cache(target_inputs(TargetGraph(e.target), 1, 3, (1,), rng), [2], [6])],
        "draft_padrec": [without_cache(draft_inputs(draft_graph, 2, 4, (0, 0), rng), [7, 2], [0, 0]),
                         without_cache(draft_inputs(draft_graph, 1, 2, (1,), rng), [2], [3])],
    }
    services = {"target": TargetService(e.repository / "target" / "1" / "model.onnx", slots),
                "draft_padrec": DraftService(e.repository / "draft_padrec" / "1" / "model.onnx", slots)}
    server = start_triton(e.repository)
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        assert client.is_model_ready("draft_eagle")
        for name, feeds_list in calls.items():
            for feeds in feeds_list:
                served, expected = infer(client, name, feeds), services[name].handle(feeds)
                assert served.keys() == expected.keys()
                for output, array in expected.items():
                    np.testing.assert_allclose(served[output], array, rtol=0, atol=1e-6)
        # a bad request gets its own error response naming the problem; the model keeps serving
        bad = dict(calls["target"][1], rows=np.array([slots], dtype=np.int64))
        with pytest.raises(grpcclient.InferenceServerException, match="rows must be distinct slots"):
            infer(client, "target", bad)
        assert set(infer(client, "target", calls["target"][0])) == {"logits", "hidden"}
