"""Run a semshare TensorRT engine: ``with TensorRTRunner("model.engine") as r: outputs = r.infer(feed)``.

Device buffers, the stream and the timing events come from cuda-python (``cuda.bindings.runtime``, or the older
``cuda.cudart`` spelling), with pycuda as the fallback a JetPack image may have instead. Execution is
``set_tensor_address`` + ``execute_async_v3``, optionally replayed from a captured CUDA graph. Each call records
the GPU compute time (CUDA events around the enqueue) and the end-to-end time (host clock around copies in,
compute and copies out), so callers can report both (TENSORRT_NOTES.md, "Honest FPS"). A CUDA graph TensorRT cannot
be captured into is given up as trtexec does: one warning, plain enqueue from then on (docs/tensorrt.md).

Loading checks the engine's manifest against the running TensorRT version and GPU and refuses a mismatch
(:func:`semshare.engine.manifest.check_engine_compatible`) before TensorRT sees the bytes.
"""

from __future__ import annotations

import ctypes
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from semshare.errors import MissingDependencyError, SemshareError

if TYPE_CHECKING:
    import tensorrt as trt

CUDA_INSTALL_HINT = "install cuda-python (`pip install semshare[trt]`) or, on a JetPack image, pycuda"
CUDA_ERROR_INSUFFICIENT_DRIVER = 35  # cudaErrorInsufficientDriver


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


def driver_mismatch_hint(driver: int, runtime: int, package: str) -> str:
    """The fix for cudaErrorInsufficientDriver, from cudaDriverGetVersion / cudaRuntimeGetVersion (e.g. 12060)."""
    if driver == 0:
        return "no NVIDIA driver was found (libcuda.so): install the driver, or run on the GPU machine"
    if runtime > driver:
        major = driver // 1000
        return (f"cuda-python {package} is built for CUDA {runtime // 1000}.{runtime % 1000 // 10} but this driver "
                f"supports CUDA {major}.{driver % 1000 // 10}: pip install 'cuda-python>={major},<{major + 1}' "
                "(JetPack 6 is CUDA 12)")
    return ""


class _CudaPython:
    """The CUDA runtime through cuda-python; every call checks its error code."""

    name = "cuda-python"

    def __init__(self) -> None:
        try:
            from cuda.bindings import runtime as rt
        except ImportError:
            from cuda import cudart as rt  # cuda-python < 12.6 spelling
        self.rt = rt

    def _check(self, result: Any, what: str) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            _, msg = self.rt.cudaGetErrorString(err)
            text = msg.decode() if isinstance(msg, bytes) else str(msg)
            hint = self.driver_hint() if int(err) == CUDA_ERROR_INSUFFICIENT_DRIVER else ""
            raise SemshareError(f"CUDA {what} failed: {text}" + (f"; {hint}" if hint else ""))
        return rest[0] if len(rest) == 1 else rest

    def driver_hint(self) -> str:
        """Why the driver is 'insufficient' and the fix: no driver at all, or a cuda-python built for a newer
        CUDA than the driver (cuda-python 13 on JetPack 6's CUDA 12.6 driver)."""
        _, driver = self.rt.cudaDriverGetVersion()
        _, runtime = self.rt.cudaRuntimeGetVersion()
        return driver_mismatch_hint(int(driver), int(runtime), _package_version("cuda-python"))

    def device_info(self, device: int = 0) -> dict[str, str]:
        rt = self.rt
        self._check(rt.cudaSetDevice(device), "cudaSetDevice")
        props = self._check(rt.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
        ver = self._check(rt.cudaRuntimeGetVersion(), "cudaRuntimeGetVersion")
        drv = self._check(rt.cudaDriverGetVersion(), "cudaDriverGetVersion")
        name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
        return {"name": name.strip("\x00 "), "compute_capability": f"{props.major}.{props.minor}",
                "cuda_runtime": f"{ver // 1000}.{(ver % 1000) // 10}", "cuda_driver": f"{drv // 1000}.{(drv % 1000) // 10}",
                "memory_gib": f"{props.totalGlobalMem / (1 << 30):.1f}", "binding": self.name}

    def malloc(self, nbytes: int) -> int:
        return int(self._check(self.rt.cudaMalloc(max(nbytes, 1)), "cudaMalloc"))

    def free(self, ptr: int) -> None:
        self._check(self.rt.cudaFree(ptr), "cudaFree")

    def host_array(self, shape: tuple[int, ...], dtype: np.dtype) -> tuple[np.ndarray, int]:
        """A pinned (page-locked) host array, for truly asynchronous copies; returns (array, pointer)."""
        nbytes = max(int(np.prod(shape)) * dtype.itemsize, 1)
        ptr = int(self._check(self.rt.cudaMallocHost(nbytes), "cudaMallocHost"))
        return _host_view(ptr, nbytes)[: int(np.prod(shape)) * dtype.itemsize].view(dtype).reshape(shape), ptr

    def free_host(self, ptr: int) -> None:
        self._check(self.rt.cudaFreeHost(ptr), "cudaFreeHost")

    def stream(self) -> Any:
        return self._check(self.rt.cudaStreamCreate(), "cudaStreamCreate")

    def destroy_stream(self, stream: Any) -> None:
        self._check(self.rt.cudaStreamDestroy(stream), "cudaStreamDestroy")

    def handle(self, stream: Any) -> int:
        return int(stream)

    def event(self) -> Any:
        return self._check(self.rt.cudaEventCreate(), "cudaEventCreate")

    def destroy_event(self, event: Any) -> None:
        self._check(self.rt.cudaEventDestroy(event), "cudaEventDestroy")

    def record(self, event: Any, stream: Any) -> None:
        self._check(self.rt.cudaEventRecord(event, stream), "cudaEventRecord")

    def elapsed_ms(self, start: Any, end: Any) -> float:
        return float(self._check(self.rt.cudaEventElapsedTime(start, end), "cudaEventElapsedTime"))

    def htod(self, dst: int, src_ptr: int, nbytes: int, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.rt.cudaMemcpyAsync(dst, src_ptr, nbytes, kind, stream), "cudaMemcpyAsync H2D")

    def dtoh(self, dst_ptr: int, src: int, nbytes: int, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.rt.cudaMemcpyAsync(dst_ptr, src, nbytes, kind, stream), "cudaMemcpyAsync D2H")

    def sync(self, stream: Any) -> None:
        self._check(self.rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def begin_capture(self, stream: Any) -> None:
        mode = self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        self._check(self.rt.cudaStreamBeginCapture(stream, mode), "cudaStreamBeginCapture")

    def end_capture(self, stream: Any, keep: bool) -> tuple[Any, Any] | None:
        """End the capture on ``stream``; (graph_exec, graph) when ``keep`` and the capture and its instantiation
        worked, else None with the partial graph destroyed and the sticky CUDA error cleared (trtexec's
        ``TrtCudaGraph::endCaptureOnError``, samples/common/sampleDevice.h). Never raises for a failed capture."""
        rt = self.rt
        err, graph = rt.cudaStreamEndCapture(stream)  # ends the capture even when it was invalidated
        if int(err) != 0 or not keep:
            if int(err) == 0 and graph is not None:
                rt.cudaGraphDestroy(graph)
            rt.cudaGetLastError()
            return None
        err, graph_exec = rt.cudaGraphInstantiate(graph, 0)
        if int(err) != 0:
            rt.cudaGraphDestroy(graph)
            rt.cudaGetLastError()
            return None
        return graph_exec, graph

    def launch_graph(self, graph_exec: Any, stream: Any) -> None:
        self._check(self.rt.cudaGraphLaunch(graph_exec, stream), "cudaGraphLaunch")

    def destroy_graph(self, graph_exec: Any, graph: Any) -> None:
        self._check(self.rt.cudaGraphExecDestroy(graph_exec), "cudaGraphExecDestroy")
        self._check(self.rt.cudaGraphDestroy(graph), "cudaGraphDestroy")


class _PyCuda:
    """The same operations through pycuda (JetPack images often ship it instead of cuda-python)."""

    name = "pycuda"

    def __init__(self) -> None:
        import pycuda.autoinit  # noqa: F401  (creates the primary context)
        import pycuda.driver as drv

        self.drv = drv
        self._allocs: dict[int, Any] = {}

    def device_info(self, device: int = 0) -> dict[str, str]:
        d = self.drv.Device(device)
        major, minor = d.compute_capability()
        ver = self.drv.get_version()
        return {"name": d.name(), "compute_capability": f"{major}.{minor}",
                "cuda_runtime": f"{ver[0]}.{ver[1]}", "cuda_driver": str(self.drv.get_driver_version()),
                "memory_gib": f"{d.total_memory() / (1 << 30):.1f}", "binding": self.name}

    def malloc(self, nbytes: int) -> int:
        alloc = self.drv.mem_alloc(max(nbytes, 1))
        self._allocs[int(alloc)] = alloc
        return int(alloc)

    def free(self, ptr: int) -> None:
        self._allocs.pop(ptr).free()

    def host_array(self, shape: tuple[int, ...], dtype: np.dtype) -> tuple[np.ndarray, int]:
        arr = self.drv.pagelocked_empty(shape, dtype)
        return arr, arr.ctypes.data

    def free_host(self, ptr: int) -> None:
        pass  # freed with the array

    def stream(self) -> Any:
        return self.drv.Stream()

    def destroy_stream(self, stream: Any) -> None:
        pass

    def handle(self, stream: Any) -> int:
        return int(stream.handle)

    def event(self) -> Any:
        return self.drv.Event()

    def destroy_event(self, event: Any) -> None:
        pass

    def record(self, event: Any, stream: Any) -> None:
        event.record(stream)

    def elapsed_ms(self, start: Any, end: Any) -> float:
        return float(end.time_since(start))

    def htod(self, dst: int, src_ptr: int, nbytes: int, stream: Any) -> None:
        self.drv.memcpy_htod_async(dst, _host_view(src_ptr, nbytes), stream)

    def dtoh(self, dst_ptr: int, src: int, nbytes: int, stream: Any) -> None:
        self.drv.memcpy_dtoh_async(_host_view(dst_ptr, nbytes), src, stream)

    def sync(self, stream: Any) -> None:
        stream.synchronize()

    def begin_capture(self, stream: Any) -> None:
        stream.begin_capture()

    def end_capture(self, stream: Any, keep: bool) -> tuple[Any, Any] | None:
        """As :meth:`_CudaPython.end_capture` (the driver API has no sticky error to clear)."""
        try:
            graph = stream.end_capture()
            return (graph.instance(), graph) if keep else None
        except self.drv.Error:
            return None

    def launch_graph(self, graph_exec: Any, stream: Any) -> None:
        graph_exec.launch(stream)

    def destroy_graph(self, graph_exec: Any, graph: Any) -> None:
        pass


def _host_view(ptr: int, nbytes: int) -> np.ndarray:
    """``nbytes`` of host memory at ``ptr`` as a uint8 array (no copy)."""
    return np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_uint8)), shape=(nbytes,))


def cuda_backend() -> _CudaPython | _PyCuda:
    """cuda-python if importable, else pycuda; MissingDependencyError naming both otherwise."""
    errors = []
    for cls in (_CudaPython, _PyCuda):
        try:
            return cls()
        except ImportError as exc:
            errors.append(f"{cls.name}: {exc}")
        except Exception as exc:  # pycuda.autoinit raises when there is no GPU/driver
            errors.append(f"{cls.name}: {exc}")
    raise MissingDependencyError(f"no usable CUDA Python binding ({'; '.join(errors)}); {CUDA_INSTALL_HINT}")


def cuda_device_info(device: int = 0) -> dict[str, str]:
    """GPU name, compute capability, CUDA runtime/driver versions; {} where no binding or GPU is usable."""
    try:
        return cuda_backend().device_info(device)
    except SemshareError:
        return {}
    except Exception:  # a binding without a driver/GPU behind it
        return {}


@dataclass
class Timing:
    """The last call's times in milliseconds."""

    gpu_ms: float = 0.0  # CUDA events around the enqueue (or graph launch) only
    end_to_end_ms: float = 0.0  # host clock: copies in + compute + copies out + sync


@dataclass
class _Binding:
    name: str
    is_input: bool
    dtype: np.dtype
    shape: tuple[int, ...]
    device: int = 0
    host: np.ndarray | None = None
    host_ptr: int = 0
    nbytes: int = 0


def _np_dtype(trt_mod: Any, dt: Any) -> np.dtype:
    return np.dtype(trt_mod.nptype(dt))


class TensorRTRunner:
    """Context manager around one engine and execution context.

    Args:
        engine_path: a ``.engine`` written by ``semshare build-engine`` (its ``.engine.json`` manifest beside it).
        cuda_graph: capture the enqueue in a CUDA graph on the first call with a given input shape and replay it.
        check_manifest: refuse an engine from another TensorRT version or GPU (default True).
        plugin_library: the plugin library (default: the manifest's path if it exists, else the usual search).
    """

    def __init__(self, engine_path: str | Path, cuda_graph: bool = False, check_manifest: bool = True,
                 plugin_library: str | Path | None = None, device: int = 0) -> None:
        self.engine_path = Path(engine_path)
        self.cuda_graph = cuda_graph
        self.check_manifest = check_manifest
        self.plugin_library = Path(plugin_library) if plugin_library else None
        self.device = device
        self.timing = Timing()
        self.manifest: Any = None
        self._bindings: dict[str, _Binding] = {}
        self._graph: tuple[Any, Any] | None = None
        self._graph_shapes: dict[str, tuple[int, ...]] | None = None
        self.graph_fallback: str | None = None  # why CUDA graphs were given up (then every call enqueues plainly)

    # -- set-up ------------------------------------------------------------------------------------------
    def __enter__(self) -> TensorRTRunner:
        from semshare.engine.build import import_tensorrt
        from semshare.engine.manifest import check_engine_compatible, read_engine_manifest
        from semshare.engine.plugins import find_plugin_library, load_plugins

        self.manifest = read_engine_manifest(self.engine_path)
        trt_mod = import_tensorrt()
        self.cuda = cuda_backend()
        info = self.cuda.device_info(self.device)
        if self.check_manifest:
            check_engine_compatible(self.manifest, trt_mod.__version__, info["name"], info["compute_capability"])
        if self.manifest.plugin_library_sha256:
            lib = self.plugin_library
            if lib is None:
                recorded = Path(self.manifest.plugin_library or "")
                lib = recorded if recorded.is_file() else find_plugin_library()
            load_plugins(trt_mod.get_plugin_registry(), lib)
        self._trt = trt_mod
        self._logger = trt_mod.Logger(trt_mod.Logger.WARNING)
        self._runtime = trt_mod.Runtime(self._logger)
        set_dla_core(self._runtime, self.manifest.dla_core, self.engine_path)
        engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if engine is None:
            raise SemshareError(f"TensorRT could not load {self.engine_path} (see its messages above); rebuild it "
                                "with `semshare build-engine` on this machine")
        self.engine: trt.ICudaEngine = engine
        self.context: trt.IExecutionContext = engine.create_execution_context()
        self.stream = self.cuda.stream()
        self._events = (self.cuda.event(), self.cuda.event())
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            is_input = engine.get_tensor_mode(name) == trt_mod.TensorIOMode.INPUT
            self._bindings[name] = _Binding(name, is_input, _np_dtype(trt_mod, engine.get_tensor_dtype(name)), ())
        return self

    def __exit__(self, *exc: object) -> None:
        cuda = getattr(self, "cuda", None)
        if cuda is None:
            return
        if self._graph is not None:
            cuda.destroy_graph(*self._graph)
            self._graph = None
        for b in self._bindings.values():
            if b.device:
                cuda.free(b.device)
            if b.host_ptr:
                cuda.free_host(b.host_ptr)
            b.device, b.host, b.host_ptr = 0, None, 0
        for ev in getattr(self, "_events", ()):
            cuda.destroy_event(ev)
        if getattr(self, "stream", None) is not None:
            cuda.destroy_stream(self.stream)
            self.stream = None
        self.context = None  # type: ignore[assignment]
        self.engine = None  # type: ignore[assignment]

    # -- buffers -----------------------------------------------------------------------------------------
    def input_names(self) -> list[str]:
        return [n for n, b in self._bindings.items() if b.is_input]

    def output_names(self) -> list[str]:
        return [n for n, b in self._bindings.items() if not b.is_input]

    def _ensure(self, b: _Binding, shape: tuple[int, ...]) -> None:
        nbytes = int(np.prod(shape)) * b.dtype.itemsize
        if nbytes > b.nbytes:
            if b.device:
                self.cuda.free(b.device)
                self.cuda.free_host(b.host_ptr)
            b.device = self.cuda.malloc(nbytes)
            b.nbytes = nbytes
            b.host, b.host_ptr = self.cuda.host_array((nbytes // b.dtype.itemsize,), b.dtype)
            self._graph_shapes = None  # addresses changed: recapture
        b.shape = shape
        if not self.context.set_tensor_address(b.name, b.device):
            raise SemshareError(f"TensorRT refused the address of tensor {b.name}")

    def _execute(self) -> bool:
        return bool(self.context.execute_async_v3(self.cuda.handle(self.stream)))

    def _enqueue(self) -> None:
        if not self._execute():
            raise SemshareError("TensorRT execute_async_v3 failed (see its messages above)")

    # -- running -----------------------------------------------------------------------------------------
    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once: ``feed`` maps every input name to an array; returns new arrays for every output."""
        missing = [n for n in self.input_names() if n not in feed]
        if missing:
            raise SemshareError(f"missing engine input(s) {', '.join(missing)}; the engine takes {self.input_names()}")
        t0 = time.perf_counter()
        shapes: dict[str, tuple[int, ...]] = {}
        for name in self.input_names():
            b = self._bindings[name]
            arr = np.ascontiguousarray(feed[name], dtype=b.dtype)
            shapes[name] = arr.shape
            if not self.context.set_input_shape(name, arr.shape):
                raise SemshareError(f"input {name} shape {arr.shape} is outside the engine's optimisation profile")
            self._ensure(b, arr.shape)
            assert b.host is not None
            b.host[: arr.size] = arr.reshape(-1)
            self.cuda.htod(b.device, b.host_ptr, arr.nbytes, self.stream)
        for name in self.output_names():
            b = self._bindings[name]
            dims = self.context.get_tensor_shape(name)
            self._ensure(b, tuple(int(dims[i]) for i in range(len(dims))))
        start, end = self._events
        if self.cuda_graph and self.graph_fallback is None and self._graph_shapes != shapes:
            self._capture(shapes)
        self.cuda.record(start, self.stream)
        if self._graph is not None and self.graph_fallback is None:
            self.cuda.launch_graph(self._graph[0], self.stream)
        else:
            self._enqueue()
        self.cuda.record(end, self.stream)
        out = {}
        for name in self.output_names():
            b = self._bindings[name]
            self.cuda.dtoh(b.host_ptr, b.device, int(np.prod(b.shape)) * b.dtype.itemsize, self.stream)
        self.cuda.sync(self.stream)
        for name in self.output_names():
            b = self._bindings[name]
            assert b.host is not None
            out[name] = b.host[: int(np.prod(b.shape))].reshape(b.shape).copy()
        self.timing = Timing(self.cuda.elapsed_ms(start, end), (time.perf_counter() - t0) * 1e3)
        return out

    def _capture(self, shapes: dict[str, tuple[int, ...]]) -> None:
        """Capture one enqueue into a CUDA graph, as trtexec does (samples/common/sampleInference.cpp): a plain
        enqueue first (its failure is a real error and propagates), then the captured one. If TensorRT refuses the
        enqueue under capture, or the capture is invalidated, the capture is ended, the partial graph dropped, the
        CUDA error cleared, one warning issued, and every later call enqueues plainly (no retry)."""
        if self._graph is not None:
            self.cuda.destroy_graph(*self._graph)
            self._graph = None
        self._graph_shapes = None
        self._enqueue()  # one plain run first: TensorRT allocates lazily and must not do that while capturing
        self.cuda.sync(self.stream)
        self.cuda.begin_capture(self.stream)
        try:
            ok = self._execute()
        except BaseException:
            self.cuda.end_capture(self.stream, keep=False)  # never leave the stream capturing; the error is the news
            raise
        graph = self.cuda.end_capture(self.stream, keep=ok)
        if graph is None:
            why = ("TensorRT's enqueue is not permitted under CUDA graph capture" if not ok
                   else "the CUDA graph capture was invalidated or could not be instantiated")
            self.graph_fallback = why
            warnings.warn(f"{self.engine_path.name}: {why}; running without CUDA graphs from now on",
                          RuntimeWarning, stacklevel=3)
            return
        self._graph = graph
        self._graph_shapes = dict(shapes)


def set_dla_core(runtime: trt.Runtime, dla_core: int | None, engine_path: Path) -> None:
    """``runtime.DLA_core`` from the engine manifest before deserializing, as trtexec does
    (samples/common/sampleEngines.cpp: ``mRuntime->setDLACore`` before ``deserializeCudaEngine``)."""
    if dla_core is None:
        return
    cores = runtime.num_DLA_cores
    if dla_core >= cores:
        raise SemshareError(f"{engine_path.name} was built for DLA core {dla_core} but this device has {cores} DLA "
                            "core(s); rebuild it here with `semshare build-engine` (without --dla-core where there is none)")
    runtime.DLA_core = dla_core
