"""The adam_update_rms analysis: its math against the published numbers, and its decision rule."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from optclaims.claims import load_claim_module

ROOT = Path(__file__).resolve().parents[1]
claim = load_claim_module("adam_update_rms", ROOT / "reproductions")
TH = yaml.safe_load((ROOT / "reproductions/adam_update_rms/claim.yaml").read_text())["thresholds"]


def test_mean_field_matches_the_published_values():
    assert claim.mean_field_rms(0.9) == pytest.approx(0.2294, abs=1e-4)
    assert claim.mean_field_rms(0.95) == pytest.approx(0.160, abs=1e-3)
    assert claim.mean_field_rms(0.8) == pytest.approx(0.333, abs=1e-3)
    assert claim.mean_field_rms(0.9, snr=1e9) == pytest.approx(1.0, abs=1e-6)  # pure signal: RMS → 1


def test_implied_snr_inverts_the_mean_field():
    for snr in (0.0, 0.1, 1.0):
        assert claim.implied_snr(claim.mean_field_rms(0.9, snr), 0.9) == pytest.approx(snr, abs=1e-9)


def test_simulation_agrees_with_theory_at_zero_signal_and_tracks_signal():
    sim = claim.simulate_rms([0.9, 0.95], [0.95, 0.999], [0.0, 1.0], n_coords=2000, steps=3000, tail=100)
    zero = sim[sim.snr == 0]
    assert zero.relative_error.abs().max() < 0.05
    # more signal → larger updates, in both the simulation and the theory
    for b1 in (0.9, 0.95):
        s = sim[(sim.beta1 == b1) & (sim.beta2 == 0.95)].set_index("snr").simulated_rms
        assert s[1.0] > s[0.0] + 0.2


def table(values: dict, steps: int = 10_000) -> pd.DataFrame:
    rows = [{"beta1": b1, "beta2": b2, "status": "ok", "rms_hidden": v, "rms_hidden_p05": v * 0.95,
             "rms_hidden_p95": v * 1.05, "steps": steps} for (b1, b2), v in values.items()]
    return pd.DataFrame(rows)


THEORY = {(0.8, 0.95): 0.333, (0.9, 0.95): 0.229, (0.95, 0.95): 0.160}


def test_decide_reproduced_partial_and_refuted():
    assert claim.decide(table(THEORY), TH)[0] == "reproduced"
    # reference in band, ordering right, but β1=0.8 off by more than 25%
    assert claim.decide(table({**THEORY, (0.8, 0.95): 0.45}), TH)[0] == "partially_reproduced"
    # reference outside [0.15, 0.35]
    assert claim.decide(table({**THEORY, (0.9, 0.95): 0.40, (0.8, 0.95): 0.5}), TH)[0] == "not_reproduced"
    # wrong ordering
    assert claim.decide(table({**THEORY, (0.95, 0.95): 0.25}), TH)[0] == "not_reproduced"


def test_decide_inconclusive_when_a_needed_run_diverged():
    t = table(THEORY)
    t.loc[t.beta1 == 0.9, "status"] = "diverged"
    t.loc[t.beta1 == 0.9, "rms_hidden"] = np.nan
    assert claim.decide(t, TH)[0] == "inconclusive"


def test_beta2_subclaim():
    same = table({**THEORY, **{(b1, 0.999): v for (b1, _), v in THEORY.items()}})
    assert claim.beta2_subclaim(same, TH)["status"] == "reproduced"
    lower = table({**THEORY, **{(b1, 0.999): v * 0.6 for (b1, _), v in THEORY.items()}})
    assert claim.beta2_subclaim(lower, TH)["status"] == "not_reproduced"


def test_beta2_subclaim_is_out_of_scope_for_runs_shorter_than_its_horizon():
    """β2 = 0.999 needs ≥ 5/(1−β2) = 5,000 steps: shorter runs cannot judge it, whatever they show."""
    for factor in (1.0, 0.6):
        values = {**THEORY, **{(b1, 0.999): v * factor for (b1, _), v in THEORY.items()}}
        short = claim.beta2_subclaim(table(values, steps=1000), TH)
        assert short["status"] == "inconclusive" and "needs ≥ 5,000 steps" in short["measured"]
    long_enough = table({**THEORY, **{(b1, 0.999): v for (b1, _), v in THEORY.items()}}, steps=5000)
    assert claim.beta2_subclaim(long_enough, TH)["status"] == "reproduced"
