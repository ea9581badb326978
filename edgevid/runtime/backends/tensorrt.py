"""Native TensorRT backend for ``.engine`` / ``.plan`` files (TensorRT >= 8.5 tensor API).

Metadata comes from the sidecar ``<engine>.json`` written with the engine. Buffers are
allocated once for the largest batch of optimisation profile 0: pinned (page-locked) host
memory and device memory per I/O tensor; one inference is

    host input -> device (async) ; execute_async_v3(stream) ; device -> host (async) ; sync

CUDA calls go through cuda-python (``cuda.bindings.runtime``, or the older ``cuda.cudart``);
pycuda is the fallback. Engines are specific to the GPU and TensorRT version that built them.
"""

from __future__ import annotations

import ctypes
import os

import numpy as np

from edgevid.core.artifact import check_io, read_meta
from edgevid.errors import MissingDependencyError, ModelError, require
from edgevid.runtime.backends.base import Backend


def io_nbytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    """Bytes of one I/O buffer: elements x the engine dtype's size (FP16 is 2 bytes)."""
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


def host_array(ptr: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A numpy view of ``io_nbytes(shape, dtype)`` bytes at address ``ptr`` (pinned memory).
    By bytes, not ctypes element types: ``np.ctypeslib.as_ctypes_type(float16)`` raises."""
    raw = (ctypes.c_ubyte * io_nbytes(shape, dtype)).from_address(ptr)
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def error_text(name: object) -> str:
    """cuda-python returns error names as bytes (b'cudaErrorInsufficientDriver')."""
    return name.decode(errors="replace") if isinstance(name, bytes | bytearray) else str(name)


def numpy_dtype(trt, dtype) -> np.dtype:
    """The numpy dtype of an engine I/O tensor (``trt.nptype``), or a clear error."""
    try:
        return np.dtype(trt.nptype(dtype))
    except TypeError:  # e.g. BF16: no numpy equivalent
        raise ModelError(
            f"engine I/O in {getattr(dtype, 'name', dtype)} is not supported: export graphs "
            "keep FP32 (or uint8) inputs and outputs"
        ) from None


def pad_batch(x: np.ndarray, batch: int) -> np.ndarray:
    """``x`` (b, ...) padded with zeros to ``batch`` rows, for an engine with a static batch
    (DLA); the extra rows' outputs are dropped."""
    if len(x) == batch:
        return x
    return np.concatenate([x, np.zeros((batch - len(x), *x.shape[1:]), x.dtype)])


class _CudaPython:
    """Pinned host + device buffers and a stream through cuda-python's runtime API."""

    def __init__(self) -> None:
        try:
            from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
        except ImportError:
            from cuda import cudart  # older cuda-python
        self.rt = cudart
        self.stream = self._call(cudart.cudaStreamCreate())

    def _call(self, result):
        err, *rest = result
        if err != self.rt.cudaError_t.cudaSuccess:
            raise ModelError(f"CUDA error: {error_text(self.rt.cudaGetErrorName(err)[1])}")
        return rest[0] if len(rest) == 1 else rest

    def pinned(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        ptr = self._call(self.rt.cudaMallocHost(io_nbytes(shape, dtype)))
        return host_array(int(ptr), shape, dtype)

    def gpu_name(self) -> str:
        device = self._call(self.rt.cudaGetDevice())
        return error_text(self._call(self.rt.cudaGetDeviceProperties(device)).name).rstrip("\x00")

    def device(self, nbytes: int) -> int:
        return int(self._call(self.rt.cudaMalloc(nbytes)))

    def to_device(self, dst: int, src: np.ndarray, nbytes: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call(self.rt.cudaMemcpyAsync(dst, src.ctypes.data, nbytes, kind, self.stream))

    def to_host(self, dst: np.ndarray, src: int, nbytes: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call(self.rt.cudaMemcpyAsync(dst.ctypes.data, src, nbytes, kind, self.stream))

    def sync(self) -> None:
        self._call(self.rt.cudaStreamSynchronize(self.stream))

    @property
    def handle(self) -> int:
        return int(self.stream)

    def free(self, host: list[np.ndarray], device: list[int]) -> None:
        for h in host:
            self.rt.cudaFreeHost(h.ctypes.data)
        for d in device:
            self.rt.cudaFree(d)
        self.rt.cudaStreamDestroy(self.stream)


class _PyCuda:
    """The same five operations through pycuda (fallback when cuda-python is missing)."""

    def __init__(self) -> None:
        import pycuda.autoinit  # noqa: F401  (creates the context)
        import pycuda.driver as cuda

        self.cuda, self.stream, self._alloc = cuda, cuda.Stream(), {}

    def pinned(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return self.cuda.pagelocked_empty(shape, dtype)

    def device(self, nbytes: int) -> int:
        mem = self.cuda.mem_alloc(nbytes)
        self._alloc[int(mem)] = mem  # keep the allocation alive
        return int(mem)

    def to_device(self, dst: int, src: np.ndarray, nbytes: int) -> None:
        self.cuda.memcpy_htod_async(dst, src.reshape(-1)[: nbytes // src.itemsize], self.stream)

    def to_host(self, dst: np.ndarray, src: int, nbytes: int) -> None:
        self.cuda.memcpy_dtoh_async(dst.reshape(-1)[: nbytes // dst.itemsize], src, self.stream)

    def sync(self) -> None:
        self.stream.synchronize()

    @property
    def handle(self) -> int:
        return self.stream.handle

    def free(self, host: list[np.ndarray], device: list[int]) -> None:
        self._alloc.clear()

    def gpu_name(self) -> str:
        return self.cuda.Context.get_device().name()


def gpu_name() -> str:
    """The current CUDA device's name (raises when there is no GPU or no CUDA library)."""
    cuda = _cuda()
    try:
        return cuda.gpu_name()
    finally:
        cuda.free([], [])


def _cuda():
    try:
        return _CudaPython()
    except ImportError:
        pass
    try:
        return _PyCuda()
    except ImportError:
        raise MissingDependencyError("cuda-python", "trt", "TensorRT engines") from None


class TensorRTBackend(Backend):
    def __init__(
        self, path: str | os.PathLike, *, device: str = "auto", threads: int | None = None
    ):
        super().__init__(path)
        if device == "cpu":
            raise ModelError(f"{path}: a TensorRT engine runs on a GPU, not --device cpu")
        trt = require("tensorrt", "trt", "TensorRT engines")
        self.meta = read_meta(self.path)  # engines carry no metadata: the sidecar
        self.cuda = _cuda()
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise ModelError(
                f"{self.path}: TensorRT cannot load this engine (built for another GPU or "
                "TensorRT version? rebuild it on this device)"
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        inputs = [n for n in names if is_input[n]]
        outputs = [n for n in names if not is_input[n]]
        if len(inputs) != 1 or not outputs:
            raise ModelError(f"{self.path}: expected one input and a logits output")
        self.input_name, self.output_name = inputs[0], outputs[0]
        in_shape = tuple(self.engine.get_tensor_shape(self.input_name))
        check_io(
            self.path,
            self.meta,
            self.input_name,
            in_shape,
            tuple(self.engine.get_tensor_shape(self.output_name)),
        )
        self.static_batch = in_shape[0] != -1  # DLA engines: one batch size, padded to
        if self.static_batch:
            self.max_batch = int(in_shape[0])
        else:  # dynamic batch: allocate for the profile's largest
            self.max_batch = int(self.engine.get_tensor_profile_shape(self.input_name, 0)[2][0])
        self._max_in = (self.max_batch, *in_shape[1:])
        self._max_out = (self.max_batch, self.meta.num_classes)
        self.input_dtype = numpy_dtype(trt, self.engine.get_tensor_dtype(self.input_name))
        out_dtype = numpy_dtype(trt, self.engine.get_tensor_dtype(self.output_name))
        self._host_in = self.cuda.pinned(self._max_in, self.input_dtype)
        self._host_out = self.cuda.pinned(self._max_out, out_dtype)
        self._dev_in = self.cuda.device(io_nbytes(self._max_in, self.input_dtype))
        self._dev_out = self.cuda.device(io_nbytes(self._max_out, out_dtype))
        self.context.set_tensor_address(self.input_name, self._dev_in)
        self.context.set_tensor_address(self.output_name, self._dev_out)
        self.name = f"tensorrt[{self.cuda.gpu_name()}, TensorRT {trt.__version__}]"

    def _run(self, x: np.ndarray) -> np.ndarray:
        rows = len(x)
        if self.static_batch:
            x = pad_batch(x, self.max_batch)
        b = len(x)
        self._host_in[:b] = x  # into pinned memory (casts to the engine's dtype)
        self.context.set_input_shape(self.input_name, (b, *self._max_in[1:]))
        n_in, n_out = self._host_in[:b].nbytes, self._host_out[:b].nbytes
        self.cuda.to_device(self._dev_in, self._host_in, n_in)
        if not self.context.execute_async_v3(self.cuda.handle):
            raise ModelError(f"{self.path}: TensorRT execution failed")
        self.cuda.to_host(self._host_out, self._dev_out, n_out)
        self.cuda.sync()
        return self._host_out[:rows].astype(np.float32)  # a copy: the pinned buffer is reused

    def close(self) -> None:
        if getattr(self, "_host_in", None) is not None:
            self.cuda.free([self._host_in, self._host_out], [self._dev_in, self._dev_out])
            self._host_in = None


BACKEND = TensorRTBackend
