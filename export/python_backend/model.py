"""Triton Python-backend model that runs one ONNX graph with ONNX Runtime on CPU.

`padrec export --backend python` copies this file beside `model.onnx` into the version folder of
the `target` and `draft` models, for servers that have only the Python backend (like the one from
pip). It runs whatever graph it finds: inputs and outputs are the ones config.pbtxt lists (the
graph's own), so the models answer exactly as the `onnxruntime_onnx` and `tensorrt_plan` ones do.
It needs numpy and onnxruntime in the stub's environment, nothing from padrec, and keeps no state.
"""

import json
from pathlib import Path

import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(parameters["intra_op_threads"])
        options.inter_op_num_threads = 1
        path = Path(args["model_repository"]) / args["model_version"] / parameters["onnx_file"]
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [tensor["name"] for tensor in config["input"]]
        self.output_names = [tensor["name"] for tensor in config["output"]]

    def execute(self, requests):
        return [self._respond(request) for request in requests]

    def _respond(self, request):
        feeds = {}
        for name in self.input_names:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                return pb_utils.InferenceResponse(error=pb_utils.TritonError(f"missing input {name!r}"))
            feeds[name] = tensor.as_numpy()
        try:
            results = self.session.run(self.output_names, feeds)
        # ONNX Runtime's errors (wrong shape, index out of range, ...) derive from Exception directly;
        # each becomes the error response of its own request.
        except Exception as error:  # noqa: BLE001
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{type(error).__name__}: {error}"))
        return pb_utils.InferenceResponse(
            output_tensors=[pb_utils.Tensor(name, result) for name, result in zip(self.output_names, results)])
