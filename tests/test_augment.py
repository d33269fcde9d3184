"""Training-time distortions (data.augment, mnist_cnn.data.augment): seeded, on whole batches, training only."""

import pytest
import torch

from mnist_cnn.data.augment import Distortions
from mnist_cnn.data.module import MNISTDataModule, ResumableBatches

NONE = Distortions(rotation=0, scale=0, shear=0, shift=0, elastic_alpha=0, elastic_sigma=3, thickness=0)
STRONG = Distortions(rotation=15, scale=0.15, shear=10, shift=2, elastic_alpha=2, elastic_sigma=3, thickness=0.3)


def digits(n: int = 32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    x = torch.full((n, 1, 28, 28), -0.5)
    x[:, :, 8:20, 12:16] = 2.0 + torch.rand(n, 1, 12, 4, generator=generator)  # a bar: a "1"
    return x


def test_no_distortion_is_the_identity_and_the_background_stays_put():
    x = digits()
    assert torch.allclose(NONE(x, -0.5, seed=1), x, atol=1e-5)
    blank = torch.full((4, 1, 28, 28), -0.5)
    assert torch.allclose(STRONG(blank, -0.5, seed=1), blank, atol=1e-5)


def test_the_same_seed_repeats_and_another_differs():
    x, distort = digits(), STRONG
    a, b, c = distort(x, -0.5, seed=7), distort(x, -0.5, seed=7), distort(x, -0.5, seed=8)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert not torch.allclose(a, x)
    # each image its own draw: the same image twice in a batch comes out differently
    twice = distort(torch.cat([x[:1], x[:1]]), -0.5, seed=7)
    assert not torch.allclose(twice[0], twice[1])


@pytest.mark.parametrize("kind", ["shift", "rotation"])
def test_each_distortion_moves_ink_within_its_bounds(kind):
    x = digits(64)
    only = Distortions(**{**NONE.__dict__, kind: {"shift": 3.0, "rotation": 30.0}[kind]})
    out = only(x, -0.5, seed=3)

    def ink(t):
        return (t > 0.5).float()

    cols = torch.arange(28.0)

    def centre(t):
        return (ink(t).sum(dim=2) * cols).sum(dim=(1, 2)) / ink(t).sum(dim=(1, 2, 3))

    moved = (centre(out) - centre(x)).abs()
    if kind == "shift":
        assert moved.max() <= 3.0 + 0.6 and moved.max() > 1.0
    else:  # a bar about the centre turns: its width in columns grows
        assert (ink(out).sum(dim=2) > 0).sum(dim=(1, 2)).float().mean() > (ink(x).sum(dim=2) > 0).sum(
            dim=(1, 2)
        ).float().mean()


def test_the_data_module_distorts_training_batches_only_and_a_resumed_epoch_repeats_them(tmp_path):
    module = MNISTDataModule(str(tmp_path), batch_size=8, augment={**NONE.__dict__, "rotation": 20.0})
    module.x_train, module.y_train = digits(40), torch.arange(40)
    module.x_val, module.y_val = digits(16), torch.arange(16)
    plain = MNISTDataModule(str(tmp_path), batch_size=8)
    plain.x_train, plain.y_train = module.x_train, module.y_train

    batches = list(module.train_dataloader())
    reference = list(plain.train_dataloader())
    assert all(torch.equal(y, ry) for (_, y), (_, ry) in zip(batches, reference))  # same order, same labels
    assert all(not torch.allclose(x, rx) for (x, _), (rx, _) in zip(batches, reference))
    assert torch.equal(next(iter(module.val_dataloader()))[0], module.x_val[:8])
    assert torch.equal(list(module.train_dataloader())[3][0], batches[3][0])  # the same epoch: the same draws

    resumed = module.train_dataloader()
    assert isinstance(resumed, ResumableBatches)
    resumed.load_state_dict({"epoch": 0, "processed": 3})
    assert all(torch.equal(a[0], b[0]) for a, b in zip(resumed, batches[3:]))


def test_the_lab_runs_have_no_distortions():
    from hydra import compose, initialize_config_module

    import mnist_cnn.config.schema  # noqa: F401  (registers the schemas the configs name)

    with initialize_config_module("mnist_cnn.conf", version_base="1.3"):
        assert not Distortions(**compose("train").data.augment).distorts
        for experiment in ("lab_baseline", "lab_elu", "speedrun"):
            assert not Distortions(**compose("train", overrides=[f"experiment={experiment}"]).data.augment).distorts
        assert compose("train", overrides=["experiment=handwriting"]).data.augment.rotation == 10.0
