"""The training step captured as a CUDA graph (mnist_cnn.training.graphed, plugged in by mnist_cnn.training.speed.FastStep): on
CPU, the Lightning plumbing around it (its steps counted, the schedule advanced, the hooks it takes over);
on a GPU, the graph itself."""

import lightning as L
import pytest
import torch
from runs import needs_cuda, train_here

from mnist_cnn.data.module import TensorBatches
from mnist_cnn.runs.build import lab_model
from mnist_cnn.training.graphed import GraphedStep
from mnist_cnn.training.speed import FastStep


class Batches(L.LightningDataModule):
    """1000 random images: 15 batches of 64 and a last one of 40, then 200 for validation."""

    def __init__(self, device: str):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.x = torch.randn(1200, 1, 28, 28, generator=generator).to(device)
        self.y = torch.randint(0, 10, (1200,), generator=generator).to(device)

    def train_dataloader(self):
        return TensorBatches(self.x[:1000], self.y[:1000], 64, shuffle=True, seed=1)

    def val_dataloader(self):
        return TensorBatches(self.x[1000:], self.y[1000:], 100)


def fit(model, accelerator: str, tmp_path, ckpt_path=None, speed: FastStep | None = None, **trainer_args):
    L.seed_everything(0, verbose=False)
    callbacks = [speed or FastStep(), *trainer_args.pop("callbacks", [])]
    trainer = L.Trainer(
        **{"max_epochs": 2, **trainer_args},
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
        default_root_dir=tmp_path,
        callbacks=callbacks,
    )
    trainer.fit(model, datamodule=Batches("cuda" if accelerator == "gpu" else "cpu"), ckpt_path=ckpt_path)
    return trainer


class Uncaptured(GraphedStep):
    """The graphed path's every step run eagerly: what Lightning sees of it, on a machine without CUDA."""

    def __init__(self, loss_of, optimizer):
        self.loss_of, self.optimizer, self.steps, self.settings = loss_of, optimizer, 0, []

    def __call__(self, x, y):
        self.steps += 1
        return self.eager(x, y)

    def release(self):
        pass


class EagerGraph(FastStep):
    """FastStep with the graph's every step run eagerly (Uncaptured)."""

    def captured(self, step, optimizer):
        return Uncaptured(step, optimizer)


@pytest.mark.slow
def test_lightning_counts_schedules_and_logs_the_graphed_step_as_its_own(tmp_path):
    """The graphed path does its own backward and optimiser step; Lightning must count each step, advance
    the schedule once per step and log the same values, leaving the same weights."""
    runs = []
    for graphed in (False, True):
        torch.manual_seed(0)
        model = lab_model("speedrun")
        speed = EagerGraph(channels_last=False, cuda_graph=True) if graphed else FastStep(channels_last=False)
        trainer = fit(model, "cpu", tmp_path / str(graphed), speed=speed, enable_checkpointing=False)
        assert "step" not in model.__dict__ and "backward" not in model.__dict__  # handed back at the end
        schedule = trainer.lr_scheduler_configs[0].scheduler
        runs.append(
            (trainer.global_step, schedule.last_epoch, dict(trainer.callback_metrics), list(model.parameters()))
        )
    (steps, scheduled, metrics, weights), graphed = runs
    assert steps == scheduled == 32 and graphed[:2] == (steps, scheduled)
    assert metrics.keys() == graphed[2].keys() >= {"train_acc", "train_loss_epoch", "val_acc"}
    assert all(torch.equal(metrics[k], graphed[2][k]) for k in metrics)
    assert all(torch.equal(a, b) for a, b in zip(weights, graphed[3]))


@pytest.mark.slow
def test_cuda_graph_true_on_cpu_is_refused_in_one_line(tmp_path, mnist_dir):
    result = train_here("callbacks.speed.cuda_graph=true", "trainer.accelerator=cpu", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip() == (
        "mnist-train: error: callbacks.speed.cuda_graph=true: it needs a CUDA GPU, and this run is on cpu; "
        "or leave it null (on wherever it can run)"
    )


@pytest.mark.gpu
@needs_cuda
def test_the_captured_step_computes_the_uncaptured_one(tmp_path):
    """prose_cnn (SGD with Nesterov momentum and the Keras decay, dropout), two epochs each ending in a
    smaller batch: the graph's weights match the uncaptured run's up to the fused kernel's rounding, and the
    optimiser is left as it was configured. (Adam's fused kernel rounds differently enough that 32 steps
    on random labels drift apart; on MNIST both reach the same accuracies: docs/performance.md.)"""
    weights, steps = [], []
    for graphed in (False, True):
        torch.manual_seed(0)
        model = lab_model("prose_cnn")
        trainer = fit(
            model,
            "gpu",
            tmp_path / str(graphed),
            speed=FastStep(cuda_graph=graphed),
            enable_checkpointing=False,
            precision="32-true",
        )
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
        steps.append(trainer.global_step)
        group = trainer.optimizers[0].param_groups[0]
        assert isinstance(group["lr"], float) and not group["fused"]
    assert steps == [32, 32]
    assert torch.allclose(weights[0], weights[1], rtol=1e-3, atol=1e-5), (weights[0] - weights[1]).abs().max()


@pytest.mark.gpu
@needs_cuda
def test_a_graphed_run_with_dropout_and_checkpoints_resumes(tmp_path):
    """The baseline (Adadelta, dropout) graphed in bf16, checkpointed, then resumed for a third epoch from a
    checkpoint that holds plain learning rates."""
    model = lab_model("baseline")
    trainer = fit(model, "gpu", tmp_path, precision="bf16-mixed")
    assert trainer.global_step == 32 and trainer.callback_metrics["train_acc"] > 0
    checkpoint = torch.load(trainer.checkpoint_callback.best_model_path, weights_only=False)
    assert isinstance(checkpoint["optimizer_states"][0]["param_groups"][0]["lr"], float)
    again = fit(
        lab_model("baseline"),
        "gpu",
        tmp_path / "resumed",
        precision="bf16-mixed",
        max_epochs=3,
        ckpt_path=trainer.checkpoint_callback.best_model_path,
    )
    assert again.global_step == 48 and torch.isfinite(again.callback_metrics["train_loss_epoch"])


class QuietSteps(L.Callback):
    """Makes any synchronising CUDA call an error during the graphed steps that neither log nor end the
    epoch; Lightning's batch-end bookkeeping of such a step runs before the next step's start."""

    def __init__(self, speed: FastStep):
        self.quiet, self.speed = 0, speed

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        step = trainer.global_step + 1
        graphed = self.speed.graphed
        quiet = (
            graphed is not None
            and graphed.graph is not None
            and step % trainer.log_every_n_steps != 0
            and batch_idx + 1 < trainer.num_training_batches
        )
        self.quiet += quiet
        torch.cuda.set_sync_debug_mode("error" if quiet else 0)

    def on_train_epoch_end(self, trainer, pl_module):
        torch.cuda.set_sync_debug_mode(0)


@pytest.mark.gpu
@needs_cuda
def test_graphed_steps_between_logging_never_wait_for_the_gpu(tmp_path):
    """With the progress bar showing the step's loss, as train.py runs: a step that does not log reads
    nothing back from the GPU, so the host runs ahead and the GPU never waits on it."""
    L.seed_everything(0, verbose=False)
    speed = FastStep()
    quiet = QuietSteps(speed)
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="gpu",
        devices=1,
        logger=False,
        log_every_n_steps=5,
        enable_model_summary=False,
        enable_checkpointing=False,
        precision="bf16-mixed",
        deterministic=True,
        default_root_dir=tmp_path,
        callbacks=[speed, quiet],
    )
    try:
        trainer.fit(lab_model("baseline"), datamodule=Batches("cuda"))
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert trainer.global_step == 32 and quiet.quiet >= 15
    assert "train_loss_step" in trainer.progress_bar_metrics
