"""`dreamgrid bench canvas` runs once on one prompt and prints the figures the team reads (the 64-prompt
figures are in docs/performance.md)."""

from test_bench_pool import dreamgrid, last_json


def test_bench_canvas_judges_pan_and_zoom_with_the_analyser(models_dir):
    figures = last_json(dreamgrid("bench", "canvas", "--prompts", "1", "--json", env={"MODELS_DIR": str(models_dir)}))
    assert figures["model"] == "shapes" and figures["prompts"] == 1
    assert set(figures["tools"]) == {"pan left", "zoom 2"}
    assert set(figures["tools"]["pan left"]) == {"kept_pixels", "shape_kept", "background_match", "no_new_figure"}
    for tool in figures["tools"].values():
        assert tool["kept_pixels"] == 1.0  # the engine pastes kept pixels back, always
        assert all(0.0 <= value <= 1.0 for value in tool.values())
