"""``edgevid run`` and ``edgevid bench``: real-time classification and its benchmark.

Core install only (numpy, OpenCV, ONNX Runtime, click): nothing here imports torch.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from edgevid.cli._options import (
    HiddenArgument,
    deprecated_alias,
    device_option,
    emit_json,
    json_option,
    settable,
)
from edgevid.core.precision import OPENVINO_CHOICES
from edgevid.progress import is_quiet
from edgevid.runtime.backends.base import BATCHING
from edgevid.runtime.motion import GATES, MotionConfig

PRECISION_HELP = (
    "OpenVINO inference precision [default: auto = bf16 where the CPU has it]. On a GPU with "
    "TensorRT (Jetson) a .onnx builds as exported; fp16 converts an FP32 graph to FP16 first."
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
    ".engine/.plan (TensorRT), an export folder (its FP32 graph), a training checkpoint "
    "folder (exported on the fly when torch is installed), or a model served by Triton: "
    "triton://HOST:PORT/MODEL (gRPC port; pip install 'edgevid[triton]').",
)  # fmt: skip
@click.option("--every", default=8, show_default=True, type=click.IntRange(min=1),
              help="One inference every K frames.")  # fmt: skip
@click.option("--stride", type=click.IntRange(min=1), default=None,
              help="Frames between buffered frames [default: from the model's sampling "
              "metadata and the stream fps].")  # fmt: skip
@click.option("--gate", type=click.Choice(GATES), default="none", show_default=True,
              help="motion: classify a stream's window only if something moved in it (a "
              "cheap frame-difference detector); a still camera then costs its decode, not "
              "the model, and its open segment closes when it goes still. See "
              "docs/multi-camera.md.")  # fmt: skip
@click.option("--motion-threshold", default=MotionConfig.threshold, show_default=True,
              type=click.IntRange(1, 255),
              help="Grey levels a pixel must change by to count as moving "
              "(--gate motion).")  # fmt: skip
@click.option("--motion-area", default=MotionConfig.min_area, show_default=True,
              type=click.FloatRange(0, 1),
              help="Share of the frame that must move for a frame to count as moving "
              "(--gate motion).")  # fmt: skip
@click.option("--batching", type=click.Choice(BATCHING), default="auto", show_default=True,
              help="Several streams due at once: auto runs their clips as one batched call "
              "or one call each, whichever measured faster on this backend (timed once per "
              "batch size, shown in the summary); batch or split forces one.")  # fmt: skip
@click.option("--smooth", default="ema:0.6", show_default=True, help="ema:A | mean:N | none.")
@click.option("--threshold", default=0.0, show_default=True, type=click.FloatRange(0, 1),
              help='Below this probability the label is "uncertain".')  # fmt: skip
@click.option("--top-k", default=3, show_default=True, type=click.IntRange(min=1),
              help="Classes reported per result.")  # fmt: skip
@json_option("Every result, one line each, written and flushed as it is produced (tail -f "
             "it),", default="-")  # fmt: skip
@click.option(
    "--events",
    "events_path",
    default=None,
    help="Live JSON-lines log of action segments (opened / closed): FILE or -.",
)
@click.option("--publish", default=None, metavar="mqtt[s]://[USER[:PASS]@]HOST[:PORT]/TOPIC",
              help="Publish every result to TOPIC and every segment event to TOPIC/segments "
              "(needs edgevid[mqtt]); TOPIC/availability (retained) says online/offline, "
              "offline also as the last will when the process dies. mqtts:// is TLS. A dead "
              "broker never stalls the video: messages wait in a bounded outbox, then are "
              "dropped and counted.")  # fmt: skip
@click.option(
    "--mqtt-outbox",
    default=1000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Messages held while the broker is away before new ones are dropped.",
)
@click.option("--mqtt-ca", type=click.Path(dir_okay=False), default=None,
              help="CA certificate (PEM) that signed an mqtts:// broker's certificate "
              "[default: $EDGEVID_MQTT_CA, else the system's CAs]. Credentials: "
              "mqtt://USER:PASSWORD@HOST/TOPIC, or $EDGEVID_MQTT_USERNAME and "
              "$EDGEVID_MQTT_PASSWORD (kept off the command line).")  # fmt: skip
@click.option("--segment-threshold", default=0.5, show_default=True,
              type=click.FloatRange(0, 1),
              help="A label must reach this probability to open a segment.")  # fmt: skip
@click.option("--segment-release", default=0.35, show_default=True,
              type=click.FloatRange(0, 1),
              help="An open segment holds while its label stays at or above this.")  # fmt: skip
@click.option("--segment-min-s", default=None, type=click.FloatRange(min=0),
              help="Seconds a label must hold to open, and be gone to close, a segment "
              "[default: half the model's window].")  # fmt: skip
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Annotated video (label, score bar, fps, segment timeline); out_N.mp4 "
              "per stream if several.")  # fmt: skip
@click.option("--output-segment-s", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Write the video in parts of N seconds (out-0000.mp4, out-0001.mp4, ...), "
              "each published as soon as it is complete: for long live runs.")  # fmt: skip
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
@device_option()
@click.option("--precision", type=click.Choice(OPENVINO_CHOICES), default=None, help=PRECISION_HELP)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU inference threads.")
@click.option("--status-s", default=30.0, show_default=True, type=click.FloatRange(min=0),
              help="Every N seconds a status record (type status: per stream fps, dropped "
              "frames, age of the last result, p50 latency; the backend) in the --json log "
              "and on MQTT TOPIC/status, and one line on stderr. 0: none.")  # fmt: skip
@click.option("--metrics-port", type=click.IntRange(1, 65535), default=None,
              help="Serve Prometheus metrics on http://HOST:N/metrics and a health check on "
              "/healthz (200; 503 while a stream is down); needs edgevid[metrics].")  # fmt: skip
@click.option("--metrics-host", default="127.0.0.1", show_default=True,
              help="Address the metrics server binds: 0.0.0.0 to be scraped from other "
              "hosts (in a container, with a published port).")  # fmt: skip
@click.option("--unhealthy-after", default=30.0, show_default=True, type=POSITIVE,
              help="A stream with no frame for N seconds is down: the status says so, "
              "edgevid_stream_up is 0 and /healthz answers 503.")  # fmt: skip
@click.option("--quiet", "-q", is_flag=True, help="No end-of-run summary on stderr.")
def run(
    sources: tuple[str, ...], model: str, every: int, stride: int | None, gate: str,
    motion_threshold: int, motion_area: float, batching: str, smooth: str,
    threshold: float, top_k: int, json_path: str, events_path: str | None,
    publish: str | None, mqtt_outbox: int, mqtt_ca: str | None, segment_threshold: float,
    segment_release: float,
    segment_min_s: float | None, output: Path | None, output_segment_s: float | None,
    show: bool, realtime: bool, max_frames: int | None, reconnect_timeout: float,
    timeout: float, queue_size: int, device: str, precision: str | None, threads: int | None,
    status_s: float, metrics_port: int | None, metrics_host: str, unhealthy_after: float,
    quiet: bool,
) -> None:  # fmt: skip
    """Classify actions in camera, network or file streams in real time.

    Frames go through a rolling buffer of T frames spaced like the model's training clips;
    every K frames the buffer is classified. Every result leaves as it is produced: a JSON
    line on stdout (or --json FILE) with stream, source, model, time (wall clock),
    frame, timestamp (media time), window_start, label, score, top_k, latency_ms; and on
    MQTT with --publish. Results become action segments (a label holding for a while,
    with hysteresis): --events FILE logs them as they open and close, the annotated video
    draws them as a timeline, the summary lists them.

    While it runs, a status line goes to stderr every --status-s seconds (and a status
    record beside the results); --metrics-port serves Prometheus metrics and /healthz.
    The backend that runs the model is named on stderr at the start.

    A summary (frames read/dropped, fps, latency p50/p95/p99 per stage, segments) goes to
    stderr at the end. Ctrl-C, SIGTERM (docker stop) and SIGHUP end a run the same way:
    the video is finished, the logs are complete, the summary is printed, exit code 0.

    Every option can also come from an environment variable EDGEVID_RUN_<OPTION> (e.g.
    EDGEVID_RUN_MODEL, EDGEVID_RUN_TOP_K; several --source separated by spaces) or from the
    [run] table of a TOML --config FILE. Command line > environment > config file > default.

    \b
    Examples:
      edgevid run --source /dev/video0 --model prune4.onnx --show
      edgevid run -s clip.mp4 -m prune8-int8.onnx --output annotated.mp4 --events -
      edgevid run -s rtsp://cam1/stream -s rtsp://cam2/stream -m prune4.engine --json out.jsonl
      edgevid run -s rtsp://cam3/stream -m triton://gpu-box:8001/prune4
      edgevid run -s csi://0 -m prune4.engine --publish mqtt://broker:1883/edgevid/cam0 \\
          --output live.mp4 --output-segment-s 300
    """
    from edgevid.core.redact import redact
    from edgevid.runtime.capture import CaptureConfig
    from edgevid.runtime.classifier import Classifier
    from edgevid.runtime.health import HealthConfig, Monitor
    from edgevid.runtime.outputs import MqttConfig
    from edgevid.runtime.run import Delivery, run_streams, stop_on_signals
    from edgevid.runtime.segments import SegmentConfig
    from edgevid.runtime.smoothing import make_smoother
    from edgevid.runtime.sources import SourceOptions
    from edgevid.runtime.streamer import StreamConfig, Streamer

    make_smoother(smooth)  # a bad --smooth fails before the model loads
    config = StreamConfig(
        every=every, stride=stride, smooth=smooth, threshold=threshold, top_k=top_k,
        max_frames=max_frames, gate=gate, batching=batching,
        motion=MotionConfig(threshold=motion_threshold, min_area=motion_area),
        capture=CaptureConfig(queue_size, realtime, reconnect_timeout),
        options=SourceOptions(timeout_s=timeout),
    )  # fmt: skip
    seg_overrides = {"open_threshold": segment_threshold, "close_threshold": segment_release}
    SegmentConfig(**seg_overrides).validate()  # bad thresholds fail before anything opens
    check_output_paths(sources, model, json_path, events_path, output, output_segment_s)
    with stop_on_signals():
        # outputs first: a bad path or an unreachable broker fails before the model loads
        mqtt = MqttConfig(outbox=mqtt_outbox, ca=mqtt_ca)
        delivery = Delivery(json_path, events_path, publish, mqtt)
        monitor = None
        try:  # the metrics port is bound now too: one in use fails before the model loads
            health = HealthConfig(status_s, unhealthy_after, metrics_port, metrics_host, not quiet)
            monitor = Monitor(health)
            clf = Classifier(model, device=device, threads=threads, precision=precision)
            streamer = Streamer(sources, clf, config)
        except BaseException:
            if monitor is not None:
                monitor.close()
            delivery.abort()
            raise
        if segment_min_s is not None:
            seg_overrides.update(min_on_s=segment_min_s, min_off_s=segment_min_s)
        outcome = None
        try:
            outcome = run_streams(streamer, output=output, show=show, segments=seg_overrides,
                                  output_segment_s=output_segment_s,
                                  delivery=delivery, monitor=monitor)  # fmt: skip
        finally:  # the summary comes even when a stream is lost mid-run
            read = sum(c.frames_read for c in streamer.stats.streams)
            if not quiet and (outcome is not None or read):
                click.echo(streamer.stats.format(), err=True)
                click.echo(f"  model {redact(model)} on {clf.backend.name}", err=True)
    if quiet:  # the summary names damaged files otherwise
        for damaged in streamer.stats.summary()["damaged_files"]:
            click.echo(f"edgevid: warning: {damaged}", err=True)
        return
    click.echo(outcome.format_segments(), err=True)
    for line in outcome.report:
        click.echo(line, err=True)
    if outcome.stopped_by:
        click.echo(f"stopped by {outcome.stopped_by}", err=True)
    for path in outcome.written:
        click.echo(f"wrote {path}", err=True)


def check_output_paths(
    sources: tuple[str, ...], model: str, json_path: str | None, events_path: str | None,
    output: Path | None, segment_s: float | None,
) -> None:  # fmt: skip
    """Refuse, before anything is opened, an output that is a source, the model, its
    sidecar or backend cache, or another output (--json and --events may share a log)."""
    from edgevid._atomic import refuse_overlaps
    from edgevid.core.artifact import sidecar_path
    from edgevid.runtime.backends.choice import cache_path
    from edgevid.runtime.render import is_part_of, output_paths

    inputs = [("--source", s) for s in sources if Path(s.removeprefix("file://")).exists()]
    if Path(model).is_file():
        inputs += [("--model", model), ("--model's sidecar", sidecar_path(model)),
                   ("--model's backend cache", cache_path(model))]  # fmt: skip
    logs = dict.fromkeys(p for p in (json_path, events_path) if p not in (None, "-"))
    outputs = [("--json" if p == json_path else "--events", p) for p in logs]
    for video in output_paths(output, len(sources)) if output is not None else []:
        outputs.append(("--output", video))
        if segment_s:  # its parts out-0000.mp4 ...: any of them that is an input
            folder = os.path.realpath(video.parent)
            outputs += [("--output", p) for _, p in inputs if is_part_of(video, Path(p).name)
                        and os.path.dirname(os.path.realpath(p)) == folder]  # fmt: skip
    refuse_overlaps(outputs, inputs)


@click.command("bench")
@click.option(
    "--model",
    "-m",
    "models",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Model file to benchmark; repeat for several (each in a fresh process).",
)
@click.argument("old_models", nargs=-1, type=click.Path(path_type=Path), cls=HiddenArgument)
@click.option("--source", "-s", "video", type=click.Path(dir_okay=False, path_type=Path),
              help="Video file to run every model on.")  # fmt: skip
@deprecated_alias("--video", "--source", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--every", default=8, show_default=True, type=click.IntRange(min=1),
              help="One inference every K frames.")  # fmt: skip
@click.option("--max-frames", type=click.IntRange(min=1), default=None,
              help="Stop after N frames per model.")  # fmt: skip
@click.option("--target-fps", default=30.0, show_default=True, type=POSITIVE,
              help="Camera rate to keep up with.")  # fmt: skip
@device_option()
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU inference threads.")
@json_option("The results")
def bench(
    models: tuple[Path, ...], old_models: tuple[Path, ...], video: Path | None,
    video_deprecated: Path | None, every: int, max_frames: int | None, target_fps: float,
    device: str, threads: int | None, json_path: str | None,
) -> None:  # fmt: skip
    """Benchmark the runtime on a video file: end-to-end fps and time per stage per model.

    Each model runs in a fresh process; reported: inference p50, end-to-end fps, the
    runtime's overhead (decode + preprocess + buffer, goal <= 10% of inference), peak RSS
    (goal <= model size + 300 MB), and whether it keeps up with a --target-fps camera at
    one inference every --every frames.

    \b
    Example:
      edgevid bench -m prune8.onnx -m prune8-int8.onnx -s clip.mp4 --json bench.json
    """
    from edgevid._atomic import refuse_overlaps
    from edgevid.cli._options import log
    from edgevid.core.video import probe_video
    from edgevid.errors import ModelError
    from edgevid.runtime.bench import bench_models, format_table

    if old_models:
        log.warning("edgevid: warning: models as arguments are deprecated; use -m/--model")
    models, video = models + old_models, video or video_deprecated
    if not models:
        raise click.UsageError("Missing option '-m' / '--model'.")
    if video is None:
        raise click.UsageError("Missing option '-s' / '--source'.")
    if json_path not in (None, "-"):  # never over the video or a model
        refuse_overlaps(
            [("--json", json_path)], [("--source", video), *(("model", m) for m in models)]
        )
    probe_video(video)  # a bad video fails once, clearly, before any model loads
    for m in models:
        if not m.is_file():
            raise ModelError(f"{m}: model file not found")
    rows = []
    with click.progressbar(models, label="benchmarking", file=sys.stderr,
                           hidden=is_quiet()) as bar:  # fmt: skip
        for m in bar:
            rows += bench_models(
                [m], video, every=every, max_frames=max_frames, target_fps=target_fps,
                device=device, threads=threads,
            )  # fmt: skip
    if json_path is None:
        click.echo(format_table(rows))
        return
    try:
        if not emit_json(json_path, rows):
            click.echo(format_table(rows))
    except OSError:  # the results are not lost with the file: they go to stdout
        click.echo(json.dumps(rows, indent=2))
        raise


@click.command("healthcheck")
@click.option("--port", type=click.IntRange(1, 65535), default=9100, show_default=True,
              envvar="EDGEVID_RUN_METRICS_PORT", show_envvar=True,
              help="The --metrics-port of the run to ask.")  # fmt: skip
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Where that run serves it.")  # fmt: skip
@click.option("--timeout", default=4.0, show_default=True, type=POSITIVE,
              help="Seconds to wait for the answer.")  # fmt: skip
def healthcheck(port: int, host: str, timeout: float) -> None:
    """Ask a running `edgevid run --metrics-port N` how it is: exit 0 when its /healthz
    answers 200, 1 when it answers 503 (a stream is down) or not at all.

    The images' Docker HEALTHCHECK (docker/): the port comes from EDGEVID_RUN_METRICS_PORT,
    as for `edgevid run`.

    \b
    Example:
      edgevid run -s rtsp://cam1/stream -m prune4.onnx --metrics-port 9100 &
      edgevid healthcheck --port 9100
    """
    from edgevid.runtime.health import check_health

    click.echo(json.dumps(check_health(host, port, timeout)))


settable(run, "EDGEVID_RUN", "run")
COMMANDS = [run, bench, healthcheck]
