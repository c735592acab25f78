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
        (4, "grid.png", False, False),  # blend
    ]
    assert [s for s in JobStatus if s.active] == [JobStatus.QUEUED, JobStatus.RUNNING]
    assert f"{JobStatus.DONE}" == "done"


def test_an_impossible_recipe_is_a_programming_error():
    with pytest.raises(ValueError, match="seed"):
        replace(RECIPE, seed=MAX_SEED + 1)


def test_pictures_are_stored_by_digest_and_weights_map_to_the_engine():
    digest = "ab" * 32
    recipe = replace(RECIPE, image_prompts=(digest,), image_weight=2.0, style_code=77, style_weight=0,
                     object_refs=(digest,))
    params = recipe.params()
    assert params["image_prompts"] == [digest] and params["style_weight"] == 0 and "style_refs" not in params
    assert Recipe.from_params(params, prompt="a fox", negative_prompt="snow", model="tiny", seed=MAX_SEED - 1) == recipe
    assert (recipe.image_strength, recipe.style_scale, recipe.object_scale) == (0.4, 0.0, 1.0)
    assert replace(recipe, style_weight=1000).style_scale == 2.0 and replace(recipe, style_weight=50).style_scale == 0.5
    assert replace(recipe, image_weight=0).image_strength == 1.0  # --iw 0: the image is only a faint start
    assert replace(recipe, image_weight=3).image_strength == 0.25  # 4 steps: never below one denoising step
    assert recipe.again().image_prompts == (digest,)  # 🔄 keeps the image prompt
    assert "--iw 2 --sref 77 --sw 0" in recipe.summary()


def test_a_remix_keeps_the_pictures_it_does_not_give_anew():
    image, style = "ab" * 32, "cd" * 32
    parent = replace(RECIPE, image_prompts=(image,), image_weight=2.0, style_refs=(style,), style_weight=300)
    remix = replace(RECIPE, style_code=9).keeping_pictures_of(parent)
    assert (remix.image_prompts, remix.image_weight) == ((image,), 2.0)
    assert (remix.style_refs, remix.style_code, remix.style_weight) == ((), 9, 300)  # the new style wins
    assert remix.has_references and not RECIPE.has_references
