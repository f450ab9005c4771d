"""The docs a visitor reads: links that lead somewhere, commands that exist, a short README.

Every command line the docs show for ``runcomfy-gateway`` is parsed by the real CLI (nothing is
run), so a renamed option or subcommand fails here instead of in a reader's terminal.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from gateway.commands import main

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted(
    [
        ROOT / "README.md",
        ROOT / "CONTRIBUTING.md",
        ROOT / "SECURITY.md",
        *(ROOT / "docs").glob("*.md"),
    ]
)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"```[a-z]*\n(.*?)```", re.S)
COMMAND = re.compile(
    r"(?:^|&&\s*|\bexec\s+(?:-\S+\s+)*\S+\s+)(?:[A-Z_]+=\S+\s+)*(?:\S*/)?runcomfy-gateway\s+(.+)$"
)
"""The CLI as a shell runs it: first on the line (after variables), after ``&&`` or ``exec svc``."""
README_SCREENS_LINES = 180
"""About three screens: what the README may take before its documentation links."""


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[`*_\[\]()]|<[^>]+>", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {_slug(m[1]) for m in re.finditer(r"(?m)^#+ (.+)$", text)}


def _name(page: Path) -> str:
    return str(page.relative_to(ROOT))


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_every_link_in_the_docs_leads_to_a_file_and_heading_that_exist(page: Path) -> None:
    broken = []
    for target in LINK.findall(FENCE.sub("", page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, f"{_name(page)}: {broken}"


def _command_lines(text: str) -> list[list[str]]:
    """Each ``runcomfy-gateway …`` command in the page's code blocks, as argv after the name."""
    commands = []
    for block in FENCE.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            words = line.split(" #", 1)[0].strip()
            found = COMMAND.search(words)
            if found and "…" not in found[1] and "..." not in found[1]:
                commands.append(shlex.split(re.sub(r"<[^>]*>", "placeholder", found[1])))
    return commands


def _parse(argv: list[str]) -> None:
    """Resolve ``argv`` through the real command tree the way click does, without invoking."""
    command: click.Command = main
    name = "runcomfy-gateway"
    while True:
        ctx = command.make_context(name, list(argv), resilient_parsing=False)
        if not isinstance(command, click.Group):
            return
        state = vars(ctx)  # click 8.1 names it protected_args, 8.2 deprecates that name
        rest = [*state.get("_protected_args", state.get("protected_args", ())), *ctx.args]
        if not rest:
            return
        sub_name, sub, argv = command.resolve_command(ctx, rest)
        assert sub is not None and sub_name is not None
        name, command = sub_name, sub


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_every_command_the_docs_show_is_one_the_cli_accepts(
    page: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", "a-token")
    refused = []
    for argv in _command_lines(page.read_text()):
        try:
            _parse(argv)
        except click.exceptions.Exit:
            pass  # --help
        except click.ClickException as error:
            refused.append(f"runcomfy-gateway {shlex.join(argv)}: {error.format_message()}")
    assert not refused, "\n".join(refused)


def test_the_docs_show_the_admin_commands_people_need() -> None:
    """A guard for the parser above: it must find the documented commands at all."""
    shown = {tuple(argv[:3]) for page in PAGES for argv in _command_lines(page.read_text())}
    for expected in [
        ("admin", "teams", "create"),
        ("admin", "keys", "rotate"),
        ("admin", "limits", "set"),
        ("admin", "pricing", "set-model"),
        ("admin", "audit"),
    ]:
        assert any(s[: len(expected)] == expected for s in shown), expected


def test_the_readme_is_about_three_screens_before_its_links() -> None:
    readme = (ROOT / "README.md").read_text()
    head = readme.split("\n## Documentation", 1)[0]
    assert "## Documentation" in readme
    assert head.count("\n") <= README_SCREENS_LINES
    for section in ("## Two commands", "## Walkthrough", "## Pointing clients at the gateway"):
        assert section in head


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_no_doc_names_a_path_of_a_development_machine_or_an_internal_ticket(page: Path) -> None:
    text = page.read_text()
    assert not re.search(r"(?<![\w.])/(?:root|home|Users|work|tmp/pytest)/\w", text)
    assert not re.search(r"\b[Ii]ssue #\d+|\bNot met\b", text)


def _chart_installs(text: str) -> list[str]:
    """Each ``helm install``/``upgrade --install`` of the chart the page shows, in a code block
    or inline code, with its continuation lines."""
    code = [m[1] for m in FENCE.finditer(text)] + re.findall(r"(?<!`)`([^`]+)`(?!`)", text)
    return [
        " ".join(block.replace("\\\n", " ").split())
        for block in code
        if re.search(r"helm (?:upgrade --)?install\b.*helm/runcomfy-gateway", block, re.S)
    ]


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_every_chart_install_the_docs_show_gives_the_gateway_an_admin_token(page: Path) -> None:
    """Without one nobody can create the first team: the release would run and be useless."""
    for install in _chart_installs(page.read_text()):
        assert re.search(r"secrets\.(adminToken|existingSecret)=", install), install


def test_the_docs_show_installs_of_the_chart() -> None:
    """A guard for the finder above."""
    pages = [p.name for p in PAGES if _chart_installs(p.read_text())]
    assert {"deploy.md", "operations.md"} <= set(pages)


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_no_doc_starts_the_gateway_with_an_admin_token_nobody_sees(page: Path) -> None:
    """``GATEWAY_ADMIN_TOKEN=$(openssl …) runcomfy-gateway serve`` runs a gateway whose admin
    token is gone as soon as it starts: the admin CLI needs that token too."""
    for block in FENCE.findall(page.read_text()):
        for line in block.replace("\\\n", " ").splitlines():
            assert not re.search(r"GATEWAY_ADMIN_TOKEN=\$\(.*runcomfy-gateway\s+serve", line), line
