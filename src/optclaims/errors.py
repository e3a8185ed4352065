"""Errors that mean "the input is wrong", not "the code is wrong": the CLI prints their message
alone (exit code 2); anything else keeps its traceback."""


class ConfigError(ValueError):
    """A config that names an unknown thing or holds an invalid value; says which key and value."""


class HubUnavailableError(RuntimeError):
    """Something needs the Hugging Face hub, and the hub cannot be reached from here."""


class CorpusMismatchError(ValueError):
    """A corpus was built with another manifest hash than the one committed for it."""


class CorruptFileError(ValueError):
    """A file whose content does not match the checksum its manifest records (or that cannot be
    read back at all): refused, never trained on. Delete it and rerun to rebuild it."""
