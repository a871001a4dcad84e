"""The repository explains itself: nothing points outside it, and its documentation links work.

Whoever clones the repository has only the repository. So no tracked file (CI's own scripts in
.ci/ aside) may send a reader to a sibling folder of shared documents or to a tracker's issue
number: the reason belongs in a comment, or in the docs/ page that now holds it. The README's
quick start stays two commands, and every relative link of the README, CONTRIBUTING.md and
docs/*.md names a file (and, for a Markdown page, a heading) that exists.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Built from pieces so that this file does not match itself.
OUTSIDE = [
    (re.compile(r"\.\./" + "shared"), "a path into the shared folder beside the repository"),
    (re.compile(r"\bshared/(?:DESIGN|API)\.md"), "a document outside the repository"),
    (re.compile(r"\b(?:DESIGN|API)\.md\b"), "a document outside the repository"),
    (re.compile(r"\b[Ii]ssues? #?[0-9]+"), "an issue number"),
    (re.compile(r"\b[Tt]asks? #?[0-9]+\b"), "a task number"),
]
LINKED_PAGES = ["README.md", "CONTRIBUTING.md", "docs/*.md"]
QUICK_START = ["make run", "make test"]


def tracked_files() -> list[str]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"not a git checkout ({exc}): the tracked files are unknown")
    return [name for name in out.decode().split("\0") if name]


def test_no_tracked_file_points_outside_the_repository() -> None:
    found = []
    for name in tracked_files():
        path = ROOT / name
        if name.startswith(".ci/") or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            for pattern, what in OUTSIDE:
                match = pattern.search(line)
                if match:
                    found.append(f"{name}:{number}: {what} ({match.group(0)!r})")
    assert not found, "replace with the docs/ page or the reason itself:\n" + "\n".join(found)


def _section(text: str, heading: str) -> str:
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"README.md has no '## {heading}' section"
    return match.group(1)


def test_readme_quick_start_is_exactly_two_commands() -> None:
    quick_start = _section((ROOT / "README.md").read_text(encoding="utf-8"), "Quick start")
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", quick_start, re.M | re.S)
    commands = [
        line.split("#", 1)[0].strip()
        for block in blocks
        for line in block.splitlines()
        if line.split("#", 1)[0].strip()
    ]
    assert commands == QUICK_START


FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$", re.M)


def _links(markdown: str) -> list[str]:
    text = CODE_SPAN.sub("", FENCE.sub("", markdown))
    return INLINE_LINK.findall(text) + REFERENCE.findall(text)


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", FENCE.sub("", page.read_text("utf-8")), re.M)
    return {_slug(h) for h in headings}


def linked_pages() -> list[Path]:
    pages: list[Path] = []
    for pattern in LINKED_PAGES:
        pages.extend(sorted(ROOT.glob(pattern)))
    return pages


@pytest.mark.parametrize("page", linked_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_name_files_that_exist(page: Path) -> None:
    broken = []
    for target in _links(page.read_text(encoding="utf-8")):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("//"):
            continue  # http(s), mailto: not a file of the repository
        path_part, _, anchor = target.partition("#")
        path_part = path_part.split("?", 1)[0]
        resolved = (page.parent / path_part).resolve() if path_part else page
        if not resolved.is_relative_to(ROOT):
            broken.append(f"{target}: outside the repository")
        elif not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, f"{page.relative_to(ROOT)}:\n" + "\n".join(broken)
