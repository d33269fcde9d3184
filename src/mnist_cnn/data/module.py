"""MNIST (or Fashion-MNIST) as a LightningDataModule: verified files, one normalised tensor per split,
held on the training device and sliced into batches there."""

from __future__ import annotations

import logging
import math
import os
import warnings
from dataclasses import asdict
from typing import Annotated, Callable, Literal

import lightning as L
import torch
from annotated_types import Ge, Interval
from torchvision import datasets as torchvision_datasets

from mnist_cnn.data.augment import Distortions
from mnist_cnn.data.datasets import DATASETS, NORMALIZE, SPLITS, blank_level, default_data_dir, normalize

log = logging.getLogger(__name__)
# Lightning's CombinedLoader wraps every loader, these batches included, in torch's LeafSpec, which torch 2.14
# deprecates: a notice between two libraries that tells a user nothing.
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning)


# The evaluation batch when data.eval_batch_size is null, by device: on a GPU a large batch shortened the
# epoch; on a CPU it made validation slower (cache misses), so CPU keeps the training batch. Figures:
# docs/performance.md, "Earlier measurements", the GPU switches.
CUDA_EVAL_BATCH_SIZE = 6000


def split_indices(n: int, validation_split: float, mode: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and validation indices. 'tail' is Keras's validation_split: the last fraction,
    taken before any shuffling; 'random' is a seeded random subset of that size."""
    n_train = train_size(n, validation_split)
    if mode == "tail":
        order = torch.arange(n)
    elif mode == "random":
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    else:
        raise ValueError(f"split={mode!r}: allowed values are {', '.join(SPLITS)}")
    return order[:n_train].sort().values, order[n_train:].sort().values


def train_size(n: int, validation_split: float) -> int:
    return int(n * (1.0 - validation_split))  # Keras's own rounding


class TensorBatches:
    """Batches sliced from tensors that already sit on the training device.

    Written instead of a DataLoader because MNIST fits in memory many times over: a DataLoader
    builds every batch from per-sample Python calls, this takes one index_select per batch.
    Under DDP each rank takes every world_size-th sample of the (padded) order, as
    DistributedSampler does.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        epoch: Callable[[], int] = lambda: 0,
        rank: int = 0,
        world_size: int = 1,
        distort: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
    ):
        self.x, self.y, self.distort = x, y, distort
        self.batch_size, self.shuffle, self.seed, self.epoch = batch_size, shuffle, seed, epoch
        self.rank, self.world_size = rank, world_size
        self.per_rank = math.ceil(len(x) / world_size)

    def __len__(self) -> int:
        return math.ceil(self.per_rank / self.batch_size)

    def order(self) -> torch.Tensor:
        """This rank's sample indices for the current epoch, in the order they are served."""
        n = len(self.x)
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch())
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        padding = self.per_rank * self.world_size - n
        if padding:
            order = torch.cat([order, order[:padding]])
        return order[self.rank :: self.world_size]

    def __iter__(self):
        if not self.shuffle and self.world_size == 1:  # contiguous views: no copy at all
            for start in range(0, len(self.x), self.batch_size):
                yield self.x[start : start + self.batch_size], self.y[start : start + self.batch_size]
            return
        order = self.order().to(self.x.device)
        for start in range(self.first_batch() * self.batch_size, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            x = self.x.index_select(0, idx)
            yield x if self.distort is None else self.distort(x, start // self.batch_size), self.y.index_select(0, idx)

    def first_batch(self) -> int:
        return 0


class ResumableBatches(TensorBatches):
    """Training batches that resume mid-epoch where a checkpoint left off, in the same order.

    Lightning saves state_dict() into checkpoints and hands it back before iterating again. The
    count comes from the trainer (`processed`: batches trained on), not from this iterator, which
    Lightning's prefetching runs one batch ahead."""

    def __init__(self, *args, processed: Callable[[], int] = lambda: 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.processed, self.skip = processed, 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch(), "processed": self.processed()}

    def load_state_dict(self, state: dict) -> None:
        self.skip = state["processed"] if state["processed"] < len(self) else 0

    def first_batch(self) -> int:
        skip, self.skip = self.skip, 0  # only the first epoch after a resume is partial
        return skip


class MNISTDataModule(L.LightningDataModule):
    """MNIST (or another dataset of mnist_cnn.data.datasets.DATASETS: its files, constants, class names and shape),
    split into training and validation images and held on the training device. Its hyperparameters go into
    every checkpoint, so predict knows the dataset and normalisation.

    Args:
        data_dir: folder that holds MNIST/raw/ (FashionMNIST/raw/); null: $MNIST_CNN_DATA, else
            ~/.cache/mnist_cnn, shared by every run and job, so fetched once
        batch_size: training batch size (Keras's batch_size)
        eval_batch_size: validation and test batch size; null: batch_size on CPU, 6000 on CUDA
        validation_split: fraction of the training images held out for validation
        split: random (seeded) or tail (Keras: the last fraction, before shuffling)
        normalize: standard (the dataset's mean and std) or unit (x / 255, as the lab)
        seed: seeds the split, the batch order and the distortions
        dataset: mnist or fashion_mnist (data=fashion_mnist)
        augment: training-time distortions (experiment=handwriting); all zero: none
    """

    def __init__(
        self,
        data_dir: str | None = None,
        batch_size: Annotated[int, Ge(1)] = 256,
        eval_batch_size: Annotated[int, Ge(1)] | None = None,
        validation_split: Annotated[float, Interval(gt=0, lt=1)] = 0.3,
        split: Literal[SPLITS] = "random",
        normalize: Literal[NORMALIZE] = "standard",
        seed: Annotated[int, Interval(ge=0, le=2**32 - 1)] = 0,
        dataset: Literal[tuple(DATASETS)] = "mnist",
        augment: Distortions = Distortions(),
    ):
        super().__init__()
        distortions = augment if isinstance(augment, Distortions) else Distortions(**augment)
        self.save_hyperparameters(ignore=["augment"])
        self.hparams["augment"] = asdict(distortions)  # plain containers: a checkpoint loads with weights_only
        if dataset not in DATASETS:
            raise ValueError(f"dataset={dataset!r}: allowed values are {', '.join(DATASETS)}")
        self.dataset, self.spec = dataset, DATASETS[dataset]
        self.classes = list(self.spec.classes)
        self.data_dir = os.path.expanduser(data_dir or default_data_dir())
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.validation_split, self.split, self.normalize, self.seed = validation_split, split, normalize, seed
        self.distortions = distortions if distortions.distorts else None  # training batches only
        self.file_sha256: dict[str, str] = {}
        self.samples: torch.Tensor | None = None  # the first 200 training images, uint8, as the lab shows them
        self.sample_labels: torch.Tensor | None = None  # and their labels

    def prepare_data(self) -> None:
        if not self.file_sha256:  # fit and test each call this; verify once
            self.file_sha256 = self.spec.ensure(self.data_dir)

    def setup(self, stage: str | None = None) -> None:
        if hasattr(self, "x_train"):
            return
        device = self.trainer.strategy.root_device if self.trainer else torch.device("cpu")
        files = getattr(torchvision_datasets, self.spec.folder)  # torchvision's reader of the dataset's IDX files
        train, test = files(self.data_dir, train=True), files(self.data_dir, train=False)
        self.samples, self.sample_labels = train.data[:200].clone(), train.targets[:200].clone()
        x = normalize(train.data, self.normalize, self.dataset)
        train_idx, val_idx = split_indices(len(x), self.validation_split, self.split, self.seed)
        self.x_train, self.y_train = x[train_idx].to(device), train.targets[train_idx].to(device)
        self.x_val, self.y_val = x[val_idx].to(device), train.targets[val_idx].to(device)
        self.x_test = normalize(test.data, self.normalize, self.dataset).to(device)
        self.y_test = test.targets.to(device)
        log.info(
            "Data: %s, %s train, %s validation, %s test images (%s, on %s)",
            self.spec.title,
            f"{len(self.x_train):,}",
            f"{len(self.x_val):,}",
            f"{len(self.x_test):,}",
            self.data_dir,
            device,
        )

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        """The batches are already on the training device; Lightning's generic move walks the batch
        anyway, which showed in the Trainer's cost per step (docs/performance.md, "Earlier measurements")."""
        if all(isinstance(t, torch.Tensor) and t.device == device for t in batch):
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def _batches(self, x, y, batch_size, cls=TensorBatches, **kwargs) -> TensorBatches:
        trainer = self.trainer
        return cls(
            x,
            y,
            batch_size,
            seed=self.seed,
            rank=trainer.global_rank if trainer else 0,
            world_size=trainer.world_size if trainer else 1,
            **kwargs,
        )

    def train_dataloader(self) -> ResumableBatches:
        trainer = self.trainer
        epoch = (lambda: trainer.current_epoch) if trainer else (lambda: 0)
        return self._batches(
            self.x_train,
            self.y_train,
            self.batch_size,
            ResumableBatches,
            shuffle=True,
            epoch=epoch,
            processed=(lambda: trainer.fit_loop.epoch_loop.batch_progress.current.processed)
            if trainer
            else (lambda: 0),
            distort=self.distorter(epoch) if self.distortions else None,
        )

    def distorter(self, epoch: Callable[[], int]) -> Callable[[torch.Tensor, int], torch.Tensor]:
        """Distorts training batch number b of the current epoch, seeded by (seed, epoch, b): the same
        distortions when a run repeats or resumes."""
        background = self.background()
        return lambda x, b: self.distortions(
            x, background, seed=((self.seed * 100_003 + epoch()) * 1_000_003 + b) % 2**63
        )

    def background(self) -> float:
        """A blank pixel in the network's input units: a distortion's fill, an attribution's baseline."""
        return blank_level(self.normalize, self.dataset)

    def evaluation_batch_size(self) -> int:
        if self.eval_batch_size:
            return self.eval_batch_size
        return CUDA_EVAL_BATCH_SIZE if self.x_val.device.type == "cuda" else self.batch_size

    def val_dataloader(self) -> TensorBatches:
        return self._batches(self.x_val, self.y_val, self.evaluation_batch_size())

    def test_dataloader(self) -> TensorBatches:
        return self._batches(self.x_test, self.y_test, self.evaluation_batch_size())
