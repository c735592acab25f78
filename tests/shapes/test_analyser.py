import pytest

from bot.shapes.analyser import ATTRIBUTES, analyse, parse_prompt, score
from bot.shapes.world import make_example, make_caption, COLOUR_NAMES, SHAPES, POSITION_NAMES

SIZES = [(64, 64), (64, 64), (96, 64), (64, 96), (128, 128), (48, 48)]


def test_analyser_reads_generated_pictures_at_least_99_percent():
    n = 600
    correct = {name: 0 for name in ATTRIBUTES}
    for seed in range(n):
        w, h = SIZES[seed % len(SIZES)]
        image, scene = make_example(10_000 + seed, w, h)
        got = analyse(image)
        for name in ATTRIBUTES:
            correct[name] += getattr(got, name) == getattr(scene, name)
    rates = {name: c / n for name, c in correct.items()}
    assert all(rate >= 0.99 for rate in rates.values()), rates


def _warped(image, amplitude: float, rng):
    """The picture bent by a smooth random displacement (`amplitude` pixels rms), plus a little noise:
    the kind of imperfection a generated shape has."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    arr = np.asarray(image, dtype=np.float32)
    h, w, _ = arr.shape
    kernel = torch.exp(-0.5 * (torch.arange(-6, 7, dtype=torch.float32) / 2.0) ** 2)
    kernel = kernel / kernel.sum()

    def field():
        f = torch.tensor(rng.normal(size=(1, 1, h + 12, w + 12)), dtype=torch.float32)
        f = F.conv2d(F.conv2d(f, kernel.view(1, 1, 1, -1)), kernel.view(1, 1, -1, 1))[0, 0]
        return f * amplitude / f.std()

    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    grid = torch.stack([(xs + field() + 0.5) / (w / 2) - 1, (ys + field() + 0.5) / (h / 2) - 1], dim=-1)
    picture = torch.from_numpy(arr).permute(2, 0, 1)[None]
    bent = F.grid_sample(picture, grid[None], mode="bilinear", padding_mode="border", align_corners=False)
    bent = bent[0].permute(1, 2, 0).numpy() + rng.normal(0, 6, arr.shape)
    return np.clip(bent, 0, 255).astype(np.uint8)


def test_analyser_tells_slightly_bent_shapes_alike_for_every_shape():
    """A shape bent by half a pixel is still that shape, whichever it is. (Telling shapes by how much of
    their bounding box they fill read 94% of such squares as circles: any bump widens a square's box.)"""
    import numpy as np

    rng = np.random.default_rng(0)
    right, total = {s: 0 for s in SHAPES}, {s: 0 for s in SHAPES}
    for seed in range(300):
        image, scene = make_example(20_000 + seed)
        total[scene.shape] += 1
        right[scene.shape] += analyse(_warped(image, 0.5, rng)).shape == scene.shape
    rates = {s: right[s] / total[s] for s in SHAPES}
    assert all(rate >= 0.97 for rate in rates.values()), rates


def test_analyser_on_a_plain_picture_finds_no_shape():
    from PIL import Image

    got = analyse(Image.new("RGB", (64, 64), (35, 80, 225)))
    assert got.background_colour == "blue" and got.shape is None and got.position is None


def test_parse_every_generated_caption():
    import random

    rng = random.Random(1)
    for _ in range(500):
        c = rng.choice(COLOUR_NAMES)
        b = rng.choice([x for x in COLOUR_NAMES if x != c])
        s = rng.choice(SHAPES)
        p = rng.choice(POSITION_NAMES + (None,))
        got = parse_prompt(make_caption(c, s, b, p, rng))
        assert got.attributes() == {"shape_colour": c, "shape": s, "background_colour": b, "position": p}


@pytest.mark.parametrize(
    "prompt, expected",
    [
        ("a red circle on a blue background", ("red", "circle", "blue", None)),
        ("A Yellow Triangle in the middle, black background", ("yellow", "triangle", "black", "center")),
        ("blue background with a green square at the top", ("green", "square", "blue", "top")),
        ("white squares on the right on purple", ("white", "square", "purple", "right")),
        ("an orange circle", ("orange", "circle", None, None)),
        ("a cat", (None, None, None, None)),
    ],
)
def test_parse_prompt(prompt, expected):
    assert tuple(parse_prompt(prompt).attributes().values()) == expected


def test_score_ignores_what_the_prompt_does_not_ask():
    image, scene = make_example(7, position_named=False)
    result = score(analyse(image), parse_prompt(scene.caption))
    assert result["position"] is None and result["all"] is True
