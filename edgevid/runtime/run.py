"""The loop with its outputs, as one call: what ``edgevid run`` (and the demo) do.

    streamer = Streamer(["cam.mp4"], "prune4.onnx", StreamConfig(every=8))
    outcome = run_streams(streamer, output="annotated.mp4", json_path="results.jsonl")
    print(streamer.stats.format())

JSON lines go to ``json_path`` (written atomically) and/or ``on_result``; the annotated
video(s) to ``output``; ``show`` opens a window. Ctrl-C ends the run like the end of the
stream: files are finished and kept. Any error discards them: no partial file is left.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from edgevid._atomic import atomic_path
from edgevid.runtime.render import Renderer
from edgevid.runtime.stats import Stats
from edgevid.runtime.stream import Result, Streamer


@dataclass
class RunOutcome:
    stats: Stats  # frames, drops, inferences, per-stage latency
    written: list[Path] = field(default_factory=list)  # annotated videos and the JSON file
    interrupted: bool = False  # ended by Ctrl-C rather than by the end of the streams


def run_streams(
    streamer: Streamer,
    *,
    output: str | os.PathLike | None = None,
    show: bool = False,
    json_path: str | os.PathLike | None = None,
    on_result: Callable[[Result], None] | None = None,
) -> RunOutcome:
    """Run ``streamer`` to its end (or Ctrl-C, or q in the window), writing its outputs."""
    ok, interrupted, renderer = False, False, None
    try:
        renderer = Renderer(streamer, output, show)
        with _json_lines(json_path) as out:
            try:
                for step in streamer.steps():
                    for result in step.results:
                        if out is not None:
                            out.write(json.dumps(result.to_json()) + "\n")
                        if on_result is not None:
                            on_result(result)
                    if not renderer(step):
                        break
            except KeyboardInterrupt:  # how a camera run normally ends
                interrupted = True
            ok = True
    finally:
        streamer.close()
        written = renderer.close(ok) if renderer is not None else []
    if json_path is not None:
        written.append(Path(json_path))
    return RunOutcome(streamer.stats, written, interrupted)


@contextlib.contextmanager
def _json_lines(path: str | os.PathLike | None) -> Iterator[TextIO | None]:
    if path is None:
        yield None
        return
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        yield f
