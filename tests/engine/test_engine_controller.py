"""The controller on its own: admission, broken plans, cancellation, the executor protocol, wake-ups."""

import pytest

from genserve.core.errors import ProfileError, ValidationError
from genserve.core.events import BatchDone, StepDone, VideoDone
from genserve.core.plan import HOLD, Action, ActionKind, Plan
from genserve.core.request import Modality, Request, RequestStatus
from genserve.core.snapshot import ClusterSpec
from genserve.engine import Controller, PlanError, VirtualClock
from genserve.executors.base import Executor, StepSetup
from genserve.scheduling.options import PolicyOptions
from genserve.scheduling.baselines import FCFS, SRTF


class Recorder:
    """An executor that records commands; the test plays the events back by hand."""

    def __init__(self):
        self.calls = []
        self.emit = None

    def attach(self, emit):
        self.emit = emit

    def start_batch(self, requests, gpu):
        self.calls.append(("batch", tuple(r.id for r in requests), gpu))

    def run_step(self, request, step, gpus, setup, source_gpu=None):
        self.calls.append(("step", request.id, step, gpus, setup, source_gpu))

    def pause(self, request, gpu):
        self.calls.append(("pause", request.id, gpu))

    def decode(self, request, gpu):
        self.calls.append(("decode", request.id, gpu))

    def discard(self, request, gpus):
        self.calls.append(("discard", request.id, gpus))

    def close(self):
        pass


def make_ctl(policy, profile, gpus=2, strict=True):
    clock = VirtualClock()
    ex = Recorder()
    assert isinstance(ex, Executor)
    return Controller(policy, ClusterSpec(gpus), profile, ex, clock, strict=strict), ex, clock


def test_admission_rejects_bad_requests_with_clear_messages(tiny, make):
    ctl, _, _ = make_ctl(FCFS(), tiny)
    ctl.submit(make.image("a", 0.0, tiny))
    with pytest.raises(ValidationError, match="duplicate request id 'a'"):
        ctl.submit(make.image("a", 0.0, tiny))
    bad_model = Request("b", Modality.IMAGE, "nope", "p", 64, 64, 10, 0, 0.0, 5.0)
    with pytest.raises(ProfileError, match="unknown image model 'nope'"):
        ctl.submit(bad_model)
    too_big = Request("c", Modality.VIDEO, "vid", "p", 4096, 4096, 4, 0, 0.0, 5.0, frames=8)
    with pytest.raises(ProfileError, match="request 'c'.*outside the profiled range"):
        ctl.submit(too_big)
    assert set(ctl.requests) == {"a"}


def test_step_protocol_fresh_continue_pause_resume_decode(tiny, make):
    ctl, ex, clock = make_ctl(SRTF(), tiny, gpus=1)
    ctl.submit(make.video("v", 0.0, tiny))
    ctl.flush()
    assert ex.calls == [("step", "v", 0, (0,), StepSetup.FRESH, None)]
    clock.advance_to(1.5)
    ctl.on_event(StepDone(1.5, "v", 0, (0,), 1.5))
    ctl.flush()  # nothing waits: SRTF skips the round, the video continues where it is
    assert ex.calls[-1] == ("step", "v", 1, (0,), StepSetup.CONTINUE, None)
    clock.advance_to(2.0)
    ctl.submit(make.image("i", 2.0, tiny))
    ctl.flush()  # the image is shorter, but the video is mid-step: nothing yet
    assert ex.calls[-1][0] == "step"
    clock.advance_to(2.5)
    ctl.on_event(StepDone(2.5, "v", 1, (0,), 1.0))
    ctl.flush()  # boundary: pause the video, start the image on its GPU
    assert ex.calls[-2:] == [("pause", "v", 0), ("batch", ("i",), 0)]
    assert ctl.requests["v"].status is RequestStatus.PAUSED
    clock.advance_to(4.0)
    ctl.on_event(BatchDone(4.0, ("i",), 0, 1.5))
    ctl.flush()  # resume from its home GPU
    assert ex.calls[-1] == ("step", "v", 2, (0,), StepSetup.RESUME, 0)
    clock.advance_to(5.25)
    ctl.on_event(StepDone(5.25, "v", 2, (0,), 1.25))
    ctl.flush()
    clock.advance_to(6.25)
    ctl.on_event(StepDone(6.25, "v", 3, (0,), 1.0))
    ctl.flush()
    assert ex.calls[-1] == ("decode", "v", 0)
    clock.advance_to(7.25)
    ctl.on_event(VideoDone(7.25, "v", 0))
    ctl.flush()
    rec = ctl.records["v"]
    assert rec.status == "done" and rec.finish == 7.25 and rec.pauses == 1 and rec.start == 0.0
    assert ctl.records["i"].met_slo
    assert ctl.idle and ctl.free_gpus() == [0]


class DoubleBooker:
    name = "double-booker"
    preemptive = False

    def plan(self, snap):
        plan = Plan()
        for v in snap.videos:
            plan.actions[v.id] = Action(ActionKind.START, (0,))
        return plan


class Forgetful:
    name = "forgetful"
    preemptive = False

    def plan(self, snap):
        return Plan()


class PausesDecoding:
    name = "pauses-decoding"
    preemptive = True

    def plan(self, snap):
        plan = FCFS().plan(snap)
        for v in snap.videos:
            if v.decoding:
                plan.actions[v.id] = HOLD
        return plan


@pytest.mark.parametrize("strict", [True, False])
def test_broken_plan_raises_and_leaves_state_alone(tiny, make, strict):
    ctl, ex, _ = make_ctl(DoubleBooker(), tiny, strict=strict)
    ctl.submit(make.video("a", 0.0, tiny))
    ctl.submit(make.video("b", 0.0, tiny))
    with pytest.raises(PlanError, match="double-booker.*GPU 0"):
        ctl.flush()
    assert ex.calls == []
    assert all(r.status is RequestStatus.QUEUED for r in ctl.requests.values())
    assert ctl.free_gpus() == [0, 1]


def test_strict_mode_reports_missing_actions(tiny, make):
    ctl, _, _ = make_ctl(Forgetful(), tiny, strict=True)
    ctl.submit(make.image("a", 0.0, tiny))
    with pytest.raises(PlanError, match="no action for request a"):
        ctl.flush()


class MixesSteps:
    name = "mixes-steps"
    preemptive = False

    def plan(self, snap):
        plan = Plan()
        plan.add_batch([im.id for im in snap.images], 0)
        return plan


@pytest.mark.parametrize("strict", [True, False])
def test_a_batch_may_not_mix_step_counts(tiny, make, strict):
    """One forward pass runs one step count: images that differ only in steps may not share a batch."""
    import dataclasses

    ctl, ex, _ = make_ctl(MixesSteps(), tiny, gpus=1, strict=strict)
    a = make.image("a", 0.0, tiny)
    ctl.submit(a)
    ctl.submit(dataclasses.replace(a, id="b", steps=a.steps + 2))
    with pytest.raises(PlanError, match="step counts"):
        ctl.flush()
    assert ex.calls == []


def test_decoding_video_cannot_be_paused(tiny, make):
    ctl, ex, clock = make_ctl(PausesDecoding(), tiny, gpus=1, strict=False)
    ctl.submit(make.video("v", 0.0, tiny))
    ctl.flush()
    for k, t in enumerate((1.5, 2.5, 3.5, 4.5)):
        clock.advance_to(t)
        ctl.on_event(StepDone(t, "v", k, (0,), 1.0))
        ctl.flush()
    assert ex.calls[-1] == ("decode", "v", 0)
    ctl.submit(make.image("i", 4.6, tiny))
    with pytest.raises(PlanError, match="decoding"):
        ctl.flush()


def test_cancel_queued_running_and_paused(tiny, make):
    ctl, ex, clock = make_ctl(FCFS(), tiny, gpus=1)
    ctl.submit(make.video("v", 0.0, tiny))
    ctl.submit(make.image("w", 0.0, tiny))  # same arrival: FCFS breaks the tie by id, so v runs first
    ctl.flush()
    assert ctl.requests["v"].status is RequestStatus.RUNNING
    assert ctl.cancel("w") and ctl.requests["w"].status is RequestStatus.CANCELLED
    assert not ctl.cancel("w") and not ctl.cancel("nope")
    assert ctl.cancel("v")  # mid-step: takes effect at the boundary
    assert ctl.requests["v"].status is RequestStatus.RUNNING and ctl.free_gpus() == []
    clock.advance_to(1.5)
    ctl.on_event(StepDone(1.5, "v", 0, (0,), 1.5))
    ctl.flush()
    assert ctl.requests["v"].status is RequestStatus.CANCELLED
    assert ex.calls[-1] == ("discard", "v", (0,))
    assert ctl.free_gpus() == [0] and ctl.idle
    assert ctl.records["v"].status == "cancelled" and not ctl.records["v"].met_slo


def test_cancel_paused_video(tiny, make):
    ctl, ex, clock = make_ctl(SRTF(), tiny, gpus=1)
    ctl.submit(make.video("v", 0.0, tiny))
    ctl.flush()
    ctl.submit(make.image("i", 1.0, tiny))
    clock.advance_to(1.5)
    ctl.on_event(StepDone(1.5, "v", 0, (0,), 1.5))
    ctl.flush()
    assert ctl.requests["v"].status is RequestStatus.PAUSED
    assert ctl.cancel("v")
    assert ctl.requests["v"].status is RequestStatus.CANCELLED and ex.calls[-1] == ("discard", "v", (0,))


def test_wake_at_is_honoured_by_the_simulator(tiny, make):
    from genserve.sim import run_simulation

    class Waits(FCFS):
        """Holds every image until t >= 1.0, asking for a wake-up then."""

        name = "waits"
        step_rounds = "always"

        def plan(self, snap):
            if snap.now < 1.0:
                plan = Plan(wake_at=1.0)
                for im in snap.images:
                    plan.actions[im.id] = HOLD
                for v in snap.videos:
                    plan.actions[v.id] = HOLD
                return plan
            return super().plan(snap)

    res = run_simulation([make.image("i", 0.0, tiny)], Waits(), 1, tiny, strict=True)
    assert res.records[0].start == 1.0 and res.records[0].finish == 2.5


def test_failures_requeue_retryable_work_and_fail_the_rest(tiny, make):
    from genserve.core.events import Failed

    ctl, ex, clock = make_ctl(FCFS(), tiny, gpus=2)
    ctl.submit(make.video("v", 0.0, tiny))
    ctl.submit(make.image("w", 0.0, tiny))
    ctl.flush()
    assert ("batch", ("w",), 1) in ex.calls
    clock.advance_to(0.5)
    ctl.on_event(Failed(0.5, ("w",), (1,), "worker died", retryable=True))
    ctl.flush()  # requeued and placed again at once
    assert ex.calls[-1] == ("batch", ("w",), 1) and ctl.records["w"].retries == 1
    clock.advance_to(1.0)
    ctl.on_event(Failed(1.0, ("v",), (0,), "out of memory", retryable=True))
    ctl.flush()  # the video starts over from step 0 (its state died with the worker)
    assert ex.calls[-1] == ("step", "v", 0, (0,), StepSetup.FRESH, None)
    assert ctl.requests["v"].status is RequestStatus.RUNNING and ctl.records["v"].retries == 1
    clock.advance_to(1.2)
    ctl.on_event(Failed(1.2, ("v",), (0,), "bad prompt", retryable=False))
    ctl.flush()
    assert ctl.requests["v"].status is RequestStatus.FAILED and ctl.records["v"].status == "failed"
    assert 0 in ctl.free_gpus()


def test_cancel_an_image_inside_a_running_batch(tiny, make):
    ctl, ex, clock = make_ctl(FCFS(), tiny, gpus=1)
    ctl.submit(make.image("a", 0.0, tiny))
    ctl.flush()
    assert ctl.cancel("a")
    assert ctl.requests["a"].status is RequestStatus.RUNNING  # a batch cannot be interrupted
    clock.advance_to(1.5)
    ctl.on_event(BatchDone(1.5, ("a",), 0, 1.5))
    ctl.flush()
    assert ctl.requests["a"].status is RequestStatus.CANCELLED and ctl.free_gpus() == [0]


def test_cancel_mid_run_in_the_simulator_truncates_the_run(tiny, make):
    """With coalesced runs a cancellation still takes effect at the next step boundary."""
    import heapq
    import itertools

    from genserve.executors.sim import SimExecutor

    clock = VirtualClock()
    heap, seq = [], itertools.count()

    def schedule(t, ev):
        entry = [t, next(seq), ev]
        heapq.heappush(heap, entry)
        return entry

    ex = SimExecutor(tiny, ClusterSpec(1), clock, schedule, log=True)
    ctl = Controller(FCFS(), ClusterSpec(1), tiny, ex, clock, strict=True, coalesce_steps=True)
    ctl.submit(make.video("v", 0.0, tiny))
    ctl.flush()
    assert len(heap) == 1 and heap[0][0] == 4.5  # one run: encode + 4 steps
    clock.advance_to(2.0)  # inside step 1 (1.5 .. 2.5)
    ctl.cancel("v")
    live = [e for e in heap if e[2] is not None]
    assert len(live) == 1 and live[0][0] == 2.5 and live[0][2].step == 1
    clock.advance_to(2.5)
    ctl.on_event(live[0][2])
    ctl.flush()
    assert ctl.requests["v"].status is RequestStatus.CANCELLED and ctl.free_gpus() == [0]
    assert [(iv.start, iv.end) for iv in ex.log] == [(0.0, 2.5)]


def test_snapshot_views_track_steps_in_flight(tiny, make):
    """A policy must see a mid-step video as busy (busy_until > now), also right after a CONTINUE."""
    ctl, ex, clock = make_ctl(SRTF(), tiny, gpus=2, strict=True)
    ctl.step_rounds = "always"
    ctl.submit(make.video("a", 0.0, tiny))
    ctl.submit(make.video("b", 0.0, tiny))
    ctl.flush()
    clock.advance_to(1.5)
    ctl.on_event(StepDone(1.5, "a", 0, (0,), 1.5))
    ctl.on_event(StepDone(1.5, "b", 0, (1,), 1.5))
    ctl.flush()  # both continue: step 1 runs until 2.5
    clock.advance_to(2.0)
    views = {v.id: v for v in ctl.snapshot().videos}
    assert views["a"].busy_until == 2.5 and views["a"].steps_done == 1 and views["a"].gpus == (0,)


def test_snapshot_views_estimate_progress_of_coalesced_runs(tiny, make):
    import heapq
    import itertools

    from genserve.executors.sim import SimExecutor

    clock = VirtualClock()
    heap, seq = [], itertools.count()

    def schedule(t, ev):
        entry = [t, next(seq), ev]
        heapq.heappush(heap, entry)
        return entry

    ex = SimExecutor(tiny, ClusterSpec(1), clock, schedule)
    ctl = Controller(SRTF(), ClusterSpec(1), tiny, ex, clock, strict=True, coalesce_steps=True)
    ctl.submit(make.video("v", 0.0, tiny))
    ctl.flush()
    for t, done, nxt in ((0.2, 0, 1.5), (1.5, 1, 2.5), (3.7, 3, 4.5)):
        clock.advance_to(t)
        (v,) = ctl.snapshot().videos
        assert (v.steps_done, v.busy_until) == (done, nxt)


@pytest.mark.parametrize("retryable", [False, True])
def test_a_failed_batch_fails_or_requeues_every_member_once(tiny, make, retryable):
    """A Failed event naming every member of a batch (what the worker pool sends): each member follows the event,
    nobody is handled twice, and the next round does not try to run a failed image."""
    from genserve.core.events import Failed

    ctl, ex, clock = make_ctl(FCFS(PolicyOptions(batching=True)), tiny, gpus=1)
    ctl.submit(make.image("a", 0.0, tiny))
    ctl.submit(make.image("b", 0.0, tiny))
    ctl.flush()
    assert ex.calls == [("batch", ("a", "b"), 0)]
    clock.advance_to(0.5)
    ctl.on_event(Failed(0.5, ("a", "b"), (0,), "worker died", retryable=retryable))
    ctl.flush()
    if retryable:
        assert len(ex.calls) == 2 and ex.calls[-1][0] == "batch" and "a" in ex.calls[-1][1]  # placed again
        assert all(ctl.requests[r].status in (RequestStatus.QUEUED, RequestStatus.RUNNING) for r in "ab")
        assert [ctl.records[r].retries for r in "ab"] == [1, 1]
        assert RequestStatus.FAILED not in [ctl.requests[r].status for r in "ab"]
    else:
        assert [ctl.requests[r].status for r in "ab"] == [RequestStatus.FAILED] * 2
        assert len(ex.calls) == 1 and ctl.free_gpus() == [0] and ctl.idle


def test_set_profile_keeps_online_correction_on_and_starts_it_over(tiny, make):
    """Swapping the profile (the demo's calibration) must not drop the correction wrapper."""
    from genserve.profiles.online import CorrectedProfile

    clock = VirtualClock()
    ctl = Controller(FCFS(), ClusterSpec(1), tiny, Recorder(), clock, online_correction=True)
    ctl.correction.observe(("x",), 2.0, 1.0)
    assert ctl.correction.samples == 1
    old = ctl.correction
    slow = tiny.scaled(3.0, 3.0, "tiny-slow")
    ctl.set_profile(slow)
    assert ctl.base_profile is slow and isinstance(ctl.profile, CorrectedProfile)
    assert ctl.correction is not old and ctl.correction.samples == 0
    assert ctl.profile.text_encode("vid") == slow.text_encode("vid") == 3.0 * tiny.text_encode("vid")
    plain = Controller(FCFS(), ClusterSpec(1), tiny, Recorder(), clock)
    plain.set_profile(slow)
    assert plain.profile is slow and plain.correction is None


class HoldsFirst:
    """Holds everything in its first round without asking for a wake-up (a policy bug a live engine must survive)."""

    name = "holds-first"
    preemptive = False

    def __init__(self):
        self.calls = 0

    def plan(self, snap):
        self.calls += 1
        if self.calls == 1:
            plan = Plan()
            for r in (*snap.images, *snap.videos):
                plan.actions[r.id] = HOLD
            return plan
        return FCFS().plan(snap)


@pytest.mark.parametrize("retry", [None, 1.0])
def test_idle_retry_asks_for_a_round_when_a_plan_strands_work(tiny, make, retry):
    clock = VirtualClock()
    ex = Recorder()
    ctl = Controller(HoldsFirst(), ClusterSpec(1), tiny, ex, clock, idle_retry_s=retry)
    ctl.submit(make.image("a", 0.0, tiny))
    ctl.flush()
    assert ex.calls == []
    if retry is None:
        assert ctl.wake_at is None  # the simulator's default: the run would end with "a" unfinished
        return
    assert ctl.wake_at == 1.0
    clock.advance_to(1.0)
    ctl.wake()
    ctl.flush()
    assert ex.calls == [("batch", ("a",), 0)] and ctl.wake_at is None
