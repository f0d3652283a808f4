"""Fixtures shared by the simulator and controller tests: a tiny profile with hand-derivable times."""

import pytest

from genserve.core.request import Modality, Request
from genserve.profiles import Profile
from genserve.workloads.trace import deadline_for


def tiny_profile() -> Profile:
    """Round numbers so completion times can be derived by hand.

    image `img` 64x64, 10 steps: T_img(1) = 0 + 10 x 0.1 + 0.5 = 1.5 s; T_img(2) = 10 x 0.15 + 0.5 = 2.0 s.
    video `vid` 64x64x8, 4 steps: encode 0.5 s, step 1.0 s at SP 1 and 0.5 s at SP 2, decode 1.0 s, pause 0,
    resume / reconfigure 0.25 s. Isolated video latency = 0.5 + 4 x 1.0 + 1.0 = 5.5 s.
    Deadlines at sigma 1: image arrival + 2.25 s; video arrival + 8.25 s.
    """
    return Profile.from_dict({
        "schema": "genserve.profile/v1",
        "name": "tiny-test",
        "defaults": {"image_model": "img", "video_model": "vid", "image_sizes": [[64, 64]],
                     "video_sizes": [[64, 64, 8]]},
        "image_models": {"img": {"default_steps": 10, "text_encode_s": 0.0, "points": [
            {"width": 64, "height": 64, "step_s": {"1": 0.1, "2": 0.15}, "decode_s": {"1": 0.5, "2": 0.5}}]}},
        "video_models": {"vid": {"default_steps": 4, "text_encode_s": 0.5, "pause_s": 0.0,
                                 "resume_s": {"1": 0.25, "2": 0.25}, "reconfigure_s": {"1": 0.25, "2": 0.25},
                                 "points": [{"width": 64, "height": 64, "frames": 8,
                                             "step_s": {"1": 1.0, "2": 0.5}, "decode_s": 1.0}]}},
    })


def image(rid: str, t: float, profile: Profile, sigma: float = 1.0) -> Request:
    return Request(rid, Modality.IMAGE, "img", "a cat", 64, 64, 10, 0, t,
                   deadline_for(profile, "image", "img", 64, 64, 1, 10, t, sigma))


def video(rid: str, t: float, profile: Profile, sigma: float = 1.0) -> Request:
    return Request(rid, Modality.VIDEO, "vid", "a dog", 64, 64, 4, 0, t,
                   deadline_for(profile, "video", "vid", 64, 64, 8, 4, t, sigma), frames=8)


@pytest.fixture
def tiny():
    return tiny_profile()


class _Make:
    image = staticmethod(image)
    video = staticmethod(video)


@pytest.fixture
def make():
    """make.image(id, arrival, profile) / make.video(...): requests with sigma-1 deadlines of the tiny profile."""
    return _Make
