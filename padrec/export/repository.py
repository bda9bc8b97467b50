"""The Triton model repository that export writes: one `config.pbtxt` generator for three backends.

    <out>/
        target/config.pbtxt          target/1/<model file>
        draft_<name>/config.pbtxt    draft_<name>/1/<model file>     (one per exported drafter: its round)
        draft_<name>_step/...        draft_<name>_step/1/<model file>   (its single step, for speculative beam search)
        semantic_ids.npz      item <-> token map (the pre- and post-processing models read it)
        item_ids.json         internal item index -> external item id
        padrec_export.json    what was exported from where, the check report, the graph settings

Model files per backend:
    python       model.onnx + model.py (export/python_backend/model.py: ONNX Runtime in a stub process,
                 holding the KV cache itself: requests name cache rows, see padrec.serving.services);
                 a draft also gets model_unforced.onnx, its round without forced tokens; the target
                 and each draft step model_tree.onnx, their forward of a token tree (optional inputs
                 `depths`, `ancestors` / `positions`, `visible`; the target also `kept`, `kept_tokens`)
    onnxruntime  model.onnx (Triton's onnxruntime backend)
    tensorrt     model.plan (an engine built from model.onnx for this GPU and TensorRT version)

Shared files sit at the root because Triton treats every folder of a repository as a model (and
fails on one without a model in it); it ignores plain files there. Every model has
`max_batch_size: 0`: the K/V tensors carry the batch on their second axis, so Triton's batch
dimension cannot be added in front; the graphs' own dims (-1 where dynamic) are the config's dims.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import onnx

from padrec.config import REPO_ROOT
from padrec.decoding.onnx_draft import unforced_path
from padrec.decoding.onnx_session import GRAPH_KIND_KEY, tree_path

TARGET_MODEL = "target"
VERSION = "1"
PYTHON_MODEL_SOURCE = REPO_ROOT / "export" / "python_backend" / "model.py"
MANIFEST = "padrec_export.json"

# backend -> (config line naming it, model file, instance kind)
_BACKEND_LAYOUT = {
    "python": ('backend: "python"', "model.py", "KIND_CPU"),
    "onnxruntime": ('platform: "onnxruntime_onnx"', "model.onnx", "KIND_CPU"),
    "tensorrt": ('platform: "tensorrt_plan"', "model.plan", "KIND_GPU"),
}
# graph inputs the Python backend's models make from what they keep: the cache, and an
# item-embedding target's item marks (from each cache row's own tokens, `ItemMarkLog`)
KEPT_INPUTS = ("past_k", "past_v", "past_lengths", "items")
CACHE_OUTPUTS = ("new_k", "new_v")
_TRITON_TYPES = {onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.INT64: "TYPE_INT64",
                 onnx.TensorProto.BOOL: "TYPE_BOOL"}


def draft_model_name(drafter: str) -> str:
    """The Triton model serving one drafter's round graph (`DraftGraph`)."""
    return f"draft_{drafter}"


def draft_step_model_name(drafter: str) -> str:
    """The Triton model serving one drafter's step graph (`DraftStepGraph`)."""
    return f"draft_{drafter}_step"


# graph kind (`GRAPH_KIND_KEY`) -> whether its Python-backend model takes
# `sources`, the rows a call's kept positions are copied from (a beam continuing its parent's cache)
COPIES_ROWS = {"target": True, "draft": False, "draft_step": True}


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: its name, Triton data type and dims (a str names a dynamic dim)."""

    name: str
    data_type: str
    dims: tuple[int | str, ...]
    optional: bool = False  # a request may leave it out


# the target's inputs with which a request first keeps the accepted path of the tree call before it
# (`TargetService`)
KEEP_INPUTS = (TensorSpec("kept", "TYPE_INT64", ("batch", "kept"), optional=True),
               TensorSpec("kept_tokens", "TYPE_INT64", ("batch", "kept"), optional=True))


def graph_kind(onnx_path: Path) -> str:
    """What an exported graph is ("target", "draft" or "draft_step"), from the metadata export wrote."""
    model = onnx.load(str(onnx_path), load_external_data=False)
    return next(p.value for p in model.metadata_props if p.key == GRAPH_KIND_KEY)


def graph_io(onnx_path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The inputs and outputs of an ONNX graph, as declared in it."""
    graph = onnx.load(str(onnx_path), load_external_data=False).graph

    def spec(value: onnx.ValueInfoProto) -> TensorSpec:
        tensor = value.type.tensor_type
        dims = tuple(d.dim_param or d.dim_value for d in tensor.shape.dim)
        return TensorSpec(value.name, _TRITON_TYPES[tensor.elem_type], dims)

    return [spec(v) for v in graph.input], [spec(v) for v in graph.output]


def stateful_io(inputs: list[TensorSpec], outputs: list[TensorSpec],
                copies_rows: bool = False) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The I/O of a graph whose caller keeps the cache (the Python backend's models): the cache
    tensors (and the item marks, `KEPT_INPUTS`) give way to the cache rows and the positions each
    keeps (`rows`, `start`); the target and the draft step also take the optional rows those
    positions are copied from (`sources`, `TargetScorer.score`)."""
    slots = [TensorSpec("rows", "TYPE_INT64", ("batch",)), TensorSpec("start", "TYPE_INT64", ("batch",))]
    if copies_rows:
        slots.append(TensorSpec("sources", "TYPE_INT64", ("batch",), optional=True))
    return (slots + [s for s in inputs if s.name not in KEPT_INPUTS],
            [s for s in outputs if s.name not in CACHE_OUTPUTS])


def python_model_io(onnx_path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The I/O of the Python-backend model of an exported graph: `stateful_io`, plus, where a
    token-tree forward lies beside it (`tree_path`), the inputs only that forward has, optional (a
    request with them is scored as a token tree), and for the target `KEEP_INPUTS`."""
    kind = graph_kind(onnx_path)
    inputs, outputs = stateful_io(*graph_io(onnx_path), copies_rows=COPIES_ROWS[kind])
    tree = tree_path(onnx_path)
    if tree.is_file():
        plain = {spec.name for spec in inputs} | set(KEPT_INPUTS)
        inputs += [replace(spec, optional=True) for spec in graph_io(tree)[0] if spec.name not in plain]
        if kind == "target":
            inputs += KEEP_INPUTS
    return inputs, outputs


def model_config(name: str, backend: str, inputs: list[TensorSpec], outputs: list[TensorSpec], threads: int = 1,
                 slots: int = 0, kind: str = "target") -> str:
    """The config.pbtxt text of one model of graph `kind` on one backend.

    Defaults: one instance (CPU, or GPU for TensorRT); ONNX Runtime with `threads` intra-op threads.
    The Python backend's models keep a cache of `slots` rows.
    """
    kind_line, model_file, instance_kind = _BACKEND_LAYOUT[backend]

    def tensors(specs: list[TensorSpec]) -> str:
        rows = []
        for spec in specs:
            dims = ", ".join(str(d) if isinstance(d, int) else "-1" for d in spec.dims)  # -1: dynamic
            optional = " optional: true" if spec.optional else ""
            rows.append(f'  {{ name: "{spec.name}", data_type: {spec.data_type}, dims: [ {dims} ]{optional} }}')
        return "[\n" + ",\n".join(rows) + "\n]"

    parameters = {
        "python": {"onnx_file": "model.onnx", "intra_op_threads": str(threads), "slots": str(slots),
                   "service": kind},
        "onnxruntime": {"intra_op_thread_count": str(threads), "inter_op_thread_count": "1"},
        "tensorrt": {},
    }[backend]
    lines = [
        f'# Written by `padrec export --backend {backend}`; regenerate rather than edit.',
        f'name: "{name}"',
        kind_line,
        f'default_model_filename: "{model_file}"',
        "max_batch_size: 0",
        f"input {tensors(inputs)}",
        f"output {tensors(outputs)}",
        f"instance_group [ {{ kind: {instance_kind}, count: 1 }} ]",
        *(f'parameters {{ key: "{key}" value {{ string_value: "{value}" }} }}' for key, value in parameters.items()),
    ]
    return "\n".join(lines) + "\n"


def write_model(repository: Path, name: str, backend: str, onnx_path: Path, plan_path: Path | None = None,
                threads: int = 1, slots: int = 0) -> Path:
    """One model folder: config.pbtxt and the backend's files in version folder 1."""
    version_dir = repository / name / VERSION
    version_dir.mkdir(parents=True)
    kind = graph_kind(onnx_path)
    tree = tree_path(onnx_path)
    inputs, outputs = python_model_io(onnx_path) if backend == "python" else graph_io(onnx_path)
    (repository / name / "config.pbtxt").write_text(model_config(name, backend, inputs, outputs, threads, slots, kind))
    if backend == "tensorrt":
        shutil.copy2(plan_path, version_dir / "model.plan")
    else:
        shutil.copy2(onnx_path, version_dir / "model.onnx")
    if backend == "python":
        shutil.copy2(PYTHON_MODEL_SOURCE, version_dir / "model.py")
        # a draft's unforced round: the model's OnnxDraft runs it for batches without forced tokens
        unforced = unforced_path(onnx_path)
        if unforced.is_file():
            shutil.copy2(unforced, unforced_path(version_dir / "model.onnx"))
        if tree.is_file():  # a tree forward: its OnnxTarget / OnnxDraftScorer runs it for calls that send a tree
            shutil.copy2(tree, tree_path(version_dir / "model.onnx"))
    return repository / name


@contextmanager
def staging(out: Path) -> Iterator[Path]:
    """A scratch repository beside `out` (same filesystem, so installing is a rename), always removed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.export-", dir=out.parent))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def install(staged: Path, out: Path) -> list[Path]:
    """Move every entry of `staged` into `out`, replacing entries of the same name and leaving the
    rest of `out` (other models, README) alone. Returns the installed paths."""
    out.mkdir(parents=True, exist_ok=True)
    installed = []
    for entry in sorted(staged.iterdir()):
        destination = out / entry.name
        if destination.is_dir():
            retired = staged / f".retired-{entry.name}"
            os.replace(destination, retired)  # removed with the staging folder
        os.replace(entry, destination)
        installed.append(destination)
    return installed
