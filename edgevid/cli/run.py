"""``edgevid run`` and ``edgevid bench``: real-time classification and its benchmark.

Core install only (numpy, OpenCV, ONNX Runtime, click): nothing here imports torch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

DEVICES = ("auto", "cpu", "cuda", "tensorrt", "openvino")  # edgevid.runtime.backends.DEVICES
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # edgevid.runtime.backends.PRECISIONS, lazily
DEVICE_HELP = (
    "auto: GPU if ONNX Runtime has one, else the faster of ONNX Runtime and OpenVINO for this "
    "graph (timed once, cached in <model>.backend.json); cpu: ONNX Runtime CPU; openvino."
)
PRECISION_HELP = (
    "OpenVINO inference precision [default: auto = bf16 where the CPU has it]. On a GPU with "
    "TensorRT (Jetson), fp32 keeps an FP32 .onnx off FP16 kernels."
)
POSITIVE = click.FloatRange(min=0, min_open=True)


@click.command("run")
@click.option(
    "--source", "-s", "sources", multiple=True, required=True,
    help="Video file, image folder, /dev/videoN | N, rtsp:// http:// udp:// ..., csi://N, "
    "or a GStreamer pipeline. Repeat for several streams (batched into one inference).",
)  # fmt: skip
@click.option(
    "--model", "-m", required=True,
    help="Exported model: .onnx (ONNX Runtime or OpenVINO), .xml (OpenVINO IR) or "
    ".engine/.plan (TensorRT), or a model served by Triton: triton://HOST:PORT/MODEL "
    "(gRPC port; pip install 'edgevid[triton]').",
)  # fmt: skip
@click.option("--every", default=8, show_default=True, type=click.IntRange(min=1),
              help="One inference every K frames.")  # fmt: skip
@click.option("--stride", type=click.IntRange(min=1), default=None,
              help="Frames between buffered frames [default: from the model's sampling "
              "metadata and the stream fps].")  # fmt: skip
@click.option("--smooth", default="ema:0.6", show_default=True, help="ema:A | mean:N | none.")
@click.option("--threshold", default=0.0, show_default=True, type=click.FloatRange(0, 1),
              help='Below this probability the label is "uncertain".')  # fmt: skip
@click.option("--top-k", default=3, show_default=True, type=click.IntRange(min=1),
              help="Classes reported per result.")  # fmt: skip
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the JSON lines to FILE instead of stdout.")  # fmt: skip
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Annotated video (label, score bar, fps); out_N.mp4 per stream "
              "if several.")  # fmt: skip
@click.option("--show", is_flag=True, help="Show the annotated stream in a window (q quits).")
@click.option("--realtime", is_flag=True, help="Pace files at their fps, like a camera.")
@click.option("--max-frames", type=click.IntRange(min=1), default=None,
              help="Stop each stream after N frames.")  # fmt: skip
@click.option("--reconnect-timeout", default=10.0, type=click.FloatRange(min=0), show_default=True,
              help="Seconds to keep reconnecting a lost live stream before failing.")  # fmt: skip
@click.option("--timeout", default=5.0, type=POSITIVE, show_default=True,
              help="Network stream open/read timeout in seconds.")  # fmt: skip
@click.option("--queue-size", default=4, show_default=True, type=click.IntRange(min=1),
              help="Frames buffered per live source before the oldest is dropped.")  # fmt: skip
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
              help=DEVICE_HELP)  # fmt: skip
@click.option("--precision", type=click.Choice(PRECISIONS), default=None, help=PRECISION_HELP)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU inference threads.")
@click.option("--quiet", "-q", is_flag=True, help="No end-of-run summary on stderr.")
def run(
    sources: tuple[str, ...], model: str, every: int, stride: int | None, smooth: str,
    threshold: float, top_k: int, json_path: Path | None, output: Path | None, show: bool,
    realtime: bool, max_frames: int | None, reconnect_timeout: float, timeout: float,
    queue_size: int, device: str, precision: str | None, threads: int | None, quiet: bool,
) -> None:  # fmt: skip
    """Classify actions in camera, network or file streams in real time.

    Frames go through a rolling buffer of T frames spaced like the model's training clips;
    every K frames the buffer is classified. One JSON line per result on stdout (or --json
    FILE): stream, frame, timestamp, label, score, top_k, latency_ms. A summary (frames
    read/dropped, fps, latency p50/p95/p99 per stage) goes to stderr at the end or on Ctrl-C.

    \b
    Examples:
      edgevid run --source /dev/video0 --model prune4.onnx --show
      edgevid run -s clip.mp4 -m prune8-int8.onnx --output annotated.mp4
      edgevid run -s rtsp://cam1/stream -s rtsp://cam2/stream -m prune4.engine --json out.jsonl
      edgevid run -s csi://0 -m prune4.engine --smooth mean:4 --threshold 0.5
      edgevid run -s rtsp://cam3/stream -m triton://gpu-box:8001/prune4
    """
    from edgevid.runtime.capture import CaptureConfig
    from edgevid.runtime.classifier import Classifier
    from edgevid.runtime.run import run_streams
    from edgevid.runtime.smoothing import make_smoother
    from edgevid.runtime.sources import SourceOptions
    from edgevid.runtime.stream import StreamConfig, Streamer

    make_smoother(smooth)  # a bad --smooth fails before the model loads
    config = StreamConfig(
        every=every, stride=stride, smooth=smooth, threshold=threshold, top_k=top_k,
        max_frames=max_frames,
        capture=CaptureConfig(queue_size, realtime, reconnect_timeout),
        options=SourceOptions(timeout_s=timeout),
    )  # fmt: skip
    clf = Classifier(model, device=device, threads=threads, precision=precision)
    if clf.backend.selection and not quiet:
        click.echo(clf.backend.selection, err=True)  # once: which engine --device auto took
    streamer = Streamer(sources, clf, config)
    to_stdout = None if json_path is not None else _print_json
    outcome = None
    try:
        outcome = run_streams(streamer, output=output, show=show, json_path=json_path,
                              on_result=to_stdout)  # fmt: skip
    finally:  # the summary comes even when a stream is lost mid-run
        if not quiet and (outcome is not None or streamer.stats.latency):
            click.echo(streamer.stats.format(), err=True)
            click.echo(f"  model {model} on {clf.backend.name}", err=True)
    if not quiet:
        for path in outcome.written:
            click.echo(f"wrote {path}", err=True)


def _print_json(result) -> None:
    click.echo(json.dumps(result.to_json()))  # flushed per line: pipe it to jq, tail it


@click.command("bench")
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--video", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Video file to run every model on.")  # fmt: skip
@click.option("--every", default=8, show_default=True, type=click.IntRange(min=1),
              help="One inference every K frames.")  # fmt: skip
@click.option("--max-frames", type=click.IntRange(min=1), default=None,
              help="Stop after N frames per model.")  # fmt: skip
@click.option("--target-fps", default=30.0, show_default=True, type=POSITIVE,
              help="Camera rate to keep up with.")  # fmt: skip
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU inference threads.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the results as JSON to FILE.")  # fmt: skip
def bench(
    models: tuple[Path, ...], video: Path, every: int, max_frames: int | None,
    target_fps: float, device: str, threads: int | None, json_path: Path | None,
) -> None:  # fmt: skip
    """Benchmark the runtime on a video file: end-to-end fps and time per stage per model.

    Each model runs in a fresh process; reported: inference p50, end-to-end fps, the
    runtime's overhead (decode + preprocess + buffer, goal <= 10% of inference), peak RSS
    (goal <= model size + 300 MB), and whether it keeps up with a --target-fps camera at
    one inference every --every frames.

    \b
    Example:
      edgevid bench prune8.onnx prune8-int8.onnx --video clip.mp4 --json bench.json
    """
    from edgevid._atomic import write_json
    from edgevid.core.video import probe_video
    from edgevid.errors import ModelError
    from edgevid.runtime.bench import bench_models, format_table

    probe_video(video)  # a bad video fails once, clearly, before any model loads
    for m in models:
        if not m.is_file():
            raise ModelError(f"{m}: model file not found")
    rows = []
    with click.progressbar(models, label="benchmarking", file=sys.stderr) as bar:
        for m in bar:
            rows += bench_models(
                [m], video, every=every, max_frames=max_frames, target_fps=target_fps,
                device=device, threads=threads,
            )  # fmt: skip
    click.echo(format_table(rows))
    if json_path is not None:
        try:
            write_json(json_path, rows)
        except OSError:  # the results are not lost with the file: they go to stdout
            click.echo(json.dumps(rows, indent=2))
            raise
        click.echo(f"wrote {json_path}", err=True)


COMMANDS = [run, bench]
