"""MkDocs hooks: the site serves a copy of each file of examples/ that a page links to.

The pages link to the examples as `../examples/NAME`, which is right when the Markdown is read
in the repository. In the site the same link must stay inside it, so each page's links are
turned into `examples/NAME` and every file of examples/ is added to the site's files. A link
to an example that does not exist is then a missing target, which `mkdocs build --strict`
refuses like any other broken link.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

EXAMPLES = "examples"
_LINK_TO_EXAMPLES = re.compile(r"\]\(\.\./" + EXAMPLES + "/")


def on_files(files: Files, config: Any) -> Files:
    """Add every file of the repository's examples/ directory to the site."""
    examples = Path(config["config_file_path"]).resolve().parent / EXAMPLES
    for path in sorted(examples.rglob("*")):
        if path.is_file() and path.suffix != ".md" and "__pycache__" not in path.parts:
            uri = f"{EXAMPLES}/{path.relative_to(examples).as_posix()}"
            files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    """Point the page's links to examples/ at the copies inside the site."""
    return _LINK_TO_EXAMPLES.sub(f"]({EXAMPLES}/", markdown)
