"""The one colour rule of every chart (perp_engine.palette): every method and every repair recipe has its own colour,
and a model is drawn in its recipe's colour when repaired, in its method's otherwise."""

from __future__ import annotations

import pytest

from perp_engine import palette
from perp_engine.config import METHODS, RunConfig
from perp_engine.presets import PRESETS


def test_every_method_and_recipe_has_a_colour_of_its_own():
    assert set(palette.METHOD_COLORS) == set(palette.METHOD_SYMBOLS) == set(METHODS)
    assert set(palette.RECIPE_COLORS) == set(PRESETS) - {"none"}  # a model not repaired takes its method's colour
    colours = [*palette.METHOD_COLORS.values(), *palette.RECIPE_COLORS.values(), palette.CUSTOM, palette.DENSE,
               palette.BEFORE, palette.AFTER]
    assert len(set(colours)) == len(colours)


@pytest.mark.parametrize("preset", ["none", "perp", "recon-norms"])
def test_a_model_takes_its_recipe_colour_when_repaired_and_its_method_colour_otherwise(preset):
    config = RunConfig.create(preset, method="sparsegpt").to_dict()
    repaired = palette.series_color(config, preset, repaired=True)
    assert repaired == (palette.method_color("sparsegpt") if preset == "none" else palette.recipe_color(preset))
    assert palette.series_color(config, preset, repaired=False) == palette.method_color("sparsegpt")
    assert palette.series_color(config, None, repaired=True) == (palette.method_color("sparsegpt") if preset == "none"
                                                                 else palette.CUSTOM)


def test_refined_and_owl_variants_are_darker_shades_of_their_method():
    base = palette.method_color("wanda")
    shades = [palette.method_color("wanda", a, r) for a, r in (("owl", "none"), ("uniform", "dsnot"), ("owl", "dsnot"))]
    assert len({base, *shades}) == 4
    brightness = [sum(int(c[i:i + 2], 16) for i in (1, 3, 5)) for c in (base, *shades)]
    assert brightness == sorted(brightness, reverse=True)
