"""A job's recipe: stored as the JSON rows always had, read back typed; what V, 🔄 and U start from."""

from dataclasses import replace

import pytest

from bot.recipe import MAX_SEED, JobKind, JobStatus, Recipe

RECIPE = Recipe(prompt="a fox", model="tiny", seed=MAX_SEED - 1, width=88, height=48, steps=4, guidance=5.833,
                negative_prompt="snow", chaos=20, ar="2:1", stylize=250)


def test_a_recipe_is_stored_as_the_params_rows_always_had_and_reads_back_the_same():
    params = RECIPE.params()
    assert params == {"width": 88, "height": 48, "steps": 4, "guidance": 5.833, "chaos": 20, "ar": "2:1",
                      "stylize": 250}
    assert Recipe.from_params(params, prompt="a fox", negative_prompt="snow", model="tiny", seed=MAX_SEED - 1) == RECIPE


def test_what_other_jobs_start_from():
    variation = RECIPE.again().variation("subtle")
    assert variation.strength == 0.35 and variation.seed != RECIPE.seed
    assert replace(variation, seed=RECIPE.seed, strength=None) == RECIPE
    upscale = variation.upscale(seed=9)
    assert (upscale.scale, upscale.strength, upscale.seed) == (2, None, 9)  # an upscale is no img2img
    assert RECIPE.seeds() == (MAX_SEED - 1, MAX_SEED, 0, 1)  # seeds wrap within the range users type


def test_kinds_and_statuses_carry_what_depends_on_them():
    assert [(k.cost, k.result_file, k.needs_source, k.is_canvas) for k in JobKind] == [
        (4, "grid.png", False, False),  # imagine
        (4, "grid.png", False, False),  # reroll
        (4, "grid.png", True, False),  # variation
        (1, "1.png", True, False),  # upscale
        (1, "1.png", True, False),  # Upscale (Creative)
        (4, "grid.png", True, True),  # zoom
        (4, "grid.png", True, True),  # pan
        (4, "grid.png", True, True),  # region
    ]
    assert [s for s in JobStatus if s.active] == [JobStatus.QUEUED, JobStatus.RUNNING]
    assert f"{JobStatus.DONE}" == "done"


def test_an_impossible_recipe_is_a_programming_error():
    with pytest.raises(ValueError, match="seed"):
        replace(RECIPE, seed=MAX_SEED + 1)
