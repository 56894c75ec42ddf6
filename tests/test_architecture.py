"""The shape of the code: imports point one way (a lower layer never imports a higher one, not
even inside a function), no import cycles, and light commands that do not import torch."""

import ast
import graphlib
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
REPO = SRC.parent
# Lowest first; a module may import its own group and every lower layer, nothing else.
LAYERS = [
    {"ground": "nnlab nnlab.paths nnlab.spec nnlab.files nnlab.log"},
    {"config": "nnlab.config"},
    {"data": "nnlab.data", "models": "nnlab.models"},
    {
        "library": "nnlab.classifier nnlab.tracking nnlab.viz nnlab.threads nnlab.serving "
        "nnlab.summary nnlab.checks"
    },
    {"commands": "nnlab.stages"},
    {"cli": "nnlab.cli"},
]


def import_graph() -> dict[str, set[str]]:
    """module -> the nnlab modules it imports, at top level or inside functions."""
    modules = {
        ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__"): path
        for path in SRC.rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{name}: a relative import"
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:  # "from nnlab.data import augment"
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def place(module: str) -> tuple[int, str]:
    """(layer, group) of a module: the longest prefix listed in LAYERS."""
    found = [
        (len(prefix), i, group)
        for i, layer in enumerate(LAYERS)
        for group, prefixes in layer.items()
        for prefix in prefixes.split()
        if module == prefix or module.startswith(prefix + ".")
    ]
    assert found, f"{module} has no place in LAYERS"
    return max(found)[1:]


def wrong_way(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{module} imports {dep}"
        for module, deps in graph.items()
        for dep in deps
        if place(dep) != place(module) and place(dep)[0] >= place(module)[0]
    )


def test_imports_point_one_way_without_cycles():
    assert wrong_way(
        {"nnlab.data.x": {"nnlab.models.cnn", "nnlab.config"}, "nnlab.log": {"nnlab.cli"}}
    ) == ["nnlab.data.x imports nnlab.models.cnn", "nnlab.log imports nnlab.cli"]
    graph = import_graph()
    assert "nnlab.classifier" in graph["nnlab.stages.train"]  # the graph is really read
    assert wrong_way(graph) == []
    graphlib.TopologicalSorter(graph).prepare()  # CycleError names the cycle


@pytest.mark.parametrize(
    "code",
    [
        "from nnlab.config import load_params\nload_params('params.yaml')",
        "from nnlab.config import load_params\nfrom nnlab.stages.compare import run\n"
        "run(load_params('params.yaml'), sys.argv[1])",
        "import contextlib, io, nnlab.cli\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    nnlab.cli.main(['--help'])",
    ],
    ids=["load-params", "compare", "help"],
)
def test_light_commands_import_no_heavy_library(tmp_path, code):
    heavy = ("torch", "lightning", "mlflow", "albumentations", "torchvision")
    script = f"import sys\n{code}\nassert not sys.modules.keys() & set({heavy!r})"
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.slow
def test_summary_from_params_alone_gives_the_lecture_counts(tmp_path):
    """`nnlab summary` on a fresh clone: no data/, no download, the lecture's numbers."""
    (tmp_path / "params.yaml").write_bytes((REPO / "params.yaml").read_bytes())
    counts = {
        "mnist_mlp": "Total params: 407,050",
        "mnist_cnn": "Total params: 61,482",
        "catdog_cnn": "Total params: 5,681,345",
        "catdog_vgg16_features": "Non-trainable params: 14,714,688",
    }
    for name, expected in counts.items():
        proc = subprocess.run(
            [Path(sys.executable).parent / "nnlab", "summary", name],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0 and expected in proc.stdout, proc.stderr[-1000:]
    assert [p.name for p in tmp_path.iterdir()] == ["params.yaml"]  # nothing written
