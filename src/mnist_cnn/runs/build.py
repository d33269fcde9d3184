"""The objects a composed config builds: a group's (its class refusing a value is one line), the model (the
network its node names, inside the LightningModule that trains it) and, for a notebook or a test, the model a
`model=<option>` builds."""

from __future__ import annotations

from importlib import resources

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mnist_cnn.config.model import ModelConfig
from mnist_cnn.data.datasets import DATASETS
from mnist_cnn.errors import ConfigError
from mnist_cnn.models.classifier import Classifier


def built(group: str, node: DictConfig, **kwargs):
    """A group's object. A value that passed the schema can still be refused by the class it builds
    (a kernel larger than the image): one line naming the group, and for a model its layer sizes. A
    TypeError (an argument the class does not take) is a bug in the schema or the class, and shows as one."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__ or exc
        if not isinstance(cause, (ValueError, RuntimeError)):
            raise
        reason = " ".join(str(cause).split())
        if group == "model":
            sizes = ", ".join(f"model.net.{k}={v}" for k, v in node.items() if "kernel" in k or "pool" in k)
            built_with = f" with {sizes}" if sizes else ""
            raise ConfigError(
                f"model: {node._target_.rpartition('.')[2]} cannot be built{built_with}: {reason}"
            ) from None
        raise ConfigError(f"{group}: {reason}") from None


def model_of(node: DictConfig, dataset: str) -> Classifier:
    """A model node's network (its class and arguments, sized for the dataset's images and classes) and the
    LightningModule that trains it with the node's optimiser and schedule."""
    spec = DATASETS[dataset]
    shape = dict(input_shape=spec.shape, num_classes=len(spec.classes))
    net = built("model", node.net, _convert_="all", **shape)
    arguments = {k: v for k, v in OmegaConf.to_container(node.net, resolve=True).items() if k != "_target_"}
    return Classifier(
        net,
        OmegaConf.to_container(node.optimizer),
        OmegaConf.to_container(node.schedule),
        network={"target": node.net._target_, "arguments": {**arguments, **shape}},
        label_smoothing=node.label_smoothing,
        **shape,
    )


def lab_model(option: str = "baseline", dataset: str = "mnist", **changes) -> Classifier:
    """The model `model=<option>` builds, its network's arguments changed by `changes`: for a notebook or a
    test. Trained outside mnist-train, add mnist_cnn.training.speed.FastStep() to the Trainer's callbacks for its speed."""
    yaml = resources.files("mnist_cnn.conf").joinpath("model", f"{option}.yaml").read_text()
    node = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.create(yaml), {"net": changes})
    return model_of(node, dataset)
