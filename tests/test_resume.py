"""Nothing lost: kill and resume, bit-for-bit reruns, atomic checkpoints, loss blow-ups."""

import csv
import errno
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from processes import COMMAND, run, started
from runs import ROOT, metrics_of, train_here

from mnist_cnn import atomic
from mnist_cnn.training.checkpoints import AtomicCheckpointIO
from mnist_cnn.training.interrupt import AtStepEnd, Interrupted

SMALL = (
    "trainer.max_epochs=3",
    "trainer.limit_train_batches=8",
    "trainer.limit_val_batches=4",
    "trainer.limit_test_batches=4",
    "data.batch_size=64",
    "model=prose_cnn",
    "logger=csv",
    "callbacks.checkpoint.every_n_steps=3",
    "callbacks.progress_bar.refresh_rate=0",
    "explain=false",
)
FINAL = ("test_acc", "test_loss", "best_val_acc", "best_val_loss", "best_epoch")


def final_metrics(run_dir):
    metrics = metrics_of(run_dir)
    return {k: metrics[k] for k in FINAL}, [(h["val_acc"], h["val_loss"]) for h in metrics["history"]]


def resume_here(*overrides: str):
    """train_here for a resume, which must not warn that the run's own folders exist and are not empty:
    a resumed run continues in them, and Lightning's warning speaks of deleting files."""
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        result = train_here(*overrides)
    assert not [w for w in said if "exists and is not empty" in str(w.message)], [str(w.message) for w in said]
    return result


@pytest.fixture(scope="module")
def whole(tmp_path_factory, mnist_dir):
    """SMALL trained in one go: what a rerun, a resumed run and an extended one must each reproduce."""
    run_dir = tmp_path_factory.mktemp("whole")
    result = train_here(*SMALL, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.mark.slow
def test_same_config_and_seed_give_identical_metrics(tmp_path, mnist_dir, whole):
    again = train_here(*SMALL, f"hydra.run.dir={tmp_path}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert final_metrics(tmp_path) == final_metrics(whole)
    provenance = metrics_of(whole)["provenance"]
    assert provenance["torch"] == torch.__version__.split("+")[0] or provenance["torch"] == torch.__version__
    assert len(provenance["git_commit"] or "") in (0, 40) and "git_dirty" in provenance


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_final_metrics(tmp_path, mnist_dir, whole):
    """Killed in its own process (as the user's machine would kill it); resumed here."""
    # step saves and epoch-end saves share one last.ckpt (no versioned last-v1.ckpt beside it)
    assert sorted(p.name for p in (whole / "checkpoints").glob("last*")) == ["last.ckpt"]

    killed = tmp_path / "killed"
    last = killed / "checkpoints" / "last.ckpt"
    with started(
        [sys.executable, "train.py", *SMALL, f"hydra.run.dir={killed}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as process:
        deadline = time.monotonic() + COMMAND
        while not last.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)  # mid-epoch: the first checkpoint is at step 3 of 8
        process.wait()
    assert last.exists() and not (killed / "metrics.json").exists()
    step = torch.load(last, weights_only=True)["global_step"]
    assert step % 8 != 0, f"killed at step {step}: not mid-epoch"

    resumed = resume_here(f"resume={killed}")  # the run's own overrides
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in (killed / "train.log").read_text()
    assert final_metrics(killed) == final_metrics(whole)


def validation_rows(run_dir) -> list[tuple[str, str, str]]:
    """metrics.csv's validation rows: (epoch, val_acc, val_loss)."""
    with (run_dir / "csv" / "metrics.csv").open(newline="") as f:
        return [(r["epoch"], r["val_acc"], r["val_loss"]) for r in csv.DictReader(f) if r.get("val_acc")]


def snapshot(run_dir) -> dict:
    return {p.relative_to(run_dir): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, mnist_dir):
    run_dir = tmp_path_factory.mktemp("finished")
    result = train_here(*SMALL, "trainer.max_epochs=1", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.mark.parametrize(
    "overrides, said",
    [
        (["model=baseline"], "model=baseline: the run in {run} was made with model=prose_cnn; a resume keeps it"),
        (["data.batch_size=32"], "data.batch_size=32: the run in {run} has data.batch_size=64;"),
        (["model.optimizer.lr=0.5"], "model.optimizer.lr=0.5: the run in {run} has model.optimizer.lr=0.01;"),
        (
            ["trainer.max_epochs=0"],
            "trainer.max_epochs=0: the run in {run} was set to 1 epochs; a resume may extend it",
        ),
        (["seed=1,2", "-m"], "a resume continues one run; leave out -m"),
        ([], None),  # finished: said so, nothing to do
    ],
)
@pytest.mark.slow
def test_a_resume_that_cannot_continue_the_run_leaves_it_byte_identical(finished_run, mnist_dir, overrides, said):
    before = snapshot(finished_run)
    result = train_here(*overrides, f"resume={finished_run}")
    lines = (result.stdout + result.stderr).strip().splitlines()
    if said is None:
        assert result.returncode == 0 and lines == [
            f"mnist-train: {finished_run} is finished (1 of 1 epochs, test accuracy "
            f"{json.loads((finished_run / 'metrics.json').read_text())['test_acc']:.4f}); to train it longer, "
            "add trainer.max_epochs=<more than 1>"
        ]
    else:
        assert result.returncode == 2 and len(lines) == 1, lines
        assert lines[0].startswith("mnist-train: error: ") and said.format(run=finished_run) in lines[0], lines
    assert snapshot(finished_run) == before


@pytest.mark.slow
def test_a_finished_run_extended_with_more_epochs_goes_on_from_its_last_epoch(tmp_path, mnist_dir, whole):
    """Its checkpoint folder elsewhere (callbacks.checkpoint.dirpath): resume finds it there."""
    run_dir = tmp_path / "run"
    elsewhere = f"callbacks.checkpoint.dirpath={tmp_path / 'ckpts'}"
    first = train_here(*SMALL, "trainer.max_epochs=2", elsewhere, f"hydra.run.dir={run_dir}")
    assert first.returncode == 0, first.stderr[-3000:]
    two = metrics_of(run_dir)
    extended = resume_here("trainer.max_epochs=3", f"resume={run_dir}")
    assert extended.returncode == 0, extended.stderr[-3000:]
    three = metrics_of(run_dir)
    assert [h["epoch"] for h in three["history"]] == [1, 2, 3] and three["history"][:2] == two["history"]
    assert final_metrics(run_dir) == final_metrics(whole)  # 3 epochs in one go
    assert validation_rows(run_dir) == validation_rows(whole)  # metrics.csv kept the first two epochs' rows
    assert "trainer.max_epochs=3" in (run_dir / ".hydra" / "overrides.yaml").read_text()  # the next resume's base


@pytest.mark.slow
def test_a_resumed_run_still_reads_the_epochs_it_had_passed(tmp_path, mnist_dir):
    """read_epochs keeps its copies of best weights in the checkpoint. The checkpoint callback keeps the
    *lowest* val_acc here, an early epoch: the 3-epoch reading, made after the resume, must test weights
    copied before it."""
    small = (*SMALL[1:], "callbacks.checkpoint.mode=min")
    first = train_here(*small, "trainer.max_epochs=2", "read_epochs=[1,2]", f"hydra.run.dir={tmp_path}")
    assert first.returncode == 0, first.stderr[-3000:]
    before = metrics_of(tmp_path)["read_at_epochs"]
    resumed = train_here(*small, "trainer.max_epochs=3", "read_epochs=[1,2,3]", f"resume={tmp_path}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = metrics_of(tmp_path)["read_at_epochs"]
    assert after["1"] == before["1"] and after["2"] == before["2"]
    assert after["3"] == {**before["2"], "epochs": 3}  # epoch 3 was not the lowest: the best is from before


@pytest.mark.slow
def test_resume_of_a_missing_directory_is_refused(tmp_path):
    result = train_here(f"resume={tmp_path / 'nope'}", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert f"resume={tmp_path / 'nope'}: no such run directory" in result.stderr


def test_a_resumed_run_writes_tensorboard_where_it_started_whatever_the_layout_then(tmp_path):
    from mnist_cnn.tracking.tensorboard import RunTensorBoardLogger, described

    assert (
        Path(RunTensorBoardLogger(str(tmp_path)).log_dir) == tmp_path / described()
    )  # a new run: under what it changes
    started_before = tmp_path / "tensorboard" / "baseline" / "seed=1"  # a run made before this layout
    started_before.mkdir(parents=True)
    (started_before / "events.out.tfevents.1.vm.1.0").write_bytes(b"")
    assert Path(RunTensorBoardLogger(str(tmp_path)).log_dir) == started_before


def test_a_crash_while_saving_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1, "w": torch.ones(3)}, path)

    def half_then_killed(file, mode="r", *args, **kwargs):
        f = open(file, mode, *args, **kwargs)
        real_write = f.write
        f.write = lambda data: (real_write(data[: len(data) // 2]), (_ for _ in ()).throw(KeyboardInterrupt()))
        return f

    monkeypatch.setattr(atomic, "open", half_then_killed, raising=False)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left


@pytest.mark.slow
def test_a_loss_blow_up_stops_the_run_naming_the_step(tmp_path, mnist_dir):
    result = train_here(*SMALL, "model.optimizer.lr=1e30", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2
    err = result.stderr.strip().splitlines()[-1]
    assert err.startswith("mnist-train: error: training loss is") and "at step" in err
    metrics = metrics_of(tmp_path)
    assert metrics["status"] == "failed" and "TrainingDiverged" in metrics["reason"]


SIGNALLED = (*SMALL[1:], "trainer.max_epochs=2", "trainer.limit_train_batches=30")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, mnist_dir):
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    result = train_here(*SIGNALLED, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return final_metrics(run_dir)


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
@pytest.mark.slow
def test_a_signal_mid_epoch_stops_at_a_step_and_resumes_to_the_same_metrics(
    tmp_path, mnist_dir, uninterrupted, signum, status
):
    run_dir = tmp_path / "run"
    last = run_dir / "checkpoints" / "last.ckpt"
    with started(
        [sys.executable, "train.py", *SIGNALLED, f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        deadline = time.monotonic() + COMMAND
        while not last.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        process.send_signal(signum)  # training has begun: the first step checkpoint is at step 3 of 30
        _, err = process.communicate(timeout=COMMAND)
    assert process.returncode == status, err[-3000:]
    assert "Traceback" not in err

    metrics = metrics_of(run_dir)
    assert metrics["status"] == "interrupted" and metrics["signal"] == signal.Signals(signum).name
    assert metrics["step"] % 30 != 0, "not mid-epoch"
    assert torch.load(last, weights_only=True)["global_step"] == metrics["step"]  # saved at that very step
    assert f"Resume with:\n  {metrics['resume_command']}" in err
    assert not list(run_dir.rglob("*.tmp"))

    if signum == signal.SIGTERM:  # the command as printed, in a shell
        resumed = run(["sh", "-c", metrics["resume_command"]], cwd=ROOT)
    else:  # the same command's arguments, in this process
        program, script, *args = shlex.split(metrics["resume_command"])
        assert (program, script) == ("python", "train.py")
        resumed = train_here(*args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert final_metrics(run_dir) == uninterrupted


def test_a_second_signal_while_stopping_changes_nothing(capsys):
    stop = AtStepEnd()
    stop.install()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.signum == signal.SIGTERM  # the first one is acted on; the second only says so
        with pytest.raises(Interrupted) as info:
            stop.stop(step=7, epoch=1)
    finally:
        stop.restore()
    assert (info.value.exit_status, info.value.step) == (143, 7)
    assert "SIGINT: already stopping" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def full_disk_after(monkeypatch, suffix: str, good_writes: int):
    """Writes of files ending in `suffix` fail with ENOSPC halfway through, after `good_writes` of them."""
    seen = []

    def fake_open(file, mode="r", *args, **kwargs):
        f = open(file, mode, *args, **kwargs)
        if str(file).endswith(f"{suffix}.{os.getpid()}.tmp"):
            seen.append(file)
            if len(seen) > good_writes:
                real_write = f.write

                def write(data):
                    real_write(data[: len(data) // 2])
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

                f.write = write
        return f

    monkeypatch.setattr(atomic, "open", fake_open, raising=False)


@pytest.mark.parametrize("failing, good_writes", [("last.ckpt", 1), ("metrics.json", 0)])
@pytest.mark.slow
def test_a_full_disk_leaves_no_temporary_file_and_a_loadable_checkpoint(
    tmp_path, mnist_dir, monkeypatch, failing, good_writes
):
    full_disk_after(monkeypatch, failing, good_writes)
    result = train_here(*SMALL, f"hydra.run.dir={tmp_path}")
    monkeypatch.undo()
    err = result.stderr.strip().splitlines()
    assert result.returncode == 1
    assert err[-1].startswith("mnist-train: error: ") and err[-1].endswith(f"{failing}: No space left on device")
    assert "Traceback" not in "\n".join(err)
    assert not list(tmp_path.rglob("*.tmp"))
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] > 0


@pytest.mark.slow
def test_a_figure_the_full_disk_refuses_is_a_warning_and_the_run_keeps_its_result(tmp_path, mnist_dir, monkeypatch):
    full_disk_after(monkeypatch, "samples.png", 0)
    result = train_here(*SMALL, f"hydra.run.dir={tmp_path}")
    monkeypatch.undo()
    assert result.returncode == 0, result.stderr
    warned = [line for line in (result.stdout + result.stderr).splitlines() if "samples not written" in line]
    assert len(warned) == 1 and "No space left on device" in warned[0], result.stdout + result.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["test_acc"] is not None
    assert (tmp_path / "confusion_matrix.png").is_file() and not (tmp_path / "samples.png").exists()
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    atomic.write_atomically(path, "good")
    full_disk_after(monkeypatch, "metrics.json", 0)
    with pytest.raises(OSError) as info:
        atomic.write_atomically(path, "x" * 10_000)
    assert info.value.filename == str(path) and info.value.errno == errno.ENOSPC
    assert path.read_text() == "good" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_periodic_checkpoints_go_by_time_on_cuda_and_by_steps_elsewhere(monkeypatch):
    from types import SimpleNamespace

    from mnist_cnn.training import checkpoints

    clock = [1000.0]
    monkeypatch.setattr(checkpoints.time, "monotonic", lambda: clock[0])

    def trainer(device, step):
        return SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)), global_step=step)

    by_steps = checkpoints.RunCheckpoint(every_n_steps=100)
    assert by_steps.periodic_save_due(trainer("cpu", 200)) and not by_steps.periodic_save_due(trainer("cpu", 201))
    assert not by_steps.periodic_save_due(trainer("cuda", 200))  # on CUDA: 60 s, not 100 steps
    clock[0] += checkpoints.CUDA_SECONDS_BETWEEN_SAVES
    assert by_steps.periodic_save_due(trainer("cuda", 201))
    by_time = checkpoints.RunCheckpoint(every_n_steps=100, every_n_seconds=5)
    clock[0] += 4
    assert not by_time.periodic_save_due(trainer("cpu", 300))
    clock[0] += 1
    assert by_time.periodic_save_due(trainer("cpu", 301))


@pytest.mark.parametrize("lands", ["while deciding whether to save", "while saving"])
def test_a_run_stops_only_at_a_step_whose_checkpoint_it_wrote(lands):
    """A signal can land anywhere in the callback, between its reads of it; the run must still stop at a
    step it saved (before, one landing after the save was decided stopped a step past last.ckpt)."""
    from types import SimpleNamespace

    from lightning.pytorch.trainer.states import TrainerFn

    from mnist_cnn.training import checkpoints

    callback = checkpoints.RunCheckpoint(every_n_steps=2, dirpath="unused")
    saved, arrived = [], []  # the steps saved at; the step the signal landed in

    def signal_arrives():
        if not arrived:
            arrived.append(trainer.global_step)
            callback.signals._note(signal.SIGTERM, None)

    def save_checkpoint(path, weights_only):
        saved.append(trainer.global_step)
        if lands == "while saving":
            signal_arrives()

    def periodic_save_due(trainer):
        if lands == "while deciding whether to save" and trainer.global_step == 3:  # a step it would not save
            signal_arrives()
        return trainer.global_step % 2 == 0

    callback.periodic_save_due = periodic_save_due
    trainer = SimpleNamespace(
        global_step=1,
        current_epoch=0,
        save_checkpoint=save_checkpoint,
        fast_dev_run=False,
        state=SimpleNamespace(fn=TrainerFn.FITTING),
        sanity_checking=False,
    )
    module = SimpleNamespace(automatic_optimization=True)
    with pytest.raises(Interrupted) as info:
        for trainer.global_step in range(2, 10):
            callback.on_train_batch_end(trainer, module, None, None, trainer.global_step - 1)
    assert arrived and info.value.step == saved[-1], (arrived, info.value.step, saved)


@pytest.mark.slow
def test_an_extension_stopped_by_a_signal_resumes_to_its_new_length(tmp_path, mnist_dir):
    """The run's saved overrides follow an extension that was interrupted: `resume=<dir>` alone goes on
    to the new trainer.max_epochs, not back to the old one."""
    run_dir = tmp_path / "run"
    first = train_here(
        *SIGNALLED[:-2], "trainer.max_epochs=1", "trainer.limit_train_batches=30", f"hydra.run.dir={run_dir}"
    )
    assert first.returncode == 0, first.stderr[-3000:]
    last = run_dir / "checkpoints" / "last.ckpt"
    written = last.stat().st_mtime_ns
    with started(
        [sys.executable, "train.py", "trainer.max_epochs=2", f"resume={run_dir}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        deadline = time.monotonic() + COMMAND
        while last.stat().st_mtime_ns == written and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        process.send_signal(signal.SIGTERM)  # in epoch 2: the first step checkpoint of the extension is written
        _, err = process.communicate(timeout=COMMAND)
    assert process.returncode == 143, err[-3000:]
    assert "- trainer.max_epochs=2" in (run_dir / ".hydra" / "overrides.yaml").read_text()
    resumed = train_here(f"resume={run_dir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert metrics_of(run_dir)["epochs"] == 2


@pytest.mark.slow  # trains
@pytest.mark.parametrize("mode, best_is_last", [("max", True), ("min", False)])
def test_last_ckpt_is_the_best_file_when_the_last_epoch_is_best_and_its_own_state_otherwise(
    tmp_path, mnist_dir, mode, best_is_last
):
    from runs import FEW_BATCHES

    # val_acc rises over these two epochs: mode=min makes the first epoch the best
    result = train_here(*FEW_BATCHES, "test=false", f"callbacks.checkpoint.mode={mode}", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = metrics_of(tmp_path)
    last, best = tmp_path / "checkpoints" / "last.ckpt", Path(metrics["best_checkpoint"])
    assert (metrics["best_epoch"] == 2) is best_is_last
    assert torch.load(last, weights_only=False)["epoch"] == 1  # the last epoch's state, whichever is best
    assert torch.load(best, weights_only=False)["epoch"] == metrics["best_epoch"] - 1
    assert last.samefile(best) is best_is_last  # the same bytes stored once, or two states
    assert sorted(p.name for p in last.parent.iterdir()) == sorted({"last.ckpt", best.name})  # nothing temporary
    # figures=false (FEW_BATCHES): the summary and the record, no pictures and no stage for them
    assert (tmp_path / "model_summary.txt").is_file() and not list(tmp_path.glob("*.png"))
    assert "figures" not in metrics["stages"]
