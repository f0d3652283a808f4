"""Every validation error, with a message that says what to fix."""

import pytest

from genserve.core.errors import ValidationError
from genserve.core.request import Request
from genserve.models import TINY_NAMES, load_adapter
from models_helpers import image_req, video_req


@pytest.mark.parametrize("w,h", [(30, 32), (32, 18), (0, 32), (-4, 32)])
def test_sd3_size_must_be_a_multiple(sd3, w, h):
    with pytest.raises(ValidationError, match=r"multiples of 4 .*VAE x2 times patch 2"):
        sd3.validate(image_req(width=w, height=h))


@pytest.mark.parametrize("w,h", [(40, 32), (32, 24), (8, 16)])
def test_wan_size_must_be_a_multiple(wan, w, h):
    with pytest.raises(ValidationError, match=r"multiples of 16 .*VAE x8 times patch 2"):
        wan.validate(video_req(width=w, height=h))


def test_sd3_size_limited_by_position_embedding(sd3):
    sd3.validate(image_req(width=128, height=128))
    with pytest.raises(ValidationError, match="at most 128"):
        sd3.validate(image_req(width=132, height=32))


@pytest.mark.parametrize("frames", [2, 3, 4, 6, 8, 10, 80])
def test_wan_frames_must_be_4k_plus_1(wan, frames):
    with pytest.raises(ValidationError, match=r"frames must be 4k\+1"):
        wan.validate(video_req(frames=frames))


@pytest.mark.parametrize("frames", [1, 5, 9, 81])
def test_wan_accepts_4k_plus_1(wan, frames):
    assert wan.validate(video_req(frames=frames)).frames == frames


def test_image_model_takes_one_frame(sd3):
    with pytest.raises(ValidationError, match="frames must be 1"):
        sd3.validate(image_req(frames=5))


@pytest.mark.parametrize("steps", [0, -1])
@pytest.mark.parametrize("family", ["sd3", "wan"])
def test_steps_must_be_positive(request, family, steps):
    adapter = request.getfixturevalue(family)
    req = (image_req if family == "sd3" else video_req)(steps=steps)
    with pytest.raises(ValidationError, match="steps must be positive"):
        adapter.validate(req)


def test_steps_above_the_configured_maximum():
    a = load_adapter("tiny-sd3", max_steps=10)
    a.validate(image_req(steps=10))
    with pytest.raises(ValidationError, match="at most 10"):
        a.validate(image_req(steps=11))
    with pytest.raises(ValidationError, match="at most 10"):
        a.prepare(image_req(steps=11))  # prepare validates too


@pytest.mark.parametrize("prompt", ["", "   ", None])
@pytest.mark.parametrize("family", ["sd3", "wan"])
def test_empty_prompt(request, family, prompt):
    adapter = request.getfixturevalue(family)
    req = (image_req if family == "sd3" else video_req)(prompt=prompt)
    with pytest.raises(ValidationError, match="prompt"):
        adapter.validate(req)


def test_negative_guidance(sd3):
    with pytest.raises(ValidationError, match="guidance_scale"):
        sd3.validate(image_req(guidance_scale=-1.0))


def test_missing_or_malformed_fields(sd3, wan):
    with pytest.raises(ValidationError, match="missing width, height"):
        sd3.validate({"prompt": "a cat", "steps": 3})
    with pytest.raises(ValidationError, match="non-numeric"):
        sd3.validate(image_req(guidance_scale="lots"))
    with pytest.raises(ValidationError, match=r"4k\+1"):
        wan.validate(video_req(frames=0))  # zero is not "unset"
    assert sd3.validate(image_req(guidance_scale="3.5", seed=None)).guidance_scale == 3.5


@pytest.mark.parametrize("name", ["tiny-sd4", "", "sd3", "not a model!"])
def test_unknown_model_lists_the_tiny_names(name):
    with pytest.raises(ValidationError) as e:
        load_adapter(name)
    msg = str(e.value)
    assert all(n in msg for n in TINY_NAMES) and "unknown model" in msg


def test_hub_id_unavailable_offline_is_a_validation_error():
    with pytest.raises(ValidationError, match=r"cannot load model 'nobody-here/no-such-model'.*tiny-sd3"):
        load_adapter("nobody-here/no-such-model")


def test_local_folder_that_is_not_a_pipeline(tmp_path):
    with pytest.raises(ValidationError, match="cannot load model"):
        load_adapter(str(tmp_path))


def test_a_core_request_validates(wan):
    req = Request(id="v1", modality="video", model="tiny-wan", prompt="a cat", width=32, height=32, steps=3,
                  seed=1, arrival=0.0, deadline=10.0, frames=5)
    spec = wan.validate(req)
    assert (spec.id, spec.frames, spec.seed) == ("v1", 5, 1)
    state = wan.prepare(req)
    assert state.request_id == "v1" and state.num_steps == 3 and state.guidance_scale == 5.0
