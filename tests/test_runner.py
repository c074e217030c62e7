"""TensorRTRunner's CUDA-graph logic through its seam (``runner.cuda``, ``runner.context``), without a GPU.

Nothing here pretends TensorRT or CUDA ran: ``FakeCuda`` keeps "device" buffers in host memory and ``FakeContext``
computes ``out = 2 * in`` when enqueued, so the tests check what the runner itself decides: when it captures, what
it keeps after a failed capture, that it warns once and enqueues plainly from then on, and that a real enqueue
error reaches the caller. The CUDA/TensorRT calls these fakes stand for are the ones trtexec makes
(samples/common/sampleInference.cpp, sampleDevice.h); they run only on a GPU machine.
"""

import warnings

import numpy as np
import pytest

from semshare.engine.runner import TensorRTRunner, _Binding, _host_view, set_dla_core
from semshare.errors import SemshareError


class FakeCuda:
    """Device memory in host RAM; a stream either runs work at once or records it while capturing."""

    def __init__(self, invalidate_capture=False):
        self.mem: dict[int, np.ndarray] = {}
        self.capturing: list | None = None
        self.invalidate_capture = invalidate_capture
        self.graphs_alive = 0
        self.errors_cleared = 0
        self.launches = 0
        self._next = 1 << 20

    def handle(self, stream):
        return 7

    def malloc(self, nbytes):
        self._next += 1 << 20
        self.mem[self._next] = np.zeros(nbytes, np.uint8)
        return self._next

    def free(self, ptr):
        del self.mem[ptr]

    def host_array(self, shape, dtype):
        arr = np.zeros(shape, dtype)
        self.mem[arr.ctypes.data] = arr  # keep it alive
        return arr, arr.ctypes.data

    def free_host(self, ptr):
        self.mem.pop(ptr, None)

    def htod(self, dst, src_ptr, nbytes, stream):
        self.mem[dst][:nbytes] = _host_view(src_ptr, nbytes)

    def dtoh(self, dst_ptr, src, nbytes, stream):
        _host_view(dst_ptr, nbytes)[:] = self.mem[src][:nbytes]

    def run(self, work):
        """The context's kernels: recorded while capturing, else run."""
        if self.capturing is not None:
            self.capturing.append(work)
        else:
            work()

    def sync(self, stream):
        pass

    def record(self, event, stream):
        pass

    def elapsed_ms(self, start, end):
        return 0.0

    def begin_capture(self, stream):
        assert self.capturing is None
        self.capturing = []

    def end_capture(self, stream, keep):
        work, self.capturing = self.capturing, None
        if not keep or self.invalidate_capture:
            self.errors_cleared += 1
            return None
        self.graphs_alive += 1
        return ("exec", work), "graph"

    def launch_graph(self, graph_exec, stream):
        self.launches += 1
        for w in graph_exec[1]:
            w()

    def destroy_graph(self, graph_exec, graph):
        self.graphs_alive -= 1


class FakeContext:
    """``execute_async_v3`` computes out = 2 * in; ``fail_under_capture`` returns False while capturing (what
    TensorRT does for an engine with work not permitted in a graph); ``fail_always`` fails every enqueue."""

    def __init__(self, cuda, fail_under_capture=False, fail_always=False, raise_under_capture=False):
        self.cuda, self.addr, self.shapes = cuda, {}, {}
        self.fail_under_capture, self.fail_always, self.raise_under_capture = fail_under_capture, fail_always, raise_under_capture
        self.enqueues = 0

    def set_input_shape(self, name, shape):
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        return self.shapes["x"]

    def set_tensor_address(self, name, ptr):
        self.addr[name] = ptr
        return True

    def execute_async_v3(self, stream):
        self.enqueues += 1
        capturing = self.cuda.capturing is not None
        if self.raise_under_capture and capturing:
            raise RuntimeError("binding crashed")
        if self.fail_always or (self.fail_under_capture and capturing):
            return False
        x, y = self.addr["x"], self.addr["y"]
        n = int(np.prod(self.shapes["x"])) * 4

        def work():
            self.cuda.mem[y][:n] = (self.cuda.mem[x][:n].view(np.float32) * 2).view(np.uint8)

        self.cuda.run(work)
        return True


def runner(tmp_path, cuda_graph=True, **ctx):
    r = TensorRTRunner(tmp_path / "m.engine", cuda_graph=cuda_graph)
    r.cuda = FakeCuda(invalidate_capture=ctx.pop("invalidate", False))
    r.context = FakeContext(r.cuda, **ctx)
    r.stream, r._events = "stream", ("start", "end")
    r._bindings = {"x": _Binding("x", True, np.dtype(np.float32), ()), "y": _Binding("y", False, np.dtype(np.float32), ())}
    return r


def feed(v):
    return {"x": np.full((1, 3, 4, 4), v, np.float32)}


def test_graph_captured_once_and_replayed(tmp_path):
    r = runner(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for v in (1.0, 2.0, 3.0):
            np.testing.assert_array_equal(r.infer(feed(v))["y"], 2 * feed(v)["x"])
    assert r.graph_fallback is None and r._graph is not None and r.cuda.graphs_alive == 1
    assert r.context.enqueues == 2 and r.cuda.launches == 3  # warm-up + captured enqueue, then 3 replays


def test_refused_capture_falls_back_once_with_one_warning(tmp_path):
    r = runner(tmp_path, fail_under_capture=True)
    with pytest.warns(RuntimeWarning, match=r"^m.engine: TensorRT's enqueue is not permitted under CUDA graph capture; "
                                            r"running without CUDA graphs from now on$") as record:
        out = r.infer(feed(1.5))
    assert len(record) == 1
    np.testing.assert_array_equal(out["y"], 2 * feed(1.5)["x"])  # this call still ran, plainly
    assert r._graph is None and r.cuda.graphs_alive == 0 and r.cuda.errors_cleared == 1  # nothing stored
    assert r.context.enqueues == 3  # warm-up, refused capture, the plain run of this call
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning, no retry
        np.testing.assert_array_equal(r.infer(feed(4.0))["y"], 2 * feed(4.0)["x"])
        r.infer(feed(5.0))
    assert r.context.enqueues == 5 and r.cuda.launches == 0 and r.cuda.capturing is None


def test_invalidated_capture_is_dropped(tmp_path):
    r = runner(tmp_path, invalidate=True)
    with pytest.warns(RuntimeWarning, match="capture was invalidated or could not be instantiated"):
        np.testing.assert_array_equal(r.infer(feed(1.0))["y"], 2 * feed(1.0)["x"])
    assert r._graph is None and r.graph_fallback and r.cuda.launches == 0


def test_real_enqueue_error_is_not_hidden(tmp_path):
    r = runner(tmp_path, fail_always=True)
    with pytest.raises(SemshareError, match="TensorRT execute_async_v3 failed"):
        r.infer(feed(1.0))  # the warm-up enqueue fails: a real error, no capture attempted
    assert r.cuda.capturing is None and r._graph is None and r.graph_fallback is None
    r = runner(tmp_path, raise_under_capture=True)
    with pytest.raises(RuntimeError, match="binding crashed"):
        r.infer(feed(1.0))  # an exception under capture: the capture is ended, the exception propagates
    assert r.cuda.capturing is None and r._graph is None and r.cuda.errors_cleared == 1


def test_no_graphs_means_plain_enqueue(tmp_path):
    r = runner(tmp_path, cuda_graph=False)
    np.testing.assert_array_equal(r.infer(feed(2.0))["y"], 2 * feed(2.0)["x"])
    assert r.context.enqueues == 1 and r.cuda.launches == 0


class FakeRuntime:
    def __init__(self, cores):
        self.num_DLA_cores, self.DLA_core = cores, -1


def test_dla_core_set_from_manifest_before_deserializing(tmp_path):
    rt = FakeRuntime(2)
    set_dla_core(rt, 1, tmp_path / "m.engine")
    assert rt.DLA_core == 1
    rt = FakeRuntime(2)
    set_dla_core(rt, None, tmp_path / "m.engine")
    assert rt.DLA_core == -1  # a GPU engine leaves the runtime alone
    with pytest.raises(SemshareError, match=r"^m.engine was built for DLA core 0 but this device has 0 DLA core\(s\)"):
        set_dla_core(FakeRuntime(0), 0, tmp_path / "m.engine")


def test_runner_sets_the_dla_core_before_deserializing(tmp_path, monkeypatch):
    """``TensorRTRunner.__enter__`` with stand-ins for the tensorrt module and the CUDA binding: the runtime's
    DLA_core comes from the manifest and is set before ``deserialize_cuda_engine`` sees the bytes."""
    import json

    import semshare.engine.build as build
    import semshare.engine.runner as runner_mod
    from semshare.engine.manifest import EngineManifest, engine_manifest_path

    seen = []

    class Runtime:
        num_DLA_cores = 2

        def __init__(self, logger):
            self.DLA_core = -1

        def deserialize_cuda_engine(self, data):
            seen.append((self.DLA_core, bytes(data)))
            return None  # then the runner stops with its one-line error

    fake_trt = type("FakeTensorRT", (), {"__version__": "10.3.0.30", "Runtime": Runtime,
                                         "Logger": type("Logger", (), {"WARNING": 2, "__init__": lambda self, s: None})})
    cuda = FakeCuda()
    cuda.device_info = lambda device: {"name": "Orin", "compute_capability": "8.7"}
    monkeypatch.setattr(build, "import_tensorrt", lambda: fake_trt)
    monkeypatch.setattr(runner_mod, "cuda_backend", lambda: cuda)
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"placeholder")
    m = EngineManifest("fp16", "orin", "10.3.0.30", "12.6", "Orin", "8.7", "m.onnx", "a", "b", None, None, None, 0,
                       "NONE", dla_core=1)
    engine_manifest_path(engine).write_text(json.dumps(m.to_dict()))
    with pytest.raises(SemshareError, match="TensorRT could not load"), TensorRTRunner(engine):
        pass
    assert seen == [(1, b"placeholder")]
