"""The package as `pip install .` or a wheel gives it: configs inside, entry points working from any folder."""

import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import numpy as np
import processes
import pytest
from PIL import Image
from runs import FEW_BATCHES, ROOT, in_process
from torchvision.datasets import MNIST

from mnist_cnn.cli import commands, train

pytestmark = pytest.mark.slow  # a wheel built, installed and run


def run(*args, **kwargs) -> subprocess.CompletedProcess:
    result = processes.run(args, **kwargs)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def borrowing_venv(venv: Path) -> None:
    """A fresh environment that sees the packages of the one running the tests, however they were installed
    (a venv, the system's Python, the user's site), as plain entries on sys.path: their .pth files are not
    run, so an editable install of mnist_cnn stays invisible, and the environment's own site-packages come
    first. `--system-site-packages` would borrow the base interpreter's packages instead of a venv's."""
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    borrowed = [p for p in dict.fromkeys([*site.getsitepackages(), site.getusersitepackages()]) if os.path.isdir(p)]
    (own,) = (venv / "lib").glob("python3*/site-packages")
    (own / "borrowed.pth").write_text("".join(f"{p}\n" for p in borrowed))


BUILT = shutil.ignore_patterns(
    ".git", "outputs", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "mlruns", "*.db"
)


def not_source(folder: str, names: list[str]) -> set[str]:
    """What a copy of the checkout leaves out: build and run output, and any virtual environment inside it
    (README's `.venv`, or one of another name), which is gigabytes of torch."""
    venvs = {n for n in names if os.path.isfile(os.path.join(folder, n, "pyvenv.cfg"))}
    return set(BUILT(folder, names)) | venvs


def test_a_built_wheel_trains_predicts_and_exports_from_another_folder(tmp_path, mnist_dir):
    source = tmp_path / "source"  # a copy: building in the checkout would leave build/ behind
    shutil.copytree(ROOT, source, ignore=not_source)
    run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path / "dist", source
    )
    (wheel,) = (tmp_path / "dist").glob("mnist_cnn-*.whl")
    # A fresh environment that borrows torch & co. from this one, but not mnist_cnn: the wheel's copy wins.
    venv = tmp_path / "venv"
    borrowing_venv(venv)
    run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        venv / "bin" / "python",
        "install",
        "--no-deps",
        "--no-index",
        "-q",
        wheel,
    )
    located = run(venv / "bin" / "python", "-c", "import mnist_cnn.conf; print(mnist_cnn.conf.__file__)").stdout
    assert located.startswith(str(venv))

    work = tmp_path / "work"
    work.mkdir()
    env = {"MNIST_CNN_DATA": os.environ["MNIST_CNN_DATA"], "PATH": f"{venv / 'bin'}:/usr/bin:/bin"}
    run(
        venv / "bin" / "mnist-train",
        *FEW_BATCHES,
        "trainer.max_epochs=1",
        "logger=csv",
        "hydra.run.dir=run",
        cwd=work,
        env=env,
    )
    Image.fromarray(MNIST(mnist_dir, train=False).data[0].numpy()).save(work / "seven.png")
    predicted = run(venv / "bin" / "mnist-predict", "run", "seven.png", "--json", cwd=work, env=env).stdout
    assert '"digit":' in predicted
    # the model the package carries, with no checkpoint given: installed with the wheel
    carried = run(venv / "bin" / "mnist-predict", "seven.png", "--json", cwd=work, env=env)
    assert json.loads(carried.stdout)[0]["label"] == "7" and "the model the package carries" in carried.stderr
    run(venv / "bin" / "mnist-export", "run/checkpoints/last.ckpt", "model.onnx", cwd=work, env=env)
    # what the console shows: nothing from torch.export; for TorchScript one note, not torch.jit's warnings
    assert run(venv / "bin" / "mnist-export", "run", "model.pt2", cwd=work, env=env).stderr == ""
    note = run(venv / "bin" / "mnist-export", "run", "model.pt", cwd=work, env=env).stderr.strip().splitlines()
    assert len(note) == 1 and note[0].startswith("mnist-export: note: TorchScript is deprecated"), note
    assert sorted(p.name for p in work.iterdir()) == ["model.onnx", "model.pt", "model.pt2", "run", "seven.png"]
    probabilities = np.asarray(json.loads(predicted)[0]["probabilities"])
    assert abs(probabilities.sum() - 1) < 1e-3


@pytest.mark.parametrize(
    "command, args, said",
    [
        ("demo", [], "mnist-demo needs gradio, which is not installed: pip install 'mnist-cnn[demo]'"),
        (
            "train",
            ["logger=mlflow"],
            "logger=mlflow needs mlflow, which is not installed: pip install 'mnist-cnn[tracking]'",
        ),
    ],
)
def test_a_missing_extra_is_one_line_naming_it(tmp_path, monkeypatch, command, args, said):
    hidden = {"demo": "gradio", "train": "mlflow"}[command]
    monkeypatch.setitem(sys.modules, hidden, None)  # as if the extra were not installed
    main = train.main if command == "train" else commands.demo
    result = in_process(main, *args, *([f"hydra.run.dir={tmp_path / 'run'}"] if command == "train" else []))
    assert result.returncode == 2 and result.stderr.startswith(f"mnist-{command}: error: {said}"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_the_search_runs_on_optunas_maintained_line():
    """pip install -e ".[dev]" brings Optuna 4 or later, and not the Hydra plugin that pinned it below 3."""
    import importlib.metadata

    assert int(importlib.metadata.version("optuna").split(".")[0]) >= 4
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.version("hydra-optuna-sweeper")
