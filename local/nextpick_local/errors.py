"""The two ways a command fails, shared by the CLI and the commands it dispatches to."""


class UsageError(Exception):
    """Bad arguments (exit 2)."""


class CommandError(Exception):
    """The command could not do its job (exit 1)."""
