"""Every `jointspace …` command line in README.md and docs/ names a real command and real flags."""

import re
from pathlib import Path

import pytest
import typer

from jointspace.cli import app

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FLAG = re.compile(r"^\[?(--[a-z][a-z0-9-]*)")


def documented_commands() -> list[tuple[str, str]]:
    """(page, command line) for inline `jointspace …` spans and code-block lines."""
    found = []
    for page in PAGES:
        text = page.read_text()
        lines = re.findall(r"`(jointspace [^`\n]+)`", text)
        in_code = False
        for line in text.splitlines():
            if line.startswith("```"):
                in_code = not in_code
            elif in_code and line.lstrip().startswith("jointspace "):
                lines.append(line.strip())
        for line in lines:
            line = line.split("  #")[0]  # a trailing comment
            for part in line.split(" | "):  # "data build emoji | data build spoken-digits"
                part = part if part.startswith("jointspace") else f"jointspace {part}"
                found.append((page.name, part.strip()))
    return found


def resolve(line: str):
    """The command a line names and the flags it passes."""
    command = typer.main.get_command(app)
    tokens = line.split()[1:]
    # Typer vendors its own click: a group is whatever has sub-commands.
    while tokens and tokens[0] in getattr(command, "commands", {}):
        command = command.commands[tokens.pop(0)]
    if hasattr(command, "commands") and tokens and not tokens[0].startswith(("-", "…")):
        raise AssertionError(f"{line!r}: no command {tokens[0]!r}")
    return command, [m.group(1) for t in tokens if (m := FLAG.match(t))]


COMMANDS = documented_commands()


def test_the_docs_show_many_commands():
    pages = {page for page, _ in COMMANDS}
    assert len(COMMANDS) > 40 and {"README.md", "serving.md", "data.md"} <= pages


@pytest.mark.parametrize(("page", "line"), COMMANDS)
def test_documented_command_exists_with_its_flags(page, line):
    command, flags = resolve(line)
    known = {"--help"}
    for param in command.params:
        known.update(param.opts)
        known.update(param.secondary_opts)
    unknown = [flag for flag in flags if flag not in known]
    assert not unknown, f"{page}: {line!r} uses {unknown}; {command.name} knows {sorted(known)}"


def test_a_wrong_flag_or_command_is_caught():
    command, flags = resolve("jointspace index search RUN --index x --querry y")
    assert command.name == "search" and "--querry" in flags
    assert "--querry" not in {opt for p in command.params for opt in p.opts}
    with pytest.raises(AssertionError, match="no command 'evaluate'"):
        resolve("jointspace evaluate runs/x")
