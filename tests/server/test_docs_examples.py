"""The README's quick examples, run as shown against the real served recommender: its Python
snippets and its `padrec-client` commands (pointed at the test server instead of port 8001)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from markdown_commands import shell_blocks
from padrec.config import REPO_ROOT

pytestmark = pytest.mark.server

EXAMPLES = shell_blocks((REPO_ROOT / "README.md").read_text())
BIN = Path(sys.executable).parent
DEFAULT_URLS = ("127.0.0.1:8001", "localhost:8001")


def _at(url: str, text: str) -> str:
    for default in DEFAULT_URLS:
        text = text.replace(default, url)
    return text


def test_the_readme_shows_python_snippets_and_client_commands():
    assert len([c for c in EXAMPLES if c.heredoc]) >= 2
    assert len([c for c in EXAMPLES if c.argv[0] == "padrec-client"]) >= 4


@pytest.mark.parametrize("snippet", [c for c in EXAMPLES if c.heredoc], ids=lambda c: f"README.md:{c.line}")
def test_a_python_snippet_of_the_readme_runs(recommend_server, snippet):
    done = subprocess.run([sys.executable, "-"], input=_at(recommend_server.grpc_url, snippet.heredoc),
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip()


@pytest.mark.parametrize("command", [c for c in EXAMPLES if c.argv[0] == "padrec-client"],
                         ids=lambda c: f"README.md:{c.line}")
def test_a_client_command_of_the_readme_answers(recommend_server, command):
    argv = [str(BIN / "padrec-client"), *command.argv[1:], "--url", recommend_server.grpc_url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip()
    if "--json" in argv:
        assert json.loads(done.stdout)["items"]
