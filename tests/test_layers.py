"""The import graph: packages only import downwards, no circles, and flags parse without TensorFlow.

Every ``import`` and ``from ... import`` in the project's own code is read with :mod:`ast`, those
inside functions too (a late import is still a dependency).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

LAYERS = [
    ("core",),
    ("data",),
    ("pipeline", "models", "losses", "metrics", "reports"),
    ("config",),
    ("evaluation",),
    ("training",),
    ("serving", "inference"),
    ("train", "evaluate", "predict", "export", "ensemble", "cli"),
]
"""Bottom to top: a module may import its own floor or a lower one. A package's ``__main__`` is a script."""
SCRIPTS = len(LAYERS) - 1
PACKAGES = {name: floor for floor, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def project_modules() -> dict[str, Path]:
    """Every module of the project's code (not tests, benchmarks or fixtures), by dotted name."""
    out = {}
    for top in PACKAGES:
        if (REPO / f"{top}.py").is_file():
            out[top] = REPO / f"{top}.py"
        for path in sorted((REPO / top).rglob("*.py")) if (REPO / top).is_dir() else []:
            out[module_name(path)] = path
    return out


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules that ``path`` imports (``from a import b`` counts ``a.b`` when it is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m in modules}


def floor(module: str) -> int:
    return SCRIPTS if module.endswith("__main__") else PACKAGES[module.split(".")[0]]


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {m: imports_of(p, modules) - {m} for m, p in modules.items()}


def test_every_package_is_on_a_floor() -> None:
    tops = {p.name for p in REPO.iterdir() if (p / "__init__.py").is_file() and p.name != "tests"}
    tops |= {p.stem for p in REPO.glob("*.py")}
    assert tops == set(PACKAGES), "a new package or script needs its floor in LAYERS (and in docs/layout.md)"


def test_no_module_imports_a_higher_floor() -> None:
    upward = [f"{m} -> {d}" for m, deps in graph().items() for d in deps if floor(d) > floor(m)]
    assert upward == []


def test_evaluation_serving_and_inference_need_no_training() -> None:
    users = ("evaluate", "ensemble", "evaluation", "serving", "inference")
    reach = [f"{m} -> {d}" for m, deps in graph().items() if m.split(".")[0] in users for d in deps]
    assert [r for r in reach if r.split(" -> ")[1].startswith("training")] == []


def _cycles(edges: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_circles_but_the_model_registrys_plugin_imports() -> None:
    edges = graph()
    # The registry imports every builder module so that their @register decorators run; they import it back.
    plugin = {("models.registry", d) for d in edges["models.registry"] if d.startswith("models.")}
    edges = {m: {d for d in deps if (m, d) not in plugin} for m, deps in edges.items()}
    assert _cycles(edges) == []
    assert len(plugin) >= 10  # the exception is the registry's, and it is still there


def test_the_config_and_the_flags_read_without_tensorflow() -> None:
    code = (
        "import sys, cli, config.flags, models.options\n"
        "from config.train import TrainConfig\n"
        "TrainConfig(task='cls', norm='batch')\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "False"]


def test_no_library_function_over_60_lines_and_no_library_file_over_400() -> None:
    """Long functions do several jobs; the scripts and ``__main__`` modules (argparse) are not library code."""
    long_functions, long_files = [], []
    for name, path in project_modules().items():
        if floor(name) == SCRIPTS:
            continue
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > 400:
            long_files.append(name)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long_functions.append(f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert long_functions == [] and long_files == []
