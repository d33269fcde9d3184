"""Many runs at once: each in its own folder, all gathered in MLflow (`logger=mlflow`), whatever happens to
the tracking store. Processes are real where the behaviour is about processes.

The MLflow UI's screenshot goes to tmp_path; with MNIST_CNN_SCREENSHOTS=<folder> it is kept there too
(docs/ has the one README shows)."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import browser
import pytest
import torch
from filelock import FileLock
from processes import COMMAND, free_port, started, wait_for
from runs import FEW_BATCHES, ROOT, metrics_of, train_here
from torchvision.datasets import MNIST

from mnist_cnn.data.module import normalize
from mnist_cnn.runs.folder import claim

EPOCHS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr")


def store(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def client_of(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def history(client, run_id: str, key: str) -> dict[int, float]:
    """A metric's values by step; a value logged again at the same step (a resume repeating the steps
    after its checkpoint) counts once, the last."""
    return {m.step: m.value for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.timestamp)}


# --- folders ---------------------------------------------------------------------------------------------


def test_a_taken_folder_name_gets_the_next_free_suffix(tmp_path):
    first = claim(str(tmp_path / "runs"), "trial", "stamp")
    second = claim(str(tmp_path / "runs"), "trial", "stamp")
    third = claim(str(tmp_path / "runs"), None, "2026-12-06_10-00-00")
    assert [Path(p).name for p in (first, second, third)] == ["trial", "trial-2", "2026-12-06_10-00-00"]
    assert all(Path(p).is_dir() for p in (first, second, third))


def test_folders_claimed_and_left_empty_are_removed_when_the_process_ends(tmp_path):
    script = (
        "import sys; from pathlib import Path; from mnist_cnn.runs.folder import claim\n"
        "used = Path(claim(sys.argv[1], 'used', 's')); (used / 'metrics.json').write_text('{}')\n"
        "claim(sys.argv[1], 'unused', 's')\n"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["used", "used/metrics.json"]


def test_a_folder_holding_another_run_is_refused(tmp_path, mnist_dir):
    (tmp_path / ".hydra").mkdir()
    before = sorted(tmp_path.rglob("*"))
    result = train_here(f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert f"hydra.run.dir={tmp_path} holds another run" in result.stderr and f"resume={tmp_path}" in result.stderr
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.slow  # five processes
def test_runs_and_multiruns_started_together_each_get_their_own_folder(tmp_path, mnist_dir):
    """Three runs and two multiruns, all named alike and started at once: a folder each."""
    tiny = [*FEW_BATCHES, "trainer.max_epochs=1", "logger=csv", "name=together"]
    commands = [[sys.executable, ROOT / "train.py", *tiny, f"seed={s}"] for s in (1, 2, 3)]
    commands += [[sys.executable, ROOT / "train.py", "-m", *tiny, f"seed={s}"] for s in (4, 5)]
    with (
        started(commands[0], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as a,
        started(commands[1], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as b,
        started(commands[2], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as c,
        started(commands[3], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as d,
        started(commands[4], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as e,
    ):
        outputs = [p.communicate(timeout=COMMAND) for p in (a, b, c, d, e)]
        assert [p.returncode for p in (a, b, c, d, e)] == [0] * 5, [err[-2000:] for _, err in outputs]

    runs = sorted((tmp_path / "outputs" / "runs").iterdir())
    assert [r.name for r in runs] == ["together", "together-2", "together-3"]
    seeds = sorted(metrics_of(r)["config"]["seed"] for r in runs)
    assert seeds == [1, 2, 3]
    for r in runs:
        assert metrics_of(r)["status"] == "ok"
        assert sorted(p.name for p in (r / "checkpoints").glob("last*")) == ["last.ckpt"]  # its own, no last-v1
    sweeps = sorted((tmp_path / "outputs" / "multirun").iterdir())
    assert [s.name for s in sweeps] == ["together", "together-2"]
    job_seeds = sorted(
        metrics_of(job)["config"]["seed"] for s in sweeps for job in s.iterdir() if (job / "metrics.json").exists()
    )
    assert job_seeds == [4, 5]
    assert all((s / "summary.md").exists() for s in sweeps)


# --- MLflow ----------------------------------------------------------------------------------------------


@pytest.mark.slow  # trains 40 batches, logs a model
def test_first_test_digits_are_read_at_the_runs_accuracy_by_the_logged_model(tmp_path, mnist_dir):
    """`logger=mlflow` into a SQLite store: params, every epoch's metrics, the test figures, the folder's
    files and the tested checkpoint as a model that MLflow loads and that reads the run's test digits."""
    uri = store(tmp_path)
    result = train_here(
        "logger=mlflow",
        f"logger.mlflow.tracking_uri={uri}",
        *FEW_BATCHES,
        "figures=true",  # uploaded with the run
        "trainer.limit_train_batches=10",
        "trainer.precision=32-true",
        "data.eval_batch_size=250",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = metrics_of(tmp_path / "run")

    client = client_of(uri)
    (found,) = client.search_runs([client.get_experiment_by_name("mnist-cnn").experiment_id])
    run_id = found.info.run_id
    said = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if "MLflow" in line and not line.startswith("Recording")
    ]
    assert said == [f"MLflow run {run_id} in {uri}"]  # the console's last word: where the run is tracked
    assert json.loads((tmp_path / "run" / "mlflow.json").read_text())["run_id"] == run_id
    assert found.info.status == "FINISHED" and found.data.tags["status"] == "ok"
    assert (
        found.info.run_name == "baseline/trainer.max_epochs=2/trainer.limit_train_batches=4/"
        "trainer.limit_val_batches=2/trainer.limit_test_batches=3/trainer.log_every_n_steps=1/"
        "trainer.limit_train_batches=10/trainer.precision=32-true/data.eval_batch_size=250 (run)"
    )  # and its folder
    assert found.data.params == {
        "model": "BaselineCNN",
        "dataset": "mnist",
        "batch_size": "256",
        "validation_split": "0.3",
        "max_epochs": "2",
        "optimizer": "Adadelta",
        "lr": "1.0",
        "precision": "32-true",
        "seed": "42",
    }
    commit = metrics["provenance"]["git_commit"]
    assert found.data.tags.get("mlflow.source.git.commit") == commit if commit else True
    for key in EPOCHS:
        assert len(history(client, run_id, key)) == 2, key  # one value per epoch
    assert [round(v, 6) for v in history(client, run_id, "val_acc").values()] == [
        round(e["val_acc"], 6) for e in metrics["history"]
    ]
    assert found.data.metrics["test_acc"] == pytest.approx(metrics["test_acc"])
    assert found.data.metrics["best_val_acc"] == pytest.approx(metrics["best_val_acc"])
    files = {f.path for f in client.list_artifacts(run_id)}
    assert {
        "metrics.json",
        "config.yaml",
        "confusion_matrix.png",
        "learning_curves.png",
        "samples.png",
        "misclassified.png",
        "classification_report.txt",
        "model_summary.txt",
        "model",
    } <= files
    logged = json.loads(Path(client.download_artifacts(run_id, "metrics.json", str(tmp_path))).read_text())
    # logged while the tracking stage ran: the file's every stage but that one
    assert {**logged, "stages": None} == {**metrics, "stages": None}
    assert {k: v for k, v in metrics["stages"].items() if k not in ("tracking", "total")} == {
        k: v for k, v in logged["stages"].items() if k != "total"
    }

    import mlflow.pytorch

    mlflow.set_tracking_uri(uri)
    network = mlflow.pytorch.load_model(f"runs:/{run_id}/model").eval()
    tested = MNIST(mnist_dir, train=False)
    images = normalize(tested.data[:750], "standard")  # the 3 test batches of 250
    with torch.no_grad():
        read = network(images).argmax(dim=1)
    assert (read == tested.targets[:750]).float().mean().item() == pytest.approx(metrics["test_acc"], abs=1e-6)


@pytest.fixture(scope="session")
def parallel_sweep(shared_folder, mnist_dir):
    """A 3-job multirun, its jobs in two processes at a time (joblib), into one fresh SQLite store; made
    once for all of pytest's workers (conftest.shared_folder)."""
    folder = shared_folder / "parallel"
    uri = store(folder)
    with FileLock(f"{folder}.lock"):
        if not (folder / "sweep" / "summary.md").exists():
            result = train_here(
                "-m",
                "hydra/launcher=joblib",
                "hydra.launcher.n_jobs=2",
                "data.batch_size=32,64,128",
                "logger=mlflow",
                f"logger.mlflow.tracking_uri={uri}",
                *FEW_BATCHES,
                "trainer.limit_train_batches=2",
                f"hydra.sweep.dir={folder / 'sweep'}",
            )
            assert result.returncode == 0, result.stderr[-3000:]
    return uri, folder / "sweep"


@pytest.mark.slow  # a sweep in two processes
def test_a_parallel_multirun_is_a_parent_with_a_finished_child_per_job(parallel_sweep):
    uri, sweep = parallel_sweep
    client = client_of(uri)
    runs = client.search_runs([client.get_experiment_by_name("mnist-cnn").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and len(runs) == 4, [r.info.run_name for r in runs]
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.info.run_name == f"sweep {sweep.name}"
    assert {"summary.md", "summary.csv"} <= {f.path for f in client.list_artifacts(parent.info.run_id)}
    assert [r["status"] for r in csv.DictReader((sweep / "summary.csv").open())] == ["ok"] * 3  # the joblib launcher
    assert parent.data.tags["every job's overrides"] == " ".join(
        ["logger=mlflow", f"logger.mlflow.tracking_uri={uri}", *FEW_BATCHES, "trainer.limit_train_batches=2"]
    )
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.params["batch_size"] for r in children) == ["128", "32", "64"]
    assert sorted(r.info.run_name for r in children) == [f"baseline/data.batch_size={b}" for b in (128, 32, 64)]
    for child in children:
        assert child.info.status == "FINISHED" and child.data.tags["status"] == "ok"
        assert len(history(client, child.info.run_id, "val_acc")) == 2 and "test_acc" in child.data.metrics


@pytest.mark.slow  # a server and a browser
def test_the_mlflow_ui_shows_the_sweeps_runs(parallel_sweep, tmp_path):
    playwright = browser.playwright()
    browser.needs_chromium()
    uri, sweep = parallel_sweep
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with started(
        [
            sys.executable,
            "-m",
            "mlflow",
            "ui",
            "--backend-store-uri",
            uri,
            "--host",
            "127.0.0.1",
            "--port",
            port,
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ):
        wait_for(f"{url}/health")
        experiment = client_of(uri).get_experiment_by_name("mnist-cnn").experiment_id
        with playwright.sync_playwright() as p:
            chromium = browser.launch(p)
            page = chromium.new_page(viewport={"width": 1400, "height": 760})
            page.goto(f"{url}/#/experiments/{experiment}/runs", timeout=60_000)
            parent = page.locator("[role=row]", has_text=f"sweep {sweep.name}")
            parent.first.wait_for(timeout=60_000)
            assistant = page.get_by_role("button", name="Close")  # MLflow's assistant panel, not ours to show
            if assistant.count():
                assistant.first.click()
            page.get_by_role("button", name="Toggle sidebar").click()  # room for the runs' names
            parent.locator('button[data-component-id*="runnamecellrenderer"]').first.click()  # its children
            for batch in (32, 64, 128):
                page.get_by_text(f"baseline/data.batch_size={batch}", exact=True).first.wait_for(timeout=30_000)
            page.locator("input[name=runs-view-mode][value=CHART]").dispatch_event("click")
            page.get_by_placeholder("Search metric charts").fill("acc")
            page.get_by_text("val_acc", exact=True).first.wait_for(timeout=30_000)
            page.wait_for_timeout(2000)  # the charts' lines drawn
            shot = tmp_path / "mlflow.png"
            page.screenshot(path=str(shot))
            shown = {b: page.get_by_text(f"baseline/data.batch_size={b}", exact=True).count() for b in (32, 64, 128)}
            charts = page.get_by_text("val_acc", exact=True).count()
            chromium.close()
    assert all(shown.values()) and charts, (shown, charts)  # the three children, and their accuracy charts
    assert shot.stat().st_size > 30_000  # a page drawn, not a blank one
    keep = os.environ.get("MNIST_CNN_SCREENSHOTS")
    if keep:
        shutil.copy(shot, os.path.join(keep, "mlflow.png"))


@pytest.mark.slow  # a server, and a training run in its own process
def test_a_live_server_records_the_run_and_going_away_midway_costs_no_result(tmp_path, mnist_dir):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    run_dir = tmp_path / "run"
    with started(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            store(tmp_path),
            "--host",
            "127.0.0.1",
            "--port",
            port,
            "--workers",
            "1",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as server:
        wait_for(f"{url}/health")
        with started(
            [
                sys.executable,
                "train.py",
                "logger=mlflow",
                f"logger.mlflow.tracking_uri={url}",
                "model=prose_cnn",
                "trainer.max_epochs=3",
                "trainer.limit_train_batches=40",
                "trainer.limit_val_batches=2",
                "trainer.limit_test_batches=2",
                "trainer.log_every_n_steps=1",
                "explain=false",
                "callbacks.progress_bar.refresh_rate=0",
                f"hydra.run.dir={run_dir}",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as training:
            client = client_of(url)
            deadline = time.monotonic() + COMMAND
            while not (run_dir / "mlflow.json").exists() or not client.get_metric_history(
                json.loads((run_dir / "mlflow.json").read_text())["run_id"], "train_loss_step"
            ):
                assert training.poll() is None and time.monotonic() < deadline, "no step reached the server"
                time.sleep(0.05)
            os.killpg(server.pid, signal.SIGKILL)  # the server goes away in the middle of the run, at once
            assert training.poll() is None, "the run ended before the server went away: nothing was tested"
            run_id = json.loads((run_dir / "mlflow.json").read_text())["run_id"]
            recorded = client_of(store(tmp_path)).get_run(run_id)  # what the server had recorded, read from its store
            assert recorded.data.params["model"] == "ProseCNN" and recorded.data.tags["status"] == "running"
            out, err = training.communicate(timeout=COMMAND)
    assert training.returncode == 0, err[-3000:]
    metrics = metrics_of(run_dir)
    assert metrics["status"] == "ok" and metrics["epochs"] == 3
    assert all((run_dir / f).exists() for f in ("confusion_matrix.png", "learning_curves.png", "checkpoints/last.ckpt"))
    said = [line for line in (out + err).splitlines() if "MLflow" in line and not line.startswith("Recording")]
    assert len(said) == 1 and f"MLflow at {url} failed while" in said[0] and str(run_dir) in said[0], out + err
    assert "Traceback" not in out + err


@pytest.mark.slow  # trains
def test_a_store_unreachable_at_the_start_is_one_line_and_the_run_completes(tmp_path, mnist_dir):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = train_here(
        "logger=mlflow",
        f"logger.mlflow.tracking_uri={url}",
        *FEW_BATCHES,
        "trainer.max_epochs=1",
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert metrics_of(tmp_path)["status"] == "ok"
    said = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if "MLflow" in line and not line.startswith("Recording")
    ]
    assert len(said) == 1 and f"MLflow at {url} failed while" in said[0], result.stdout + result.stderr


SMALL = (
    "trainer.max_epochs=3",
    "trainer.limit_train_batches=8",
    "trainer.limit_val_batches=4",
    "trainer.limit_test_batches=4",
    "data.batch_size=64",
    "model=prose_cnn",
    "logger=mlflow",
    "callbacks.checkpoint.every_n_steps=3",
    "callbacks.progress_bar.refresh_rate=0",
    "explain=false",
)


def epoch_figures(run_dir: Path) -> list[dict]:
    keep = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "train_samples")
    return [{k: e[k] for k in keep} for e in metrics_of(run_dir)["history"]]


@pytest.mark.slow  # a run killed in its own process
def test_a_killed_and_resumed_run_is_one_mlflow_run_with_the_whole_history(tmp_path, mnist_dir):
    uri = store(tmp_path)
    whole = tmp_path / "whole"
    result = train_here(*SMALL, f"logger.mlflow.tracking_uri={store(tmp_path / 'other')}", f"hydra.run.dir={whole}")
    assert result.returncode == 0, result.stderr[-3000:]

    killed = tmp_path / "killed"
    last = killed / "checkpoints" / "last.ckpt"
    with started(
        [sys.executable, "train.py", *SMALL, f"logger.mlflow.tracking_uri={uri}", f"hydra.run.dir={killed}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as process:
        deadline = time.monotonic() + COMMAND
        while not (last.exists() and torch.load(last, weights_only=True)["global_step"] > 8) and process.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)  # killed in epoch 2, after its first step checkpoint
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert torch.load(last, weights_only=True)["global_step"] % 8 != 0, "not mid-epoch"
    resumed = train_here(f"resume={killed}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    assert epoch_figures(killed) == epoch_figures(whole)  # the training figures too, not only validation
    client = client_of(uri)
    (one,) = client.search_runs([client.get_experiment_by_name("mnist-cnn").experiment_id])
    assert one.info.status == "FINISHED" and one.data.tags["status"] == "ok"
    for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
        assert list(history(client, one.info.run_id, key).values()) == pytest.approx(
            [e[key] for e in epoch_figures(whole)], abs=1e-6
        ), key


@pytest.mark.slow  # a run signalled in its own process
def test_a_sigtermed_run_is_marked_interrupted_in_mlflow(tmp_path, mnist_dir):
    uri, run_dir = store(tmp_path), tmp_path / "run"
    last = run_dir / "checkpoints" / "last.ckpt"
    with started(
        [sys.executable, "train.py", *SMALL, f"logger.mlflow.tracking_uri={uri}", f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        deadline = time.monotonic() + COMMAND
        while not last.exists() and process.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=COMMAND)
    assert process.returncode == 143, err[-3000:]
    assert metrics_of(run_dir)["status"] == "interrupted"
    client = client_of(uri)
    (one,) = client.search_runs([client.get_experiment_by_name("mnist-cnn").experiment_id])
    assert one.data.tags["status"] == "interrupted" and one.info.status == "KILLED"
