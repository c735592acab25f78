"""Where a job's images live: `DATA_DIR/images/<job>/<index>.png`, and `grid.png` for a grid. The one place
that knows the layout; everyone else asks for a job's result file or one of its images."""

from __future__ import annotations

import shutil
from pathlib import Path

from PIL import Image

from bot.engine import GenerationResult, make_grid, png_bytes
from bot.service.provenance import CHUNK
from bot.store import Job, StoredImage

class ImageFiles:
    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "images"
        self.data_dir = Path(data_dir)

    def folder(self, job_id: int) -> Path:
        return self.root / str(job_id)

    def image(self, job_id: int, index: int) -> Path:
        return self.folder(job_id) / f"{index}.png"

    def result_file(self, job: Job) -> Path:
        """What the job's message shows: its grid, or the upscaled image."""
        return self.folder(job.id) / job.kind.result_file

    def stored(self, image: StoredImage) -> Path:
        return self.data_dir / image.path

    def open_rgb(self, image: StoredImage) -> Image.Image:
        with Image.open(self.stored(image)) as opened:
            return opened.convert("RGB")

    def save(self, job: Job, result: GenerationResult, text_of) -> list[StoredImage]:
        """Write every image (U and V need them after a restart), each with its `parameters` text
        (`text_of(seed, image)`), and the 2x2 grid of a grid job; returns the images to record."""
        folder = self.folder(job.id)
        folder.mkdir(parents=True, exist_ok=True)
        seeds = result.seeds or [job.seed]  # an upscale has none of its own: its source's
        stored: list[StoredImage] = []
        for index, (image, seed) in enumerate(zip(result.images, seeds), start=1):
            path = self.image(job.id, index)
            path.write_bytes(png_bytes(image, {CHUNK: text_of(seed, image)}))
            stored.append(StoredImage(job.id, index, seed, str(path.relative_to(self.data_dir)),
                                      image.width, image.height))
        if job.kind.is_grid:  # labelled as AUTOMATIC1111 labels its grids: by the first image
            grid = png_bytes(make_grid(result.images), {CHUNK: text_of(result.seeds[0], result.images[0])})
            (folder / job.kind.result_file).write_bytes(grid)
        return stored

    def remove(self, job_id: int) -> None:
        shutil.rmtree(self.folder(job_id), ignore_errors=True)
