import math
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel
from torch.nn import functional as F

from mnist_cnn.errors import TrainingDiverged, UserError
from mnist_cnn.inference.loader import load_network
from mnist_cnn.models.layers import Dropout, keras_order
from mnist_cnn.reports.run_figures import misclassified_figure
from mnist_cnn.runs.build import lab_model
from mnist_cnn.training.averaging import WeightEMA
from mnist_cnn.training.evaluation import MISTAKES_KEPT, TestReport
from mnist_cnn.training.speed import FastStep, LossWatch, wants_channels_last

LAB_PARAMETERS = {"baseline": 1_199_882, "elu": 329_962, "prose_cnn": 59_933, "speedrun": 321_066, "batchnorm": 325_994}


@pytest.mark.parametrize("cls", LAB_PARAMETERS)
def test_output_shape_and_exact_parameter_count(cls):
    model = lab_model(cls)
    assert sum(p.numel() for p in model.parameters()) == LAB_PARAMETERS[cls]
    assert model(torch.zeros(5, 1, 28, 28)).shape == (5, 10)


@pytest.mark.parametrize("cls", LAB_PARAMETERS)
def test_keras_initialisation(cls):
    """Glorot-uniform weights (bounded by sqrt(6 / (fan_in + fan_out))), zero biases where there are any."""
    for layer in lab_model(cls).net:
        if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)):
            receptive = layer.weight[0, 0].numel()
            fan_in, fan_out = layer.weight.shape[1] * receptive, layer.weight.shape[0] * receptive
            bound = math.sqrt(6 / (fan_in + fan_out))
            assert layer.weight.abs().max() <= bound
            assert layer.weight.abs().max() > 0.9 * bound  # uniform over the whole range
            assert layer.bias is None or torch.count_nonzero(layer.bias) == 0


def test_baseline_uses_keras_adadelta():
    optimizer = lab_model("baseline").configure_optimizers()
    assert isinstance(optimizer, torch.optim.Adadelta)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["rho"], group["eps"]) == (1.0, 0.95, 1e-7)


@pytest.mark.parametrize("cls", ["elu", "prose_cnn"])
def test_sgd_with_keras_time_based_decay(cls):
    model = lab_model(cls)
    config = model.configure_optimizers()
    optimizer, schedule = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert config["lr_scheduler"]["interval"] == "step"
    group = optimizer.param_groups[0]
    assert (group["momentum"], group["nesterov"]) == (0.9, True)
    for _ in range(1000):
        optimizer.step()
        schedule.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01 / (1 + 1e-6 * 1000), rel=1e-12)


def learnable_batch(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise with a bright patch whose position is the label: a task a gradient step can improve.
    (Random labels on noise are not: Adadelta's sign-like first step can overshoot them.)"""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = torch.rand(n, 1, 28, 28, generator=g) * 0.3
    for i, label in enumerate(y.tolist()):
        row, col = divmod(label, 5)
        x[i, 0, 2 + 12 * row : 12 + 12 * row, 1 + 5 * col : 6 + 5 * col] += 1
    return x, y


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("cls", LAB_PARAMETERS)
def test_one_optimiser_step_lowers_the_loss(cls, seed):
    torch.manual_seed(seed)
    model = lab_model(cls)
    model.trainer = SimpleNamespace(estimated_stepping_batches=100)  # the length of a one-cycle schedule
    x, y = learnable_batch(64, seed)
    config = model.configure_optimizers()
    optimizer = config["optimizer"] if isinstance(config, dict) else config
    model.eval()  # no dropout, so the two losses are comparable
    before = F.cross_entropy(model(x), y)
    before.backward()
    optimizer.step()
    with torch.no_grad():
        after = F.cross_entropy(model(x), y)
    assert after < before


def test_predictions_are_probabilities():
    from mnist_cnn.inference.predict import predict

    model = lab_model("elu").eval()
    images = torch.randint(0, 256, (7, 28, 28), dtype=torch.uint8)
    probs = predict(model, images, {"normalize": "standard", "dataset": "mnist"})
    assert probs.shape == (7, 10)
    assert torch.allclose(probs.sum(dim=1), torch.ones(7))
    assert (probs >= 0).all()


def test_architecture_comes_from_arguments():
    model = lab_model("baseline", conv1_channels=8, conv2_channels=16, dense_units=32)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert sum(p.numel() for p in model.parameters()) == 80 + 1168 + (16 * 12 * 12 * 32 + 32) + 330


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("cls", LAB_PARAMETERS)
def test_pooling_before_the_activation_and_flattening_in_the_dense_layer_keep_keras_maths(cls, channels_last):
    """Values and gradients as Keras's layer order computes them: exactly for ReLU in NCHW; to float32
    rounding with ELU (its vectorised expm1 is monotone only to the last bit) and in channels_last (the
    dense layer sums its inputs in memory order there)."""
    torch.manual_seed(0)
    model = lab_model(cls).eval()
    reference = keras_order(model.net)
    assert len(list(reference.parameters())) == len(list(model.parameters()))
    x = torch.randn(16, 1, 28, 28)
    if channels_last:
        model.net.to(memory_format=torch.channels_last)
    results = []
    for net in (model.net, reference):
        model.zero_grad()
        out = net(x)
        out.square().sum().backward()
        results.append([out.detach()] + [p.grad.clone() for p in model.parameters()])
    for ours, keras in zip(*results):
        if cls == "baseline" and not channels_last:
            assert torch.equal(ours, keras)
        assert (ours - keras).abs().max() <= 1e-5 * keras.abs().max()


@pytest.mark.parametrize("p", [0.2, 0.25, 0.5])
def test_cpu_dropout_keeps_1_minus_p_of_the_elements_scaled_as_nn_dropout(p):
    torch.manual_seed(0)
    x = torch.ones(64, 32, 12, 12, requires_grad=True)
    y = Dropout(p).train()(x)
    kept = y != 0
    assert kept.float().mean().item() == pytest.approx(1 - p, abs=0.005)
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / (1 - p)))
    (grad,) = torch.autograd.grad(y.sum(), x)
    assert torch.equal(grad, y.detach())  # the gradient passes through the same mask and scale
    assert torch.equal(Dropout(p).eval()(x), x)


def test_cpu_dropout_masks_repeat_with_the_seed_and_follow_the_input_layout():
    x = torch.randn(8, 16, 6, 6).contiguous(memory_format=torch.channels_last)
    masks = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        masks.append(Dropout(0.5)(x) != 0)
    assert torch.equal(masks[0], masks[1]) and not torch.equal(masks[0], masks[2])
    torch.manual_seed(1)
    assert Dropout(0.5)(x).is_contiguous(memory_format=torch.channels_last)
    assert Dropout(0.5)(torch.randn(8, 100)).shape == (8, 100)


def test_channels_last_is_a_switch_on_cpu_by_default():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert wants_channels_last(None, cpu) and not wants_channels_last(None, cuda)
    assert wants_channels_last(True, cuda) and not wants_channels_last(False, cpu)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    model = lab_model("baseline")
    FastStep().setup(trainer, model, "fit")
    assert model.net[2].weight.is_contiguous(memory_format=torch.channels_last)
    assert not model.net[2].weight.is_contiguous()
    plain = lab_model("baseline")
    FastStep(channels_last=False).setup(trainer, plain, "fit")
    assert plain.net[2].weight.is_contiguous()


def test_a_non_finite_loss_is_noted_on_the_device_and_named_by_its_first_step():
    """The watch reads nothing back per step (a host-device sync on a GPU); the check names the first bad step."""
    watch = LossWatch(torch.device("cpu"), first_step=10)  # resumed at global step 10
    for loss in (1.0, 2.0, float("nan"), float("inf"), 3.0):
        watch.note(torch.tensor(loss))
    with pytest.raises(TrainingDiverged, match=r"training loss is nan at step 12 \(epoch 4, batch 0\)"):
        watch.check(per_epoch=4)


def test_a_finite_run_passes_the_guard():
    watch = LossWatch(torch.device("cpu"), first_step=0)
    for loss in (1.0, 0.5, 1e30):
        watch.note(torch.tensor(loss))
    watch.check(per_epoch=4)  # no error


def test_the_most_confident_mistakes_are_kept_across_batches():
    """Top-k per batch on the device, merged: the same as sorting all wrong answers at once."""
    evaluation = TestReport()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(700, 1, 28, 28, generator=generator)
    y = torch.randint(0, 10, (700,), generator=generator)
    logits = torch.randn(700, 10, generator=generator) * 3
    evaluation.kept = None
    for start in range(0, 700, 64):
        evaluation.keep_mistakes(x[start : start + 64], y[start : start + 64], logits[start : start + 64])
    found = evaluation.mistakes_found()

    probability, predicted = logits.softmax(dim=1).max(dim=1)
    wrong = (predicted != y).nonzero().flatten()
    expected = wrong[probability[wrong].argsort(descending=True)][:MISTAKES_KEPT]
    assert len(wrong) > MISTAKES_KEPT and len(found["true"]) == MISTAKES_KEPT
    assert found["true"] == y[expected].tolist() and found["predicted"] == predicted[expected].tolist()
    assert found["probability"] == pytest.approx(probability[expected].tolist())
    assert torch.equal(found["images"], x[expected, 0])


def test_a_test_set_answered_right_has_no_mistakes_to_show():
    evaluation = TestReport()
    evaluation.kept = None
    y = torch.arange(10)
    evaluation.keep_mistakes(torch.zeros(10, 1, 28, 28), y, F.one_hot(y, 10).float() * 5)
    found = evaluation.mistakes_found()
    assert found["true"] == found["predicted"] == found["probability"] == [] and found["images"].shape == (0, 28, 28)
    figure = misclassified_figure(found, [str(d) for d in range(10)])
    assert "0 shown" in figure._suptitle.get_text()


def test_one_cycle_schedule_spans_the_fit_and_peaks_at_lr():
    model = lab_model("speedrun")
    model.trainer = SimpleNamespace(estimated_stepping_batches=200)
    config = model.configure_optimizers()
    optimizer, schedule = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.param_groups[0]["betas"] == (0.7, 0.9)
    assert config["lr_scheduler"]["interval"] == "step"
    rates = []
    for _ in range(200):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert max(rates) == pytest.approx(0.01) and rates[0] == pytest.approx(0.01 / 25) and rates[-1] < 1e-5


def test_a_test_after_the_fit_reads_the_checkpoints_average_of_the_weights_not_the_weights(tmp_path):
    seen = {}

    class Model(BoringModel):
        def test_step(self, batch, batch_idx):
            seen["weight"] = self.layer.weight.detach().clone()
            return super().test_step(batch, batch_idx)

    model, every_epoch = Model(), ModelCheckpoint(dirpath=tmp_path, save_top_k=-1)
    quiet = dict(logger=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    limits = dict(max_epochs=2, limit_train_batches=4, limit_val_batches=1, limit_test_batches=1)
    trainer = L.Trainer(callbacks=[WeightEMA(decay=0.5), every_epoch], **limits, **quiet)
    trainer.fit(model)
    first = tmp_path / "epoch=0-step=4.ckpt"
    trainer.test(model, ckpt_path=first, verbose=False)
    saved = torch.load(first, weights_only=False)
    average, raw = saved["state_dict"]["layer.weight"], saved["current_model_state"]["layer.weight"]
    assert not torch.equal(average, raw) and torch.equal(seen["weight"], average)


def test_a_checkpoint_whose_weights_no_longer_fit_its_network_is_refused_in_one_line(tmp_path):
    """One written before the flatten moved into the dense layer numbered the layers after it one higher."""
    model = lab_model("baseline")
    old = {
        (
            f"net.{int(k.split('.')[1]) + 1}.{k.split('.')[2]}"
            if k.startswith("net.") and int(k.split(".")[1]) >= 7
            else k
        ): v
        for k, v in model.state_dict().items()
    }
    arguments = {**model.hparams.network["arguments"], "input_shape": [1, 28, 28]}
    torch.save({"state_dict": old, "mnist_cnn": {"model": "BaselineCNN", "network": arguments}}, tmp_path / "old.ckpt")
    with pytest.raises(UserError) as refused:
        load_network(tmp_path / "old.ckpt")
    said = str(refused.value)
    assert (
        said.startswith(f"{tmp_path / 'old.ckpt'}: its weights do not fit mnist_cnn.models.networks.BaselineCNN")
        and "\n" not in said
    )
