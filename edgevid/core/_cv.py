"""The one place OpenCV is imported: FFmpeg and OpenCV chatter is silenced first.

A corrupt file must give the user one clear edgevid line, not pages of decoder warnings.
Set OPENCV_FFMPEG_LOGLEVEL / OPENCV_LOG_LEVEL yourself to see them again.
"""

import os

os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")

import cv2  # noqa: E402


def build_info(key: str) -> str:
    """The line of OpenCV's build information that starts with ``key:`` ("" if none)."""
    return next(
        (s for s in cv2.getBuildInformation().splitlines() if s.strip().startswith(key + ":")), ""
    )


__all__ = ["build_info", "cv2"]
