"""What the network learned: the attribution maps checked three ways (completeness, deletion, randomisation;
their figures on a fully trained run are in docs/explain.md), mnist-explain on a user's images and bad
ones, and a run's figures and projector files."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from runs import in_process
from torchvision.datasets import MNIST

from mnist_cnn.cli import commands
from mnist_cnn.data.datasets import blank_level, normalize
from mnist_cnn.explain.attributions import feature_maps
from mnist_cnn.explain.checks import completeness, deletion, randomisation, reinitialised
from mnist_cnn.explain.figures import explained_figure
from mnist_cnn.inference.loader import load_network

pytestmark = pytest.mark.slow  # a trained checkpoint


@pytest.fixture(scope="module")
def network(trained_run, mnist_dir):
    net, data = load_network(trained_run)
    x = normalize(MNIST(mnist_dir, train=False).data[:100], data["normalize"])
    return net, x, blank_level(data["normalize"], data["dataset"])


def test_integrated_gradients_add_up_to_the_logit_change(network):
    """Completeness, to within 2% of the largest logit change over 50 digits (the path has 32 steps)."""
    net, x, background = network
    assert completeness(net, x[:50], background) < 0.02


def test_blanking_the_most_attributed_pixels_costs_more_than_blanking_random_ones(network):
    net, x, background = network
    found = deletion(net, x[:60], background, pixels=40)
    assert found["most_attributed_blanked"] < found["random_blanked"] - 0.1, found
    assert found["random_blanked"] <= found["before"] + 0.05, found


def test_a_reinitialised_network_gives_different_maps(trained_run, network):
    net, x, background = network
    fresh = reinitialised(trained_run)
    found = randomisation(net, fresh, x[:30], background)
    assert found["signed"] < 0.5, found
    assert randomisation(net, net, x[:20], background)["signed"] > 0.99  # the measure: a network agrees with itself


def test_feature_maps_are_each_blocks_output(network):
    net, x, _ = network
    (maps,) = feature_maps(net, x[:3])  # the baseline: one block (Conv, ReLU, Conv, MaxPool, ReLU, Dropout)
    assert maps.shape == (3, 64, 12, 12) and torch.equal(maps, net[:5](x[:3]).detach())


def test_mnist_explain_draws_a_figure_per_image_and_says_each_bad_one(tmp_path, trained_run, mnist_dir):
    seven = MNIST(mnist_dir, train=False).data[0].numpy()
    Image.fromarray(255 - seven).resize((84, 84)).save(tmp_path / "seven.png")
    (tmp_path / "notes.png").write_text("not an image")
    Image.new("L", (40, 40), 255).save(tmp_path / "blank.png")
    result = in_process(
        commands.explain,
        str(trained_run),
        str(tmp_path / "seven.png"),
        str(tmp_path / "notes.png"),
        str(tmp_path / "blank.png"),
        "--out",
        str(tmp_path / "out"),
    )
    assert result.returncode == 1
    assert result.stdout.startswith(f"{tmp_path / 'seven.png'}: 7 (probability "), result.stdout
    assert (tmp_path / "out" / "seven.explained.png").stat().st_size > 10_000
    errors = result.stderr.strip().splitlines()
    assert errors == [
        f"mnist-explain: error: {tmp_path / 'notes.png'}: not an image (allowed: PNG, JPEG, BMP)",
        f"mnist-explain: error: {tmp_path / 'blank.png'}: no digit found (the image is blank)",
    ], errors
    as_json = in_process(commands.explain, str(trained_run), str(tmp_path / "seven.png"), "--json")
    (found,) = json.loads(as_json.stdout)
    attribution = np.array(found["attribution"])
    assert found["label"] == "7" and [t["label"] for t in found["top3"]][0] == "7" and attribution.shape == (28, 28)
    assert attribution.max() > 0 and not (tmp_path / "seven.explained.png").exists()


def test_where_the_network_hesitates_the_runner_ups_map_is_drawn_beside_on_one_scale(tmp_path, trained_run, mnist_dir):
    test = MNIST(mnist_dir, train=False).data  # test[4] is a 4, test[7] a 9
    for weight in np.linspace(0.1, 0.9, 33):
        blend = (test[4].float() * weight + test[7].float() * (1 - weight)).clamp(0, 255).byte().numpy()
        Image.fromarray(blend).save(tmp_path / "blend.png")
        read = in_process(commands.explain, str(trained_run), str(tmp_path / "blend.png"), "--json")
        (found,) = json.loads(read.stdout)
        if found["top3"][0]["probability"] - found["top3"][1]["probability"] <= 0.3:
            break
    else:
        pytest.fail("no blend of a 4 and a 9 left the network hesitating")
    runner_up = found["runner_up"]
    assert runner_up["label"] == found["top3"][1]["label"] and np.abs(runner_up["attribution"]).max() > 0
    drawn = in_process(commands.explain, str(trained_run), str(tmp_path / "blend.png"), "--out", str(tmp_path))
    assert f"or '{runner_up['label']}'" not in drawn.stdout and (tmp_path / "blend.explained.png").stat().st_size > 0
    maps = [torch.tensor(found["attribution"]), torch.tensor(runner_up["attribution"])]
    fig = explained_figure(blend, maps, [(t["label"], t["probability"]) for t in found["top3"]], "a blend")
    fig.canvas.draw()
    bar = fig.axes[-1]  # the read image, the two maps, the likeliest classes, then the colour bar
    titles = [ax.get_title() for ax in fig.axes[1:3]]
    assert titles == [f"where it looks for '{found['label']}'", f"where it looks for '{runner_up['label']}'"]
    assert len(fig.axes) == 5 and any(label.get_text() for label in bar.get_yticklabels())  # a scale
