"""Per-request parameters (Triton request parameters) -> the engine's `DecodeRequest`; and the
deployment's load settings from a decode model's config.pbtxt `parameters`."""

from __future__ import annotations

from dataclasses import dataclass, replace

from padrec.config import DecodeConfig, ServingConfig
from padrec.decoding.interfaces import BeamRequest, DecodeRequest, InvalidRequest

# name -> accepted JSON types (bool is not an int here, though Python says it is)
_TYPES: dict[str, tuple[type, ...]] = {
    "top_n": (int,), "num_draft_tokens": (int,), "seed": (int,),
    "temperature": (int, float), "top_p": (int, float),
    "drafter": (str,), "exclude_history": (bool,), "mode": (str,), "beam_width": (int,), "draft_width": (int,),
    # token trees (`DecodeRequest.tree_*`); the slot widths as text, one number per slot: "1,3,2,1,1"
    "tree_width": (int,), "tree_budget": (int,), "tree_min_prob": (int, float), "tree_slot_widths": (str,),
}
MODES = ("list", "beam")
# parameters of one mode only: naming one in a request of the other mode is an error, not ignored
_LIST_ONLY = ("num_draft_tokens", "temperature", "top_p", "seed", "tree_width", "tree_budget", "tree_min_prob",
              "tree_slot_widths")
_BEAM_ONLY = ("beam_width", "draft_width")


@dataclass(frozen=True)
class ServedRequest:
    request: DecodeRequest | BeamRequest
    drafter: str  # whose draft proposes (a beam request's, if its draft_width > 0)

    @property
    def mode(self) -> str:
        return "beam" if isinstance(self.request, BeamRequest) else "list"


def parse_request(history: list[int], parameters: dict, serving: ServingConfig = ServingConfig(),
                  decode: DecodeConfig = DecodeConfig()) -> ServedRequest:
    """Check the parameters' names and types and fill in defaults; range checks are the engine's
    (`ListDecoder.validate`) so that served and offline requests obey the same rules."""
    unknown = sorted(set(parameters) - set(_TYPES))
    if unknown:
        raise InvalidRequest(f"unknown parameters {unknown}; known: {sorted(_TYPES)}")
    for name, value in parameters.items():
        if isinstance(value, bool) != (_TYPES[name] == (bool,)) or not isinstance(value, _TYPES[name]):
            kind = " or ".join(t.__name__ for t in _TYPES[name])
            raise InvalidRequest(f"parameter {name} must be {kind}, got {type(value).__name__} {value!r}")
    mode = parameters.get("mode", "list")
    if mode not in MODES:
        raise InvalidRequest(f"mode must be one of {list(MODES)}, got {mode!r}")
    misplaced = sorted(set(parameters) & set(_BEAM_ONLY if mode == "list" else _LIST_ONLY))
    if misplaced:
        raise InvalidRequest(f"parameters {misplaced} do not apply to mode {mode!r}")
    drafter = parameters.get("drafter", serving.drafter)
    if drafter not in serving.drafters:
        raise InvalidRequest(f"drafter must be one of {list(serving.drafters)}, got {drafter!r}")
    if mode == "beam":
        return ServedRequest(BeamRequest(
            history=tuple(history),
            top_n=parameters.get("top_n", decode.top_n),
            beam_width=parameters.get("beam_width", decode.beam_width),
            exclude_history=parameters.get("exclude_history", decode.exclude_history),
            draft_width=parameters.get("draft_width", decode.draft_width),
        ), drafter)
    if parameters.get("seed", 0) < 0:
        raise InvalidRequest(f"seed must be >= 0, got {parameters['seed']}")
    request = DecodeRequest(
        history=tuple(history),
        top_n=parameters.get("top_n", decode.top_n),
        num_draft_tokens=parameters.get("num_draft_tokens", serving.num_draft_tokens),
        exclude_history=parameters.get("exclude_history", decode.exclude_history),
        temperature=float(parameters.get("temperature", decode.temperature)),
        top_p=float(parameters.get("top_p", decode.top_p)),
        seed=parameters.get("seed", decode.seed),
        tree_width=parameters.get("tree_width", DecodeRequest.tree_width),
        tree_budget=parameters.get("tree_budget", DecodeRequest.tree_budget),
        tree_slot_widths=slot_widths(parameters.get("tree_slot_widths", "")),
        tree_min_prob=float(parameters.get("tree_min_prob", DecodeRequest.tree_min_prob)),
    )
    return ServedRequest(request, drafter)


def slot_widths(text: str) -> tuple[int, ...]:
    """The `tree_slot_widths` parameter ("1,3,2,1,1"; "" for none) as numbers; their range is the
    engine's to check."""
    parts = [part.strip() for part in text.split(",")] if text.strip() else []
    if not all(part.isdigit() for part in parts):
        raise InvalidRequest(f"tree_slot_widths must be whole numbers separated by commas, got {text!r}")
    return tuple(int(part) for part in parts)


# ServingConfig fields a deployment may set in the decode models' config.pbtxt, as
# `parameters { key: "load_threshold" value: { string_value: "4" } }`
DEPLOYMENT_SETTINGS = ("load_threshold", "draft_tokens_under_load")


def serving_config(model_parameters: dict, defaults: ServingConfig = ServingConfig()) -> ServingConfig:
    """`defaults` with the load settings a model's config sets (Triton's JSON form of its
    `parameters`: name -> {"string_value": text}). Anything else, or a value that is not an integer
    >= 0, is an error: the model should fail to load rather than serve with a setting ignored."""
    unknown = sorted(set(model_parameters) - set(DEPLOYMENT_SETTINGS))
    if unknown:
        raise ValueError(f"unknown model parameters {unknown}; known: {list(DEPLOYMENT_SETTINGS)}")
    values = {}
    for name, value in model_parameters.items():
        text = value.get("string_value", "") if isinstance(value, dict) else ""
        if not text.isdigit():
            raise ValueError(f"model parameter {name} must be an integer >= 0, got {text!r}")
        values[name] = int(text)
    return replace(defaults, **values)
