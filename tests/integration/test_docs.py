"""The README's and the guide's Python examples run as written (in the order a reader meets them)."""

from __future__ import annotations

import re

import pytest
from helpers import ROOT

# Pages whose Python blocks run here, in reading order; each block sees the names the earlier ones made.
RUN = ("README.md", "docs/getting-started.md")


def python_blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / page).read_text(), re.S)


def test_every_page_that_runs_has_python_examples():
    assert all(python_blocks(page) for page in RUN)


def test_the_readme_and_getting_started_examples_run(tmp_path, monkeypatch, capsys):
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)  # the examples write `lite0.keras` where a user runs them
    namespace: dict = {}
    for page in RUN:
        for block in python_blocks(page):
            exec(compile(block, page, "exec"), namespace)  # noqa: S102  (the documented example, as written)
    printed = capsys.readouterr().out
    assert "espresso" in printed and "cat" in printed, printed  # Lite0's real ImageNet weights on the photos
    assert (tmp_path / "lite0.keras").is_file()
    assert namespace["model"].output_shape == (None, 1000)


PAGES = ["README.md"] + sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))


@pytest.mark.parametrize("page", PAGES)
def test_links_between_pages_point_at_pages_and_headings(page):
    text = (ROOT / page).read_text()
    base = (ROOT / page).parent
    for target in re.findall(r"\]\(((?:docs/)?[\w-]+\.md)(?:#[\w-]+)?\)", text):
        assert (base / target).is_file(), f"{page} links to {target}, which does not exist"
    headings = {re.sub(r"[^\w -]", "", h).strip().lower().replace(" ", "-")
                for h in re.findall(r"^#+ (.*)$", text, re.M)}
    for anchor in re.findall(r"\]\(#([\w-]+)\)", text):
        assert anchor in headings, f"{page} links to #{anchor}, a heading it does not have"
