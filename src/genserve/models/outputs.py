"""PNG and MP4 files, written atomically (temp file in the same folder, then os.replace).

MP4 uses imageio-ffmpeg: its PyPI wheel ships a static ffmpeg binary, so H.264 works without a system ffmpeg.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

MIN_SIDE = 16  # frames smaller than this are edge-padded before H.264 encoding


def to_uint8(x) -> np.ndarray:
    """A torch tensor (C, H, W) / (F, C, H, W) in [0, 1], or a uint8/float array in HWC layout -> uint8 HWC."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu()
        x = x.permute(*range(x.dim() - 3), -2, -1, -3).numpy()  # channels last
    x = np.asarray(x)
    if x.dtype != np.uint8:
        x = (np.clip(x, 0.0, 1.0) * 255).round().astype(np.uint8)  # same rounding as diffusers' numpy_to_pil
    return x


def _atomic(path: str | os.PathLike, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def save_png(image, path: str | os.PathLike) -> Path:
    """Write one image (tensor (3, H, W) in [0, 1], HWC array or PIL image) as PNG."""
    from PIL import Image

    img = image if isinstance(image, Image.Image) else Image.fromarray(to_uint8(image))
    return _atomic(path, lambda tmp: img.save(tmp, format="PNG"))


def _even_padded(frames: np.ndarray) -> np.ndarray:
    """yuv420p needs even sides; pad (edge) to even and to at least MIN_SIDE rather than rescale."""
    _, h, w, _ = frames.shape
    ph = max(MIN_SIDE, h + h % 2) - h
    pw = max(MIN_SIDE, w + w % 2) - w
    if ph or pw:
        frames = np.pad(frames, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
    return frames


def save_mp4(frames, path: str | os.PathLike, fps: int = 16, quality: int = 18) -> Path:
    """Write a video (tensor (F, 3, H, W) in [0, 1] or uint8 array (F, H, W, 3)) as H.264 MP4 (yuv420p)."""
    import imageio_ffmpeg

    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    arr = np.ascontiguousarray(to_uint8(frames))
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"expected frames (F, 3, H, W) or (F, H, W, 3), got shape {arr.shape}")
    arr = _even_padded(arr)
    n, h, w, _ = arr.shape

    def write(tmp: str) -> None:
        writer = imageio_ffmpeg.write_frames(tmp, (w, h), fps=fps, codec="libx264", pix_fmt_in="rgb24",
                                             pix_fmt_out="yuv420p", macro_block_size=1, quality=None,
                                             output_params=["-crf", str(quality), "-f", "mp4"])
        writer.send(None)
        for frame in arr:
            writer.send(frame)
        writer.close()
        if os.path.getsize(tmp) == 0:  # ffmpeg can fail without the pipe noticing
            raise OSError(f"ffmpeg wrote no video for {path}")

    return _atomic(path, write)
