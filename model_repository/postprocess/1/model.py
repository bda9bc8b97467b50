"""`postprocess`: internal item indices -> external item IDs (as bytes, Triton's string type)."""

from pathlib import Path

import triton_python_backend_utils as pb_utils

from padrec.serving.catalogue import ItemCatalogue


class TritonPythonModel:
    def initialize(self, args):
        self.catalogue = ItemCatalogue.load(Path(args["model_repository"]).parent / "item_ids.json")

    def execute(self, requests):
        responses = []
        for request in requests:
            indices = pb_utils.get_input_tensor_by_name(request, "ITEM_INDICES").as_numpy()
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("ITEM_IDS", self.catalogue.ids_array(indices))]))
        return responses
