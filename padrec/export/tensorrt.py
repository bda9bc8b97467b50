"""TensorRT engines from the exported ONNX graphs, with TensorRT's Python API.

Written against TensorRT 10 (the parser of NVIDIA's Triton 24.x containers). Never run on the
project's own machines: they have no GPU, and TensorRT cannot be installed there. Where `import
tensorrt` fails, `require_tensorrt` stops the export before anything is written; a failed build
raises, so no engine file is ever written that TensorRT did not produce.

One optimization profile covers every dynamic dim by its name (see `padrec.export.onnx_files`):
batch 1..max_batch, new tokens 1..max_seq_len (prefill writes the whole prompt), cache 1..max_seq_len,
banned items 1..max_seq_len (history and list items together never outnumber the positions).
The profile starts the cache at 1, not 0: a caller at prefill passes one masked position
(past_lengths 0), since zero-length dims are not guaranteed through every TensorRT layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from padrec.export.onnx_files import BANNED, BATCH, NEW, PAST
from padrec.export.repository import TensorSpec

WORKSPACE_BYTES = 1 << 30
TYPICAL_PAST = 100  # cache length TensorRT tunes for: a 20-item history of 5-token items
TYPICAL_BANNED = 25  # banned items TensorRT tunes for: that history and a few listed items


class TensorRTError(RuntimeError):
    """TensorRT is missing here, or could not build an engine; the message says which and why."""


@dataclass(frozen=True)
class ShapeRange:
    """min / opt / max of one dynamic dim in the optimization profile."""

    min: int
    opt: int
    max: int


def require_tensorrt() -> ModuleType:
    """The `tensorrt` module, or TensorRTError saying why engines cannot be built on this host."""
    try:
        import tensorrt
    except (ImportError, OSError) as error:  # OSError: the stub wheel without NVIDIA's libraries
        raise TensorRTError(
            f"--backend tensorrt needs TensorRT and an NVIDIA GPU; `import tensorrt` failed here ({error}). "
            "Build engines on a GPU host with TensorRT 10 (e.g. NVIDIA's tritonserver container); "
            "nothing was written.") from error
    return tensorrt


def dim_ranges(max_batch: int, max_seq_len: int, typical_new: int) -> dict[str, ShapeRange]:
    """The profile's range for each named dynamic dim."""
    return {BATCH: ShapeRange(1, 1, max_batch),
            NEW: ShapeRange(1, typical_new, max_seq_len),
            PAST: ShapeRange(1, min(TYPICAL_PAST, max_seq_len), max_seq_len),
            BANNED: ShapeRange(1, min(TYPICAL_BANNED, max_seq_len), max_seq_len)}


def profile_shapes(inputs: list[TensorSpec], ranges: dict[str, ShapeRange]) -> dict[str, tuple[tuple, tuple, tuple]]:
    """(min, opt, max) shapes of every input; fixed dims stay as they are."""
    shapes = {}
    for spec in inputs:
        picks = [(d, d, d) if isinstance(d, int) else (ranges[d].min, ranges[d].opt, ranges[d].max) for d in spec.dims]
        shapes[spec.name] = tuple(tuple(p[i] for p in picks) for i in range(3))
    return shapes


def build_engine(trt: ModuleType, onnx_path: Path, plan_path: Path, shapes: dict[str, tuple[tuple, tuple, tuple]],
                 fp16: bool = False) -> None:
    """Parse `onnx_path`, build a serialized engine for `shapes`, write it to `plan_path`."""
    logger = trt.Logger(trt.Logger.WARNING)
    try:
        builder = trt.Builder(logger)
    except (RuntimeError, TypeError) as error:  # no CUDA device or driver
        raise TensorRTError(f"TensorRT cannot start a builder here (is there a usable NVIDIA GPU?): {error}") from error
    network = builder.create_network(0)  # TensorRT 10 networks are always explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise TensorRTError(f"TensorRT could not parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for name, (low, typical, high) in shapes.items():
        profile.set_shape(name, low, typical, high)
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise TensorRTError(f"TensorRT failed to build an engine from {onnx_path.name} (its log is above)")
    plan_path.write_bytes(bytes(engine))
