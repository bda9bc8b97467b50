"""Per-request parameters (Triton request parameters) -> the engine's `DecodeRequest`."""

from __future__ import annotations

from dataclasses import dataclass

from padrec.config import DecodeConfig, ServingConfig
from padrec.decoding.interfaces import DecodeRequest, InvalidRequest

# name -> accepted JSON types (bool is not an int here, though Python says it is)
_TYPES: dict[str, tuple[type, ...]] = {
    "top_n": (int,), "num_draft_tokens": (int,), "seed": (int,),
    "temperature": (int, float), "top_p": (int, float),
    "drafter": (str,), "exclude_history": (bool,),
}


@dataclass(frozen=True)
class ServedRequest:
    request: DecodeRequest
    drafter: str


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
    if parameters.get("seed", 0) < 0:
        raise InvalidRequest(f"seed must be >= 0, got {parameters['seed']}")
    drafter = parameters.get("drafter", serving.drafter)
    if drafter not in serving.drafters:
        raise InvalidRequest(f"drafter must be one of {list(serving.drafters)}, got {drafter!r}")
    request = DecodeRequest(
        history=tuple(history),
        top_n=parameters.get("top_n", decode.top_n),
        num_draft_tokens=parameters.get("num_draft_tokens", serving.num_draft_tokens),
        exclude_history=parameters.get("exclude_history", decode.exclude_history),
        temperature=float(parameters.get("temperature", decode.temperature)),
        top_p=float(parameters.get("top_p", decode.top_p)),
        seed=parameters.get("seed", decode.seed),
    )
    return ServedRequest(request, drafter)
