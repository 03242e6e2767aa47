"""The import graph of ``src/voxtok``, read from the source (every ``import`` statement, lazy ones inside functions
included): nothing inside the package imports the package root, dependencies point down the layers of
docs/design.md, and no module imports itself through a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "voxtok"

# docs/design.md, "Layers": a module imports only from its own component and from components of a lower rank.
# Components of one rank do not import each other, except where listed in SAME_RANK.
RANK = {
    "_version": 0, "types": 0, "hparams": 0,
    "audio": 1, "kernels": 1,
    "quantizers": 2, "models": 2,
    "codecs": 3,
    "losses": 4,
    "training": 5, "tokenizers": 5, "eval": 5,
    "demo": 6,
    "cli": 7,
}  # fmt: skip
SAME_RANK = {("audio", "types"), ("training", "eval"), ("tokenizers", "eval")}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str) -> list[tuple[int, str, str | None]]:
    """``(line, imported module, name imported from it or None)`` for every import of a voxtok module in ``name``."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, None if a.asname else "<bare>") for a in node.names
                      if a.name.split(".")[0] == "voxtok"]  # fmt: skip
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            if base.split(".")[0] == "voxtok":
                found += [(node.lineno, base, a.name) for a in node.names]
    return found


def _edges(name: str) -> set[str]:
    """The voxtok modules ``name`` depends on (a submodule imported by ``from package import submodule`` counts as
    that submodule, not as its package)."""
    out = set()
    for _, module, item in _imports(name):
        target = f"{module}.{item}" if item and f"{module}.{item}" in MODULES else module
        if target in MODULES and target != name:
            out.add(target)
    return out


def _component(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_module_belongs_to_a_ranked_component() -> None:
    unknown = sorted({_component(m) for m in MODULES if m != "voxtok"} - set(RANK))
    assert not unknown, f"add {unknown} to RANK (and to the layers in docs/design.md)"


def test_nothing_inside_the_package_imports_the_package_root() -> None:
    bad = []
    for name in MODULES:
        if name == "voxtok":
            continue
        for line, module, item in _imports(name):
            # `from voxtok import x` and `import voxtok` read names off the root; so does `import voxtok.x` (it
            # binds `voxtok`). Import the module itself: `from voxtok.x import y` or `import voxtok.x as x`.
            if module == "voxtok" or item == "<bare>":
                bad.append(f"{MODULES[name].relative_to(SRC)}:{line}")
    assert not bad, f"imports of the package root: {bad}"


def test_models_never_import_quantizers_and_quantizers_never_import_models() -> None:
    for name in MODULES:
        for dep in _edges(name):
            pair = (_component(name), _component(dep))
            assert pair not in {("models", "quantizers"), ("quantizers", "models")}, f"{name} imports {dep}"


def test_dependencies_point_down_the_layers() -> None:
    bad = []
    for name in MODULES:
        if name == "voxtok":
            continue  # the public face re-exports from every layer
        for dep in _edges(name):
            a, b = _component(name), _component(dep)
            if not b or a == b or (a, b) in SAME_RANK:  # the root itself: the test above
                continue
            if RANK[b] >= RANK[a]:
                bad.append(f"{name} -> {dep}")
    assert not bad, f"imports that do not point down the layers: {bad}"


def test_the_module_graph_has_no_cycle() -> None:
    graph = {name: _edges(name) for name in MODULES}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(dep):] + [dep]))
            if dep not in state:
                visit(dep)
        path.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
