"""Errors a user can act on. Each names the file, record and field where it can."""


class MiError(Exception):
    """Base class: the CLI prints these without a traceback and exits non-zero."""


class ConfigError(MiError):
    """A config file is missing, malformed, or has an unknown key or a wrong type."""


class InputError(MiError):
    """An input file or record cannot be used (raised in --strict mode or for fatal input)."""


class CheckpointError(MiError):
    """A checkpoint cannot be loaded: missing, corrupted, foreign, or of another format version."""
