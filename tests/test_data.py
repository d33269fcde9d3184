import pytest
import torch
from runs import needs_cuda

from mnist_cnn.data.datasets import DATASETS
from mnist_cnn.data.module import MNISTDataModule, TensorBatches, normalize, split_indices

MNIST = DATASETS["mnist"]


@pytest.mark.parametrize("fraction, n_train", [(0.1, 54000), (0.3, 42000), (0.4, 36000), (0.5, 30000)])
@pytest.mark.parametrize("mode", ["random", "tail"])
def test_split_sizes_match_keras(mode, fraction, n_train):
    train, val = split_indices(60000, fraction, mode, seed=0)
    assert (len(train), len(val)) == (n_train, 60000 - n_train)
    assert len(torch.cat([train, val]).unique()) == 60000  # disjoint and complete


def test_tail_split_is_the_last_fraction_before_shuffling():
    train, val = split_indices(100, 0.3, "tail", seed=123)
    assert torch.equal(train, torch.arange(70))
    assert torch.equal(val, torch.arange(70, 100))


def test_random_split_is_seeded():
    a = split_indices(1000, 0.3, "random", seed=1)
    b = split_indices(1000, 0.3, "random", seed=1)
    c = split_indices(1000, 0.3, "random", seed=2)
    assert torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])
    assert not torch.equal(a[1], torch.arange(700, 1000))  # not simply the tail


def test_unknown_split_or_normalisation_is_refused():
    with pytest.raises(ValueError, match="split='first'"):
        split_indices(10, 0.3, "first", seed=0)
    with pytest.raises(ValueError, match="normalize='zscore'"):
        normalize(torch.zeros(1, 28, 28, dtype=torch.uint8), "zscore")


def test_normalisation_of_the_whole_tensor():
    images = torch.tensor([[0, 255]], dtype=torch.uint8).expand(28, 2).reshape(1, 28, 2)
    unit = normalize(images, "unit")
    assert unit.shape == (1, 1, 28, 2) and unit.dtype == torch.float32
    assert unit.min() == 0 and unit.max() == 1
    standard = normalize(images, "standard")
    assert torch.allclose(standard.min(), torch.tensor(-MNIST.mean / MNIST.std))
    assert torch.allclose(standard.max(), torch.tensor((1 - MNIST.mean) / MNIST.std))


def batches_of(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


def test_batches_cover_every_sample_once_per_epoch_in_a_seeded_order():
    x, y = torch.arange(103).float().view(-1, 1), torch.arange(103)
    epoch = {"n": 0}
    loader = TensorBatches(x, y, batch_size=10, shuffle=True, seed=7, epoch=lambda: epoch["n"])
    first = batches_of(loader)
    assert len(loader) == len(first) == 11 and len(first[-1][1]) == 3  # Keras keeps the last partial batch
    served = torch.cat([b[1] for b in first])
    assert sorted(served.tolist()) == list(range(103))
    assert all(torch.equal(bx.view(-1).long(), by) for bx, by in first)  # images stay with their labels
    assert [torch.equal(a[1], b[1]) for a, b in zip(first, batches_of(loader))] == [True] * 11
    epoch["n"] = 1
    assert not torch.equal(served, torch.cat([b[1] for b in batches_of(loader)]))  # reshuffled per epoch
    again = TensorBatches(x, y, batch_size=10, shuffle=True, seed=7, epoch=lambda: 0)
    assert torch.equal(served, torch.cat([b[1] for b in batches_of(again)]))


def test_evaluation_batches_are_in_order():
    x, y = torch.arange(25).float().view(-1, 1), torch.arange(25)
    assert torch.equal(torch.cat([b[1] for b in TensorBatches(x, y, batch_size=8)]), y)


def test_fast_path_matches_a_dataloader_over_the_same_order():
    """The slicing path serves exactly what a DataLoader serves for the same permutation."""
    x, y = torch.randn(100, 1, 28, 28), torch.randint(0, 10, (100,))
    loader = TensorBatches(x, y, batch_size=16, shuffle=True, seed=3)
    reference = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=16, sampler=loader.order().tolist()
    )
    for (fx, fy), (rx, ry) in zip(loader, reference, strict=True):
        assert torch.equal(fx, rx) and torch.equal(fy, ry)


@pytest.mark.gpu
@needs_cuda
def test_device_resident_batches_on_cuda_match_the_cpu_path():
    x, y = torch.randn(1000, 1, 28, 28), torch.randint(0, 10, (1000,))
    cpu = TensorBatches(x, y, batch_size=64, shuffle=True, seed=5)
    cuda = TensorBatches(x.cuda(), y.cuda(), batch_size=64, shuffle=True, seed=5)
    for (cx, cy), (gx, gy) in zip(cpu, cuda, strict=True):
        assert gx.is_cuda and torch.equal(cx, gx.cpu()) and torch.equal(cy, gy.cpu())


def test_ddp_ranks_get_equal_disjoint_shards():
    x, y = torch.zeros(103, 1), torch.arange(103)
    shards = [TensorBatches(x, y, 10, shuffle=True, seed=1, rank=r, world_size=4) for r in range(4)]
    served = [torch.cat([b[1] for b in s]) for s in shards]
    assert {len(s) for s in shards} == {3} and {len(s) for s in served} == {26}  # 104 = 103 + 1 padded
    assert set(torch.cat(served).tolist()) == set(range(103))


def test_datamodule_on_real_mnist(mnist_dir):
    dm = MNISTDataModule(data_dir=mnist_dir, batch_size=256, validation_split=0.3, split="tail")
    dm.prepare_data()
    dm.setup("fit")
    assert (len(dm.x_train), len(dm.x_val), len(dm.x_test)) == (42000, 18000, 10000)
    assert dm.x_train.shape[1:] == (1, 28, 28) and dm.x_train.dtype == torch.float32
    assert dm.y_train[:5].tolist() == [5, 0, 4, 1, 9]  # the lab's y_train, printed in part I
    assert dm.samples.shape == (200, 28, 28) and dm.samples.dtype == torch.uint8
    assert abs(dm.x_train.mean().item()) < 0.02 and abs(dm.x_train.std().item() - 1) < 0.02
    assert len(dm.train_dataloader()) == 165  # ceil(42000 / 256)


def test_evaluation_batch_defaults_to_the_training_batch_on_cpu():
    module = MNISTDataModule(batch_size=32)
    module.x_val = torch.zeros(5, 1, 28, 28)
    assert module.evaluation_batch_size() == 32
    assert MNISTDataModule(batch_size=32, eval_batch_size=7).evaluation_batch_size() == 7
