"""The shape of the code: imports point one way (a lower layer never imports a higher one),
no import cycles, and light commands that do not import torch."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the nnlab modules it imports, at top level or inside functions."""
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(
                        package.split(".")[: len(package.split(".")) - node.level + 1]
                        + ([base] if base else [])
                    )
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            else:
                continue
            for t in targets:
                while t and t not in modules:  # "from nnlab.data import augment" is a module
                    t = t.rpartition(".")[0]
                if t and t != name and t.startswith("nnlab"):
                    deps.add(t)
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


# Lowest first; a module may import its own group and every lower layer, nothing else.
LAYERS = [
    {"ground": ("nnlab", "nnlab.paths", "nnlab.spec", "nnlab.files", "nnlab.log")},
    {"config": ("nnlab.config",)},
    {"data": ("nnlab.data",), "models": ("nnlab.models",)},
    {
        "library": (
            "nnlab.classifier",
            "nnlab.tracking",
            "nnlab.viz",
            "nnlab.threads",
            "nnlab.serving",
            "nnlab.summary",
            "nnlab.checks",
        )
    },
    {"commands": ("nnlab.stages", "nnlab.predict", "nnlab.server")},
    {"cli": ("nnlab.cli",)},
]


def place(module: str) -> tuple[int, str]:
    """(layer, group) of a module: the longest prefix listed in LAYERS."""
    found = [
        (len(prefix), i, group)
        for i, layer in enumerate(LAYERS)
        for group, prefixes in layer.items()
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    assert found, f"{module} has no place in LAYERS"
    _, layer, group = max(found)
    return layer, group


def wrong_way(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, deps in graph.items():
        layer, group = place(module)
        for dep in deps:
            dep_layer, dep_group = place(dep)
            if dep_layer > layer or (dep_layer == layer and dep_group != group):
                bad.append(f"{module} imports {dep}")
    return sorted(bad)


def test_the_layer_check_finds_wrong_way_imports():
    assert wrong_way({"nnlab.config": {"nnlab.models.registry"}}) == [
        "nnlab.config imports nnlab.models.registry"
    ]
    assert wrong_way({"nnlab.models.cnn": {"nnlab.data.sources"}}) == [
        "nnlab.models.cnn imports nnlab.data.sources"
    ]
    assert wrong_way({"nnlab.stages.train": {"nnlab.classifier", "nnlab.log"}}) == []


def test_imports_point_one_way():
    graph = import_graph()
    assert "nnlab.classifier" in graph["nnlab.stages.train"]  # the graph is really read
    assert wrong_way(graph) == []


def test_no_import_cycle_among_nnlab_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_config_and_compare_do_not_import_torch(tmp_path):
    code = (
        "import sys\n"
        "from nnlab.config import load_params\n"
        f"params = load_params({str(SRC.parent / 'params.yaml')!r})\n"
        "from nnlab.stages.compare import run\n"
        f"run(params, {str(tmp_path)!r})\n"
        "heavy = [m for m in ('torch', 'lightning', 'mlflow', 'albumentations') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.slow
def test_summary_from_params_alone_gives_the_lecture_counts(tmp_path):
    """`nnlab summary` on a fresh clone: no data/, no download, the lecture's numbers."""
    import shutil

    shutil.copy(SRC.parent / "params.yaml", tmp_path / "params.yaml")
    nnlab = Path(sys.executable).parent / "nnlab"
    counts = {
        "mnist_mlp": "Total params: 407,050",
        "mnist_cnn": "Total params: 61,482",
        "catdog_cnn": "Total params: 5,681,345",
        "catdog_vgg16_features": "Non-trainable params: 14,714,688",
    }
    for name, expected in counts.items():
        proc = subprocess.run(
            [str(nnlab), "summary", name], cwd=tmp_path, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0 and expected in proc.stdout, proc.stderr[-1000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # nothing written
