"""semshare: shared-semantics dual-camera scene parsing, from PyTorch checkpoints to TensorRT engines.

Importing this package is cheap: torch, onnxruntime and tensorrt load only where a command needs them.
"""

__version__ = "0.1.0"

from semshare.errors import SemshareError  # noqa: E402

__all__ = ["SemshareError", "__version__"]
