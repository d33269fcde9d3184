"""The lab's own Keras code for Part III (the baseline CNN), timed one epoch at a time: the yardstick
the project's fp32 epoch is held to. Run with a Python that has TensorFlow's CPU build; it is not one
of the project's dependencies:

    python -m venv /tmp/tf && /tmp/tf/bin/pip install tensorflow-cpu
    /tmp/tf/bin/python scripts/keras_lab.py [--data-dir DIR] [--repeats 2]

python -m benchmarks.lab_epochs --against <commit> --keras-python /tmp/tf/bin/python runs it beside the project's epochs. Prints one
JSON line: each epoch's wall time (model.fit with validation_split=0.3, as the lab's first run, one
epoch, a fresh model each time, so the first includes building the graph), and the versions.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's format): a big-endian header of dimension sizes, then uint8 data."""
    data = path.read_bytes()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data-dir", default=os.environ.get("MNIST_CNN_DATA") or os.path.expanduser("~/.cache/mnist_cnn")
    )
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    import keras
    import tensorflow as tf
    from keras.layers import Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D
    from keras.models import Sequential

    raw = Path(args.data_dir) / "MNIST" / "raw"
    x_train = idx(raw / "train-images-idx3-ubyte").reshape(60000, 28, 28, 1).astype("float32") / 255
    y_train = keras.utils.to_categorical(idx(raw / "train-labels-idx1-ubyte"), 10)
    seconds = []
    for _ in range(args.repeats):
        # The lab's Part III, as written; Adadelta with Keras 2.3's defaults, which the lab ran on.
        model = Sequential(
            [
                Input((28, 28, 1)),
                Conv2D(32, kernel_size=(3, 3), activation="relu"),
                Conv2D(64, (3, 3), activation="relu"),
                MaxPooling2D(pool_size=(2, 2)),
                Dropout(0.25),
                Flatten(),
                Dense(128, activation="relu"),
                Dropout(0.5),
                Dense(10, activation="softmax"),
            ]
        )
        model.compile(
            loss=keras.losses.categorical_crossentropy,
            optimizer=keras.optimizers.Adadelta(learning_rate=1.0, rho=0.95, epsilon=1e-7),
            metrics=["accuracy"],
        )
        start = time.perf_counter()
        history = model.fit(x_train, y_train, batch_size=256, epochs=1, verbose=0, validation_split=0.3)
        seconds.append(time.perf_counter() - start)
    print(
        json.dumps(
            {
                "epoch_seconds": seconds,
                "best_epoch_seconds": min(seconds),
                "val_accuracy": history.history["val_accuracy"][-1],
                "tensorflow": tf.__version__,
                "keras": keras.__version__,
                "threads": tf.config.threading.get_intra_op_parallelism_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
