"""The README's and the guide's Python examples run as written (in the order a reader meets them)."""

from __future__ import annotations

import glob
import re
import shlex

import pytest
from helpers import ROOT

# Pages whose Python blocks run here, in reading order; each block sees the names the earlier ones made.
RUN = ("README.md", "docs/getting-started.md")


def python_blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / page).read_text(), re.S)


def test_every_page_that_runs_has_python_examples():
    assert all(python_blocks(page) for page in RUN)


@pytest.mark.slow
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


# Shell examples. Every `keras-models` command is parsed by the real CLI parser (its subcommand,
# flags and choices exist as written); those below also run here, in-process, offline. Other
# commands need what this machine lacks and say so (the README and guide mark them the same way).
RUNS_HERE = {
    "keras-models list 'rexnet*'",
    "keras-models list --pretrained 'rexnet*'",
    "keras-models info efficientnet_b0.ra4_e3600_r224_in1k",
    "keras-models predict --model tf_efficientnet_lite0 --weights imagenet 'examples/photos/*.jpg'",
}
ELSEWHERE = {  # a command's first word -> what it needs
    "make": "the Makefile (its targets are checked to exist)",
    "docker": "Docker and TF Serving's image (tests/integration/test_export.py serves the same SavedModel)",
    "curl": "a running TF Serving",
    "export": "a Hugging Face token",
}


def shell_commands(page: str) -> list[str]:
    """The commands of a page's ```bash blocks: continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", (ROOT / page).read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(shlex.join(words))
    return commands


SHELL = [(page, command) for page in PAGES for command in shell_commands(page)]


def _argv(command: str) -> list[str]:
    """The arguments after `keras-models`: a leading VAR=value is the environment, `...` elides."""
    words = shlex.split(command)
    while "=" in words[0]:
        words.pop(0)
    assert words[0] == "keras-models", command
    return [w for w in words[1:] if w != "..."]


def test_every_shell_example_is_parsed_run_or_says_what_it_needs():
    assert len(SHELL) > 30
    targets = re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M)
    for page, command in SHELL:
        first = command.split()[0].split("=")[0]
        if "keras-models" in command.split():
            continue  # the next test
        assert first in ELSEWHERE, f"{page}: `{command}` neither runs nor says what it needs"
        if first == "make":
            assert command.split()[1] in targets, f"{page}: no make target in `{command}`"
    assert RUNS_HERE <= {command for _, command in SHELL}, "a command that runs here left the guide"


KERAS_MODELS = [s for s in SHELL if "keras-models" in s[1].split()]


@pytest.mark.parametrize("page,command", KERAS_MODELS, ids=[f"{p}:{c}" for p, c in KERAS_MODELS])
@pytest.mark.slow
def test_keras_models_shell_examples_parse_and_the_offline_ones_run(page, command, capsys, monkeypatch):
    from keras_models.cli import build_parser, main

    argv = _argv(command)
    if command not in RUNS_HERE:
        if "train" in argv and "--data" not in argv and "--config" not in argv:
            argv += ["--data", "digits"]  # `train ...`: the flags shown, on a source
        build_parser().parse_args(argv)  # SystemExit (one line on stderr) on a flag or choice that drifted
        return
    monkeypatch.chdir(ROOT)
    expanded = [match for word in argv for match in (sorted(glob.glob(word)) if "*" in word and "/" in word
                                                      else [word])]
    assert main(expanded) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert out.strip(), command
    if "predict" in argv:
        assert "espresso" in out and "cat" in out, out  # Lite0's real ImageNet weights


@pytest.mark.slow
def test_every_python_example_compiles_and_the_models_page_runs():
    for page in PAGES:
        for block in python_blocks(page):
            compile(block, page, "exec")
    import numpy as np

    import keras_models as km

    namespace = {"km": km, "images": np.zeros((1, 224, 224, 3), "float32"),
                 "existing_model": km.create_model("rexnet_100")}
    for block in python_blocks("docs/models.md"):
        exec(compile(block, "docs/models.md", "exec"), namespace)  # noqa: S102  (the documented example)
    assert sorted(namespace["maps"]) == [f"stride_{s}" for s in (16, 2, 32, 4, 8)]
