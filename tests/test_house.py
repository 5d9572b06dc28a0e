"""The house rules the layout keeps (issue "A house others would hold up as a model"): small files,
a README that is a map of the tree and of docs/."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 400
README_MAX_LINES = 250


def tracked(*patterns: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files", *patterns], cwd=ROOT, capture_output=True, text=True, check=True)
    return [ROOT / line for line in out.stdout.split() if (ROOT / line).exists()]


def test_no_python_or_javascript_file_is_over_400_lines() -> None:
    files = [p for p in tracked("*.py", "*.js") if "/migrations/" not in p.as_posix()]
    assert len(files) > 100
    long = {str(p.relative_to(ROOT)): n for p in files if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_readme_is_a_map_of_every_folder_and_every_docs_file() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= README_MAX_LINES
    assert readme.splitlines()[3].startswith("make run") and readme.splitlines()[5].startswith("make test")
    folders = {p.relative_to(ROOT).parts[0] for p in tracked() if len(p.relative_to(ROOT).parts) > 1}
    missing_folders = sorted(f for f in folders if f"`{f}/" not in readme and f"`{f}`" not in readme)
    assert missing_folders == []
    docs = {p.name for p in (ROOT / "docs").glob("*.md")}
    linked = set(re.findall(r"\(docs/([\w.-]+\.md)\)", readme))
    assert docs and docs - linked == set()
    assert all((ROOT / "docs" / name).exists() for name in linked)
