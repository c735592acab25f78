"""The pictures people gave the bot (image prompts, references, /blend, /describe), kept content-addressed in
`DATA_DIR/sources/<ab>/<sha256>.png`: the same picture is stored once, however many jobs use it, and a job
names its pictures by digest in its recipe, so 🔄 and a restart never fetch anything again. Retention
deletes a picture once no job that still has its images names it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from PIL import Image

from bot.engine import png_bytes

DIGEST_LENGTH = 64  # hex sha256


class SourceImages:
    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "sources"

    def path(self, digest: str) -> Path:
        if len(digest) != DIGEST_LENGTH or not all(c in "0123456789abcdef" for c in digest):
            raise ValueError(f"not a sha256 digest: {digest!r}")
        return self.root / digest[:2] / f"{digest}.png"

    def put(self, image: Image.Image) -> str:
        """Keep `image` (decoded and checked already); returns its digest. A picture kept before is touched,
        not written again, so retention (which spares recent files) never races a new job that uses it."""
        data = png_bytes(image, {})
        digest = hashlib.sha256(data).hexdigest()
        path = self.path(digest)
        if path.is_file():
            os.utime(path)
            return digest
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part")
        partial.write_bytes(data)
        partial.replace(path)  # never a half-written picture under its digest
        return digest

    def open(self, digest: str) -> Image.Image:
        with Image.open(self.path(digest)) as opened:
            return opened.convert("RGB")

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def digests(self) -> dict[str, float]:
        """Every kept picture's digest and when it was last used (its file's mtime)."""
        if not self.root.is_dir():
            return {}
        return {path.stem: path.stat().st_mtime for path in self.root.glob("*/*.png")}

    def remove(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)
