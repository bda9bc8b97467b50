"""`padrec_decode` and `recommend_stream` (decoupled; this same file): the BLS decoder.

Parse each request (history, request parameters), hand the batch to
`padrec.serving.decoder.ServedDecoder` with the one thing it cannot do itself, calling the
`target`, `draft_<drafter>` and `draft_<drafter>_step` models (BLS), and build the responses. `padrec_decode` is the middle
step of the `recommend` ensemble (internal item indices in and out); `recommend_stream` is served
directly (external item IDs in and out) and sends one response per item as the engine decides it,
the last one flagged final. It is not an ensemble because Triton 24.10's ensembles do not pass a
client's cancellation on to a running step and never finish a cancelled stream (it stays in flight
until the server is killed); served directly, the decoder sees the cancellation and ends the
request. Each request's error is its own: INVALID_ARG for bad input, UNAVAILABLE when every cache
slot is taken, CANCELLED when the client went away, INTERNAL when a model call failed.
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from padrec.config import SplitConfig
from padrec.decoding.interfaces import DecodeResult, InvalidRequest
from padrec.serving.catalogue import ItemCatalogue
from padrec.serving.decoder import ServedDecoder
from padrec.serving.parameters import parse_request, serving_config
from padrec.serving.slots import PoolFull

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.streaming = pb_utils.using_decoupled_model_transaction_policy(config)
        serving = serving_config(config.get("parameters", {}))
        # the two decoders share the target's and drafts' caches, so each has its own rows
        rows = range(serving.batch_slots, serving.target_slots) if self.streaming else range(serving.batch_slots)
        repository = Path(args["model_repository"]).parent
        self.decoder = ServedDecoder(repository, self._call, rows, serving)
        self.metrics = DecodeMetrics(config["name"])
        # recommend_stream maps external item IDs itself; padrec_decode gets and gives internal indices
        takes_ids = any(tensor["name"] == "HISTORY" for tensor in config["input"])
        self.catalogue = ItemCatalogue.load(repository / "item_ids.json") if takes_ids else None
        self.max_history = SplitConfig().max_history

    def execute(self, requests):
        parsed = [self._parse(request) for request in requests]
        valid = [i for i, p in enumerate(parsed) if not isinstance(p, Exception)]
        senders = [request.get_response_sender() for request in requests] if self.streaming else None

        gone = set()  # streams whose client went away mid-list: their rows end like cancelled ones
        sent = [0] * len(requests)  # items streamed so far, per request

        def send_item(j, result):
            i = valid[j]
            # The list's last item travels with the final flag: a separate empty final response can
            # overtake it on its way through the ensemble's postprocess step.
            if len(result.items) >= parsed[i][0].request.top_n:
                return
            try:
                senders[i].send(pb_utils.InferenceResponse(
                    output_tensors=outputs(result, parsed[i][1], len(result.items) - 1, self.catalogue)))
                sent[i] += 1
            except Exception:  # noqa: BLE001 - one lost client must not fail the batch
                gone.add(i)

        outcomes = self.decoder.decode([parsed[i][0] for i in valid], send_item if self.streaming else None,
                                       cancelled=lambda j: valid[j] in gone or requests[valid[j]].is_cancelled())
        finished = dict(zip(valid, outcomes))
        responses = []
        for i in range(len(requests)):
            outcome = finished.get(i, parsed[i])
            self.metrics.record(outcome, parsed[i][0] if i in finished else None)
            if isinstance(outcome, DecodeResult) and not outcome.cancelled:
                # a stream's last response carries the items not sent yet: a list's last one, all of
                # a beam request's (their ranking is known only at the end)
                unsent = self.streaming and sent[i] < len(outcome.items)
                response = None if self.streaming and not unsent else pb_utils.InferenceResponse(
                    output_tensors=outputs(outcome, parsed[i][1], sent[i], self.catalogue))
            else:
                response = pb_utils.InferenceResponse(error=as_triton_error(outcome))
            if self.streaming:
                # a cancelled stream's client is gone: it gets the final flag alone, which ends the request
                close(senders[i], None if response is None or self._cancelled(outcome) else response)
            else:
                responses.append(response)
        return None if self.streaming else responses

    @staticmethod
    def _cancelled(outcome):
        return isinstance(outcome, DecodeResult) and outcome.cancelled

    def _parse(self, request):
        """(ServedRequest, history truncated) or the InvalidRequest saying what is wrong."""
        try:
            if self.catalogue is None:
                history = pb_utils.get_input_tensor_by_name(request, "HISTORY_INDICES").as_numpy().reshape(-1).tolist()
                truncated = bool(pb_utils.get_input_tensor_by_name(request, "TRUNCATED").as_numpy().reshape(-1)[0])
            else:
                history, truncated = self.catalogue.history_tensor_to_indices(
                    pb_utils.get_input_tensor_by_name(request, "HISTORY").as_numpy(), self.max_history)
            return parse_request(history, json.loads(request.parameters())), truncated
        except InvalidRequest as error:
            return error

    @staticmethod
    def _call(model, inputs, output_names):
        request = pb_utils.InferenceRequest(
            model_name=model, inputs=[pb_utils.Tensor(name, array) for name, array in inputs.items()],
            requested_output_names=list(output_names))
        response = request.exec()
        if response.has_error():
            raise RuntimeError(f"{model}: {response.error().message()}")
        return {name: pb_utils.get_output_tensor_by_name(response, name).as_numpy() for name in output_names}


def close(sender, response):
    """End a stream (with a last response, if any). A sender whose client went away raises; that
    must not keep the other streams of the batch from ending."""
    try:
        if response is None:
            sender.send(flags=FINAL)
        else:
            sender.send(response, flags=FINAL)
    except Exception as error:  # noqa: BLE001
        pb_utils.Logger.log_warn(f"recommend_stream: could not end a stream: {error}")


def outputs(result, truncated, first, catalogue):
    """The response tensors of a result (batch dimension 1) for its items from index `first` on.
    Items as internal indices, or as external IDs when there is a `catalogue` to map them."""
    items, scores = result.items[first:], result.scores[first:]
    indices = np.array([items], dtype=np.int64)
    stats = result.stats
    return [
        pb_utils.Tensor("ITEM_INDICES", indices) if catalogue is None
        else pb_utils.Tensor("ITEM_IDS", catalogue.ids_array(indices)),
        pb_utils.Tensor("SCORES", np.array([scores], dtype=np.float32)),
        pb_utils.Tensor("ROUNDS", np.array([[stats.rounds]], dtype=np.int64)),
        pb_utils.Tensor("DRAFTED", np.array([[stats.drafted]], dtype=np.int64)),
        pb_utils.Tensor("ACCEPTED", np.array([[stats.accepted]], dtype=np.int64)),
        pb_utils.Tensor("TAU", np.array([[stats.tau]], dtype=np.float32)),
        pb_utils.Tensor("HISTORY_TRUNCATED", np.array([[truncated]])),
    ]


def as_triton_error(outcome):
    """The error response of a request that did not produce a list."""
    if isinstance(outcome, DecodeResult):  # cancelled
        return pb_utils.TritonError("request cancelled", pb_utils.TritonError.CANCELLED)
    if isinstance(outcome, InvalidRequest):
        return pb_utils.TritonError(str(outcome), pb_utils.TritonError.INVALID_ARG)
    if isinstance(outcome, PoolFull):
        return pb_utils.TritonError(str(outcome), pb_utils.TritonError.UNAVAILABLE)
    return pb_utils.TritonError(f"{type(outcome).__name__}: {outcome}", pb_utils.TritonError.INTERNAL)


class DecodeMetrics:
    """Counters on Triton's Prometheus endpoint, labelled by decode model (and drafter / depth)."""

    def __init__(self, model):
        counter = pb_utils.MetricFamily.COUNTER
        self.model = model
        self.families = {
            "requests": pb_utils.MetricFamily("padrec_requests_total", "Recommendation requests by outcome", counter),
            "rounds": pb_utils.MetricFamily("padrec_rounds_total", "Target forwards, prefill included", counter),
            "tokens": pb_utils.MetricFamily("padrec_draft_tokens_total", "Draft tokens by fate: drafted, accepted",
                                            counter),
            "depth": pb_utils.MetricFamily("padrec_draft_depth_total",
                                           "Draft proposals by depth (1 = first of a round) and fate: reached, accepted",
                                           counter),
            "beam_rounds": pb_utils.MetricFamily("padrec_beam_rounds_total",
                                                 "Target forwards of beam (top-K) requests, prefill included", counter),
            "beam_levels": pb_utils.MetricFamily("padrec_beam_accepted_levels_total",
                                                 "Code levels of speculative beam requests that the draft's tree "
                                                 "covered (no target forward of their own)", counter),
        }
        self.metrics = {}

    def _increment(self, family, value, **labels):
        if not value:
            return
        key = (family, tuple(sorted(labels.items())))
        if key not in self.metrics:
            self.metrics[key] = self.families[family].Metric(labels={"model": self.model, **labels})
        self.metrics[key].increment(value)

    def record(self, outcome, served):
        """Count one request's outcome; `served`: its parsed request (None when it did not parse)."""
        if not isinstance(outcome, DecodeResult):
            kind = {InvalidRequest: "invalid", PoolFull: "unavailable"}.get(type(outcome), "error")
            self._increment("requests", 1, outcome=kind)
            return
        self._increment("requests", 1, outcome="cancelled" if outcome.cancelled else "ok")
        stats = outcome.stats
        if served.mode == "beam":
            self._increment("beam_rounds", stats.rounds)
            self._increment("beam_levels", stats.accepted, drafter=served.drafter)
            return
        drafter = served.drafter
        self._increment("rounds", stats.rounds, drafter=drafter)
        self._increment("tokens", stats.drafted, drafter=drafter, fate="drafted")
        self._increment("tokens", stats.accepted, drafter=drafter, fate="accepted")
        for depth, (reached, accepted) in enumerate(zip(stats.reached_by_depth, stats.accepted_by_depth), start=1):
            self._increment("depth", reached, drafter=drafter, depth=str(depth), fate="reached")
            self._increment("depth", accepted, drafter=drafter, depth=str(depth), fate="accepted")
