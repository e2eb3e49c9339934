"""Errors a user can act on. The CLI turns them into `Error: ...` and an exit code."""


class NetcliError(Exception):
    """A mistake in the user's input: config, data, usage. Exit code 2."""

    exit_code = 2


class ConfigError(NetcliError):
    """A config value is wrong; the message names file:line: key.path."""


class DataError(NetcliError):
    """A data file is wrong; the message names the file, row and column."""


class JobFailed(NetcliError):
    """The job ran and failed (gradcheck over tolerance, diverged training). Exit code 1."""

    exit_code = 1


class Interrupted(NetcliError):
    """Training was stopped by Ctrl-C or SIGTERM; the last complete epoch was saved. Exit code 130."""

    exit_code = 130
