"""The suite's one figure style (plotting.py): fixed colours and markers, reference lines and bands,
units on every axis."""

import matplotlib
import pytest
import seaborn as sns
from matplotlib.colors import to_hex

from optclaims import plotting
from optclaims.analysis import ClaimContext
from optclaims.plotting import (MUON_SCALES, OPTIMIZERS, PARAMETRIZATIONS, Style, axis_label, missing_units, plt,
                                reference_band, reference_line, reference_lines, style)


def test_the_theme_is_seaborn_paper_with_the_colour_blind_palette():
    cycle = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    assert [to_hex(c) for c in cycle] == sns.color_palette("colorblind").as_hex()
    paper = sns.plotting_context("paper")
    assert matplotlib.rcParams["axes.labelsize"] == paper["axes.labelsize"]


def test_each_optimizer_and_parametrization_has_its_own_fixed_colour_and_marker():
    fixed = {**OPTIMIZERS, **PARAMETRIZATIONS, **MUON_SCALES}
    assert set(OPTIMIZERS) == {"adamw", "muon", "sgd"} and set(PARAMETRIZATIONS) == {"sp", "mup"}
    assert len({to_hex(s.color) for s in fixed.values()}) == len(fixed)
    assert len({s.marker for s in fixed.values()}) == len(fixed)
    colorblind = set(sns.color_palette("colorblind").as_hex())
    assert all(to_hex(s.color) in colorblind for s in fixed.values())
    # the same key, however a claim spells it, is drawn the same way
    assert style("adam") == style("AdamW") == OPTIMIZERS["adamw"] and style("control") == OPTIMIZERS["sgd"]
    assert style("μP") == PARAMETRIZATIONS["mup"]


def test_a_combination_takes_the_parametrizations_colour_and_the_optimizers_marker():
    for key, par, opt in (("mup_adam", "mup", "adamw"), ("SP-Adam", "sp", "adamw"), ("muon_spectral", "spectral", "muon"),
                          ("Muon-moonlight", "moonlight", "muon")):
        s = style(key)
        assert s.color == style(par).color and s.marker == style(opt).marker, key
    with pytest.raises(KeyError, match="no fixed style for 'lion'"):
        style("lion")
    fallback = Style("lion", (0, 0, 0), "o")
    assert style("lion", fallback=fallback) is fallback


def test_published_values_are_reference_lines_and_bands_in_one_look():
    fig, ax = plt.subplots()
    line = reference_line(ax, 0.229, "mean field")
    assert line.get_linestyle() == "--" and to_hex(line.get_color()) == to_hex(plotting.REFERENCE_COLOR)
    vertical = reference_line(ax, 3, axis="x", index=1)
    assert vertical.get_linestyle() == ":" and list(vertical.get_xdata()) == [3, 3]
    reference_lines(ax, {"Moonlight": 1.93, "Keller Jordan": 1.35})
    styles = [ln.get_linestyle() for ln in ax.get_lines()[-2:]]
    assert styles[0] != styles[1]
    band = reference_band(ax, 0.18, 0.28, "reproduced band")
    assert band.get_alpha() == plotting.BAND_ALPHA and band.get_label() == "reproduced band"
    plt.close(fig)


def test_every_labelled_axis_names_its_unit_and_save_figure_refuses_one_that_does_not(tmp_path):
    assert axis_label("final val loss", plotting.NATS) == "final val loss (nats/token)"
    fig, (a, b) = plt.subplots(1, 2)
    a.set(xlabel=axis_label("step", plotting.STEPS), ylabel="update RMS")
    b.set(xlabel="width [dimensions]", ylabel="")  # brackets count; an empty (shared) label is fine
    assert missing_units(fig) == ["y: 'update RMS'"]
    ctx = ClaimContext("c", {}, "smoke", False, [], tmp_path)
    with pytest.raises(ValueError, match="figure 'f' of c: axis label.*without a unit: y: 'update RMS'"):
        ctx.save_figure(fig, "f", "caption")
    a.set_ylabel(axis_label("update RMS", plotting.DIMENSIONLESS))
    ctx.save_figure(fig, "f", "caption")
    assert (tmp_path / "figures" / "f.png").is_file() and (tmp_path / "figures" / "f.pdf").is_file()
    plt.close(fig)
