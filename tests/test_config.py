"""The config schema: every config composes; every mistaken value of every key is refused before any
work in at most 3 lines, without a traceback, naming the key."""

import inspect
from dataclasses import fields, is_dataclass
from pathlib import Path

import hydra.utils
import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from runs import run_train, train_here

import mnist_cnn.conf
from mnist_cnn.cli import commands
from mnist_cnn.config import checks
from mnist_cnn.config.signature import schema_of
from mnist_cnn.data.module import MNISTDataModule
from mnist_cnn.models.classifier import Classifier
from mnist_cnn.runs.build import model_of
from mnist_cnn.training.averaging import WeightEMA

CONF = Path(mnist_cnn.conf.__file__).parent
GROUPS = {
    group: sorted(p.stem for p in (CONF / group).glob("*.yaml"))
    for group in ("data", "model", "trainer", "logger", "callbacks", "experiment")
}


def composed(tmp_path, *overrides, name="train"):
    with initialize_config_module("mnist_cnn.conf", version_base="1.3"):
        cfg = compose(name, overrides=[*overrides, f"hydra.runtime.output_dir={tmp_path}"], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    checks.type_network(cfg)  # as the job does first: the network's keys are its constructor's
    return cfg


@pytest.mark.parametrize("group, option", [(g, o) for g, options in GROUPS.items() for o in options])
def test_every_config_composes_checks_and_instantiates(tmp_path, group, option):
    cfg = composed(tmp_path, f"{group}={option}")
    checks.check_train(cfg)
    assert isinstance(instantiate(cfg.data), MNISTDataModule)
    assert isinstance(model_of(cfg.model, cfg.data.dataset), Classifier)
    callbacks = [instantiate(c) for c in cfg.callbacks.values()]
    loggers = [instantiate(c) for c in cfg.logger.values()]
    precision = checks.native_precision(
        cfg.trainer.precision, cfg.trainer.accelerator
    )  # as mnist_cnn.runs.run.Run.build
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers, precision=precision)
    assert isinstance(trainer, L.Trainer)


def test_the_average_of_the_weights_is_a_callbacks_option_and_its_decay_a_key(tmp_path):
    cfg = composed(tmp_path, "callbacks=ema", "callbacks.ema.decay=0.99")
    checks.check_train(cfg)
    ema = instantiate(cfg.callbacks.ema)
    assert isinstance(ema, WeightEMA) and ema._kwargs["avg_fn"].args == (0.99,)


def typed_keys(node: DictConfig, prefix=""):
    """(dotted key, schema field) for every key of a composed config: each one is declared."""
    schema = OmegaConf.get_type(node)
    declared = {f.name: f for f in fields(schema)} if is_dataclass(schema) else {}
    for name in node:
        value = OmegaConf.select(node, name, throw_on_missing=False)
        if name == "hydra":
            continue
        if isinstance(value, DictConfig):
            yield from typed_keys(value, f"{prefix}{name}.")
        else:
            assert name in declared, f"{prefix}{name} has no schema"
            yield f"{prefix}{name}", declared[name]


def test_every_key_of_every_config_has_a_declared_type(tmp_path):
    for option in GROUPS["model"]:
        keys = dict(typed_keys(composed(tmp_path, f"model={option}")))
        assert {
            "seed",
            "data.batch_size",
            "model.optimizer.lr",
            "trainer.precision",
            "callbacks.checkpoint.every_n_steps",
            "logger.tensorboard.name",
        } <= set(keys)


@pytest.mark.parametrize("model", ["baseline", "elu"])
def test_help_says_each_groups_options_and_every_key_with_its_meaning(tmp_path, model):
    """`mnist-train --help` (Hydra's help, its template from mnist_cnn.cli.usage): the keys of the config the
    command line composes, each with the meaning its schema declares."""
    result = train_here(f"model={model}", "logger=mlflow", "--help")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("mnist-train: train one of the lab's CNNs") and "Hydra" not in out and "schema" not in out
    lines = out.splitlines()
    for group, options in GROUPS.items():
        if group not in ("hydra", "experiment_data"):
            (line,) = [line for line in lines if line.startswith(f"  {group}:")]
            assert all(o in line for o in options), line
    assert f"{model}*" in next(line for line in lines if line.startswith("  model:"))
    for key, field in typed_keys(composed(tmp_path, f"model={model}", "logger=mlflow")):
        if key.endswith("_target_"):
            continue
        (line,) = [line for line in lines if line.startswith(f"  {key}: ")]
        assert line.endswith(field.metadata["help"]), line


def bad_values(field) -> list[tuple[str, str]]:
    """(kind, value) mistakes for one key, from its declared type and rule."""
    rule, kind = field.metadata, str(field.type)
    cases = []
    if "choices" in rule:
        cases.append(("unknown option", "nonsense"))
    elif "test" in rule:
        cases.append(("not allowed", rule.get("refused", "many")))
    elif "bool" in kind:
        cases.append(("wrong type", "maybe"))
    elif "List" in kind:
        cases.append(("wrong type", "5"))
    elif "int" in kind or "float" in kind:
        cases.append(("wrong type", "abc"))
    if "ge" in rule or "gt" in rule:
        low = rule.get("ge", rule.get("gt"))
        below = low - 1 if "ge" in rule else low
        cases.append(("out of range", f"[{below}]" if "List" in kind else str(below)))
    if "le" in rule or "lt" in rule:
        high = rule.get("le", rule.get("lt"))
        cases.append(("out of range", str(high + 1 if "le" in rule else high)))
    if "Optional" not in kind and kind != "Any" and not kind.startswith("List") and "_target_" != field.name:
        cases.append(("null", "null"))
    return cases


def schema_cases():
    cases, seen = [], set()
    with initialize_config_module("mnist_cnn.conf", version_base="1.3"):
        for option in GROUPS["model"]:
            cfg = compose(
                "train", overrides=[f"model={option}", "hydra.runtime.output_dir=."], return_hydra_config=True
            )
            HydraConfig.instance().set_config(cfg)
            checks.type_network(cfg)
            for key, field in typed_keys(cfg):
                if option != "baseline" and (not key.startswith("model.") or key.startswith("model.optimizer.")):
                    continue  # keys every model shares are covered once, with the default model
                for kind, value in bad_values(field):
                    extra = [f"model={option}"] if option != "baseline" else []
                    # the fast tier takes each kind of mistake once per section; the slow tier every key
                    first = (key.partition(".")[0], kind) not in seen
                    seen.add((key.partition(".")[0], kind))
                    cases.append(
                        pytest.param(
                            [*extra, f"{key}={value}"],
                            key,
                            id=f"{key}={value} ({kind})",
                            marks=() if first else pytest.mark.slow,
                        )
                    )
    return cases


CROSS_KEY = [
    (["data.validation_split=0.99999"], "data.validation_split"),  # no full training batch
    (["data.validation_split=0.5", "data.batch_size=40000"], "data.validation_split"),
    (["data.validation_split=1e-20"], "data.validation_split"),  # rounds to no validation image
    (["model.optimizer.name=Adam"], "model.optimizer.rho"),  # Adadelta's argument, not Adam's
    (["model.net.kernel_size=30"], "model.net.kernel_size"),  # larger than the image
    (["model=elu", "model.net.pool_size=20"], "model.net.pool_size"),
    (["trainer.accelerator=gpu"], "trainer.accelerator"),
    (["model=elu", "trainer.accelerator=cuda"], "trainer.accelerator"),
    (["trainer.precision=bf17"], "trainer.precision"),
    (["trainer.devices=0"], "trainer.devices"),
    (["model=resnet"], "model=resnet"),
    (["data.batchsize=64"], "data.batchsize"),
    (["resume=/nonexistent/run"], "resume=/nonexistent/run"),
    (["read_epochs=[1,3,5,10]"], "read_epochs"),  # the lab's run has 3 epochs
    (["read_epochs=[1]", "~callbacks.checkpoint"], "read_epochs"),
    (["model=null"], "model=null"),  # Hydra's own refusal names no group
    (["hydra/launcher=null"], "hydra/launcher=null is not allowed"),
    (["+epochs=5"], "epochs is not a known key; did you mean trainer.max_epochs?"),  # + adds no undeclared key
    (["trainer.max_epoch=1"], "did you mean trainer.max_epochs?"),
    (["model.lr=0.1"], "model.lr is not a known key; did you mean model.optimizer.lr?"),
    (
        ["model.dense_units=64"],
        "model.dense_units is not a key of the model node: the network's arguments are "
        "model.net.<argument> (model.net.dense_units)",
    ),
    (["model.cuda_graph=false"], "model.cuda_graph is now callbacks.speed.cuda_graph"),
    (["model.net.dense_unit=64"], "model.net.dense_unit is not an argument of mnist_cnn.models.networks.BaselineCNN"),
    (["data.augment.rotaton=10"], "data.augment.rotaton is not a known key; did you mean data.augment.rotation?"),
    (["model=elu2"], "did you mean model=elu?"),
    (["callbacks=ema", "callbacks.ema.decay=1.5"], "callbacks.ema.decay=1.5 is not allowed"),
    (["model=Baseline"], "did you mean model=baseline?"),  # one rule for keys, options and values, case aside
    (["model.optimizer.name=adam"], "did you mean model.optimizer.name=Adam?"),
    (["trainer.precision=16", "trainer.accelerator=cpu"], "trainer.precision=16: float16 mixed precision is for GPUs"),
    (["data.data_dir=/proc/no-such-place"], "data.data_dir=/proc/no-such-place: MNIST must be fetched into"),
    (["~experiment"], "~experiment"),  # experiment_data is chosen by ${experiment}_${data}
    (["experiment_data=lab_elu_fashion"], "experiment_data=lab_elu_fashion"),  # optional: Hydra would skip it
    (["experiment=seed_elu"], "experiment=seed_elu is now experiment=lab_elu"),  # the old names, renamed
    (["-m", "experiment=lab_elu,seed_baseline"], "experiment=seed_baseline is now experiment=lab_baseline"),
]


@pytest.mark.parametrize("overrides, key", schema_cases() + CROSS_KEY)
def test_a_mistaken_value_is_refused_in_one_line_before_any_work(tmp_path, overrides, key):
    if any(o.endswith(("=gpu", "=cuda")) for o in overrides) and torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    data_dir = tmp_path / "data"
    result = train_here(*overrides, f"hydra.run.dir={tmp_path / 'run'}", env={"MNIST_CNN_DATA": str(data_dir)})
    out, err = result.stdout, result.stderr
    assert result.returncode == 2, err
    assert "Traceback" not in out + err
    assert len((out + err).strip().splitlines()) <= 3, out + err
    line = err.strip().splitlines()[-1]
    assert line.startswith("mnist-train: error: ") and key in line, line
    assert not data_dir.exists()  # nothing was downloaded
    assert not list((tmp_path / "run" / "checkpoints").glob("*"))


def test_folders_that_cannot_be_made_are_refused(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = train_here(f"data.data_dir={blocker}/mnist", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2 and result.stderr.strip() == (
        f"mnist-train: error: data.data_dir={blocker}/mnist: cannot be a folder, {blocker} is a file"
    )
    result = train_here(f"hydra.run.dir={blocker}/run")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert f"{blocker}/run: Not a directory" in result.stderr and "hydra.run.dir" in result.stderr


@pytest.mark.parametrize(
    "override, expected",
    [
        ("seed=notanumber", "mnist-train: error: seed=notanumber is not allowed: expected an integer"),
        ("trainer.accelerator=gpu", "mnist-train: error: trainer.accelerator=gpu: no GPU is visible here"),
    ],
)
@pytest.mark.slow
def test_as_a_user_sees_it(tmp_path, override, expected):
    """The real command in a terminal: the whole output, not only stderr."""
    if "gpu" in override and torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    result = run_train(override, f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) <= 3 and lines[-1].startswith(expected) and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "command, args, expected",
    [
        (commands.export, ["x.ckpt", "--format", "tflite"], "argument --format: invalid choice: 'tflite'"),
        (commands.export, ["x.ckpt", "m.tflite"], "m.tflite: the format cannot be told from the suffix '.tflite'"),
        (
            commands.predict,
            ["x.ckpt", "a.png", "--max-pixels", "0"],
            "argument --max-pixels: invalid positive_int value: '0'",
        ),
        (commands.predict, ["x.ckpt", "a.png", "--output", "xml"], "unrecognized arguments: --output xml"),
        (commands.predict, [], "the following arguments are required: [CKPT ...] IMAGE_OR_FOLDER"),
    ],
)
def test_predict_and_export_refuse_in_one_line(tmp_path, monkeypatch, capsys, command, args, expected):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        command(args)
    out, err = capsys.readouterr()
    assert exit_info.value.code == 2
    assert (
        err.strip().startswith(f"mnist-{command.__name__}: error: {expected}") and len(err.strip().splitlines()) == 1
    ), err
    assert not out and list(tmp_path.iterdir()) == []


def test_plain_run_is_the_labs_first_fit(tmp_path):
    cfg = composed(tmp_path)
    assert cfg.model.net._target_.endswith("BaselineCNN")
    assert (cfg.data.batch_size, cfg.trainer.max_epochs, cfg.data.validation_split) == (256, 3, 0.3)


def test_the_lab_first_run_by_name_is_the_plain_run(tmp_path):
    assert run_settings(tmp_path, "experiment=lab_baseline") == run_settings(tmp_path)


@pytest.mark.slow
def test_a_users_group_file_takes_effect(tmp_path):
    """README's --config-dir recipe: a trainer file of the user's own sets the epochs, since no experiment
    is selected unless named; an experiment named beside it wins for the keys it sets."""
    mine = tmp_path / "my_configs" / "trainer"
    mine.mkdir(parents=True)
    (mine / "long.yaml").write_text("defaults:\n  - default\n\nmax_epochs: 10\n")
    result = train_here("--config-dir", str(tmp_path / "my_configs"), "trainer=long", "--cfg", "job")
    assert result.returncode == 0, result.stderr
    assert OmegaConf.create(result.stdout).trainer.max_epochs == 10
    result = train_here(
        "--config-dir", str(tmp_path / "my_configs"), "trainer=long", "experiment=lab_elu", "--cfg", "job"
    )
    assert OmegaConf.create(result.stdout).trainer.max_epochs == 10  # lab_elu sets 10 as well: its own
    (mine / "long.yaml").write_text("defaults:\n  - default\n\nmax_epochs: 7\n")
    result = train_here(
        "--config-dir", str(tmp_path / "my_configs"), "trainer=long", "experiment=lab_elu", "--cfg", "job"
    )
    assert OmegaConf.create(result.stdout).trainer.max_epochs == 10  # the named experiment's value


@pytest.mark.parametrize("sweep", sorted(p.stem for p in (CONF / "sweep").glob("*.yaml")))
def test_a_sweep_is_a_multirun_without_dash_m(tmp_path, sweep):
    assert composed(tmp_path, f"sweep={sweep}").hydra.mode == RunMode.MULTIRUN


def test_lab_elu_is_the_labs_last_fit(tmp_path):
    cfg = composed(tmp_path, "experiment=lab_elu")
    assert cfg.model.net._target_.endswith("EluCNN")
    assert (cfg.data.batch_size, cfg.trainer.max_epochs, cfg.data.validation_split) == (200, 10, 0.3)
    assert {k: v for k, v in cfg.model.optimizer.items() if v is not None} == {
        "name": "SGD",
        "lr": 0.01,
        "momentum": 0.9,
        "nesterov": True,
    }
    assert dict(cfg.model.schedule) == {"decay": 1e-6, "one_cycle": False}


def run_settings(tmp_path, *overrides) -> dict:
    cfg = OmegaConf.to_container(composed(tmp_path, *overrides))
    del cfg["hydra"]
    return cfg


def test_lab_elu_on_fashion_mnist_is_the_same_run_trained_longer(tmp_path):
    lab = run_settings(tmp_path, "experiment=lab_elu", "data=fashion_mnist", "~experiment_data")
    assert lab["trainer"]["max_epochs"] == 10
    for order in (["data=fashion_mnist", "experiment=lab_elu"], ["experiment=lab_elu", "data=fashion_mnist"]):
        cfg = run_settings(tmp_path, *order)
        assert cfg["trainer"].pop("max_epochs") == 40
        assert cfg == {**lab, "trainer": {k: v for k, v in lab["trainer"].items() if k != "max_epochs"}}
    assert run_settings(tmp_path, "data=fashion_mnist", "experiment=lab_elu", "trainer.max_epochs=10") == lab


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF / "experiment_data").glob("*.yaml")))
def test_every_experiment_data_config_applies_to_a_real_pair(tmp_path, name):
    """Chosen by ${experiment}_${data} and optional: a misnamed file would silently never apply."""
    pairs = {f"{e}_{d}": (e, d) for e in GROUPS["experiment"] for d in GROUPS["data"]}
    assert name in pairs, f"experiment_data/{name}.yaml names no experiment_data pair: {sorted(pairs)}"
    experiment, data = pairs[name]
    cfg = composed(tmp_path, f"experiment={experiment}", f"data={data}")
    checks.check_train(cfg)
    assert cfg.hydra.runtime.choices.experiment_data == name
    without = run_settings(tmp_path, f"experiment={experiment}", f"data={data}", "~experiment_data")
    assert run_settings(tmp_path, f"experiment={experiment}", f"data={data}") != without


def test_an_optimizer_switch_that_unsets_the_old_arguments_is_accepted(tmp_path):
    cfg = composed(tmp_path, "model.optimizer.name=Adam", "model.optimizer.lr=0.001", "model.optimizer.rho=null")
    checks.check_train(cfg)
    model = model_of(cfg.model, cfg.data.dataset)
    assert type(model.configure_optimizers()).__name__ == "Adam"


def test_one_distortion_is_set_like_any_key_and_the_others_keep_their_values(tmp_path):
    """On experiment=handwriting the others keep its values; on the lab's runs, zero (none)."""
    cfg = composed(tmp_path, "experiment=handwriting", "data.augment.rotation=12")
    assert dict(cfg.data.augment) == {
        "rotation": 12.0,
        "scale": 0.15,
        "shear": 5.0,
        "shift": 2.0,
        "elastic_alpha": 2.0,
        "elastic_sigma": 3.0,
        "thickness": 0.15,
    }
    cfg = composed(tmp_path, "data.augment.shift=3")
    assert dict(cfg.data.augment) == {
        "rotation": 0.0,
        "scale": 0.0,
        "shear": 0.0,
        "shift": 3.0,
        "elastic_alpha": 0.0,
        "elastic_sigma": 3.0,
        "thickness": 0.0,
    }
    assert instantiate(cfg.data, _convert_="all").distortions.shift == 3.0


@pytest.mark.parametrize("option", GROUPS["model"])
def test_each_network_is_typed_by_its_constructor(tmp_path, option):
    """A network's keys, types, defaults and meanings are its constructor's (mnist_cnn.config.signature): the
    composed node holds every argument but the dataset's shape and class count, each with the signature's
    default and a meaning from the docstring."""
    cfg = composed(tmp_path, f"model={option}")
    checks.type_network(cfg)
    cls = hydra.utils.get_class(cfg.model.net._target_)
    parameters = inspect.signature(cls).parameters
    assert set(cfg.model.net) - {"_target_"} == set(parameters) - {"input_shape", "num_classes"}
    for f in fields(OmegaConf.get_type(cfg.model.net)):
        if f.name != "_target_":
            assert f.metadata["help"], f.name
            default = parameters[f.name].default
            assert cfg.model.net[f.name] == (list(default) if isinstance(default, tuple) else default), f.name


def test_the_data_modules_schema_is_its_constructor():
    parameters = inspect.signature(MNISTDataModule).parameters
    schema = {f.name: f for f in fields(schema_of(MNISTDataModule))}
    assert set(schema) - {"_target_"} == set(parameters)
    assert all(schema[name].default == p.default for name, p in parameters.items() if name != "augment")
    assert schema["batch_size"].metadata == {"help": "training batch size (Keras's batch_size)", "ge": 1}


def test_mlflows_store_is_mlflows_environment_variable_else_a_file_under_outputs(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert composed(tmp_path, "logger=mlflow").logger.mlflow.tracking_uri == "http://tracking.example:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert composed(tmp_path, "logger=mlflow").logger.mlflow.tracking_uri == "sqlite:///outputs/mlflow.db"
    given = composed(tmp_path, "logger=mlflow", "logger.mlflow.tracking_uri=sqlite:///elsewhere.db")
    assert given.logger.mlflow.tracking_uri == "sqlite:///elsewhere.db"
