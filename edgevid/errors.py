"""Typed errors. Library code raises these; only the CLI turns them into an exit code.

Every message is written to stand alone as one line on stderr: it names the thing that is
wrong (a path, a URI, an option) and, where there is one, the fix.
"""

from __future__ import annotations


class EdgevidError(Exception):
    """Base class of every error edgevid reports to a user."""

    exit_code = 2


class DataError(EdgevidError):
    """A dataset, manifest or split is missing, empty or malformed."""


class VideoError(DataError):
    """A video file cannot be opened or decoded (missing, corrupt, not a video, no frames)."""


class ModelError(EdgevidError):
    """A model name, checkpoint, weights folder or model file is unusable."""


class MetadataError(ModelError):
    """Model metadata is missing, malformed or does not match what the caller needs."""


class ExportError(EdgevidError):
    """An export or verification step failed."""


class SourceError(EdgevidError):
    """A stream source (camera, file, URL, pipeline) cannot be opened or was lost."""


class MissingDependencyError(EdgevidError):
    """An optional dependency (an ``edgevid[...]`` extra) is not installed."""

    def __init__(self, package: str, extra: str, purpose: str = "") -> None:
        what = f" for {purpose}" if purpose else ""
        super().__init__(
            f"'{package}' is needed{what} but is not installed: pip install 'edgevid[{extra}]'"
        )
        self.package = package
        self.extra = extra


def require(module: str, extra: str, purpose: str = ""):
    """Import an optional dependency or raise :class:`MissingDependencyError`."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:  # only a missing module, not a broken one, is a user error
        if e.name is not None and e.name.split(".")[0] != module.split(".")[0]:
            raise
        raise MissingDependencyError(module.split(".")[0], extra, purpose) from e
