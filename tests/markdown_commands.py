"""The commands a markdown document shows, so tests can check and run them: fenced `sh` blocks
(one command a line, `# comments` dropped, heredoc bodies kept with their command) and inline code
that starts like a command (`make ...`, `padrec ...`, `padrec-client ...`)."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

COMMAND_STARTS = ("make ", ".venv/bin/padrec ", "padrec ", ".venv/bin/padrec-client ", "padrec-client ",
                  ".venv/bin/python ", "perf/gpu/run.sh")
_FENCE = re.compile(r"^```(\w*)\s*$")
_HEREDOC = re.compile(r"<<\s*'?(\w+)'?\s*$")
_INLINE = re.compile(r"`([^`\n]+)`")


@dataclass(frozen=True)
class Command:
    """One shown command: its text (a heredoc's body included, after a newline) and where it is."""

    text: str
    line: int

    @property
    def argv(self) -> list[str]:
        """The first line as words, with `.venv/bin/` dropped and optional `[...]` parts left out."""
        first = re.sub(r"\s\[[^\]]*\]", "", self.text.splitlines()[0])
        words = shlex.split(first)
        words[0] = words[0].removeprefix(".venv/bin/")
        return words

    @property
    def heredoc(self) -> str | None:
        """The body of the command's heredoc (the script it feeds), or None."""
        lines = self.text.splitlines()
        return "\n".join(lines[1:-1]) + "\n" if len(lines) > 1 else None


def shell_blocks(text: str) -> list[Command]:
    """The commands of every fenced `sh` block."""
    commands, language, pending, start = [], None, None, 0
    for number, line in enumerate(text.splitlines(), 1):
        fence = _FENCE.match(line)
        if pending is not None:
            pending.append(line)
            if line.strip() == pending_end:
                commands.append(Command("\n".join(pending), start))
                pending = None
            continue
        if fence and language is None:
            language = fence.group(1)
            continue
        if fence:
            language = None
            continue
        if language != "sh":
            continue
        command = re.sub(r"\s+#\s.*$", "", line).strip()
        if not command or command.startswith("#"):
            continue
        heredoc = _HEREDOC.search(command)
        if heredoc:
            pending, pending_end, start = [command], heredoc.group(1), number
        else:
            commands.append(Command(command, number))
    return commands


def inline_commands(text: str) -> list[Command]:
    """Inline code outside fenced blocks that starts like a command."""
    commands, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            commands += [Command(code.strip(), number) for code in _INLINE.findall(line)
                         if code.startswith(COMMAND_STARTS)]
    return commands


def commands_of(path: Path) -> list[Command]:
    """Every command a markdown file shows, in blocks and inline."""
    text = path.read_text()
    return shell_blocks(text) + inline_commands(text)


def inline_paths(text: str) -> list[tuple[str, int]]:
    """Inline code that names a file or folder of the repository by its path: one word with a slash,
    no placeholders or wildcards (a bare file name is named in the context of its folder)."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for code in _INLINE.findall(line):
            if " " in code or any(c in code for c in "<>*{}$=:@~") or code.startswith(("-", "http", "dns")):
                continue
            if "/" in code:
                found.append((code.rstrip("/"), number))
    return found


def markdown_links(text: str) -> list[tuple[str, int]]:
    """Relative link targets of `[text](target)`, anchors dropped."""
    return [(target.split("#")[0], number) for number, line in enumerate(text.splitlines(), 1)
            for target in re.findall(r"\]\(([^)\s]+)\)", line)
            if not target.startswith(("http", "#", "mailto:"))]
