"""What a user's mistake raises: one hierarchy, each kind with its exit status. A leaf: it imports nothing
of the project, so every module may raise these. mnist_cnn.cli.guarded says any of them in one line on
stderr and exits with its status; anything else that escapes a command is a bug, and shows as one."""


class UserError(ValueError):
    """Bad input: a config value, a file, a checkpoint, a command-line argument. Its message is the one
    line the user sees."""

    status = 2


class ConfigError(UserError):
    """A config value, or a combination of values, that is not allowed."""


class DataUnavailable(UserError):
    """A dataset's files could not be fetched or do not match their checksums."""


class TrainingDiverged(UserError):
    """The training loss became NaN or infinite: the run's settings (a learning rate too high, say)."""
