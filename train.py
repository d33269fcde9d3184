"""`python train.py [overrides]` from the repository root: the same entry point as `mnist-train`."""

from mnist_cnn.cli.train import entry

if __name__ == "__main__":
    entry()
