"""The package's shape, checked statically: no import cycles, and pure protocol cores.

The source of every module under ``src/pyhbb`` is parsed (``ast``), never imported, so the
check sees imports inside ``if TYPE_CHECKING:`` blocks and functions too.

* Cycles: module-level imports, ``TYPE_CHECKING`` ones included, form no cycle. (Imports
  inside functions run later and cannot deadlock module initialisation; they are not
  counted as cycle edges.)
* Purity: no pyhbb module reachable from a protocol core (through any import, even one
  inside a function) imports a module that does network, file, process or thread I/O.
  (``os`` is allowed: ``os.urandom`` is the default of the core's injected randomness.)
  To hold another core to this rule, add its module name to :data:`PURE_ROOTS`.

Both checks are first shown to fail on a small synthetic package, so they cannot pass for
want of finding anything.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Cores that decide without doing I/O (each must exist).
PURE_ROOTS = [
    "pyhbb.rendezvous.core",
    "pyhbb.rendezvous.handover",
    "pyhbb.relay.core",
    "pyhbb.relay.pairing",
    "pyhbb.relay.bandwidth",
]

# Modules a pure core must not import (a module counts with its submodules).
IO_MODULES = frozenset(
    {
        "socket",
        "_socket",
        "asyncio",
        "threading",
        "_thread",
        "sqlite3",
        "selectors",
        "select",
        "subprocess",
        "multiprocessing",
        "concurrent",
        "ssl",
        "signal",
        "pathlib",  # files: key files and databases are the adapters' business
        "shutil",
        "tempfile",
        "fcntl",
        "mmap",
        "socketserver",
        "http.client",
        "http.server",
        "urllib.request",
        "importlib",  # a pure core has no reason to import by name at run time
        "httpx",
        "websockets",
        "uvloop",
        "nats",
    }
)


@dataclass(frozen=True)
class Import:
    target: str
    """The module named, or for ``from pkg import name``: ``pkg.name``."""
    fallback: str | None
    """For ``from pkg import name``: ``pkg``, the module meant when ``name`` is no module."""
    line: int
    module_level: bool
    """Executed when the module is imported (not inside a function)."""


@dataclass
class Module:
    name: str
    rel: str
    """Path relative to the scanned root, for messages."""
    is_package: bool
    imports: list[Import] = field(default_factory=list)

    def where(self, imp: Import) -> str:
        return f"{self.rel}:{imp.line}"


class _ImportCollector(ast.NodeVisitor):
    """Every import statement and ``__import__`` call, with whether it runs at import time."""

    def __init__(self, module: Module) -> None:
        self.module = module
        self.depth = 0  # nesting in functions

    def _add(self, target: str, fallback: str | None, line: int) -> None:
        self.module.imports.append(Import(target, fallback, line, self.depth == 0))

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function
    visit_Lambda = _function

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, None, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:  # relative: resolve against this module's package
            package = self.module.name.split(".")
            if not self.module.is_package:
                package.pop()
            base = package[: len(package) - (node.level - 1)]
            stem = ".".join([*base, node.module] if node.module else base)
        else:
            stem = node.module or ""
        if stem == "__future__":
            return
        for alias in node.names:
            self._add(f"{stem}.{alias.name}", stem, node.lineno)

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Name) and node.func.id == "__import__":
            arg = node.args[0] if node.args else None
            name = arg.value if isinstance(arg, ast.Constant) else "<dynamic>"
            self._add(f"importlib.__import__({name})", None, node.lineno)
        self.generic_visit(node)


def scan(root: Path, package: str) -> dict[str, Module]:
    """Every module of ``package`` under ``root``, with its imports."""
    modules: dict[str, Module] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        module = Module(".".join(parts), path.relative_to(root).as_posix(), is_package)
        _ImportCollector(module).visit(ast.parse(path.read_text(), str(path)))
        modules[module.name] = module
    return modules


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def edges(modules: dict[str, Module], module_level_only: bool) -> dict[str, dict[str, Import]]:
    """Imports between the scanned modules: importer -> {imported module: first import}.
    Imports of other packages are left out."""
    out: dict[str, dict[str, Import]] = {}
    for name, module in modules.items():
        found: dict[str, Import] = {}
        for imp in module.imports:
            if module_level_only and not imp.module_level:
                continue
            target = imp.target if imp.target in modules else imp.fallback
            if target in modules and target != name:
                found.setdefault(target, imp)
        out[name] = found
    return out


def import_cycles(modules: dict[str, Module]) -> list[list[str]]:
    """Groups of modules that import each other (strongly connected, Tarjan) through
    module-level imports."""
    graph = {name: list(found) for name, found in edges(modules, module_level_only=True).items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while not group or group[-1] != node:
                group.append(stack.pop())
                on_stack.discard(group[-1])
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(groups)


def reachable(modules: dict[str, Module], root: str) -> dict[str, str | None]:
    """Modules that importing ``root`` may import (through any import, and parent packages,
    since importing pkg.mod runs pkg/__init__ first): module -> the module importing it."""
    graph = edges(modules, module_level_only=False)
    previous: dict[str, str | None] = {root: None}
    todo = [root]
    while todo:
        name = todo.pop(0)
        for nxt in [*graph[name], *(p for p in _parents(name) if p in modules)]:
            if nxt not in previous:
                previous[nxt] = name
                todo.append(nxt)
    return previous


def _io_module(target: str) -> str | None:
    parts = target.split(".")
    prefixes = (".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return next((p for p in prefixes if p in IO_MODULES), None)


def io_imports(modules: dict[str, Module], root: str) -> list[str]:
    """Where a module reachable from ``root`` imports an I/O module, with the chain of
    imports that reaches it; empty when ``root`` is pure."""
    previous = reachable(modules, root)
    problems = []
    for name in sorted(previous):
        module = modules[name]
        for imp in module.imports:
            if _io_module(imp.target) is None:
                continue
            chain = [name]
            while (up := previous[chain[-1]]) is not None:
                chain.append(up)
            via = "" if len(chain) == 1 else f" (via {' -> '.join(reversed(chain))})"
            problems.append(f"{module.where(imp)}: {name} imports {imp.target}{via}")
    return problems


# -- the checks on pyhbb ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pyhbb() -> dict[str, Module]:
    return scan(SRC, "pyhbb")


def test_the_scan_sees_the_whole_package(pyhbb: dict[str, Module]) -> None:
    assert "pyhbb.rendezvous.core" in pyhbb and "pyhbb.rendezvous.adapters.executor" in pyhbb
    assert len(pyhbb) > 50
    assert any(imp.target == "socket" for imp in pyhbb["pyhbb.net.sockets"].imports)
    assert "pyhbb.wire" in reachable(pyhbb, "pyhbb.rendezvous.core")


def test_no_import_cycles(pyhbb: dict[str, Module]) -> None:
    graph = edges(pyhbb, module_level_only=True)
    described = []
    for group in import_cycles(pyhbb):
        lines = [
            f"  {pyhbb[name].where(imp)}: {name} imports {target}"
            for name in group
            for target, imp in graph[name].items()
            if target in group
        ]
        described.append("\n".join([" <-> ".join(group), *lines]))
    assert not described, "import cycles:\n" + "\n".join(described)


@pytest.mark.parametrize("root", PURE_ROOTS)
def test_core_imports_no_io_module(pyhbb: dict[str, Module], root: str) -> None:
    assert root in pyhbb, f"{root} is listed as a pure core but does not exist"
    problems = io_imports(pyhbb, root)
    assert not problems, "\n".join(problems)


# -- the checks can fail: a synthetic package -----------------------------------------------


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


SYNTHETIC = {
    "pkg/__init__.py": "",
    "pkg/core.py": "from pkg.rules import decide\nfrom . import names\n",
    "pkg/rules.py": "from .helpers import fmt\n\ndef decide() -> None:\n    import pkg.lazy\n",
    "pkg/helpers.py": "import ipaddress\n\ndef fmt() -> str:\n    return ''\n",
    "pkg/names.py": "X = 1\n",
    "pkg/lazy.py": "import selectors\n",
    "pkg/net/__init__.py": "",
    "pkg/net/io.py": "import asyncio\nfrom pkg.net import tools\n",
    "pkg/net/tools.py": "from typing import TYPE_CHECKING\n"
    "if TYPE_CHECKING:\n    from pkg.net.io import x\n",
    "pkg/a.py": "def f() -> None:\n    from pkg import b\n",
    "pkg/b.py": "from pkg.a import f\n",
}


def test_a_cycle_is_detected_even_through_type_checking(tmp_path: Path) -> None:
    _write(tmp_path, SYNTHETIC)
    modules = scan(tmp_path, "pkg")
    # io <-> tools is a cycle (TYPE_CHECKING counts); a -> b only runs in a function.
    assert import_cycles(modules) == [["pkg.net.io", "pkg.net.tools"]]


def test_an_io_import_is_found_through_relative_and_lazy_imports(tmp_path: Path) -> None:
    _write(tmp_path, SYNTHETIC)
    modules = scan(tmp_path, "pkg")
    # core -> rules -> (inside a function) lazy -> selectors
    assert io_imports(modules, "pkg.core") == [
        "pkg/lazy.py:1: pkg.lazy imports selectors (via pkg.core -> pkg.rules -> pkg.lazy)"
    ]
    assert set(reachable(modules, "pkg.core")) == {
        "pkg",
        "pkg.core",
        "pkg.rules",
        "pkg.helpers",
        "pkg.names",
        "pkg.lazy",
    }
    assert io_imports(modules, "pkg.names") == []
    assert io_imports(modules, "pkg.net.tools") == [
        "pkg/net/io.py:1: pkg.net.io imports asyncio (via pkg.net.tools -> pkg.net.io)"
    ]


def test_dynamic_imports_count_as_io(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/core.py": "def f() -> object:\n    return __import__('socket')\n",
            "pkg/other.py": "import importlib.util\n",
        },
    )
    modules = scan(tmp_path, "pkg")
    assert io_imports(modules, "pkg.core") == [
        "pkg/core.py:2: pkg.core imports importlib.__import__(socket)"
    ]
    assert io_imports(modules, "pkg.other") == ["pkg/other.py:1: pkg.other imports importlib.util"]
    assert import_cycles(modules) == []


def test_a_package_init_runs_before_its_modules(tmp_path: Path) -> None:
    _write(tmp_path, {"pkg/__init__.py": "import threading\n", "pkg/core.py": "X = 1\n"})
    assert io_imports(scan(tmp_path, "pkg"), "pkg.core") == [
        "pkg/__init__.py:1: pkg imports threading (via pkg.core -> pkg)"
    ]
