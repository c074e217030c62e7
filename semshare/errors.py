"""The errors semshare raises on purpose.

Every message says what is wrong and how to fix it, on one line; the CLI prints it and exits with the
class's exit code, never with a traceback.
"""


class SemshareError(Exception):
    """A problem the user can fix (bad input, bad argument, missing file)."""

    exit_code = 2


class CheckpointError(SemshareError):
    """A checkpoint that cannot be read or does not fit the model."""


class MissingDependencyError(SemshareError):
    """An optional package or native library (TensorRT, CUDA, the plugin library) is not available."""

    exit_code = 3


class VerificationError(SemshareError):
    """An artefact failed its numeric check against the PyTorch reference."""

    exit_code = 4
