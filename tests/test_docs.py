"""The documentation: README.md leads to docs/, every page is in the site's nav, and the strict
build refuses a broken link, a missing anchor and a page left out of the nav."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
MKDOCS = Path(sys.executable).parent / "mkdocs"
# Markdown links and images: [text](target) and ![alt](target).
LINK = re.compile(r"\]\(([^)\s]+)\)")
# Words of the project's own history that a newcomer cannot know.
JARGON = re.compile(r"(?i:\bseed\b|\bthe spec\b)|\bSPEC\b|§")


def nav_pages(entries: list[Any]) -> Iterator[str]:
    """Every page file named in an MkDocs nav, however deeply nested."""
    for entry in entries:
        values = entry.values() if isinstance(entry, dict) else [entry]
        for value in values:
            if isinstance(value, list):
                yield from nav_pages(value)
            else:
                yield str(value)


def build(config_dir: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """Run `mkdocs build --strict` on the mkdocs.yml in ``config_dir``."""
    if not MKDOCS.exists():
        pytest.skip("mkdocs is not installed (it is in the lint extra: make test installs it)")
    return subprocess.run(
        [str(MKDOCS), "build", "--strict", "--site-dir", str(site)],
        cwd=config_dir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_page_in_docs_is_in_the_nav_and_every_nav_entry_is_a_page() -> None:
    """The nav of mkdocs.yml lists exactly the Markdown pages of docs/."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    listed = list(nav_pages(config["nav"]))
    assert len(listed) == len(set(listed))
    assert set(listed) == {page.relative_to(DOCS).as_posix() for page in DOCS.rglob("*.md")}


def test_readme_puts_the_two_commands_first_and_links_every_page() -> None:
    """README.md opens with `make run` and `make test`, stays short, and links each page."""
    readme = README.read_text(encoding="utf-8")
    sections = re.findall(r"^## (.+)$", readme, re.MULTILINE)
    assert sections[0] == "Two commands"
    first = readme.split("\n## ", 2)[1]
    assert "make run" in first
    assert "make test" in first
    assert len(readme.splitlines()) <= 150
    targets = set(LINK.findall(readme))
    for page in DOCS.rglob("*.md"):
        assert f"docs/{page.relative_to(DOCS).as_posix()}" in targets, page


def test_every_relative_link_of_the_readme_leads_to_a_file() -> None:
    """Each link of README.md that is not a web address names a file of the repository."""
    for target in LINK.findall(README.read_text(encoding="utf-8")):
        if "://" not in target:
            assert (ROOT / target.split("#")[0]).is_file(), target


def test_no_jargon_of_the_projects_history_in_docs_examples_or_src() -> None:
    """README, docs, examples, benchmarks and src speak plainly: no "seed" or "SPEC §"."""
    files = [README, *DOCS.rglob("*.md"), *(ROOT / "examples").rglob("*")]
    files += [*(ROOT / "src").rglob("*.py"), *(ROOT / "benchmarks").rglob("*")]
    for path in files:
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            assert not JARGON.search(text), (path, JARGON.search(text))


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    """`mkdocs build --strict` builds the site with no warning, the examples inside it."""
    built = build(ROOT, tmp_path / "site")
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "site" / "examples" / "Dockerfile").is_file()


@pytest.mark.parametrize(
    ("page", "text"),
    [
        pytest.param("platforms.md", "\n[gone](nowhere.md)\n", id="missing-page"),
        pytest.param("platforms.md", "\n[gone](api.md#nowhere)\n", id="missing-anchor"),
        pytest.param("platforms.md", "\n[gone](../examples/nowhere.py)\n", id="missing-example"),
        pytest.param("orphan.md", "# Not in the nav\n", id="page-outside-the-nav"),
    ],
)
def test_the_strict_build_refuses_a_broken_link_or_a_page_outside_the_nav(
    tmp_path: Path, page: str, text: str
) -> None:
    """A link to a missing page, anchor or example, or a page not in the nav, fails the build."""
    copy = tmp_path / "repo"
    shutil.copytree(DOCS, copy / "docs", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "examples", copy / "examples")
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    assert build(copy, tmp_path / "site").returncode == 0
    with (copy / "docs" / page).open("a", encoding="utf-8") as file:
        file.write(text)
    refused = build(copy, tmp_path / "site")
    assert refused.returncode != 0
    assert refused.stderr.count("WARNING") == 1, refused.stderr  # the one fault, no other
