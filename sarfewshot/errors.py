"""Exceptions that reach the user as a one-line message instead of a traceback.

The CLI catches :class:`SarFewShotError` and prints ``error: <message>``; every subclass's message
names the file, flag or config key at fault.
"""


class SarFewShotError(Exception):
    """Base class of the toolkit's user-facing errors."""


class ConfigError(SarFewShotError, ValueError):
    """A config key, YAML file or command-line flag is wrong."""


class DatasetError(SarFewShotError, ValueError):
    """A dataset root is missing, has the wrong layout, or holds a bad file."""


class ImageReadError(DatasetError):
    """An image file cannot be decoded (unreadable, truncated, empty or unknown format)."""


class SplitError(SarFewShotError, ValueError):
    """A few-shot split file is invalid or no longer matches its dataset folder."""


class DataVersionError(ConfigError):
    """Finished results were computed on another version of a dataset folder."""


class WeightsError(SarFewShotError, ValueError):
    """A checkpoint is missing, unsafe to load, or does not fit the requested backbone."""


class OutputError(SarFewShotError, OSError):
    """A result, cache or checkpoint cannot be written (the message names the path)."""

    @classmethod
    def from_os(cls, exc: OSError, path: object) -> "OutputError":
        """Wrap ``exc`` with a message that names ``path`` (or the file the OS reported)."""
        where = exc.filename if exc.filename is not None else path
        return cls(exc.errno, f"cannot write {where}: {exc.strerror or exc}")

    def __str__(self) -> str:  # OSError would prefix "[Errno n]"
        return str(self.strerror)


class DependencyError(SarFewShotError, RuntimeError):
    """An installed package cannot work with another (e.g. torch and torchvision builds differ)."""


class UnknownNameError(SarFewShotError, KeyError):
    """A registry lookup failed; the message lists the available names."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss.

    Not a :class:`SarFewShotError`: the evaluation grid stops on those (bad input), while a
    non-finite loss fails only its cell, which is recorded and retried on the next run.
    """
