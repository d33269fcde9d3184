"""The shape of the code, kept: folders named for what they hold, each a layer that imports only the layers
below it; no import cycle in the package (imports inside functions included); modules and classes of a size a
newcomer reads, constructors with few arguments; commands whose `--help` answers without importing torch."""

import ast
import subprocess
import sys
from pathlib import Path

from runs import ROOT

PACKAGE = ROOT / "src" / "mnist_cnn"
MODULES = {
    ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
    for p in PACKAGE.rglob("*.py")
}


def imported(path: Path, module: str) -> set[str]:
    """The package's modules that `path` imports, anywhere in it (a function's imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n in MODULES and n != module}
    return found


def test_no_import_cycle_in_the_package():
    graph = {m: imported(p, m) for m, p in MODULES.items()}
    state, cycles = {}, []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for other in sorted(graph[module]):
            if state.get(other) == "open":
                cycles.append(path[path.index(other) :] + [other])
            elif other not in state:
                visit(other, path + [other])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles


# The package's layers, lowest first: a module may import its own folder's and those of lower layers, never a
# higher one's. The modules at the top of the package (errors, atomic, suggest, figures, multirun) are the lowest.
LAYERS = [
    "",
    "data",
    "models",
    "training",
    "inference",
    "explain",
    "tracking",
    "reports",
    "config",
    "search",
    "runs",
    "cli",
]


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.index(parts[1] if len(parts) > 2 else "")


def test_folders_hold_at_most_15_modules_and_each_layer_imports_only_those_below():
    assert set(LAYERS[1:]) | {"bundled"} == {
        p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"
    }
    sizes = {p.name: len(list(p.glob("*.py"))) - 1 for p in PACKAGE.iterdir() if p.is_dir() and p.name in LAYERS}
    assert max(sizes.values()) <= 15 and len(list(PACKAGE.glob("*.py"))) - 1 <= 6, sizes
    upward = [
        f"{m} imports {o}"
        for m, p in MODULES.items()
        if m.count(".") > 0
        for o in imported(p, m)
        if layer(o) > layer(m)
    ]
    assert not upward, upward


def test_modules_scripts_and_benchmarks_are_short():
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 300}
    long |= {
        str(p.relative_to(ROOT)): n
        for folder in ("scripts", "benchmarks")
        for p in (ROOT / folder).glob("*.py")
        if (n := len(p.read_text().splitlines())) > 400
    }
    assert not long, long


def test_the_lightning_module_is_plain_and_constructors_take_few_arguments():
    tree = ast.parse((PACKAGE / "models" / "classifier.py").read_text())
    (module,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Classifier"]
    assert [ast.unparse(base) for base in module.bases] == ["L.LightningModule"]
    assert module.end_lineno - module.lineno + 1 <= 90
    wide = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name == "__init__":
                count = len(node.args.args) - 1 + len(node.args.kwonlyargs)
                if count > 9:
                    wide.append(f"{path.name}:{node.lineno} takes {count}")
    assert not wide, wide


def test_no_test_module_imports_conftest():
    tests = {p.name: imported_names(p) for p in (ROOT / "tests").glob("*.py")}
    assert [name for name, names in tests.items() if "conftest" in names] == []


def imported_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_help_answers_without_torch():
    code = (
        "import sys; from mnist_cnn.cli import commands\n"
        "for command in ('predict', 'explain', 'export', 'demo', 'test', 'report'):\n"
        "    try:\n        getattr(commands, command)(['--help'])\n    except SystemExit:\n        pass\n"
        "print(sorted(m for m in ('torch', 'lightning', 'hydra', 'gradio') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr
    for command in ("predict", "explain", "export", "demo", "report"):
        assert f"usage: mnist-{command}" in done.stdout


def test_train_help_reads_the_constructors_without_the_job():
    """mnist-train --help imports the classes whose constructors are the schema (torch with them), not the
    training job or its attributions."""
    code = (
        "import sys; from mnist_cnn.cli import train\nsys.argv = ['mnist-train', '--help']\n"
        "try:\n    train.main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('mnist_cnn.runs.job', 'captum') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr
    assert "model.optimizer.lr: float" in done.stdout and "model.net.conv1_channels: int = 32" in done.stdout
