"""Engine errors become user text (`short`, shown in a job's public message): absolute file paths are cut
to their last component, so users never see where the server keeps its files."""

from __future__ import annotations

import pytest

from bot.engine.calls import hide_paths, short


@pytest.mark.parametrize("text, shown", [
    ("[Errno 2] No such file or directory: '/home/x/models/broken-sd/unet/diffusion_pytorch_model.safetensors'",
     "[Errno 2] No such file or directory: '…/diffusion_pytorch_model.safetensors'"),
    ("header too large: /tmp/pytest-7/models0/broken-sd/unet/model.safetensors.",
     "header too large: …/model.safetensors."),
    (r"cannot open C:\Users\bob\models\unet\model.safetensors, sorry", r"cannot open …\model.safetensors, sorry"),
    (r"in 'C:\Program Files\Dreamgrid\weights.bin'", r"in '…\weights.bin'"),
    ('PosixPath("/srv/my models/x.bin") and (/a/b/c) and [D:/m/y.ckpt]',
     'PosixPath("…/x.bin") and (…/c) and […/y.ckpt]'),
    (r"\\server\share\models\a.ckpt", r"…\a.ckpt"),
    ("file:///srv/dg/x.png", "file:…/x.png"),
    # not paths: kept as they are
    ("see https://huggingface.co/docs/hub/a and use /imagine, 3/4 and/or ~/x/y", None),
    ("/", None),
])
def test_absolute_paths_are_cut_to_their_last_component(text, shown):
    assert hide_paths(text) == (text if shown is None else shown)


def test_short_hides_the_paths_of_an_os_error_and_keeps_its_first_line():
    error = OSError(2, "No such file or directory", "/home/x/models/broken-sd/unet/diffusion_pytorch_model.safetensors")
    assert short(error) == "[Errno 2] No such file or directory: '…/diffusion_pytorch_model.safetensors'"
    assert short(RuntimeError("bad /srv/a/b\nline two /srv/c/d")) == "bad …/b"
    assert short(RuntimeError("")) == "RuntimeError"
