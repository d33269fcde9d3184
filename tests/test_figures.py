"""The figures a student looks at, clear at a glance: made from small inputs, read back from matplotlib."""

import matplotlib

matplotlib.use("Agg")

import torch  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from mnist_cnn.reports import run_figures as artifacts  # noqa: E402

DIGITS = [str(d) for d in range(10)]
CLOTHES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def test_the_confusion_matrix_shows_its_mistakes_on_a_log_scale_with_a_colour_bar():
    matrix = torch.eye(10, dtype=torch.long) * 1000
    matrix[3, 5], matrix[7, 1] = 5, 1
    fig = artifacts.confusion_figure({"confusion_matrix": matrix.tolist()}, DIGITS)
    ax, bar = fig.axes
    image = ax.images[0]
    assert isinstance(image.norm, LogNorm) and bar.get_ylabel() == "test images (logarithmic scale)"
    # on a linear scale a mistake of 5 against a diagonal of 1000 is 0.005 of the way up: indistinguishable
    assert image.norm(5) > 0.2 and image.norm(1) == 0.0 and image.norm(1000) == 1.0
    assert all(t.get_rotation() == 0 for t in ax.get_xticklabels() + ax.get_yticklabels())
    written = {(t.get_position(), t.get_text()) for t in ax.texts}
    assert ((5, 3), "5") in written and ((1, 7), "1") in written and ((0, 0), "1000") in written
    assert len(ax.texts) == 12  # the empty cells are left blank


def test_long_class_names_are_written_straight_on_two_lines():
    fig = artifacts.confusion_figure({"confusion_matrix": (torch.eye(10, dtype=torch.long) * 100).tolist()}, CLOTHES)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[0] == "T-shirt/\ntop" and labels[9] == "Ankle\nboot"
    assert all(t.get_rotation() == 0 for t in ax.get_xticklabels())


def test_learning_curves_count_whole_epochs():
    history = [
        {"epoch": e, "train_loss": 1 / e, "val_loss": 1.1 / e, "train_acc": 1 - 1 / e, "val_acc": 1 - 1.1 / e}
        for e in range(1, 8)
    ]
    fig = artifacts.learning_curves_figure(history)
    fig.canvas.draw()
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if 1 <= t <= 7]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_a_one_epoch_runs_learning_curves_draw_its_logged_steps_from_epoch_0():
    history = [{"epoch": 1, "train_loss": 0.3, "val_loss": 0.1, "train_acc": 0.9, "val_acc": 0.97}]
    steps = [{"epoch": k / 10, "step": 20 * k, "train_loss": 2 / k} for k in range(1, 11)]
    fig = artifacts.learning_curves_figure(history, steps)
    fig.canvas.draw()
    loss, acc = fig.axes
    drawn = {line.get_label(): line.get_xdata() for line in loss.get_lines()}
    assert list(drawn["train, each logged step (10)"]) == [s["epoch"] for s in steps]
    for ax in (loss, acc):
        assert ax.get_xlim()[0] == 0 and [t for t in ax.get_xticks() if 0 <= t <= 1] == [0, 1]
    long = history * 6  # more epochs than are drawn step by step: the epochs alone
    fig = artifacts.learning_curves_figure([{**h, "epoch": e} for e, h in enumerate(long, 1)], steps)
    assert not any("each logged step" in line.get_label() for line in fig.axes[0].get_lines())


def test_the_samples_are_labelled_and_clothes_numbered_in_the_title():
    images = torch.randint(0, 256, (200, 28, 28), dtype=torch.uint8)
    labels = torch.arange(200) % 10
    digits = artifacts.samples_figure(images, labels, DIGITS)
    assert [t.get_text() for t in digits.axes[0].texts] == [str(i % 10) for i in range(200)]
    assert digits.get_size_inches()[0] >= 13  # each digit about 50 pixels wide at 100 dpi
    clothes = artifacts.samples_figure(images, labels, CLOTHES)
    assert clothes.axes[0].texts[1].get_text() == "1" and "1 Trouser" in clothes._suptitle.get_text()
