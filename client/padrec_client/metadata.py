"""Server and model metadata as typed values, read from tritonclient's protobuf responses.

The protobuf messages are read rather than tritonclient's JSON form, which spells int64 shapes
as strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ServerMetadata", "TensorSpec", "ModelMetadata", "parse_server_metadata", "parse_model_metadata"]


@dataclass(frozen=True)
class ServerMetadata:
    """What the server says about itself: its name ("triton"), version and protocol extensions."""

    name: str
    version: str
    extensions: tuple[str, ...]


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a model; -1 in `shape` is a variable dimension."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ModelMetadata:
    """A served model's name, versions, platform ("ensemble", "python", ...) and tensors."""

    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


def parse_server_metadata(response: Any) -> ServerMetadata:
    """From a ServerMetadataResponse message."""
    return ServerMetadata(response.name, response.version, tuple(response.extensions))


def _tensors(messages: Any) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(m.name, m.datatype, tuple(int(d) for d in m.shape)) for m in messages)


def parse_model_metadata(response: Any) -> ModelMetadata:
    """From a ModelMetadataResponse message."""
    return ModelMetadata(
        name=response.name,
        versions=tuple(response.versions),
        platform=response.platform,
        inputs=_tensors(response.inputs),
        outputs=_tensors(response.outputs),
    )
