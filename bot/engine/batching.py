"""Cross-user batching: which requests may share one pipeline call, and how many jobs to put in one.

Two requests can run in one diffusers call when everything the call takes as a single value is equal:
the model, txt2img or img2img, the size, the steps, the guidance scale, the img2img strength, --tile, the
LoRAs and their weights (adapters apply to the whole call), and (on FLUX) whether a negative prompt needs
true CFG's second pass. Image references (--sref, --oref, /blend) share a call only when identical: their
pictures by content hash, the style code and the scales (an IP-Adapter's scale is per call); a reference at
scale 0 changes nothing and counts as none. Prompts, negative prompts and seeds may
differ (diffusers takes lists; every image has its own generator).

Batching is not always faster (on a CPU a batch of 4 jobs was 1.51x at 64 px but 0.69x at 256 px), so a
BatchTuner measures images/s per (model, kind, size, steps) for the batch sizes it tries and keeps the
fastest. Plain Python, no torch: the pool calls it under its lock.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Hashable

from bot.engine.families import Family
from bot.engine.requests import GenerateRequest, Request


@dataclass(frozen=True)
class BatchKey:
    model: str
    kind: str  # "txt2img" | "img2img" | "inpaint"
    width: int
    height: int
    steps: int
    guidance: float
    strength: float
    tile: bool
    true_cfg: bool = False
    loras: tuple[tuple[str, float], ...] = ()
    references: tuple = ()  # GenerateRequest.reference_key: () for none

    @property
    def shape(self) -> tuple:
        """What the speed depends on: the tuner keeps its measurements per shape."""
        return (self.model, self.kind, self.width, self.height, self.steps)


def batch_key(request: Request, family: Family | None = None) -> BatchKey | None:
    """The key two requests must share to run in one pipeline call; None: this one always runs alone.
    `family` is the model's (bot/engine/families.py), where known."""
    if not isinstance(request, GenerateRequest):
        return None
    if request.init_image is not None:
        (width, height), strength = request.init_image.size, request.strength
    elif request.blend_images:  # txt2img-sized, and denoised at its strength where the model has no IP-Adapter
        width, height, strength = request.width, request.height, request.strength
    else:
        width, height, strength = request.width, request.height, 1.0
    true_cfg = family is not None and family.true_cfg(request.negative_prompt)
    return BatchKey(request.model, request.kind, width, height, request.steps, request.guidance, strength, request.tile,
                    true_cfg, request.loras, request.reference_key)


class BatchTuner:
    """Picks how many jobs go in one call, per shape, from the images/s it measured.

    Candidates are 1, 2, 4, 8... up to `max_jobs`. It measures one job at a time first, then tries the
    next size up only while the biggest size tried so far is the fastest (hill climbing: at 256 px on a
    CPU it stops after one try of 2). A bigger batch must beat one job at a time by `margin` to be chosen,
    so it never does worse than one job at a time by more than noise. Each size keeps its last `window`
    measurements and is judged by the best of them (noise on a shared machine only ever adds time). Once
    it batches, every `revisit`-th call runs one job alone again: two unlucky early measurements of one job
    at a time would otherwise keep a batch size that is slower (seen on a busy 2-core machine at 256 px).
    """

    def __init__(self, max_jobs: int = 4, *, adaptive: bool = True, samples: int = 2, window: int = 5,
                 margin: float = 0.05, revisit: int = 16) -> None:
        if max_jobs < 1:
            raise ValueError(f"max_jobs must be at least 1, got {max_jobs}")
        self.max_jobs = max_jobs
        self.adaptive = adaptive  # False: always up to max_jobs (benchmarks of one size, tests)
        self.samples = samples
        self.margin = margin
        self.candidates = [1]
        while self.candidates[-1] * 2 <= max_jobs:
            self.candidates.append(self.candidates[-1] * 2)
        if self.candidates[-1] != max_jobs:
            self.candidates.append(max_jobs)
        self._window = window
        self.revisit = revisit
        self._settled_calls: collections.Counter = collections.Counter()  # per shape, calls that batched
        # shape -> jobs per call -> seconds per image, latest last
        self._seconds: dict[Hashable, dict[int, collections.deque]] = {}

    def jobs_for(self, shape: Hashable) -> int:
        """How many jobs the next call of this shape may take (fewer run if fewer wait)."""
        if self.max_jobs == 1 or not self.adaptive:
            return self.max_jobs
        measured = self._seconds.get(shape, {})
        for previous, size in zip([None, *self.candidates], self.candidates):
            if len(measured.get(size, ())) < self.samples:
                # Sizes are learnt in order; the next one is tried only while the biggest so far is best.
                if previous is None or self._best(measured) == previous:
                    return size
                break
        best = self._best(measured)
        if best > 1:
            self._settled_calls[shape] += 1
            if self._settled_calls[shape] % self.revisit == 0:
                return 1
        return best

    def record(self, shape: Hashable, jobs: int, images: int, seconds: float) -> None:
        """A call of `jobs` jobs made `images` images in `seconds` (pipeline time)."""
        if images < 1 or seconds <= 0:
            return
        sizes = self._seconds.setdefault(shape, {})
        sizes.setdefault(jobs, collections.deque(maxlen=self._window)).append(seconds / images)

    def images_per_second(self, shape: Hashable) -> dict[int, float]:
        """What it knows: jobs per call -> the best images/s measured."""
        return {jobs: round(1 / min(times), 3) for jobs, times in sorted(self._seconds.get(shape, {}).items())}

    def _best(self, measured: dict[int, collections.deque]) -> int:
        """The fastest size measured enough; a batch must beat one job at a time by the margin."""
        ready = {jobs: min(times) for jobs, times in measured.items()
                 if len(times) >= self.samples and jobs in self.candidates}
        if 1 not in ready:
            return 1
        best, best_time = 1, ready[1] / (1 + self.margin)
        for jobs, per_image in sorted(ready.items()):
            if jobs > 1 and per_image < best_time:
                best, best_time = jobs, per_image
        return best
