"""The one place OpenCV is imported: FFmpeg and OpenCV chatter is silenced first.

A corrupt file must give the user one clear edgevid line, not pages of decoder warnings.
Set OPENCV_FFMPEG_LOGLEVEL / OPENCV_LOG_LEVEL yourself to see them again.
"""

import os

os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")

import cv2  # noqa: E402

__all__ = ["cv2"]
