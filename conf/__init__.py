"""The Hydra configs, installed with the package as mnist_cnn.conf (see pyproject.toml)."""
