"""`preprocess`: a history of external item IDs -> internal indices, the last `max_history` of them.

Bad input (not one history per request, an empty history, unknown IDs) is INVALID_ARG naming the
problem; the check itself is padrec.serving.catalogue's.
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from padrec.config import SplitConfig
from padrec.decoding.interfaces import InvalidRequest
from padrec.serving.catalogue import ItemCatalogue


class TritonPythonModel:
    def initialize(self, args):
        repository = Path(args["model_repository"]).parent
        self.catalogue = ItemCatalogue.load(repository / "item_ids.json")
        self.max_history = SplitConfig().max_history

    def execute(self, requests):
        return [self._respond(request) for request in requests]

    def _respond(self, request):
        history = pb_utils.get_input_tensor_by_name(request, "HISTORY").as_numpy()
        try:
            indices, truncated = self.catalogue.history_tensor_to_indices(history, self.max_history)
        except InvalidRequest as error:
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(error), pb_utils.TritonError.INVALID_ARG))
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor("HISTORY_INDICES", np.array([indices], dtype=np.int64)),
            pb_utils.Tensor("TRUNCATED", np.array([[truncated]])),
        ])
