"""Imports go one way: keras_models <- training <- the CLI. The library never imports the trainer."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys

from helpers import ROOT

import keras_models


def _library_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(keras_models.__path__, "keras_models.")
                  if not m.name.endswith("__main__"))


def test_importing_every_library_module_leaves_training_and_benchmarks_out():
    modules = _library_modules()
    assert {"keras_models.models", "keras_models.export.verify", "keras_models.cli"} <= set(modules)
    code = ("import importlib, sys\n"
            f"for name in {modules!r}:\n"
            "    importlib.import_module(name)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('training', 'benchmarks')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"


def test_no_library_source_names_the_trainer_or_the_benchmarks():
    """Also inside functions, where an import would only show when that function runs."""
    offenders = []
    for path in sorted((ROOT / "keras_models").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names
                          if n.split(".")[0] in ("training", "benchmarks")]
    assert offenders == []


def test_the_registry_and_factory_know_no_family():
    """No family import, no family name compared: each family's quirks live in its own file."""
    for path in (ROOT / "keras_models" / "registry.py", ROOT / "keras_models" / "models" / "factory.py"):
        tree = ast.parse(path.read_text())
        imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [m for m in imported if m and m.split(".")[-1] in ("rexnet", "efficientnet")], path
        constants = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
        assert not [c for c in constants if c in ("rexnet", "efficientnet")], path


def test_the_cli_finds_training_and_benchmark_commands_through_entry_points():
    from keras_models.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert {"list", "info", "convert", "predict", "verify", "train", "eval", "optimize", "export",
            "benchmark"} <= set(sub.choices)
