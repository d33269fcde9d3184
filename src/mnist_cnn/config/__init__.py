"""mnist-train's config: its schema (schema.py) and the checks of a composed config (checks.py).
User errors are mnist_cnn.errors'."""
