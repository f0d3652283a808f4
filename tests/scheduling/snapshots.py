"""Hand-built and random snapshots for scheduler tests (no simulator needed)."""

from __future__ import annotations

import random

from genserve.core.request import RequestStatus
from genserve.core.snapshot import ClusterSpec, ImageView, Snapshot, VideoView
from genserve.profiles import Profile

PROFILE = Profile.load("paper")
IMG = "sd3.5-medium"
VID = "wan2.2-t2v-5b"
IMG_SIZES = [(768, 768), (1024, 1024), (1440, 1440)]
VID_SIZES = [(256, 256), (480, 480), (768, 768)]


def iso(kind: str, w: int, h: int) -> float:
    if kind == "image":
        return PROFILE.isolated_latency("image", IMG, w, h)
    return PROFILE.isolated_latency("video", VID, w, h, 81)


def image(i: str, size: int = 768, arrival: float = 0.0, deadline: float | None = None, sigma: float = 1.0) -> ImageView:
    d = arrival + sigma * 1.5 * iso("image", size, size) if deadline is None else deadline
    return ImageView(i, IMG, size, size, 28, arrival, d)


def video(i: str, size: int = 768, status=RequestStatus.RUNNING, gpus=(), steps_done: int = 0,
          arrival: float = 0.0, deadline: float | None = None, home: int | None = None, busy_until: float = 0.0,
          decoding: bool = False, pauses: int = 0, sigma: float = 1.0) -> VideoView:
    d = arrival + sigma * 1.5 * iso("video", size, size) if deadline is None else deadline
    if home is None and gpus:
        home = gpus[0]
    return VideoView(i, VID, size, size, 81, 50, steps_done, arrival, d, RequestStatus(status), tuple(gpus), home,
                     busy_until, decoding, pauses)


def snapshot(now: float, images=(), videos=(), n: int = 8, busy=None, last_image=None, per_node: int = 8,
             degrees=(1, 2, 4, 8)) -> Snapshot:
    cluster = ClusterSpec(n, per_node, degrees)
    bu = tuple(busy) if busy is not None else ()
    return Snapshot(now, cluster, PROFILE, tuple(images), tuple(videos), bu, last_image)


def random_snapshot(seed: int, n: int | None = None, max_paused: int = 1) -> Snapshot:
    """A random but consistent snapshot: disjoint aligned groups, decodes, paused videos within the limit."""
    rng = random.Random(seed)
    if n is None:
        n = rng.choice([1, 2, 4, 8, 8, 8, 16])
    per_node = 8 if n >= 8 else n
    cluster = ClusterSpec(n, per_node)
    now = rng.uniform(0, 200)
    free = set(range(n))
    videos = []
    busy = [now - 1.0] * n
    paused_at: dict[int, int] = {}
    for k in range(rng.randint(0, 8)):
        size = rng.choice(VID_SIZES)[0]
        arrival = now - rng.uniform(0, 80)
        sigma = rng.uniform(0.5, 1.5)
        status = rng.choice([RequestStatus.QUEUED, RequestStatus.RUNNING, RequestStatus.RUNNING, RequestStatus.PAUSED])
        done = rng.randint(0, 49)
        if status is RequestStatus.RUNNING:
            degs = [p for p in cluster.usable_degrees]
            rng.shuffle(degs)
            got = None
            for p in degs:
                blocks = [b for b in cluster.groups(p) if all(g in free for g in b)]
                if blocks:
                    got = rng.choice(blocks)
                    break
            if got is None:
                status = RequestStatus.QUEUED
            else:
                free -= set(got)
                decoding = rng.random() < 0.15
                if decoding:
                    done = 50
                    got = got[:1]
                    busy[got[0]] = now + rng.uniform(0.1, 2.0)
                bu = now + rng.uniform(0, 1.0) if rng.random() < 0.7 and not decoding else now - 0.01
                videos.append(video(f"v{k}", size, status, got, done, arrival, home=got[0], busy_until=bu,
                                    decoding=decoding, pauses=rng.randint(0, 3), sigma=sigma))
                continue
        if status is RequestStatus.PAUSED:
            homes = [g for g in range(n) if paused_at.get(g, 0) < max_paused]
            if not homes:
                status = RequestStatus.QUEUED
            else:
                h = rng.choice(homes)
                paused_at[h] = paused_at.get(h, 0) + 1
                videos.append(video(f"v{k}", size, status, (), max(1, done), arrival, home=h,
                                    pauses=rng.randint(1, 3), sigma=sigma))
                continue
        videos.append(video(f"v{k}", size, RequestStatus.QUEUED, (), 0, arrival, sigma=sigma))
    for g in sorted(free):
        if rng.random() < 0.3:
            busy[g] = now + rng.uniform(0.05, 5.0)  # finishing an image batch
    images = []
    for k in range(rng.randint(0, 10)):
        size = rng.choice(IMG_SIZES)[0]
        arrival = now - rng.uniform(0, 6)
        images.append(image(f"i{k}", size, arrival, sigma=rng.uniform(0.6, 1.5)))
    last = max((im.arrival for im in images), default=None)
    if last is None and rng.random() < 0.5:
        last = now - rng.uniform(0, 30)
    return Snapshot(now, cluster, PROFILE, tuple(images), tuple(videos), tuple(busy), last)
