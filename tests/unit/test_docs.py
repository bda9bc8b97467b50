"""The documents cannot drift from the code: every command they show exists and parses, every path
and link they name exists, and the tables they quote are what the code renders today. (The quick
commands are run against a real server in tests/server/test_docs_examples.py.)"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

import padrec.config as config_module
from markdown_commands import commands_of, inline_paths, markdown_links
from padrec.cli import COMMANDS, build_parser
from padrec.commands.tables import summary_table
from padrec.config import REPO_ROOT
from padrec_client.cli import build_parser as build_client_parser

README = REPO_ROOT / "README.md"
# Documents whose commands a user runs as shown: each must parse today.
USER_DOCS = [README, REPO_ROOT / "docs" / "design.md", REPO_ROOT / "docs" / "method.md"]
# Every document that links to others or names the repository's files.
ALL_DOCS = [*USER_DOCS, REPO_ROOT / "docs" / "README.md", REPO_ROOT / "docs" / "findings.md",
            REPO_ROOT / "docs" / "experiments" / "README.md", REPO_ROOT / "results" / "README.md"]
# Paths the docs name that a command writes (a fresh clone does not have them yet).
WRITTEN_PATHS = (".venv", ".cache", "build/", "results/gpu", "/", "model_repository/target", "model_repository/draft_",
                 "model_repository/padrec_export.json", "model_repository/semantic_ids.npz",
                 "model_repository/item_ids.json", "artifacts/shared-vocabulary")
# Words that stand for a value in a shown command, and a value that parses in their place.
PLACEHOLDERS = {"<dataset>": "beauty", "<d>": "beauty", "N": "2", "W": "1.0", "BETA": "0.5", "DIR": "/tmp/x",
                "CHECKPOINT": "/tmp/x.pt", "FILE": "/tmp/x.txt", "P": "0.1"}


def _commands(program: str) -> list[tuple[Path, int, list[str]]]:
    return [(doc, c.line, c.argv) for doc in USER_DOCS for c in commands_of(doc) if c.argv[0] == program]


def _parse(parser, argv: list[str], where: str) -> None:
    argv = [PLACEHOLDERS.get(word, word) for word in argv]
    try:
        parser.parse_args(argv)
    except SystemExit as stop:
        pytest.fail(f"{where}: `{' '.join(argv)}` does not parse (exit {stop.code})")


def test_the_docs_show_commands_of_every_kind():
    programs = {argv[0] for doc in USER_DOCS for c in commands_of(doc) for argv in [c.argv]}
    assert {"make", "padrec", "padrec-client", "python"} <= programs


def test_every_make_target_and_variable_the_docs_show_exists():
    makefile = (REPO_ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, flags=re.M))
    variables = set(re.findall(r"^(\w+) \?=", makefile, flags=re.M))
    shown = _commands("make")
    assert len(shown) >= 8
    for doc, line, argv in shown:
        for word in argv[1:]:
            if word == "...":  # "and the rest", as in `make PYTHON=... ...`
                continue
            if "=" in word:
                assert word.split("=")[0] in variables, f"{doc.name}:{line}: no make variable {word}"
            else:
                assert word in targets, f"{doc.name}:{line}: no make target {word}"


def test_every_padrec_command_the_docs_show_parses():
    parser = build_parser()
    shown = [(d, line, argv) for d, line, argv in _commands("padrec") if "--help" not in argv]
    assert len(shown) >= 20
    for doc, line, argv in shown:
        if len(argv) == 2:  # a subcommand named in the text, as in "`padrec bench` measures"
            assert argv[1] in COMMANDS, f"{doc.name}:{line}: no command padrec {argv[1]}"
        else:
            _parse(parser, argv[1:], f"{doc.name}:{line}")


def test_every_client_command_the_docs_show_parses():
    parser = build_client_parser()
    shown = _commands("padrec-client")
    assert len(shown) >= 5
    for doc, line, argv in shown:
        _parse(parser, argv[1:], f"{doc.name}:{line}")


def test_a_command_that_no_longer_parses_is_caught():
    with pytest.raises(pytest.fail.Exception, match="does not parse"):
        _parse(build_parser(), ["bench", "--dataset", "beauty", "--no-such-flag"], "here")


@pytest.mark.parametrize("doc", USER_DOCS + [REPO_ROOT / "docs" / "README.md"], ids=lambda p: p.name)
def test_every_path_the_docs_name_exists(doc):
    for path, line in inline_paths(doc.read_text()):
        if path.startswith(WRITTEN_PATHS):
            continue
        assert (REPO_ROOT / path).exists() or (doc.parent / path).exists(), f"{doc.name}:{line}: no {path}"


@pytest.mark.parametrize("doc", ALL_DOCS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_link_between_the_docs_resolves(doc):
    for target, line in markdown_links(doc.read_text()):
        assert (doc.parent / target).exists(), f"{doc.name}:{line}: broken link {target}"


def test_the_readme_quotes_the_current_summary_table():
    assert summary_table(REPO_ROOT / "results") in README.read_text(), \
        "README.md's results table is not what `padrec tables --summary` renders: paste its output"


def test_results_readme_holds_what_padrec_tables_renders(capsys):
    from padrec.cli import main

    assert main(["tables"]) == 0
    rendered = capsys.readouterr().out.strip()
    text = (REPO_ROOT / "results" / "README.md").read_text()
    quoted = text.split("<!-- begin: padrec tables -->\n")[1].split("\n<!-- end: padrec tables -->")[0]
    assert quoted == rendered, "results/README.md's tables are stale: paste `padrec tables` between the markers"


def test_the_configuration_table_gives_the_dataclasses_defaults():
    rows = [line for line in README.read_text().splitlines() if re.match(r"\| `\w+Config\.", line)]
    assert len(rows) >= 8
    for row in rows:
        setting, default = row.split(" | ")[:2]
        names = re.findall(r"`(\w+Config)\.(\w+)`", setting)
        values = re.findall(r"`([^`]*)`", default)
        assert len(names) == len(values), row
        for (cls, field), value in zip(names, values):
            actual = {f.name: f.default for f in dataclasses.fields(getattr(config_module, cls))}[field]
            assert str(actual) == value, f"README says {cls}.{field} is {value}, padrec/config.py says {actual}"


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted((REPO_ROOT / "docs" / "experiments").glob("*.py")), ids=lambda p: p.name)
def test_the_experiment_scripts_still_start(script):
    done = subprocess.run([sys.executable, str(script), "--help"], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout
