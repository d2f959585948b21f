"""Imports go one way: keras_models <- training <- the CLI, and inside the library in the order
that `docs/architecture.md` writes down once (statements inside functions included)."""

from __future__ import annotations

import ast
import re

from helpers import ROOT

ARCHITECTURE = ROOT / "docs" / "architecture.md"


def _module_name(path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _library() -> dict[str, object]:
    return {_module_name(p): p for p in sorted((ROOT / "keras_models").rglob("*.py"))}


def _imports(path, modules) -> set[str]:
    """Every keras_models module `path` imports: import statements anywhere in the file, and
    `importlib.import_module("...")` with a literal name."""
    this = _module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant)):
            names = [node.args[0].value]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != this:
                found.add(name)
    return found


def _documented_order() -> list[str]:
    text = ARCHITECTURE.read_text()
    block = re.search(r"## Import order.*?```text\n(.*?)```", text, re.S)
    assert block, f"{ARCHITECTURE} has no ```text block under '## Import order'"
    return [line.strip() for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as a path that ends where it starts, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node], _ = 1, stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node], _ = 2, stack.pop()
        return None

    return next((c for n in sorted(graph) if n not in state and (c := visit(n))), None)


def test_the_import_graph_has_no_cycle():
    modules = _library()
    graph = {m: _imports(p, modules) for m, p in modules.items()}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_cycle_finder_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_every_import_follows_the_documented_order():
    modules, order = _library(), _documented_order()
    assert sorted(order) == sorted(modules), (
        f"docs/architecture.md's import order lists {sorted(set(order) - set(modules))} that do not exist "
        f"and misses {sorted(set(modules) - set(order))}")
    rank = {m: i for i, m in enumerate(order)}
    against = [f"{m} imports {t}, listed below it" for m, p in modules.items()
               for t in sorted(_imports(p, modules)) if rank[t] > rank[m]]
    assert against == []


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
    for path in (ROOT / "keras_models" / "registry.py", ROOT / "keras_models" / "factory.py"):
        tree = ast.parse(path.read_text())
        imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [m for m in imported if m and m.split(".")[-1] in ("rexnet", "efficientnet")], path
        constants = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
        assert not [c for c in constants if c in ("rexnet", "efficientnet")], path


def test_only_the_factory_stamps_the_build_record():
    def stamps(path) -> bool:
        return any(isinstance(n, ast.Call) and getattr(n.func, "id", None) == "setattr" and len(n.args) > 1
                   and (getattr(n.args[1], "id", None) == "BUILD_RECORD"
                        or getattr(n.args[1], "value", None) == "_keras_models_config")
                   for n in ast.walk(ast.parse(path.read_text())))

    writers = [p.relative_to(ROOT).as_posix() for p in sorted((ROOT / "keras_models").rglob("*.py")) if stamps(p)]
    assert writers == ["keras_models/factory.py"]


def test_the_cli_finds_training_and_benchmark_commands_through_entry_points():
    from keras_models.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert {"list", "info", "convert", "predict", "verify", "train", "eval", "optimize", "export",
            "benchmark"} <= set(sub.choices)


def test_repository_tooling_is_not_installed_into_users_environments():
    import configparser
    import fnmatch

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    include = cfg["options.packages.find"]["include"].split()
    assert not [p for p in include if fnmatch.fnmatch("benchmarks", p) or fnmatch.fnmatch("tests", p)], include
