"""Native TensorRT backend for ``.engine`` / ``.plan`` files (TensorRT >= 8.5 tensor API).

Metadata comes from the sidecar ``<engine>.json`` written with the engine. Buffers are
allocated once for the largest batch of optimisation profile 0: pinned (page-locked) host
memory and device memory for every I/O tensor, each given its address (a failed load frees
what it allocated). The batch range is the profile's, never the input shape's (-1 when
dynamic): fewer clips than MIN are padded, more than MAX split (``trt_plan.chunks``), and
``set_input_shape`` is checked. One inference is

    host input -> device (async) ; execute_async_v3(stream) ; device -> host (async) ; sync

CUDA calls go through cuda-python (``cuda.bindings.runtime``, or the older ``cuda.cudart``);
pycuda is the fallback. Engines are specific to the GPU and TensorRT version that built them.
"""

from __future__ import annotations

import ctypes
import os

import numpy as np

from edgevid.core.artifact import OUTPUT_NAME, check_io, read_meta
from edgevid.errors import MissingDependencyError, ModelError, require
from edgevid.runtime.backends.base import Backend
from edgevid.runtime.backends.trt_plan import run_in_chunks


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


class _CudaPython:
    """Pinned host + device buffers and a stream through cuda-python's runtime API."""

    package = "cuda-python"

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
        return self.properties()[0]

    def properties(self) -> tuple[str, tuple[int, int], int]:
        prop = self._call(self.rt.cudaGetDeviceProperties(self._call(self.rt.cudaGetDevice())))
        name = error_text(prop.name).rstrip("\x00")
        return name, (int(prop.major), int(prop.minor)), int(prop.multiProcessorCount)

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

    def release(self, host: list[np.ndarray], device: list[int]) -> None:
        """Free these buffers (the stream stays)."""
        for h in host:
            self.rt.cudaFreeHost(h.ctypes.data)
        for d in device:
            self.rt.cudaFree(d)

    def close(self) -> None:
        """Destroy the stream: the layer is done."""
        self.rt.cudaStreamDestroy(self.stream)


class _PyCuda:
    """The same operations through pycuda (when cuda-python is missing or cannot start)."""

    package = "pycuda"

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

    def release(self, host: list[np.ndarray], device: list[int]) -> None:
        for d in device:  # pinned host arrays are freed with their last reference
            self._alloc.pop(d).free()

    def close(self) -> None:
        self._alloc.clear()

    def gpu_name(self) -> str:
        return self.cuda.Context.get_device().name()

    def properties(self) -> tuple[str, tuple[int, int], int]:
        device = self.cuda.Context.get_device()
        sms = device.get_attribute(self.cuda.device_attribute.MULTIPROCESSOR_COUNT)
        return device.name(), tuple(device.compute_capability()), int(sms)


def device_properties() -> tuple[str, tuple[int, int], int]:
    """The current CUDA device's (name, compute capability, multiprocessor count); raises
    when there is no GPU or no CUDA library."""
    cuda = _cuda()
    try:
        return cuda.properties()
    finally:
        cuda.close()


def _cuda():
    """The first CUDA layer that starts: cuda-python, else pycuda. A cuda-python that is
    installed but cannot start (built for a newer CUDA than the driver: cuda-python 12 on
    JetPack 5's CUDA 11.4) falls back to pycuda like a missing one; where neither starts, one
    line says why for each, never a silent run elsewhere."""
    problems: dict[str, str] = {}
    for layer in (_CudaPython, _PyCuda):
        try:
            return layer()
        except ImportError:
            problems[layer.package] = "not installed"
        except Exception as e:  # noqa: BLE001 - any failure of a third-party layer's start
            text = str(e).strip().splitlines()
            problems[layer.package] = (text[0] if text else type(e).__name__)[:200]
    if set(problems.values()) == {"not installed"}:
        raise MissingDependencyError("cuda-python", "trt", "TensorRT engines")
    why = "; ".join(f"{name}: {problem}" for name, problem in problems.items())
    raise ModelError(f"no CUDA layer starts here ({why}): a TensorRT engine needs an NVIDIA "
                     "GPU and a cuda-python release for this driver's CUDA")  # fmt: skip


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
        self._host: dict[str, np.ndarray] = {}  # pinned host buffer per I/O tensor
        self._device: dict[str, int] = {}  # device address per I/O tensor
        try:  # a failure after the first allocation frees what was allocated
            self._open(trt)
        except BaseException:
            self.close()
            raise

    def _open(self, trt) -> None:
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
        self.input_name = inputs[0]
        self.output_name = OUTPUT_NAME if OUTPUT_NAME in outputs else outputs[0]
        in_shape = tuple(self.engine.get_tensor_shape(self.input_name))
        out_shape = tuple(self.engine.get_tensor_shape(self.output_name))
        check_io(self.path, self.meta, self.input_name, in_shape, out_shape)
        # the batch range is the profile's (a dynamic engine's input shape says -1)
        lo, opt, hi = (int(s[0]) for s in self.engine.get_tensor_profile_shape(self.input_name, 0))
        self.profile = (lo, opt, hi)
        self.max_batch = hi
        self._in_shape = in_shape[1:]
        for name in names:  # every I/O tensor gets a buffer and an address, not output 0 only
            shape = (hi, *tuple(self.engine.get_tensor_shape(name))[1:])
            if min(shape) < 1:
                raise ModelError(f"{self.path}: tensor {name!r} has no fixed shape {shape}")
            dtype = numpy_dtype(trt, self.engine.get_tensor_dtype(name))
            self._host[name] = self.cuda.pinned(shape, dtype)
            self._device[name] = self.cuda.device(io_nbytes(shape, dtype))
            self.context.set_tensor_address(name, self._device[name])
        self.input_dtype = self._host[self.input_name].dtype
        self.name = f"tensorrt[{self.cuda.gpu_name()}, TensorRT {trt.__version__}]"

    def _run(self, x: np.ndarray) -> np.ndarray:
        """Rows padded up to the profile's MIN and split above its MAX (trt_plan.chunks)."""
        return run_in_chunks(x, self.profile, self._run_batch)

    def _run_batch(self, x: np.ndarray) -> np.ndarray:
        batch = len(x)
        host_in, host_out = self._host[self.input_name], self._host[self.output_name]
        host_in[:batch] = x  # into pinned memory (casts to the engine's dtype)
        if not self.context.set_input_shape(self.input_name, (batch, *self._in_shape)):
            raise ModelError(
                f"{self.path}: TensorRT refused batch {batch} (profile {self.profile})"
            )
        self.cuda.to_device(self._device[self.input_name], host_in, host_in[:batch].nbytes)
        if not self.context.execute_async_v3(self.cuda.handle):
            raise ModelError(f"{self.path}: TensorRT execution failed")
        n_out = host_out[:batch].nbytes
        self.cuda.to_host(host_out, self._device[self.output_name], n_out)
        self.cuda.sync()
        return host_out[:batch].astype(np.float32)  # a copy: the pinned buffer is reused

    def close(self) -> None:
        cuda = getattr(self, "cuda", None)
        if cuda is not None:
            cuda.release(list(self._host.values()), list(self._device.values()))
            cuda.close()
            self._host, self._device, self.cuda = {}, {}, None


BACKEND = TensorRTBackend
