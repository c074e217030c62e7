"""``semshare bench``: honest latency and throughput of the torch, onnxruntime and tensorrt backends.

Importing this package is cheap; torch, ONNX Runtime and TensorRT load inside the backends.
"""

from semshare.bench.run import SCHEMA, BenchConfig, run_bench

__all__ = ["SCHEMA", "BenchConfig", "run_bench"]
