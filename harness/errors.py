"""Errors the harness raises for bad input; each message names the problem and the fix."""


class HarnessError(Exception):
    """Base class: a user-facing error whose message is one line that says what to do."""


class UnknownName(HarnessError, KeyError):
    """An unknown section id or backend name; the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class BadValue(HarnessError, ValueError):
    """A command-line value that cannot be used (a file where a folder belongs, a device this machine lacks)."""


class BadImage(HarnessError, ValueError):
    """A user image or mask that cannot be used as given."""


class BackendUnavailable(HarnessError):
    """A backend cannot run here (no weights, no CUDA, too little memory); cases on it skip with this line."""


class WeightsUnavailable(BackendUnavailable):
    """Model weights are absent, gated or unreachable; the message says how to get them."""


class GoldenError(HarnessError):
    """A golden file is missing, corrupt, or does not match."""
