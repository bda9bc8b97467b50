"""Triton Python-backend model: an exported target or draft graph on ONNX Runtime, with its KV cache.

`padrec export --backend python` copies this file beside `model.onnx` into the version folder of
`target` and of each `draft_<drafter>` and `draft_<drafter>_step`. The model keeps the cache itself (a pool of `slots` rows,
see `padrec.serving.services`): a request names cache rows and how many positions of each to keep,
and carries only new tokens (and, for a draft, fresh target features). Parse, call, respond:
the logic is padrec's.
"""

import json
from pathlib import Path

import triton_python_backend_utils as pb_utils

from padrec.serving.services import DraftService, DraftStepService, TargetService

# by the kind of graph the model serves (padrec.export.graphs)
SERVICES = {"target": TargetService, "draft": DraftService, "draft_step": DraftStepService}


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        path = Path(args["model_repository"]) / args["model_version"] / parameters["onnx_file"]
        self.service = SERVICES[parameters["service"]](path, int(parameters["slots"]),
                                                       int(parameters["intra_op_threads"]))
        self.input_names = [tensor["name"] for tensor in config["input"]]
        self.optional_inputs = {tensor["name"] for tensor in config["input"] if tensor.get("optional")}
        self.output_names = [tensor["name"] for tensor in config["output"]]

    def execute(self, requests):
        return [self._respond(request) for request in requests]

    def _respond(self, request):
        inputs = {}
        for name in self.input_names:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None and name in self.optional_inputs:
                continue
            if tensor is None:
                return pb_utils.InferenceResponse(error=pb_utils.TritonError(f"missing input {name!r}"))
            inputs[name] = tensor.as_numpy()
        try:
            outputs = self.service.handle(inputs)
        # bad rows, ONNX Runtime's errors (wrong shape, index out of range, ...): each becomes the
        # error response of its own request and the model keeps serving
        except Exception as error:  # noqa: BLE001
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{type(error).__name__}: {error}"))
        return pb_utils.InferenceResponse(
            output_tensors=[pb_utils.Tensor(name, outputs[name]) for name in self.output_names])
