"""User-facing errors.

A user mistake (bad config value, missing file, empty corpus, ...) raises a subclass of
``LmforgeError`` whose message says what to do. The CLI prints that single line and exits
with status 2; anything else is a bug and keeps its traceback.
"""


class LmforgeError(Exception):
    """Base class for mistakes the user can fix; the message must say how."""


class ConfigError(LmforgeError):
    """A config key is unknown or a value has the wrong type or range."""


class DataError(LmforgeError):
    """Input data is missing, empty, unreadable or malformed."""


class TokenizerError(LmforgeError):
    """A tokenizer cannot be trained, loaded or does not match the data."""


class CheckpointError(LmforgeError):
    """A checkpoint directory is missing, incomplete or does not match the config."""


class TrainingError(LmforgeError):
    """Training cannot go on (a non-finite loss or gradient under on_nonfinite=stop, ...)."""
