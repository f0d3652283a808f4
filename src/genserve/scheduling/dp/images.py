"""Image side of the GenServe solver: earliest-deadline-first batching onto GPU slots.

A *slot* is one GPU that images may use this round, with the time it becomes available to them: now for an idle
GPU, the end of the in-flight step for a GPU a video gives up, `busy_until` for a GPU that is finishing an image
batch. Slots are filled in order of availability, one batch per slot (a plan puts at most one batch on a GPU).

The plan for the best `g` slots is the prefix of one sequence, so B*(g) for every budget g = 0..N comes out of a
single pass: `plan_images` returns the per-slot batches and the prefix values.
"""

from __future__ import annotations

from typing import NamedTuple


class ImageBatchPlan(NamedTuple):  # a named tuple: several are built per round, for every budget tried
    gpu: int
    start: float
    ids: tuple[str, ...]
    met: int  # members that meet their deadline
    score: float


class ImageTable:
    """Per-round image facts: EDF order, batch keys and memoised T_img lookups."""

    __slots__ = ("images", "order", "key", "lat", "lat1", "maxb", "lost_score", "_lat")

    def __init__(self, images, profile, batching: bool, lost_score: float) -> None:
        self.lost_score = lost_score
        self.images = list(images)
        # EDF; ties by arrival then id, so the order is a pure function of the snapshot
        self.order = sorted(range(len(self.images)),
                            key=lambda i: (self.images[i].deadline, self.images[i].arrival, self.images[i].id))
        self.key = [im.batch_key for im in self.images]
        self._lat: dict[tuple, float] = {}
        self.maxb: dict[str, int] = {}
        for im in self.images:
            if im.model not in self.maxb:
                self.maxb[im.model] = profile.max_batch(im.model) if batching else 1
        self.lat = self._make_lat(profile)
        self.lat1 = [self.lat(k, 1) for k in self.key]  # alone in a batch: asked for every slot

    def _make_lat(self, profile):
        cache = self._lat

        def lat(key: tuple, b: int) -> float:
            k = (key, b)
            v = cache.get(k)
            if v is None:
                model, w, h, steps = key
                v = cache[k] = profile.image_latency(model, w, h, b, steps)
            return v

        return lat


def plan_images(table: ImageTable, slots: list[tuple[float, int]]) -> tuple[list[ImageBatchPlan], list[int], list[float]]:
    """Fill `slots` (sorted by availability) with EDF batches.

    Returns the batches (batch j on slots[j]) and prefix counts / scores: counts[g], scores[g] are the images meeting
    their deadline and the tie-break score when only the first g slots are used (g = 0..len(batches)).
    A batch head is the earliest-deadline image that can still meet its deadline on the slot; images already lost
    are served only after every feasible one, oldest deadline first, and may ride along in a batch when that keeps
    every feasible member on time. Same-resolution images join while T_img(b) keeps every feasible member on time.
    """
    images = table.images
    remaining = list(table.order)
    lat = table.lat
    lat1 = table.lat1
    keys = table.key
    batches: list[ImageBatchPlan] = []
    counts = [0]
    scores = [0.0]
    lost_score = table.lost_score
    for t, gpu in slots:
        if not remaining:
            break
        head_pos = -1
        for pos, i in enumerate(remaining):
            if t + lat1[i] <= images[i].deadline:
                head_pos = pos
                break
        feasible_head = head_pos >= 0
        if not feasible_head:
            head_pos = 0
        head = remaining[head_pos]
        key = keys[head]
        members = [head]
        tight = images[head].deadline if feasible_head else float("inf")  # earliest deadline among feasible members
        maxb = table.maxb[images[head].model]
        if maxb > 1:
            for pos in range(head_pos + 1, len(remaining)):
                if len(members) >= maxb:
                    break
                j = remaining[pos]
                if keys[j] != key:
                    continue
                end = t + lat(key, len(members) + 1)
                dj = images[j].deadline
                if end <= min(tight, dj):
                    members.append(j)
                    tight = min(tight, dj)
                elif end <= tight and not feasible_head:
                    members.append(j)  # all lost: batch them together
                elif end <= tight and dj < end and t + lat1[j] > dj:
                    members.append(j)  # lost anyway at this slot: free ride, hurts nobody
        end = t + (lat(key, len(members)) if len(members) > 1 else lat1[head])
        met = 0
        score = 0.0
        for j in members:
            slack = images[j].deadline - end
            if slack >= 0:
                met += 1
                score += 1.0 / (1.0 + slack)
            else:
                score += lost_score
        if len(members) == 1:
            del remaining[head_pos]
            ids = (images[head].id,)
        else:
            taken = set(members)
            remaining = [i for i in remaining if i not in taken]
            ids = tuple(images[j].id for j in members)
        batches.append(ImageBatchPlan(gpu, t, ids, met, score))
        counts.append(counts[-1] + met)
        scores.append(scores[-1] + score)
    return batches, counts, scores
