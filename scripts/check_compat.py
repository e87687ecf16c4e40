"""Quick checks that the QGIS side runs on every QGIS analysts run (``make check``, seconds).

What runs inside QGIS -- ``__init__.py``, ``plugin/`` and the light engine modules it imports
in-process -- must work on:

- **Python 3.9** (QGIS 3.22-3.34 on Windows, older macOS builds): ``vermin -t=3.9-`` plus
  :func:`runtime_unions`, an AST scan for ``X | Y`` type unions evaluated at run time
  (``isinstance(v, int | str)``, aliases, defaults), which vermin cannot see;
- **Qt5 and Qt6** (QGIS 3 and QGIS 4): ``flake8-qgis`` (rules QGS1xx and QGS4xx) plus
  :func:`qt5_forms`, a scan for ``exec_()``, ``PyQt5``/``PyQt6`` imports, ``QVariant``
  field types and enum members written without their enum (``Qt.AlignLeft``): each
  attribute is resolved in the running QGIS, so the scan names exactly the enum to use
  (``Qt.AlignmentFlag.AlignLeft``) and passes on code that already uses it;
- **translations**: :func:`tr_calls` -- ``tr()`` takes a literal, formatted afterwards;
- **one import direction**: :func:`import_cycles` over ``plugin/`` (module- and
  function-level imports);
- **light engine modules**: :func:`light_modules` follows the engine modules the plugin
  imports; :func:`heavy_imports` refuses anything beyond the standard library and numpy there.

Usage: ``python scripts/check_compat.py`` (run with QGIS's Python: ``.venv-qgis``). Prints
``file:line: CODE message`` per finding and exits 1 when there is any.

Codes: MT901 runtime union, MT902 ``exec_``, MT903 PyQt import, MT904 QVariant type,
MT905 enum member without its enum, MT906 ``tr()`` without a literal, MT907 import cycle,
MT908 heavy import in a light module; vermin and flake8 findings keep their own words.
A finding that is right to keep is justified on its line: ``# noqa: MT906 - why`` (for
MT906: texts marked with ``tr_noop("...")`` where they are written, translated later).
"""

from __future__ import annotations

import argparse
import ast
import enum
import importlib
import subprocess  # nosec B404 - runs vermin and flake8 on the checkout
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

ROOT = Path(__file__).resolve().parents[1]
#: Light engine modules the plugin runs in QGIS's own Python (besides those it imports).
LIGHT_ROOTS = ("engine/__init__.py", "engine/schema.py", "engine/captions.py", "engine/errors.py",
               "engine/config.py", "engine/options.py", "engine/inference/config.py")
#: Third-party packages a light engine module may import at module level.
LIGHT_ALLOWED = {"numpy"}
#: flake8-qgis rules: QGS1xx (imports, exec_, processing) and QGS4xx (Qt6). Not QGS105
#: ("import iface instead of passing it"): the plugin passes ``iface`` on purpose so that
#: tests can drive the dock with pytest-qgis's iface. Not QGS2xx: experimental, and they
#: fire on every call named like a QGIS setter.
FLAKE8_SELECT = "QGS1,QGS4"
FLAKE8_IGNORE = "QGS105"
BUILTIN_TYPES = {"int", "float", "complex", "str", "bytes", "bytearray", "bool", "list", "dict", "tuple", "set",
                 "frozenset", "type", "object", "memoryview", "range", "slice"}


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.code} {self.message}"


def _rel(path: Path) -> str:
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def _unsuppressed(findings: list, source: str) -> list:
    """Drop the findings whose line says ``# noqa: CODE`` (a justified exception)."""
    lines = source.splitlines()
    out = []
    for f in findings:
        text = lines[f.line - 1] if 0 < f.line <= len(lines) else ""
        if "noqa:" in text and f.code in text.split("noqa:", 1)[1]:
            continue
        out.append(f)
    return out


# -- Python 3.9: unions evaluated at run time -----------------------------------------------------
def _future_annotations(tree: ast.Module) -> bool:
    return any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and any(a.name == "annotations" for a in n.names)
               for n in tree.body)


def _annotation_nodes(tree: ast.AST) -> set:
    """ids of the nodes inside annotations (parameters, returns, annotated assignments)."""
    roots = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
                if a is not None and a.annotation is not None:
                    roots.append(a.annotation)
            if node.returns is not None:
                roots.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            roots.append(node.annotation)
    return {id(n) for r in roots for n in ast.walk(r)}


def _type_checking_nodes(tree: ast.AST) -> set:
    """ids of the nodes under ``if TYPE_CHECKING:`` (never run)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else ""
            if name == "TYPE_CHECKING":
                out |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return out


def _module_names(tree: ast.AST) -> tuple:
    """(names bound to modules by ``import x``, names that look like classes)."""
    modules, classes = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                modules.add((a.asname or a.name).split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            for a in node.names:
                name = a.asname or a.name
                if name[:1].isupper() and not name.isupper():
                    classes.add(name)
        elif isinstance(node, ast.ClassDef):
            classes.add(node.name)
    return modules, classes


def _typeish(node: ast.AST, modules: set, classes: set) -> bool:
    if isinstance(node, ast.Constant):
        return node.value is None
    if isinstance(node, ast.Name):
        return node.id in BUILTIN_TYPES or node.id in classes
    if isinstance(node, ast.Subscript):  # list[int], Optional[X], dict[str, Any]
        return isinstance(node.value, (ast.Name, ast.Attribute))
    if isinstance(node, ast.Attribute):  # os.PathLike, typing.Any, np.ndarray
        root = node
        while isinstance(root, ast.Attribute):
            root = root.value
        capitalised = node.attr[:1].isupper() and not node.attr.isupper()  # PathLike, not CREATE_NO_WINDOW
        return isinstance(root, ast.Name) and root.id in modules and (capitalised or node.attr == "ndarray")
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _typeish(node.left, modules, classes) or _typeish(node.right, modules, classes)
    return False


def runtime_unions(source: str, path: str = "<string>") -> list:
    """``X | Y`` of types evaluated at run time: a TypeError on Python 3.9.

    Annotations count only when the module lacks ``from __future__ import annotations``
    (or calls ``get_type_hints``, which evaluates them); code under ``if TYPE_CHECKING:``
    never runs.
    """
    tree = ast.parse(source, path)
    skip = _type_checking_nodes(tree)
    if _future_annotations(tree) and "get_type_hints" not in source:
        skip |= _annotation_nodes(tree)
    modules, classes = _module_names(tree)
    found, inner = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr) and id(node) not in skip and id(node) not in inner:
            if _typeish(node, modules, classes):
                inner |= {id(n) for n in ast.walk(node)}  # one finding per union
                found.append(Finding(path, node.lineno, "MT901",
                                     f"'{ast.unparse(node)}' is evaluated at run time and needs Python 3.10; "
                                     "use typing.Union/Optional (or keep it in an annotation with "
                                     "'from __future__ import annotations')"))
    return _unsuppressed(found, source)


# -- Qt5-only forms ---------------------------------------------------------------------------------
_MISSING = object()


def _is_enum_member(value) -> bool:
    if isinstance(value, enum.Enum):
        return True
    return type(type(value)).__name__ == "enumtype"  # a sip enum member (PyQt5)


def _qt_names(tree: ast.AST) -> dict:
    """Names bound by ``from qgis... import X`` anywhere in the file -> the objects (imported now)."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "qgis":
            try:
                module = importlib.import_module(node.module)
            except ImportError:
                continue
            for a in node.names:
                obj = getattr(module, a.name, _MISSING)
                if obj is _MISSING:
                    try:
                        obj = importlib.import_module(f"{node.module}.{a.name}")
                    except ImportError:
                        continue
                names[a.asname or a.name] = obj
    return names


def _resolve(node: ast.AST, names: dict):
    if isinstance(node, ast.Name):
        return names.get(node.id, _MISSING)
    if isinstance(node, ast.Attribute):
        base = _resolve(node.value, names)
        return _MISSING if base is _MISSING else getattr(base, node.attr, _MISSING)
    return _MISSING


def qt5_forms(source: str, path: str = "<string>") -> list:
    """Forms that work on Qt5 only (QGIS 3) and fail on Qt6 (QGIS 4)."""
    tree = ast.parse(source, path)
    names = _qt_names(tree)
    qvariant = None
    try:
        from qgis.PyQt.QtCore import QVariant as qvariant
    except ImportError:
        pass
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "exec_":
            found.append(Finding(path, node.lineno, "MT902", "'exec_()' is gone in Qt6; call 'exec()'"))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for m in modules:
                if m.split(".")[0] in ("PyQt5", "PyQt6", "PySide2", "PySide6"):
                    found.append(Finding(path, node.lineno, "MT903", f"'{m}': import Qt through qgis.PyQt (QGIS 3 and 4)"))
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            owner = _resolve(node.value, names)
            if owner is _MISSING:
                continue
            if qvariant is not None and owner is qvariant and (node.attr == "Type" or hasattr(getattr(qvariant, "Type", None), node.attr)):
                found.append(Finding(path, node.lineno, "MT904", f"'QVariant.{node.attr}' does not exist in Qt6; use the "
                                     "field types of plugin/compat.py (STRING, INT, DOUBLE)"))
                continue
            value = getattr(owner, node.attr, _MISSING)
            if value is _MISSING or not _is_enum_member(value) or type(value) is owner:
                continue
            written = ast.unparse(node)
            if isinstance(value, enum.Enum):
                scoped = f"{type(value).__qualname__}.{value.name}"
            else:
                scoped = f"{ast.unparse(node.value)}.{type(value).__name__}.{node.attr}"
            found.append(Finding(path, node.lineno, "MT905", f"'{written}': PyQt6 has no unscoped enum members; write '{scoped}'"))
    return _unsuppressed(found, source)


# -- translations -----------------------------------------------------------------------------------
def _is_tr_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    return (isinstance(func, ast.Name) and func.id == "tr") or (isinstance(func, ast.Attribute) and func.attr == "tr")


def tr_calls(source: str, path: str = "<string>") -> list:
    """``tr()`` calls the template extractor cannot read (not a literal)."""
    found = []
    for node in ast.walk(ast.parse(source, path)):
        if _is_tr_call(node) and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                continue
            what = "an f-string" if isinstance(arg, ast.JoinedStr) else f"'{ast.unparse(arg)}'"
            found.append(Finding(path, node.lineno, "MT906", f"tr() of {what}: pass the literal text and format afterwards "
                                 "(tr(\"{n} layers\").format(n=n)), or mark the texts with tr_noop() where they are "
                                 "written and justify this call with '# noqa: MT906'"))
    return _unsuppressed(found, source)


# -- imports: cycles and light modules ------------------------------------------------------------------
def module_name(path: Path, root: Path = ROOT) -> str:
    rel = path.resolve().relative_to(root.resolve()).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _module_file(name: str, root: Path = ROOT) -> Optional[Path]:
    base = root.joinpath(*name.split(".")) if name else root
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imports_of(path: Path, root: Path = ROOT, module_level_only: bool = False) -> Iterator[tuple]:
    """``(module, line)`` for every import of a repository module in ``path`` (relative ones resolved)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    nodes = tree.body if module_level_only else ast.walk(tree)
    if module_level_only:  # module level includes try/if blocks, not function bodies
        nodes = [n for stmt in tree.body if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                 for n in ast.walk(stmt)]
    for node in nodes:
        if isinstance(node, ast.Import):
            for a in node.names:
                if _module_file(a.name, root) is not None:
                    yield a.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                parts = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if _module_file(base, root) is None:
                continue
            for a in node.names:
                sub = f"{base}.{a.name}" if base else a.name
                if a.name != "*" and _module_file(sub, root) is not None:
                    yield sub, node.lineno  # from package import submodule
                else:
                    yield base, node.lineno


def import_graph(files: Iterable[Path], root: Path = ROOT) -> dict:
    """module -> {imported module: first line} among ``files``."""
    modules = {module_name(f, root): f for f in files}
    graph: dict = {m: {} for m in modules}
    for m, f in modules.items():
        for target, line in imports_of(f, root):
            if target in modules and target != m:
                graph[m].setdefault(target, line)
    return graph


def import_cycles(files: Iterable[Path], root: Path = ROOT) -> list:
    """Strongly connected groups of modules that import each other (Tarjan), as findings."""
    files = list(files)
    graph = import_graph(files, root)
    index, low, stack, on_stack, groups = {}, {}, [], set(), []
    counter = [0]

    def visit(v):  # recursion depth = longest import chain: small
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
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
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    files_of = {module_name(f, root): f for f in files}
    found = []
    for group in groups:
        edges = [f"{a} -> {b} (line {graph[a][b]})" for a in group for b in sorted(graph[a]) if b in group]
        first = group[0]
        found.append(Finding(_rel(files_of[first]), min(graph[first][b] for b in graph[first] if b in group), "MT907",
                             "import cycle: " + "; ".join(edges) + ". Move what both need into a third module"))
    return found


def light_modules(plugin_files: Iterable[Path], root: Path = ROOT) -> list:
    """Engine modules that run in QGIS's Python: :data:`LIGHT_ROOTS`, those the plugin imports
    and, following module-level imports, what they import (their packages' ``__init__`` too)."""
    todo = [root / p for p in LIGHT_ROOTS if (root / p).is_file()]
    for f in plugin_files:
        for target, _ in imports_of(f, root):
            if target.split(".")[0] == "engine":
                path = _module_file(target, root)
                if path is not None:
                    todo.append(path)
    seen: dict = {}
    while todo:
        path = todo.pop()
        key = path.resolve()
        if key in seen:
            continue
        seen[key] = path
        name = module_name(path, root)
        parts = name.split(".")
        for i in range(1, len(parts)):  # importing a.b.c runs a/__init__ and a/b/__init__
            init = _module_file(".".join(parts[:i]), root)
            if init is not None:
                todo.append(init)
        for target, _ in imports_of(path, root, module_level_only=True):
            if target.split(".")[0] == "engine":
                p = _module_file(target, root)
                if p is not None:
                    todo.append(p)
    return sorted(seen.values())


def heavy_imports(path: Path) -> list:
    """Module-level imports of packages beyond the standard library and numpy (MT908)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for node in ast.walk(stmt):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            for n in names:
                top = n.split(".")[0]
                if top and top not in sys.stdlib_module_names and top not in LIGHT_ALLOWED and top != "engine":
                    found.append(Finding(_rel(path), node.lineno, "MT908", f"'{n}' imported at module level in a module that "
                                         "QGIS's Python loads (standard library and numpy only); import it inside the "
                                         "function that needs it, or keep this module out of the plugin's imports"))
    return found


# -- external tools ----------------------------------------------------------------------------------
def _tool(args: list, what: str) -> tuple:
    try:
        done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)  # nosec B603
    except subprocess.TimeoutExpired:
        return 1, f"{what} took longer than 300 s"
    out = (done.stdout + done.stderr).strip()
    if done.returncode != 0 and ("No module named" in out):
        return 1, f"{what} is not installed in {sys.executable}: pip install -r requirements-qgis-test.txt ({out.splitlines()[-1]})"
    return done.returncode, out


def run_vermin(files: list) -> tuple:
    """``vermin -t=3.9-`` (violations only); (exit code, report)."""
    code, out = _tool(["-c", "import sys; from vermin import main; sys.exit(main())", "-t=3.9-", "--violations",
                       "--no-tips", "-q", *[str(f) for f in files]], "vermin")
    return code, out


def run_flake8_qgis(files: list) -> tuple:
    code, out = _tool(["-m", "flake8", "--isolated", f"--select={FLAKE8_SELECT}", f"--extend-ignore={FLAKE8_IGNORE}",
                       *[_rel(f) for f in files]], "flake8-qgis")
    return code, out


# -- the whole check ------------------------------------------------------------------------------------
def plugin_files(root: Path = ROOT) -> list:
    return [root / "__init__.py", *sorted((root / "plugin").rglob("*.py"))]


def check(root: Path = ROOT, tools: bool = True, echo: Callable[[str], None] = print) -> int:
    """Run every check; the number of findings (0 = pass)."""
    qgis_side = [f for f in plugin_files(root) if "__pycache__" not in f.parts]
    light = light_modules(qgis_side, root)
    findings: list = []
    for f in qgis_side + light:
        source = f.read_text(encoding="utf-8")
        findings += runtime_unions(source, _rel(f))
    for f in qgis_side:
        source = f.read_text(encoding="utf-8")
        findings += qt5_forms(source, _rel(f))
        findings += tr_calls(source, _rel(f))
    for f in light:
        findings += heavy_imports(f)
    findings += import_cycles([f for f in qgis_side if f.parent != root], root)
    for finding in sorted(findings, key=lambda x: (x.path, x.line, x.code)):
        echo(str(finding))
    failures = len(findings)
    if tools:
        for name, (code, out) in (("vermin -t=3.9-", run_vermin(qgis_side + light)), ("flake8-qgis", run_flake8_qgis(qgis_side))):
            if code != 0:
                echo(f"{name}:\n{out}")
                failures += max(1, sum(1 for line in out.splitlines() if line.strip()))
    echo(f"check_compat: {len(qgis_side)} plugin files, {len(light)} light engine modules: "
         + ("no findings" if failures == 0 else f"{failures} finding(s)"))
    return failures


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-tools", action="store_true", help="skip vermin and flake8 (the AST scans only)")
    args = parser.parse_args(argv)
    return 1 if check(tools=not args.no_tools) else 0


if __name__ == "__main__":
    sys.exit(main())
