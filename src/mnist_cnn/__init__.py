"""The 2020 ENSIIE Keras MNIST CNN lab, reimplemented with PyTorch Lightning and Hydra."""
