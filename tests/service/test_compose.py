"""From a typed prompt, the user's settings and the catalog to what a job runs."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.engine import load_catalog
from bot.recipe import Recipe
from bot.service.compose import Defaults, guidance_for, plan_job, size_for
from bot.service.prompt import PromptError, is_flag, parse_prompt


@pytest.fixture
def catalog(models_dir):
    return load_catalog(models_dir / "catalog.toml")


@pytest.mark.parametrize("ar, size", [((1, 1), (64, 64)), ((2, 1), (88, 48)), ((16, 9), (88, 48)),
                                      ((2, 3), (56, 80)), ((4, 1), (128, 32)), ((1, 4), (32, 128))])
def test_aspect_ratio_keeps_the_pixel_budget_in_multiples_of_8(catalog, ar, size):
    width, height = size_for(catalog.get("tiny"), *ar)
    assert (width, height) == size
    assert width % 8 == 0 and height % 8 == 0
    assert abs(width * height - 64 * 64) / (64 * 64) < 0.1


@pytest.mark.parametrize("ar", ["5:1", "1:5", "100:1"])
def test_a_ratio_beyond_the_models_limit_is_refused_with_the_limit(catalog, ar):
    with pytest.raises(PromptError, match=r"up to 4:1 and 1:4"):
        plan_job(f"a fox --ar {ar}", catalog, "tiny")


def test_stylize_maps_to_guidance_around_the_catalogs_value(catalog):
    tiny = catalog.get("tiny")  # guidance 5
    assert [guidance_for(tiny, s) for s in (0, 50, None, 100, 250, 1000)] == [2.5, 3.75, 5.0, 5.0, 5.833, 10.0]


def test_settings_are_defaults_that_typed_parameters_override(catalog):
    mine = Defaults(model="broken", stylize=1000, quality=0.5)
    plan = plan_job("a fox", catalog, "tiny", mine)
    assert (plan.recipe.model, plan.recipe.guidance, plan.recipe.steps) == ("broken", 10.0, 2)
    plan = plan_job("a fox --model tiny --s 0 --q 2", catalog, "tiny", mine)
    assert (plan.recipe.model, plan.recipe.guidance, plan.recipe.steps) == ("tiny", 2.5, 8)
    assert plan_job("a fox --steps 3", catalog, "tiny", mine).recipe.steps == 3


def test_a_settings_model_since_disabled_falls_back_to_the_server_default(catalog):
    assert plan_job("a fox", catalog, "tiny", Defaults(model="gone")).recipe.model == "tiny"


def test_suffix_and_custom_options_sit_under_the_typed_prompt(catalog):
    mine = Defaults(suffix="oil painting --ar 2:1 --seed 5", options={"big": "--q 2 --seed 9"})
    plan = plan_job("a fox --big --no snow", catalog, "tiny", mine)
    assert plan.recipe.prompt == "a fox oil painting" and plan.recipe.negative_prompt == "snow"
    assert (plan.recipe.width, plan.recipe.steps, plan.recipe.seed) == (88, 8, 9)
    assert plan_job("a fox --seed 1", catalog, "tiny", mine).recipe.seed == 1


@pytest.mark.parametrize("typed, complaint", [
    ("a fox --model nope", "`--model nope` is not offered here; pick one of `tiny`, `broken`"),
    ("a fox --niji", "has none"),
    ("a fox --steps 3 --q 2", "give one of them"),
])
def test_model_and_step_errors_say_what_to_do(catalog, typed, complaint):
    with pytest.raises(PromptError, match=complaint):
        plan_job(typed, catalog, "tiny")


def test_niji_picks_the_anime_model_when_the_catalog_has_one(catalog):
    with_niji = replace(catalog, models={**catalog.models, "niji": replace(catalog.get("tiny"), name="niji")})
    assert plan_job("a fox --niji", with_niji, "tiny").recipe.model == "niji"
    with pytest.raises(PromptError, match="give one of them"):
        plan_job("a fox --niji --model tiny", with_niji, "tiny")


def test_a_jobs_parameters_written_back_parse_to_the_same_job(catalog):
    plan = plan_job("a fox --ar 2:1 --no snow, ice --s 250 --q .5 --chaos 20 --tile", catalog, "tiny")
    again = plan_job(f"{plan.recipe.prompt} {plan.recipe.prompt_language()}", catalog, "tiny",
                     Defaults(model="broken", stylize=50))
    assert replace(again.recipe, seed=0) == replace(plan.recipe, seed=0)  # seeds are drawn anew
    three_steps = Recipe(prompt="", model="tiny", seed=0, width=64, height=64, steps=3, guidance=5.0)
    assert parse_prompt(three_steps.prompt_language()).values == {"steps": 3, "model": "tiny"}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.text(max_size=8), st.sampled_from(
    ["--ar", "--seed", "--no", "--chaos", "--s", "--q", "--steps", "--model", "--v", "--tile", "--repeat", "--niji",
     "tiny", "broken", "1:9", "3:2", "0", "2", ".5", "77", "4294967296", "—ar"])), max_size=12).map(" ".join))
def test_any_prompt_plans_a_runnable_job_or_says_why_not(catalog, typed):
    try:
        plan = plan_job(typed, catalog, "tiny", Defaults(stylize=250, options={"w": "--ar 2:1"}))
    except PromptError as error:
        assert str(error).strip()
        return
    p = plan.recipe
    assert not any(is_flag(token) for token in p.prompt.split())
    assert p.width % 8 == 0 and p.height % 8 == 0 and 1 <= p.steps <= 100 and p.guidance >= 0
    assert plan.recipe.model in catalog.models and 1 <= plan.repeat <= 4
