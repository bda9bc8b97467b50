"""Helm's own chart linter, from the Helm v4 Go library that the helm-sdkpy wheel ships as a shared
object, called through ctypes (the wheel's Python half wants Python 3.12; the library does not).

`helm lint` renders every template with the chart's values and checks the result: a template that
fails to render or yields objects that are not valid YAML with names is an error. In lint mode Helm
only logs a template's `fail` (to stderr, as `funcMap fail message=...`) instead of stopping, so
`lint` captures the library's stderr and returns those messages too.
This is what a machine without the `helm` command (no Go module proxy here, no Debian package) can
run; with `helm` on PATH the tests also render the chart and validate each object.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

LIBRARY = Path("_lib") / "linux-amd64" / "libhelm_sdkpy.so"
# Helm's support.Severity: 1 info, 2 warning, 3 error.
SEVERITY = {1: "info", 2: "warning", 3: "error"}


class HelmLibraryMissing(RuntimeError):
    """The helm-sdkpy wheel is not installed (make setup installs it)."""


FAIL_LOG = re.compile(r'funcMap fail message="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class LintMessage:
    severity: str
    path: str


@dataclass(frozen=True)
class LintReport:
    """What `helm lint` said: its messages, and the messages of every `fail` a template called."""

    messages: list[LintMessage]
    failures: list[str]

    def errors(self) -> list[str]:
        """Everything that would stop `helm install`: error and warning messages, and failures."""
        return [f"{m.severity} in {m.path}" for m in self.messages if m.severity in ("error", "warning")] + [
            f"fail: {f}" for f in self.failures]


def _library() -> ctypes.CDLL:
    spec = importlib.util.find_spec("helm_sdkpy")  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise HelmLibraryMissing("helm-sdkpy is not installed: run `make setup`")
    path = Path(list(spec.submodule_search_locations)[0]) / LIBRARY
    if not path.is_file():
        raise HelmLibraryMissing(f"helm-sdkpy has no Linux x86-64 library at {path}")
    lib = ctypes.CDLL(str(path))
    lib.helm_sdkpy_version_string.restype = ctypes.c_char_p
    lib.helm_sdkpy_last_error.restype = ctypes.c_char_p
    lib.helm_sdkpy_config_create.argtypes = [ctypes.c_char_p] * 4 + [ctypes.POINTER(ctypes.c_ulonglong)]
    lib.helm_sdkpy_lint.argtypes = [ctypes.c_ulonglong, ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p)]
    return lib


def version() -> str:
    """The library's version, e.g. helm-sdkpy-v0.1.32."""
    return _library().helm_sdkpy_version_string().decode()


def lint(chart: Path) -> LintReport:
    """`helm lint` of a chart directory: every message, with its severity and the file it is about,
    and the messages of the `fail` calls its templates made."""
    lib = _library()
    handle = ctypes.c_ulonglong()
    if lib.helm_sdkpy_config_create(b"default", b"", b"", b"{}", ctypes.byref(handle)) != 0:
        raise RuntimeError(f"helm configuration failed: {lib.helm_sdkpy_last_error().decode()}")
    result = ctypes.c_char_p()
    with tempfile.TemporaryFile() as log:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(log.fileno(), 2)
        try:
            status = lib.helm_sdkpy_lint(handle, str(chart).encode(), ctypes.byref(result))
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        log.seek(0)
        logged = log.read().decode(errors="replace")
    if status != 0:
        raise RuntimeError(f"helm lint failed to run: {lib.helm_sdkpy_last_error().decode()}")
    report = json.loads(result.value.decode())
    messages = [LintMessage(SEVERITY.get(m["Severity"], str(m["Severity"])), m["Path"]) for m in report["Messages"]]
    return LintReport(messages, [match.group(1).replace('\\"', '"') for match in FAIL_LOG.finditer(logged)])
