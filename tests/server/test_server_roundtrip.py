"""Tensors cross a Python-backend model and a BLS call intact: values, dtype and shape.

Under numpy 2 this server's Python backend passes empty tensors, so these tests are what keeps a
wrong numpy from slipping unnoticed into the environment the stubs run in.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import np_to_triton_dtype

from padrec.server import TritonServer

pytestmark = pytest.mark.server

OUTPUT_FOR_INPUT = {"FP32_IN": "FP32_OUT", "INT64_IN": "INT64_OUT"}


@pytest.fixture(scope="module")
def client(roundtrip_server: TritonServer) -> Iterator[grpcclient.InferenceServerClient]:
    with grpcclient.InferenceServerClient(roundtrip_server.grpc_url) as triton:
        yield triton


def sample_inputs(shape: tuple[int, int], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "FP32_IN": rng.standard_normal(shape).astype(np.float32),
        # Beyond 32 bits and of both signs, so truncation or a sign slip would show.
        "INT64_IN": rng.integers(-(2**62), 2**62, size=shape, dtype=np.int64),
    }


def infer(client: grpcclient.InferenceServerClient, model: str, arrays: dict[str, np.ndarray]):
    inputs = []
    for name, array in arrays.items():
        tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return client.infer(model, inputs)


@pytest.mark.parametrize("model", ["echo", "bls_echo"])
@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (2, 4096)])
def test_tensors_round_trip_intact(client, model, shape):
    sent = sample_inputs(shape, seed=shape[1])
    result = infer(client, model, sent)
    for name, output in OUTPUT_FOR_INPUT.items():
        received = result.as_numpy(output)
        assert received.dtype == sent[name].dtype
        assert received.shape == sent[name].shape
        np.testing.assert_array_equal(received, sent[name])
