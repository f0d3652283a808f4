"""Exhaustive search over schedules of tiny instances: the best count of on-time requests it can find.

The schedule model is the real one, made more permissive where that is harmless for a check of an upper bound:
- a video runs one step at a time on p free GPUs (p in the cluster's usable degrees, any GPUs, not only aligned
  blocks), a step at degree p takes T_step(p); after its last step, a VAE decode on one GPU;
- images of the same model and size form a batch of b on one GPU for T_img(b); any subset may batch together;
- no text-encode time, no pause/resume cost, any number of paused videos.
Work starts only at event times (arrivals, ends of steps/batches/decodes), which loses nothing for a regular
objective such as "count of requests finished by their deadline". Requests that can no longer meet their
deadline are never started (running them could only take capacity from others).
"""

from __future__ import annotations

import itertools
from functools import lru_cache

from genserve.core.snapshot import ClusterSpec


def brute_force_best(requests, profile, cluster: ClusterSpec) -> int:
    n_gpu = cluster.num_gpus
    degrees = [p for p in cluster.usable_degrees if p <= n_gpu]
    reqs = list(requests)
    imgs = [i for i, r in enumerate(reqs) if not r.is_video]
    vids = [i for i, r in enumerate(reqs) if r.is_video]
    t_img = {i: [profile.image_latency(reqs[i].model, reqs[i].width, reqs[i].height, b, reqs[i].steps)
                 for b in range(1, profile.max_batch(reqs[i].model) + 1)] for i in imgs}
    size = {i: (reqs[i].model, reqs[i].width, reqs[i].height, reqs[i].steps) for i in imgs}
    t_step = {i: {p: profile.video_step(reqs[i].model, reqs[i].width, reqs[i].height, reqs[i].frames, p)
                  for p in degrees} for i in vids}
    t_fast = {i: min(t_step[i].values()) for i in vids}
    dec = {i: profile.video_decode(reqs[i].model, reqs[i].width, reqs[i].height, reqs[i].frames) for i in vids}
    arr = [r.arrival for r in reqs]
    dl = [r.deadline for r in reqs]
    S = {i: reqs[i].steps for i in vids}
    vpos = {i: k for k, i in enumerate(vids)}
    ipos = {i: k for k, i in enumerate(imgs)}

    # state: t, gpu free times (sorted), image-started mask, per video (steps_done, ready_at, decoded), min key
    @lru_cache(maxsize=None)
    def best(t, gpus, img_mask, vstate, min_key):
        free = sum(1 for g in gpus if g <= t)
        result = 0
        # the most that can still be gained: an early exit once a schedule reaches it
        pot = sum(1 for i in imgs if not img_mask >> ipos[i] & 1 and t + t_img[i][0] <= dl[i])
        pot += sum(1 for i in vids if not vstate[vpos[i]][2]
                   and max(t, vstate[vpos[i]][1]) + (S[i] - vstate[vpos[i]][0]) * t_fast[i] + dec[i] <= dl[i])
        if pot == 0:
            return 0
        # option: start a unit now (canonical order by key so permutations are not repeated)
        if free:
            for i in imgs:
                if i < min_key or img_mask >> ipos[i] & 1 or arr[i] > t:
                    continue
                # batches led by i: i plus any subset of later same-size queued images
                mates = [j for j in imgs if j > i and not img_mask >> ipos[j] & 1 and arr[j] <= t
                         and size[j] == size[i]]
                for k in range(0, min(len(mates), len(t_img[i]) - 1) + 1):
                    for extra in itertools.combinations(mates, k):
                        members = (i,) + extra
                        fin = t + t_img[i][len(members) - 1]
                        on_time = sum(1 for m in members if fin <= dl[m])
                        if on_time == 0:
                            continue
                        mask = img_mask
                        for m in members:
                            mask |= 1 << ipos[m]
                        g = _occupy(gpus, t, 1, fin)
                        result = max(result, on_time + best(t, g, mask, vstate, i + 1))
                        if result >= pot:
                            return result
            for i in vids:
                if i < min_key or arr[i] > t:
                    continue
                done, ready, decoded = vstate[vpos[i]]
                if decoded or ready > t:
                    continue
                if done < S[i]:
                    if t + (S[i] - done) * t_fast[i] + dec[i] > dl[i]:
                        continue
                    for p in degrees:
                        if p > free:
                            continue
                        fin = t + t_step[i][p]
                        vs = list(vstate)
                        vs[vpos[i]] = (done + 1, fin, False)
                        result = max(result, best(t, _occupy(gpus, t, p, fin), img_mask, tuple(vs), i + 1))
                        if result >= pot:
                            return result
                else:
                    fin = t + dec[i]
                    if fin > dl[i]:
                        continue
                    vs = list(vstate)
                    vs[vpos[i]] = (done, fin, True)
                    result = max(result, 1 + best(t, _occupy(gpus, t, 1, fin), img_mask, tuple(vs), i + 1))
                    if result >= pot:
                        return result
        # option: wait for the next event
        future = [g for g in gpus if g > t] + [a for a in arr if a > t]
        future += [vs[1] for vs in vstate if vs[1] > t]
        if future:
            nt = min(future)
            result = max(result, best(nt, tuple(sorted(max(g, nt) for g in gpus)), img_mask, vstate, -1))
        return result

    t0 = min(arr) if arr else 0.0
    return best(t0, tuple([t0] * n_gpu), 0, tuple((0, t0, False) for _ in vids), -1)


def _occupy(gpus: tuple, t: float, p: int, until: float) -> tuple:
    out = list(gpus)
    taken = 0
    for k, g in enumerate(out):
        if taken == p:
            break
        if g <= t:
            out[k] = until
            taken += 1
    return tuple(sorted(out))
