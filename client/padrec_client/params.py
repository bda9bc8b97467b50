"""Per-request parameters and the history, checked and converted to what goes on the wire.

The server is the authority on ranges and names (it answers INVALID_ARGUMENT with a message naming
the problem), so this module only makes sure each value travels with the type the server expects:
a Triton request parameter is typed by the Python type tritonclient sees (bool, int, float, str),
and `temperature=1` must arrive as a double, not as an int.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping

import numpy as np

from .errors import InvalidArgument

__all__ = ["DRAFTERS", "MODES", "PARAMETER_TYPES", "History", "ParamValue", "request_parameters", "history_array"]

ParamValue = bool | int | float | str
# A user's items, oldest first: external item IDs (integers stand for their decimal strings).
History = Iterable[str | int | bytes]

# The `recommend` models' parameters (model_repository/README.md) and their wire types.
PARAMETER_TYPES: dict[str, type] = {
    "top_n": int,
    "num_draft_tokens": int,
    "drafter": str,
    "temperature": float,
    "top_p": float,
    "seed": int,
    "exclude_history": bool,
    "mode": str,
    "beam_width": int,
    "draft_width": int,
    "tree_width": int,
    "tree_budget": int,
    "tree_min_prob": float,
    "tree_slot_widths": str,
}
DRAFTERS = ("padrec", "eagle")
# "list": one generated list (the default); "beam": the top_n items by beam search of beam_width beams
MODES = ("list", "beam")


def _coerce(name: str, value: object) -> ParamValue:
    # bool is an int subclass: test it first so True never travels as top_n=1.
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return float(value) if PARAMETER_TYPES.get(name) is float else int(value)
    if isinstance(value, numbers.Real):
        # Also for an int parameter given 2.5: the server's message then names the mismatch,
        # rather than the client silently rounding.
        return float(value)
    raise InvalidArgument(
        f"parameter {name!r}: {type(value).__name__} is not a bool, int, float or str",
        status="INVALID_ARGUMENT",
    )


def request_parameters(top_n: int, params: Mapping[str, object]) -> dict[str, ParamValue]:
    """The Triton request parameters for one call: `top_n` plus the caller's extra parameters.

    A parameter given as None is left out, so the server's default applies (handy for optional
    command-line flags).
    """
    merged: dict[str, object] = {"top_n": top_n, **params}
    return {name: _coerce(name, value) for name, value in merged.items() if value is not None}


def history_array(history: History) -> np.ndarray:
    """The HISTORY tensor: shape [1, n], BYTES, the external item IDs oldest first.

    Integer IDs are accepted and sent as their decimal strings, which is how the catalogue
    spells them.
    """
    if isinstance(history, (str, bytes)):
        # Iterating "12,55" would send every character as an item.
        raise InvalidArgument(
            "history must be a sequence of item IDs, not a single string", status="INVALID_ARGUMENT"
        )
    encoded: list[bytes] = []
    for item in history:
        if isinstance(item, bytes):
            encoded.append(item)
        elif isinstance(item, str):
            encoded.append(item.encode("utf-8"))
        elif isinstance(item, numbers.Integral) and not isinstance(item, bool):
            encoded.append(str(int(item)).encode("ascii"))
        else:
            raise InvalidArgument(
                f"history item {item!r} is not a string or an integer item ID", status="INVALID_ARGUMENT"
            )
    return np.array([encoded], dtype=np.object_).reshape(1, len(encoded))
