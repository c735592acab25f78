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
