"""The shape of the package, checked from its source: no import circles, no reaching
into private names, and stages that know nothing of the orchestration around them.

The modules are parsed with :mod:`ast`, never imported, so a circle or a forbidden
import is reported by name even when importing would fail or hide it. The checker
is tested on its own on small synthetic packages, so each rule is known to fail when
a violation is introduced, not only to pass on today's tree.

The rules:

- **No circles.** An edge ``a -> b`` is an import of pipeline module ``b`` by ``a``,
  at module level or inside a function: a deferred import hides a circle from
  Python's loader, not from the reader, so it counts. Imports under
  ``if TYPE_CHECKING:`` never run and are not edges.
- **No private names across modules.** No module imports ``_name`` from another
  pipeline module, nor any private module or name of a dependency
  (``sklearn.cluster._hdbscan``, ``from x import _y``), nor reads ``module._name``
  of a module it imported, unless that line carries a comment saying why no public
  way exists.
- **Stages stand alone.** ``pipeline/stages/*`` import nothing from the
  orchestration (run, cli, batch, web, review, and the other modules that compose or
  store runs): data flows into a stage and out of it, never back up.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "pipeline"

#: Modules a stage must not import: they compose stages, store runs or present them.
ORCHESTRATION = (
    "pipeline.run", "pipeline.cli", "pipeline.batch", "pipeline.web", "pipeline.review",
    "pipeline.compose", "pipeline.stability", "pipeline.precode", "pipeline.runfolder",
)

#: Comment words that are lint or type-checker directives, not a reason.
_DIRECTIVE = re.compile(r"\b(noqa|type:\s*ignore|pragma|fmt:|ruff:|pylint:)\S*(:\s*[\w, ]+)?", re.I)


@dataclass(frozen=True)
class ImportRef:
    """One imported module or name, as a module's source spells it."""

    importer: str        # dotted name of the importing module
    target: str          # dotted name of the imported module (resolved, absolute)
    names: tuple[str, ...]  # the names taken from it (``from target import names``)
    line: int
    deferred: bool       # inside a function
    type_only: bool      # under ``if TYPE_CHECKING:``
    reason: bool         # a comment on the import's line(s) says something


@dataclass(frozen=True)
class AttrRef:
    """``module._name`` read in a module, where ``module`` is an imported module."""

    importer: str
    target: str
    attr: str
    line: int
    reason: bool


@dataclass
class Module:
    """A module's dotted name and source; ``is_package`` for an ``__init__.py``, whose
    relative imports start from the package itself."""

    name: str
    is_package: bool
    source: str
    path: str


def modules_from_folder(folder: Path, package: str = "pipeline") -> list[Module]:
    """Every ``.py`` file under ``folder`` as a module of ``package``."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        parts = list(path.relative_to(folder).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        name = ".".join([package, *parts])
        found.append(Module(name, is_package, path.read_text(encoding="utf-8"), str(path)))
    return found


def _comment_lines(source: str) -> dict[int, str]:
    """Line number -> the text of a comment on it, lint directives removed."""
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            text = _DIRECTIVE.sub("", tok.string.lstrip("#")).strip(" -:;,")
            if text:
                comments[tok.start[0]] = text
    return comments


def _says_why(comments: dict[int, str], lines) -> bool:
    """A reason is a comment of at least three words on one of ``lines``."""
    return any(len(comments.get(n, "").split()) >= 3 for n in lines)


def _resolve(module: Module, level: int, target: str | None) -> str:
    """The absolute dotted name of a relative import's base."""
    if level == 0:
        return target or ""
    base = module.name.split(".")
    if not module.is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def scan(module: Module, known: set[str]) -> tuple[list[ImportRef], list[AttrRef]]:
    """The imports of one module, and its reads of ``imported_module._private``.

    ``known`` is the set of pipeline module names: ``from pipeline.stages import
    ingest`` is an import of the module ``pipeline.stages.ingest``, not of a name.
    """
    tree = ast.parse(module.source, filename=module.path)
    comments = _comment_lines(module.source)
    imports: list[ImportRef] = []
    bound: dict[str, str] = {}   # local name -> module it stands for

    def lines_of(node: ast.stmt) -> range:
        return range(node.lineno, (node.end_lineno or node.lineno) + 1)

    def add(target: str, names: tuple[str, ...], node: ast.stmt, deferred: bool,
            type_only: bool, why: bool) -> None:
        imports.append(ImportRef(module.name, target, names, node.lineno, deferred, type_only,
                                 why))

    def visit(node: ast.AST, deferred: bool, type_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for sub in child.body:
                    visit(ast.Module(body=[sub], type_ignores=[]), deferred, True)
                for sub in child.orelse:
                    visit(ast.Module(body=[sub], type_ignores=[]), deferred, type_only)
            elif isinstance(child, ast.Import):
                why = _says_why(comments, lines_of(child))
                for alias in child.names:
                    add(alias.name, (), child, deferred, type_only, why)
                    local = alias.asname or alias.name.split(".")[0]
                    bound[local] = alias.name if alias.asname else local
            elif isinstance(child, ast.ImportFrom):
                base = _resolve(module, child.level, child.module)
                # a comment on the first or last line speaks for every name; one on a
                # name's own line of a parenthesised import, for that name only
                whole = _says_why(comments, {child.lineno, child.end_lineno})
                for alias in child.names:
                    why = whole or _says_why(comments, [alias.lineno])
                    sub = f"{base}.{alias.name}"
                    if sub in known:   # ``from package import submodule``
                        add(sub, (), child, deferred, type_only, why)
                        bound[alias.asname or alias.name] = sub
                    else:
                        add(base, (alias.name,), child, deferred, type_only, why)
            else:
                inner = deferred or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
                visit(child, inner, type_only)

    visit(tree, False, False)

    attrs = [
        AttrRef(module.name, bound[node.value.id], node.attr, node.lineno,
                _says_why(comments, [node.lineno]))
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
        and node.value.id in bound and node.attr.startswith("_")
        and not node.attr.startswith("__")
    ]
    return imports, attrs


def _private(dotted: str) -> bool:
    return any(p.startswith("_") and not p.startswith("__") for p in dotted.split("."))


def _private_to(dotted: str) -> str:
    """The package a private module belongs to: ``a.b._c.d`` -> ``a.b``. Its own
    package may import it (the scikit-learn layout: private modules, public names
    re-exported by the package)."""
    parts = dotted.split(".")
    first = next(i for i, p in enumerate(parts) if p.startswith("_") and not p.startswith("__"))
    return ".".join(parts[:first])


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def import_graph(modules: list[Module]) -> dict[str, set[str]]:
    """Module -> the pipeline modules it imports (see the rules in this file's docstring)."""
    known = {m.name for m in modules}
    graph: dict[str, set[str]] = {m.name: set() for m in modules}
    for m in modules:
        for ref in scan(m, known)[0]:
            if ref.target not in known or ref.target == m.name or ref.type_only:
                continue   # a dependency, the module itself, or never run
            graph[m.name].add(ref.target)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles, each as ``[a, b, ..., a]``: one per strongly connected group."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = 0

    def connect(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return [_one_circle(graph, set(g)) for g in groups]


def _one_circle(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A shortest circle through the first module of a strongly connected group."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & group):
                if w == start:
                    return paths[v] + [start]
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no circle through {start} in {sorted(group)}")


def private_reaches(modules: list[Module]) -> list[str]:
    """Every import or attribute read that reaches into a private name, without a reason."""
    known = {m.name for m in modules}
    found = []
    for m in modules:
        imports, attrs = scan(m, known)
        where = f"{m.path}:"
        for ref in imports:
            if ref.reason:
                continue
            in_pipeline = _within(ref.target, "pipeline")
            privates = [n for n in ref.names if n.startswith("_") and not n.startswith("__")]
            if in_pipeline:
                own = _private(ref.target) and _within(m.name, _private_to(ref.target))
                if ref.target != m.name and (privates or (_private(ref.target) and not own)):
                    what = ", ".join(privates) or ref.target
                    found.append(f"{where}{ref.line}: imports private {what} from {ref.target}")
            elif _private(ref.target) or privates:
                what = ref.target + (f" ({', '.join(privates)})" if privates else "")
                found.append(f"{where}{ref.line}: imports a dependency's private {what}")
        for a in attrs:
            if not a.reason and a.target != m.name:
                found.append(f"{where}{a.line}: reads private {a.target}.{a.attr}")
    return found


def stage_violations(modules: list[Module], stages: str = "pipeline.stages",
                     forbidden=ORCHESTRATION) -> list[str]:
    """Every import of the orchestration by a stage module (deferred ones included)."""
    known = {m.name for m in modules}
    found = []
    for m in modules:
        if not _within(m.name, stages):
            continue
        for ref in scan(m, known)[0]:
            targets = [ref.target] + [f"{ref.target}.{n}" for n in ref.names]
            bad = [t for t in targets for f in forbidden if _within(t, f)]
            if bad:
                found.append(f"{m.path}:{ref.line}: stage {m.name} imports {bad[0]}")
    return found


# --- the package itself ---------------------------------------------------------------

@pytest.fixture(scope="module")
def package() -> list[Module]:
    modules = modules_from_folder(PACKAGE_DIR)
    assert len(modules) > 30, "the package was not found where the tests expect it"
    return modules


def test_the_import_graph_has_no_circles(package):
    cycles = find_cycles(import_graph(package))
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_module_reaches_into_private_names(package):
    found = private_reaches(package)
    assert not found, "private names reached without a comment saying why:\n" + "\n".join(found)


def test_stages_do_not_import_the_orchestration(package):
    found = stage_violations(package)
    assert not found, "stages importing the orchestration:\n" + "\n".join(found)


def test_the_graph_sees_the_real_imports(package):
    """A guard against a checker that finds nothing: known edges are in the graph."""
    graph = import_graph(package)
    assert {"pipeline.compose", "pipeline.config"} <= graph["pipeline.run"]
    assert "pipeline.registry" in graph["pipeline.compose"]
    assert "pipeline.exchange.codes" in graph["pipeline.exchange.refi"]
    assert sum(len(targets) for targets in graph.values()) > 100


# --- the checker, on synthetic packages -------------------------------------------------

def _synthetic(files: dict[str, str]) -> list[Module]:
    """Modules from ``{"pkg/a.py": source}``; the package is ``pipeline``."""
    modules = []
    for rel, source in files.items():
        parts = rel.removesuffix(".py").split("/")
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        modules.append(Module(".".join(["pipeline", *parts]), is_package, source, rel))
    return modules


def test_checker_names_a_circle_at_module_level():
    mods = _synthetic({
        "__init__.py": "",
        "a.py": "from .b import thing\n",
        "b.py": "from pipeline.c import other\n",
        "c.py": "import pipeline.a\n",
        "d.py": "from . import a\n",
    })
    assert find_cycles(import_graph(mods)) == [
        ["pipeline.a", "pipeline.b", "pipeline.c", "pipeline.a"]]


def test_checker_counts_deferred_imports_whatever_their_comment_says():
    circle = {
        "__init__.py": "",
        "stages/__init__.py": "",
        "stages/x.py": "from ..y import f\n",
        "y.py": "def f():\n    from .stages import x\n    return x\n",
    }
    assert find_cycles(import_graph(_synthetic(circle))) == [
        ["pipeline.stages.x", "pipeline.y", "pipeline.stages.x"]]
    circle["y.py"] = ("def f():\n    from .stages import x  # x imports f at load time\n"
                      "    return x\n")
    assert find_cycles(import_graph(_synthetic(circle))) == [
        ["pipeline.stages.x", "pipeline.y", "pipeline.stages.x"]]
    circle["y.py"] = "def f():\n    return 1\n"
    assert find_cycles(import_graph(_synthetic(circle))) == []


def test_checker_ignores_type_checking_imports():
    mods = _synthetic({
        "a.py": "from .b import g\n",
        "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import A\n",
    })
    assert find_cycles(import_graph(mods)) == []


def test_checker_finds_private_imports():
    mods = _synthetic({
        "a.py": "_hidden = 1\nfrom ._sibling import x\n",   # its own package's private module
        "b.py": "from .a import _hidden\n",
        "c.py": "from sklearn.cluster._hdbscan import _tree\n",
        "d.py": "from sklearn.cluster import _hdbscan\n",
        "e.py": "import pipeline.a as a\nvalue = a._hidden\n",
        "f.py": ("from .a import (\n    public,\n"
                 "    _hidden,  # the store offers no public listing of this yet\n)\n"
                 "from sklearn.cluster._hdbscan import x  # no public cut of a stored tree\n"),
        "g.py": "from __future__ import annotations\nfrom sklearn.cluster import HDBSCAN\n",
        "h.py": "from umap.umap_ import fuzzy_simplicial_set\n",
        "stages/__init__.py": "from ._impl import segment\n",
        "stages/x.py": "from ._impl import helper\n",
        "y.py": "from .stages._impl import helper\n",
        "i.py": ("from .a import (\n    _other,\n"
                 "    _hidden,  # the store offers no public listing of this yet\n)\n"),
    })
    found = private_reaches(mods)
    assert [f.split(":")[0] for f in found] == ["b.py", "c.py", "d.py", "e.py", "y.py", "i.py"]
    assert "_hidden" in found[0] and "sklearn.cluster._hdbscan" in found[1]
    assert "pipeline.stages._impl" in found[4]
    assert "_other" in found[5] and "_hidden" not in found[5]


def test_checker_finds_stages_importing_the_orchestration():
    mods = _synthetic({
        "stages/__init__.py": "",
        "stages/good.py": "from ..errors import ConfigError\nfrom .other import f\n",
        "stages/bad.py": "from pipeline.review.store import Store\n",
        "stages/worse.py": "def f():\n    from .. import run  # needed for the folder\n",
        "stages/web.py": "from ..web import app\n",
        "run.py": "from .stages import good\n",
    })
    found = stage_violations(mods)
    assert sorted(f.split(":")[0] for f in found) == [
        "stages/bad.py", "stages/web.py", "stages/worse.py"]
