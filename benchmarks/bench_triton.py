"""Triton client vs local backend: what serving a model costs per request on this machine.

Starts a real ``tritonserver`` (the nvidia-pytriton wheel unpacked by ``.ci/pytriton.sh``;
Python backend running the graph through ONNX Runtime, as in tests/test_triton_server.py)
on 127.0.0.1, serving the repository ``edgevid export --triton`` writes for a tiny model,
then times ``backend.run`` for the same clips through the local ONNX Runtime backend and
through ``triton://``: per call p50/p95 (batch 1 = one camera, batch 4 = four cameras in
one request), the client's round trip and the network share (round trip minus the server's
own time per request, from its statistics). All numbers come from one run; the minimum is
reported beside p50/p95 because on a shared machine the percentiles are mostly waiting.

    python benchmarks/bench_triton.py [--variant tiny-prune8] [--calls 200]

Writes benchmarks/results/bench_triton.json. Imports torch (to export the graph).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgevid.runtime.stats import percentiles  # noqa: E402
from tests.triton.server import TritonServer, provision, python_model  # noqa: E402


def export_graph(variant: str, work: Path) -> Path:
    import torch

    from edgevid.export.torch_to_onnx import torch_to_onnx
    from edgevid.train.checkpoint import meta_for
    from edgevid.train.models import create_model

    torch.manual_seed(0)
    model = create_model(variant).eval()
    return torch_to_onnx(model, meta_for(model), work / f"{variant}.onnx")


def time_calls(backend, x: np.ndarray, calls: int) -> list[float]:
    backend.run(x)  # warm-up (sessions, channels)
    seconds = []
    for _ in range(calls):
        t0 = time.perf_counter()
        backend.run(x)
        seconds.append(time.perf_counter() - t0)
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variant", default="tiny-prune8")
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_triton.json"))
    args = ap.parse_args()
    where = provision()
    if isinstance(where, str):
        sys.exit(f"bench_triton: {where}")

    from edgevid.export.triton import write_repository
    from edgevid.runtime.backends import load_backend

    work = Path(tempfile.mkdtemp(prefix="bench-triton-"))
    graph = export_graph(args.variant, work)
    (folder,) = write_repository(work / "repo", [graph], max_batch_size=4)
    python_model(folder)
    server = TritonServer(work / "repo", work).start()
    rows = []
    try:
        local = load_backend(graph, "cpu", threads=1)  # the server's model runs 1 thread too
        uri = f"triton://127.0.0.1:{server.grpc_port}/{folder.name}"
        m = local.meta
        for batch in (1, 4):
            remote = load_backend(uri)  # its own statistics window per batch size
            x = np.random.default_rng(0).standard_normal(
                (batch, m.num_frames, 3, m.image_size, m.image_size), dtype=np.float32
            )
            np.testing.assert_allclose(remote.run(x), local.run(x), atol=1e-5)
            for name, backend in (("local onnxruntime", local), ("triton://", remote)):
                row = {"backend": name, "batch": batch}
                seconds = time_calls(backend, x, args.calls)
                row["min"] = round(min(seconds) * 1e3, 3)  # robust on a busy machine
                rows.append({**row, **percentiles(seconds)})
            network = remote.timings()["network"][0]
            rows[-1]["network_ms"] = round(network * 1e3, 3)
            remote.close()
    finally:
        server.stop()
    result = {
        "variant": args.variant,
        "calls": args.calls,
        "server_start_s": round(server.start_s, 2),
        "rows": rows,
        "machine": f"{platform.machine()} {platform.processor()}",
        "load_average": [round(v, 2) for v in os.getloadavg()],  # others share this CPU
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"tritonserver ready in {server.start_s:.2f} s")
    print("| backend | batch | min ms | p50 ms | p95 ms | network (mean) ms |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        cells = [r["backend"], r["batch"], *(f"{r[k]:.2f}" for k in ("min", "p50", "p95"))]
        cells.append(f"{r['network_ms']:.2f}" if "network_ms" in r else "-")
        print("| " + " | ".join(map(str, cells)) + " |")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
