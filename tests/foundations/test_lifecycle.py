import pytest

from genserve.core import IllegalTransition, Modality, Request, RequestStatus, ValidationError
from genserve.core.request import check_transition

S = RequestStatus


def make(modality="video", **kw):
    base = dict(id="r1", modality=modality, model="m", prompt="p", width=256, height=256, steps=10, seed=0,
                arrival=1.0, deadline=5.0, frames=81 if modality == "video" else 1)
    base.update(kw)
    return Request(**base)


def test_happy_path_video_records_history():
    r = make()
    r.transition(S.RUNNING, 1.5)
    r.transition(S.PAUSED, 2.0)
    r.transition(S.RUNNING, 3.0)
    r.transition(S.DONE, 4.0)
    assert r.status is S.DONE
    assert [s for _, s in r.history] == [S.RUNNING, S.PAUSED, S.RUNNING, S.DONE]


@pytest.mark.parametrize("src,dst", [
    (S.QUEUED, S.PAUSED), (S.QUEUED, S.DONE), (S.PAUSED, S.DONE), (S.PAUSED, S.QUEUED),
    (S.DONE, S.RUNNING), (S.FAILED, S.QUEUED), (S.CANCELLED, S.RUNNING), (S.DONE, S.DONE),
])
def test_illegal_transitions_raise(src, dst):
    with pytest.raises(IllegalTransition, match=f"{src.value} -> {dst.value}"):
        check_transition(src, dst)


def test_terminal_states_have_no_exit():
    for t in (S.DONE, S.FAILED, S.CANCELLED):
        assert t.terminal
        for dst in S:
            with pytest.raises(IllegalTransition):
                check_transition(t, dst)


def test_images_cannot_pause():
    r = make("image")
    r.transition(S.RUNNING, 1.0)
    with pytest.raises(IllegalTransition, match="only video"):
        r.transition(S.PAUSED, 1.1)
    assert r.status is S.RUNNING


def test_fault_requeue_is_allowed():
    r = make("image")
    r.transition(S.RUNNING, 1.0)
    r.transition(S.QUEUED, 1.2)
    assert r.status is S.QUEUED


@pytest.mark.parametrize("kw,msg", [
    (dict(steps=0), "steps"), (dict(width=0), "width"), (dict(deadline=0.5), "before arrival"),
    (dict(id=""), "id"), (dict(frames=0), "frames"),
])
def test_invalid_requests(kw, msg):
    with pytest.raises(ValidationError, match=msg):
        make(**kw)


def test_image_with_frames_rejected():
    with pytest.raises(ValidationError, match="frames=1"):
        make("image", frames=5)
    assert make("image").modality is Modality.IMAGE
