"""The prompt language: every parameter, its boundaries, odd placements, unicode, repeats, and each error."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.service.prompt import (
    MAX_SEED,
    PARAMETERS,
    PromptError,
    check_option_name,
    is_flag,
    is_link,
    parse_option_value,
    parse_prompt,
)

PARSES = [
    # (typed, description, parameters)
    ("a red fox", "a red fox", {}),
    ("  a   red\tfox \n", "a red fox", {}),
    ("a fox --ar 3:2", "a fox", {"ar": (3, 2)}),
    ("a fox --aspect 1:4", "a fox", {"ar": (1, 4)}),
    ("a fox --seed 0", "a fox", {"seed": 0}),
    (f"a fox --seed {MAX_SEED}", "a fox", {"seed": MAX_SEED}),
    ("a fox --no snow, trees", "a fox", {"no": "snow, trees"}),
    ("a fox --no snow --ar 1:1", "a fox", {"no": "snow", "ar": (1, 1)}),
    ("a fox --chaos 0", "a fox", {"chaos": 0}),
    ("a fox --c 100", "a fox", {"chaos": 100}),
    ("a fox --stylize 0", "a fox", {"stylize": 0}),
    ("a fox --s 1000", "a fox", {"stylize": 1000}),
    ("a fox --steps 1", "a fox", {"steps": 1}),
    ("a fox --steps 100", "a fox", {"steps": 100}),
    ("a fox --quality .25", "a fox", {"quality": 0.25}),
    ("a fox --q 0.5", "a fox", {"quality": 0.5}),
    ("a fox --q 1", "a fox", {"quality": 1.0}),
    ("a fox --quality 2", "a fox", {"quality": 2.0}),
    ("a fox --model Tiny", "a fox", {"model": "tiny"}),
    ("a fox --v sd15", "a fox", {"model": "sd15"}),
    ("a fox --tile", "a fox", {"tile": True}),
    ("a fox --tile --seed 3", "a fox", {"tile": True, "seed": 3}),
    ("a fox --repeat 1", "a fox", {"repeat": 1}),
    ("a fox --r 4", "a fox", {"repeat": 4}),
    ("a fox --niji", "a fox", {"niji": True}),
    ("a fox --niji 6", "a fox", {"niji": True}),
    # every parameter at once, in an odd order, upper-case names
    ("a fox --TILE --Seed 9 --no a, b --AR 16:9 --c 5 --s 250 --q 2 --model x --r 2",
     "a fox", {"tile": True, "seed": 9, "no": "a, b", "ar": (16, 9), "chaos": 5, "stylize": 250, "quality": 2.0,
               "model": "x", "repeat": 2}),
    # phones turn -- into an em dash
    ("a fox —ar 2:1 –seed 4", "a fox", {"ar": (2, 1), "seed": 4}),
    # dashes inside words and on their own inside the text are text
    ("rock-paper—scissors a — b", "rock-paper—scissors a — b", {}),
    # unicode
    ("一只红狐狸 🦊 --no 雪", "一只红狐狸 🦊", {"no": "雪"}),
    # parameters only: the description is empty (the service says so)
    ("--ar 1:2", "", {"ar": (1, 2)}),
]


@pytest.mark.parametrize("typed, text, values", PARSES)
def test_a_prompt_parses_to_its_description_and_parameters(typed, text, values):
    parsed = parse_prompt(typed)
    assert parsed.text == text and parsed.values == values


ERRORS = [
    # (typed, words the message must contain)
    ("a fox --ar 3", ["--ar 3", "16:9"]),
    ("a fox --ar 0:1", ["--ar 0:1", "from 1"]),
    ("a fox --ar 3:2.5", ["3:2.5"]),
    ("a fox --seed -1", ["--seed -1", "0 to 4294967295"]),
    (f"a fox --seed {MAX_SEED + 1}", ["0 to 4294967295"]),
    ("a fox --seed 1e3", ["--seed 1e3"]),
    ("a fox --chaos 101", ["--chaos 101", "0 to 100"]),
    ("a fox --stylize 1001", ["--stylize", "0 to 1000"]),
    ("a fox --steps 0", ["--steps 0", "1 to 100"]),
    ("a fox --steps 101", ["1 to 100"]),
    ("a fox --quality 3", ["--quality 3", ".25, .5, 1 or 2"]),
    ("a fox --q high", ["--q high"]),
    ("a fox --repeat 5", ["--repeat 5", "1 to 4"]),
    ("a fox --repeat 0", ["1 to 4"]),
    ("a fox --seed", ["`--seed` needs a value", "--seed 1234"]),
    ("a fox --ar --seed 2", ["`--ar` needs a value"]),
    ("a fox --no", ["`--no` needs"]),
    ("a fox --no --ar 1:1", ["`--no` needs"]),
    ("a fox --ar 1:1 --ar 2:1", ["`--ar` is given twice"]),
    ("a fox --ar 1:1 --aspect 2:1", ["`--ar` is given twice"]),
    ("a fox --sed 4", ["`--sed`", "not a parameter", "--seed", "--chaos", "--tile"]),
    ("a fox --", ["no parameter name"]),
    ("a fox --seed 4 in the snow", ["`in the snow` comes after `--seed 4`", "description first"]),
    ("a fox --tile in the snow", ["`in the snow` comes after `--tile`"]),
    ("--ar 2:1 a fox", ["`a fox` comes after `--ar 2:1`"]),
]


@pytest.mark.parametrize("typed, words", ERRORS)
def test_a_bad_parameter_is_an_error_naming_it_and_what_is_allowed(typed, words):
    with pytest.raises(PromptError) as error:
        parse_prompt(typed)
    for word in words:
        assert word in str(error.value)


def test_a_custom_option_expands_and_typed_parameters_win_over_it():
    options = {"portrait": "--ar 2:3 --stylize 250", "wide": "--ar 3:1"}
    assert parse_prompt("a face --portrait", options).values == {"ar": (2, 3), "stylize": 250}
    assert parse_prompt("a face --portrait --ar 1:1", options).values == {"ar": (1, 1), "stylize": 250}
    assert parse_prompt("a face --ar 1:1 --portrait", options).values == {"ar": (1, 1), "stylize": 250}
    with pytest.raises(PromptError, match="Your custom options: --portrait, --wide"):
        parse_prompt("a face --portait", options)


def test_custom_options_hold_parameters_only_and_never_shadow_one():
    assert parse_option_value("--ar 2:3 --s 250") == {"ar": (2, 3), "stylize": 250}
    with pytest.raises(PromptError, match="parameters only"):
        parse_option_value("a cat --ar 2:3")
    with pytest.raises(PromptError, match="at least one"):
        parse_option_value("   ")
    assert check_option_name("--Portrait") == "portrait"
    with pytest.raises(PromptError, match="already a parameter"):
        check_option_name("seed")
    with pytest.raises(PromptError, match="cannot name"):
        check_option_name("my option!")


FLAGS = sorted({alias for name, (aliases, _) in PARAMETERS.items() for alias in (name, *aliases)})
words = st.text(st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=12)
# Prompts built from random words, real and misspelt parameter names, values and dashes of every kind.
pieces = st.one_of(words, st.sampled_from(FLAGS).map(lambda f: "--" + f), st.sampled_from(FLAGS).map(lambda f: "—" + f),
                   st.sampled_from(["--", "—", "-", "1:1", "2", "-3", "1001", ",", ".25", "--zz", "::"]))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(pieces, max_size=14).map(" ".join))
def test_any_string_parses_or_gives_a_message_and_no_parameter_leaks_into_the_prompt(typed):
    try:
        parsed = parse_prompt(typed)
    except PromptError as error:
        assert str(error).strip()
        return
    assert not any(is_flag(token) for token in parsed.text.split())
    assert parsed.text == " ".join(parsed.text.split())
    assert parsed.text in " ".join(typed.split())


@settings(max_examples=200, deadline=None)
# A description that starts with a link is an image prompt (Hypothesis finds `http://` in the parser's source).
@given(words.filter(lambda w: not any(is_flag(t) for t in w.split()) and not is_link(w.strip())),
       st.integers(0, MAX_SEED), st.integers(1, 40), st.integers(1, 40), st.integers(0, 100))
def test_the_description_comes_back_exactly_whatever_parameters_follow(text, seed, w, h, chaos):
    parsed = parse_prompt(f"{text} --seed {seed} --ar {w}:{h} --chaos {chaos}")
    assert parsed.text == " ".join(text.split())
    assert parsed.values == {"seed": seed, "ar": (w, h), "chaos": chaos}
