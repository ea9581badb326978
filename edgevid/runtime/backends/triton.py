"""The runtime as a client of a Triton Inference Server: ``triton://HOST:PORT/MODEL``.

    backend = load_backend("triton://gpu-box:8001/prune4")
    logits = backend.run(x)          # one gRPC request per call (split at max_batch_size)

The model's metadata (labels, T, size, mean/std, input format) comes from the server: the
``edgevid`` parameter of the model's config, which ``edgevid export --triton`` writes. The
input/output names, data type and max_batch_size come from the same config. Many cameras
(and many boxes) share the server's GPUs; Triton batches their requests.

A lost server is treated like a lost live stream: requests are retried with exponential
backoff for ``reconnect_s`` seconds (default 10; ``?reconnect=S`` in the URI) on a fresh
channel, then the run fails with one line. At start the client waits the same window for the
server to come up and the model to be ready (a compose file starts both at once). A request
past its deadline (``?timeout=S``) is a busy server, not a lost one: it is sent again on the
same channel up to ``?retries=N`` times (default 2), then the run fails with one line.
The client speaks gRPC only (Triton's port 8001); Triton's HTTP port (8000) is not used.

Per request the round trip is timed; at the end
the server's mean time per request (queue + compute, from its statistics) is subtracted
from the mean round trip to give the ``network`` line of the summary (an estimate: the
statistics are per model, so other clients' requests in the same period count too).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import numpy as np

from edgevid.core.artifact import check_io
from edgevid.core.meta import ModelMeta
from edgevid.core.redact import redact
from edgevid.errors import MetadataError, ModelError, require
from edgevid.runtime.backends.base import Backend
from edgevid.runtime.stats import Samples

SCHEME = "triton"
DEFAULT_PORT = 8001  # Triton's gRPC port
META_PARAMETER = "edgevid"  # edgevid.export.triton.META_PARAMETER (no export import here)
MAX_BACKOFF_S = 2.0  # longest wait between two reconnect attempts
HTTP_PORT = 8000  # Triton's HTTP port: named in the error when a client dials it
# What a failed request's gRPC status means, and so what the client does about it
_LOST = ("StatusCode.UNAVAILABLE",)  # no server there (yet): reconnect with backoff
_DEADLINE = ("StatusCode.DEADLINE_EXCEEDED",)  # a server busy past the deadline: send again
_DTYPES = {"TYPE_FP32": ("FP32", np.float32), "TYPE_UINT8": ("UINT8", np.uint8)}


@dataclass(frozen=True)
class TritonURI:
    host: str  # server address
    port: int  # gRPC port
    model: str  # model name in the server's repository
    reconnect_s: float = 10.0  # keep retrying a lost server this long, then fail
    timeout_s: float = 10.0  # one request's deadline (connects, metadata, inference)
    retries: int = 2  # a request past its deadline is sent again this many times

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 address
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{SCHEME}://{self.address}/{self.model}"


def parse_uri(uri: str) -> TritonURI:
    """``triton://HOST[:PORT]/MODEL[?reconnect=S&timeout=S&retries=N]`` -> its parts, or
    ModelError (one line, the URI shown without its credentials)."""
    shown = redact(uri) if uri.isprintable() else repr(redact(uri))  # one line, no secret
    try:
        parts = urlsplit(uri)  # a malformed IPv6 host raises here, a bad port below
        model, host = parts.path.strip("/"), parts.hostname
        port = parts.port or DEFAULT_PORT
    except ValueError as e:
        raise ModelError(f"{shown}: malformed Triton URI ({e})") from None
    raw = {k: v[-1] for k, v in parse_qs(parts.query, strict_parsing=False).items()}
    unknown = set(raw) - {"reconnect", "timeout", "retries"}
    query = {k: _number(v) for k, v in raw.items() if k not in unknown}  # values never echoed
    retries = query.get("retries", TritonURI.retries)
    numbers_ok = (
        None not in query.values()
        and retries == int(retries) >= 0
        and query.get("reconnect", TritonURI.reconnect_s) >= 0
        and query.get("timeout", TritonURI.timeout_s) > 0
    )
    if not (parts.scheme == SCHEME and host and model and "/" not in model) or (
        unknown or not numbers_ok
    ):
        raise ModelError(
            f"{shown}: expected triton://HOST[:PORT]/MODEL[?reconnect=S&timeout=S&retries=N] "
            f"(gRPC port, default {DEFAULT_PORT}; timeout > 0, retries a whole number >= 0)"
        )
    return TritonURI(
        host,
        port,
        model,
        reconnect_s=query.get("reconnect", TritonURI.reconnect_s),
        timeout_s=query.get("timeout", TritonURI.timeout_s),
        retries=int(retries),
    )


def _number(text: str) -> float | None:
    """A finite number, or None (a query value that is not one, NaN, inf)."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def next_step(status: str, lost_for_s: float, deadline_misses: int, uri: TritonURI) -> str:
    """What the client does after a failed request, from its gRPC ``status``: ``"reconnect"``
    (no server: until ``reconnect_s`` has passed since it was lost), ``"resend"`` (past the
    deadline: ``retries`` times), or ``"fail"``."""
    if status in _LOST:
        return "reconnect" if lost_for_s < uri.reconnect_s else "fail"
    if status in _DEADLINE:
        return "resend" if deadline_misses <= uri.retries else "fail"
    return "fail"


def backoff(delay: float) -> float:
    """The wait after ``delay``: doubled, at most MAX_BACKOFF_S."""
    return min(2 * delay, MAX_BACKOFF_S)


def meta_from_config(uri: TritonURI, config: dict) -> ModelMeta:
    """The ModelMeta stored in a served model's config (``get_model_config(as_json=True)``)."""
    param = config.get("parameters", {}).get(META_PARAMETER, {}).get("string_value")
    if not param:
        raise MetadataError(
            f"{uri}: the model's config has no {META_PARAMETER!r} parameter with its metadata; "
            "serve a repository written by `edgevid export --triton`"
        )
    return ModelMeta.from_json(param, source=f"{uri} config parameter {META_PARAMETER!r}")


def server_seconds_per_request(before: dict, after: dict) -> float | None:
    """Mean server time (queue + compute) per successful request between two statistics
    snapshots (``get_inference_statistics(as_json=True)``), or None without requests."""

    def totals(stats: dict) -> tuple[int, int]:
        model = (stats.get("model_stats") or [{}])[0].get("inference_stats", {})
        ns = sum(
            int(model.get(k, {}).get("ns", 0))
            for k in ("queue", "compute_input", "compute_infer", "compute_output")
        )
        return ns, int(model.get("success", {}).get("count", 0))

    (ns0, n0), (ns1, n1) = totals(before), totals(after)
    return (ns1 - ns0) / (n1 - n0) / 1e9 if n1 > n0 else None


class TritonBackend(Backend):
    def __init__(self, path: str, *, device: str = "auto", threads: int | None = None):
        super().__init__(path)
        self.uri = parse_uri(str(path))
        self.path = str(self.uri)  # messages name the URI, not a file
        grpc = require("tritonclient.grpc", "triton", "triton:// models")
        self._grpc = grpc
        self._error = require("tritonclient.utils", "triton").InferenceServerException
        self.client = grpc.InferenceServerClient(url=self.uri.address)
        self.reconnects = 0  # requests that succeeded after the server was lost
        self._rtt = Samples()  # seconds per request, client side (bounded: runs last months)
        try:
            self._wait_ready()
            config = self.client.get_model_config(
                self.uri.model, as_json=True, client_timeout=self.uri.timeout_s
            )["config"]
            server = self.client.get_server_metadata(as_json=True, client_timeout=5)
            self._stats0 = self._statistics()
        except self._error as e:
            raise ModelError(self._describe(e)) from None
        self.meta = meta_from_config(self.uri, config)
        (inp,), outputs = config["input"], config["output"]
        if inp.get("data_type") not in _DTYPES:
            raise MetadataError(f"{self.uri}: input data type {inp.get('data_type')} unsupported")
        self.input_name, self.output_name = inp["name"], outputs[0]["name"]
        self.datatype, self.input_dtype = _DTYPES[inp["data_type"]]
        self.max_batch = int(config.get("max_batch_size", 0)) or None
        batch = [-1] if self.max_batch else []  # dims exclude the batch when batching
        in_shape = [*batch, *map(int, inp["dims"])]
        out_shape = [*batch, *map(int, outputs[0]["dims"])]
        check_io(self.path, self.meta, self.input_name, in_shape, out_shape)
        self.name = f"triton[{self.uri.address}/{self.uri.model}, server {server['version']}]"

    def _wait_ready(self) -> None:
        """Wait up to ``reconnect_s`` for the server to be live and the model ready (a server
        started beside the client is still loading it), then one line for what is missing."""
        give_up, delay = time.monotonic() + self.uri.reconnect_s, 0.1
        while True:
            try:
                live = self.client.is_server_live(client_timeout=self.uri.timeout_s)
                ready = live and self.client.is_model_ready(
                    self.uri.model, client_timeout=self.uri.timeout_s
                )
            except self._error as e:  # not up yet, or too busy loading to answer
                if e.status() not in (*_LOST, *_DEADLINE) or time.monotonic() >= give_up:
                    raise
                live = ready = None
            if ready:
                return
            if time.monotonic() >= give_up:
                break
            time.sleep(min(delay, max(give_up - time.monotonic(), 0.0)))
            delay = backoff(delay)
            if live is None:
                self._reconnect()
        if not live:
            raise ModelError(f"{self.uri}: the Triton server at {self.uri.address} is not live")
        raise ModelError(
            f"{self.uri}: model {self.uri.model!r} is not ready on the Triton server at "
            f"{self.uri.address} after {self.uri.reconnect_s:g} s (not in its repository, or "
            "failed to load)"
        )

    def _reconnect(self) -> None:
        """A fresh channel: gRPC's own reconnect backoff on a dead channel grows to minutes."""
        self.client.close()
        self.client = self._grpc.InferenceServerClient(url=self.uri.address)

    def _describe(self, e) -> str:
        status, message = e.status() or "", (e.message() or "").strip().splitlines()
        first = message[0][:200] if message else type(e).__name__
        if status in _LOST:
            hint = (
                f"; port {HTTP_PORT} is Triton's HTTP port, triton:// speaks gRPC "
                f"(default port {DEFAULT_PORT})"
                if self.uri.port == HTTP_PORT
                else ""
            )
            return f"{self.uri}: no Triton server answers at {self.uri.address} ({first}{hint})"
        if status in _DEADLINE:
            return (
                f"{self.uri}: the Triton server did not answer within {self.uri.timeout_s:g} s, "
                f"{self.uri.retries + 1} tries (busy? raise ?timeout=S)"
            )
        return f"{self.uri}: Triton server refused the request ({first})"

    def _statistics(self) -> dict:
        return self.client.get_inference_statistics(
            self.uri.model, as_json=True, client_timeout=self.uri.timeout_s
        )

    def _request(self, x: np.ndarray) -> np.ndarray:
        inp = self._grpc.InferInput(self.input_name, list(x.shape), self.datatype)
        inp.set_data_from_numpy(np.ascontiguousarray(x, dtype=self.input_dtype))
        out = self._grpc.InferRequestedOutput(self.output_name)
        t0 = time.perf_counter()
        result = self.client.infer(
            self.uri.model, [inp], outputs=[out], client_timeout=self.uri.timeout_s
        )
        self._rtt.append(time.perf_counter() - t0)
        return result.as_numpy(self.output_name)

    def _run(self, x: np.ndarray) -> np.ndarray:
        """One request; a lost server is retried with backoff for ``reconnect_s`` seconds, a
        request past its deadline sent again ``retries`` times (``next_step``)."""
        lost_since, delay, misses = None, 0.1, 0
        while True:
            try:
                logits = self._request(x)
            except self._error as e:
                status = e.status() or ""
                lost_since = lost_since or (time.monotonic() if status in _LOST else None)
                misses += status in _DEADLINE
                lost_for = time.monotonic() - lost_since if lost_since else 0.0
                step = next_step(status, lost_for, misses, self.uri)
                if step == "fail" and status in _LOST:
                    raise ModelError(
                        f"{self.uri}: Triton server lost and not back after "
                        f"{self.uri.reconnect_s:g} s ({self._describe(e).split('(', 1)[-1]}"
                    ) from None
                if step == "fail":
                    raise ModelError(self._describe(e)) from None
                if step == "reconnect":
                    time.sleep(min(delay, max(self.uri.reconnect_s - lost_for, 0.0)))
                    delay = backoff(delay)
                    self._reconnect()
                continue
            self.reconnects += lost_since is not None
            return logits

    def timings(self) -> dict[str, list[float]]:
        """Per request the ``round trip``; ``network``: one value, the mean round trip minus
        the server's mean time per request (queue + compute) over this run."""
        if not self._rtt or self.client is None:
            return {"round trip": self._rtt} if self._rtt else {}
        try:
            server = server_seconds_per_request(self._stats0, self._statistics())
        except self._error:
            server = None  # the server is gone: no estimate, the round trips stay
        if server is None:
            return {"round trip": self._rtt}
        network = max(self._rtt.mean() - server, 0.0)  # one mean value
        return {"round trip": self._rtt, "network": [network]}

    def close(self) -> None:
        client, self.client = getattr(self, "client", None), None
        if client is not None:
            client.close()


BACKEND = TritonBackend
