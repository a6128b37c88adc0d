"""User-facing errors: the CLI prints their message on one line, never a traceback."""


class RsRetrieveError(Exception):
    """Base class for problems the user can fix (bad input, missing files, unknown names)."""


class DataError(RsRetrieveError):
    """A dataset, query or qrels file is missing, malformed or inconsistent."""


class ConfigError(RsRetrieveError):
    """A configuration value, option or registered name is invalid."""


class ModelError(RsRetrieveError):
    """An encoder or its weights cannot be loaded."""


class DiskError(RsRetrieveError):
    """The machine, not the data: a full disk, a quota, an I/O error or a file-size limit."""


class BusyError(RsRetrieveError):
    """Another run holds the output (its lock file names it)."""


class RsRetrieveWarning(UserWarning):
    """Something was repaired or left out on the user's behalf; the CLI prints it as a warning line."""


def warn(message: str) -> None:
    import warnings

    warnings.warn(message, RsRetrieveWarning, stacklevel=2)
