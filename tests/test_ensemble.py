"""Several checkpoints read as one: their probabilities averaged in mnist-predict, mnist-export and mnist-test,
a multirun folder standing for its jobs, and mixed datasets refused in one line."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from runs import in_process
from torchvision.datasets import MNIST

from mnist_cnn.cli import commands
from mnist_cnn.data.module import normalize
from mnist_cnn.errors import UserError
from mnist_cnn.inference.ensemble import Ensemble, load_models, members_of
from mnist_cnn.inference.loader import bundled
from mnist_cnn.runs.build import lab_model


def test_the_ensembles_softmax_is_its_networks_mean_softmax():
    torch.manual_seed(0)
    nets = [lab_model("speedrun").net.eval(), lab_model("batchnorm").net.eval(), lab_model("elu").net.eval()]
    x = torch.randn(8, 1, 28, 28)
    with torch.no_grad():
        mean = torch.stack([net(x).softmax(dim=1) for net in nets]).mean(dim=0)
        read = Ensemble(nets)(x).softmax(dim=1)
    assert torch.allclose(read, mean, atol=1e-6)


def test_a_multirun_folder_stands_for_its_jobs_in_job_order(tmp_path):
    (tmp_path / "multirun.yaml").write_text("hydra: {}\n")
    for job in ("10", "2", "0"):
        (tmp_path / job).mkdir()
        (tmp_path / job / "metrics.json").write_text("{}")
    (tmp_path / "report").mkdir()  # no metrics.json: not a job
    assert members_of([tmp_path]) == [tmp_path / "0", tmp_path / "2", tmp_path / "10"]
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "multirun.yaml").write_text("hydra: {}\n")
    with pytest.raises(UserError, match="no finished job"):
        members_of([empty])


@pytest.mark.slow  # a trained checkpoint
def test_predict_with_two_checkpoints_gives_their_mean_probability(tmp_path, trained_run, mnist_dir):
    for i in range(3):
        Image.fromarray(MNIST(mnist_dir, train=False).data[i].numpy()).save(tmp_path / f"{i}.png")
    each = []
    for ckpt in (trained_run, bundled()):
        result = in_process(commands.predict, str(ckpt), str(tmp_path), "--json")
        assert result.returncode == 0, result.stderr
        each.append(np.array([r["probabilities"] for r in json.loads(result.stdout)]))
    result = in_process(commands.predict, str(trained_run), str(bundled()), str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    both = np.array([r["probabilities"] for r in json.loads(result.stdout)])
    assert np.abs(both - (each[0] + each[1]) / 2).max() < 1e-5


@pytest.mark.slow
def test_mnist_test_scores_an_ensemble_and_writes_a_runs_test_report(tmp_path, trained_run):
    out = tmp_path / "report"
    result = in_process(commands.test, str(trained_run), str(bundled()), "--out", str(out))
    assert result.returncode == 0, result.stderr
    scored = json.loads((out / "test.json").read_text())
    report = json.loads((out / "classification_report.json").read_text())
    confusion = np.array(report["confusion_matrix"])
    assert confusion.sum() == scored["test_images"] == 10_000
    assert scored["test_acc"] == np.trace(confusion) / 10_000 and scored["mistakes"] == 10_000 - np.trace(confusion)
    recorded = json.loads((trained_run / "metrics.json").read_text())["test_acc"]
    assert [m["test_acc"] for m in scored["members"]][0] == recorded
    assert f"Ensemble of 2: test accuracy {scored['test_acc']:.4f}" in result.stdout
    for name in ("confusion_matrix.png", "misclassified.png", "classification_report.txt", "confusion_matrix.csv"):
        assert (out / name).stat().st_size > 0


@pytest.mark.slow
def test_export_writes_an_ensemble_that_reads_as_predict_does(tmp_path, trained_run, mnist_dir):
    out = tmp_path / "ensemble.pt2"
    result = in_process(commands.export, str(trained_run), str(bundled()), str(out))
    assert result.returncode == 0, result.stderr
    program = torch.export.load(str(out), extra_files={"metadata.json": ""}).module()
    gray = MNIST(mnist_dir, train=False).data[:50]
    net, data = load_models([trained_run, bundled()])
    with torch.no_grad():
        assert torch.allclose(program(gray.float()), net(normalize(gray, data["normalize"])).softmax(dim=1), atol=1e-4)
    # several checkpoints and no file named: one line, nothing written
    refused = in_process(commands.export, str(trained_run), str(bundled()))
    assert refused.returncode != 0 and "name the file to write" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_networks_of_different_datasets_are_refused_in_one_line(tmp_path, monkeypatch):
    from mnist_cnn.inference import ensemble

    def loaded(path):
        return torch.nn.Identity(), {"dataset": str(path), "normalize": "standard", "origin": {}}

    monkeypatch.setattr(ensemble, "load_network", loaded)
    with pytest.raises(UserError, match="its dataset is fashion_mnist, mnist's is mnist"):
        load_models(["mnist", "fashion_mnist"])


@pytest.mark.slow
def test_explain_and_the_demo_read_with_an_ensemble(tmp_path, trained_run, mnist_dir):
    from mnist_cnn.cli.demo import Reader

    seven = MNIST(mnist_dir, train=False).data[0].numpy()
    Image.fromarray(255 - seven).resize((90, 90)).save(tmp_path / "seven.png")
    explained = in_process(commands.explain, str(trained_run), str(bundled()), str(tmp_path / "seven.png"), "--json")
    assert explained.returncode == 0, explained.stderr
    result = json.loads(explained.stdout)[0]
    assert np.array(result["attribution"]).shape == (28, 28) and np.abs(result["attribution"]).max() > 0
    predicted = in_process(commands.predict, str(trained_run), str(bundled()), str(tmp_path / "seven.png"), "--json")
    assert result["probability"] == pytest.approx(json.loads(predicted.stdout)[0]["probability"], abs=1e-5)
    image, probabilities, where, maps = Reader([str(trained_run), str(bundled())]).read(255 - seven.astype(np.float32))
    assert max(probabilities, key=probabilities.get) == result["label"]
    assert sum(probabilities.values()) == pytest.approx(1, abs=1e-4) and maps.ndim >= 2
