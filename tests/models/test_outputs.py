"""Output shapes and files: PNG readable, MP4 H.264 with the right frame count, atomic writes."""

import os

import imageio_ffmpeg
import numpy as np
import pytest
import torch
from PIL import Image

from genserve.models import save_mp4, save_png
from genserve.models.outputs import _atomic
from models_helpers import image_req, video_req


def test_png_from_the_image_adapter(sd3, tmp_path):
    img = sd3.run(image_req(width=48, height=32))
    assert img.shape == (3, 32, 48) and img.dtype == torch.float32 and 0 <= img.min() and img.max() <= 1
    path = save_png(img, tmp_path / "out" / "a.png")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (48, 32) and im.mode == "RGB"
        px = np.asarray(im)
    expected = (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(px, expected)
    assert os.listdir(tmp_path / "out") == ["a.png"]  # no temp file left behind


def test_mp4_from_the_video_adapter(wan, tmp_path):
    video = wan.run(video_req(width=64, height=32, frames=9, steps=2))
    assert video.shape == (9, 3, 32, 64)
    path = save_mp4(video, tmp_path / "v.mp4", fps=8)
    assert path.stat().st_size > 0
    frames, secs = imageio_ffmpeg.count_frames_and_secs(str(path))
    assert frames == 9 and secs == pytest.approx(9 / 8, abs=0.2)
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = reader.__next__()
    assert tuple(meta["size"]) == (64, 32) and "h264" in meta["codec"]
    assert len(list(reader)) == 9
    assert os.listdir(tmp_path) == ["v.mp4"]


def test_mp4_pads_tiny_odd_frames(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, size=(3, 7, 9, 3), dtype=np.uint8)
    path = save_mp4(frames, tmp_path / "tiny.mp4")
    reader = imageio_ffmpeg.read_frames(str(path))
    assert tuple(reader.__next__()["size"]) == (16, 16)
    assert imageio_ffmpeg.count_frames_and_secs(str(path))[0] == 3


def test_overwrite_is_atomic_replace(tmp_path):
    target = tmp_path / "x.png"
    save_png(np.zeros((4, 4, 3), dtype=np.uint8), target)
    save_png(np.full((4, 4, 3), 255, dtype=np.uint8), target)
    with Image.open(target) as im:
        assert np.asarray(im).min() == 255
    assert os.listdir(tmp_path) == ["x.png"]


def test_failed_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "v.mp4"
    save_mp4(np.zeros((2, 16, 16, 3), dtype=np.uint8), target)
    before = target.read_bytes()
    with pytest.raises(ValueError, match="shape"):
        save_mp4(np.zeros((2, 16, 16), dtype=np.uint8), target)
    with pytest.raises(ValueError, match="fps"):
        save_mp4(np.zeros((2, 16, 16, 3), dtype=np.uint8), target, fps=0)

    # A writer that fails half way: the temp file goes, the old output stays.
    def half_then_fail(tmp):
        open(tmp, "wb").write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        _atomic(target, half_then_fail)
    assert os.listdir(tmp_path) == ["v.mp4"] and target.read_bytes() == before
