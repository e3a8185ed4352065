"""The harness every claim's analysis runs in.

``run_analysis`` loads the runs a claim needs, calls ``analyze(ctx)`` from
reproductions/<claim>/analyze.py, and writes the claim outputs of DESIGN.md: verdict.json,
table.csv and figures/. An analysis only computes; reading runs and writing files happen here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import atomic_output, read_json, write_json
from .claims import load_claim_module

STATUSES = ("reproduced", "partially_reproduced", "not_reproduced", "inconclusive")


@dataclass
class Run:
    run_id: str
    config: dict
    summary: dict
    metrics: pd.DataFrame
    eval: dict | None = None

    @property
    def diverged(self) -> bool:
        return self.summary["status"] != "ok"

    @property
    def final_val_loss(self) -> float:
        """Diverged runs count as infinite loss (DESIGN.md, principles)."""
        v = self.summary.get("final_val_loss")
        return math.inf if self.diverged or v is None else v


def load_run(run_dir: Path) -> Run:
    run_dir = Path(run_dir)
    eval_path = run_dir / "eval.json"
    return Run(run_dir.name, read_json(run_dir / "config.json"), read_json(run_dir / "summary.json"),
               pd.read_parquet(run_dir / "metrics.parquet"),
               read_json(eval_path) if eval_path.exists() else None)


def load_runs(run_dirs: list[Path]) -> list[Run]:
    """Each run once, in the order given."""
    return [load_run(d) for d in dict.fromkeys(run_dirs)]


@dataclass
class ClaimContext:
    claim: str
    spec: dict          # claim.yaml
    scale: str
    evidential: bool
    runs: list[Run]
    out_dir: Path
    figures: list[dict] = field(default_factory=list)
    stage: int | None = None  # in select_runs: the stage being chosen (2 = the first selection)

    @property
    def scale_spec(self) -> dict:
        return self.spec["scales"][self.scale]

    @property
    def thresholds(self) -> dict:
        return self.spec.get("thresholds", {})

    def save_figure(self, fig, name: str, caption: str) -> None:
        """Save a matplotlib figure under figures/ as PNG (for the HTML report, listed with its caption
        in the verdict) and as vector PDF beside it (for papers). A labelled axis must name its unit
        (plotting.axis_label): the suite's figures are read across claims."""
        from .plotting import missing_units

        unlabelled = missing_units(fig)
        if unlabelled:
            raise ValueError(f"figure {name!r} of {self.claim}: axis label(s) without a unit: {', '.join(unlabelled)}")
        path = self.out_dir / "figures" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
        fig.savefig(path.with_suffix(".pdf"), bbox_inches="tight")
        self.figures.append({"file": f"figures/{name}.png", "caption": caption})

    @property
    def criteria(self) -> list[str]:
        """claim.yaml's criteria with their {threshold} fields filled in from its thresholds."""
        return criteria_text(self.spec)

    def verdict(self, status: str, measured: dict, summary: str, sub_claims: list[dict] = (), notes: list[str] = ()) -> dict:
        if status not in STATUSES:
            raise ValueError(f"status {status!r} is not one of {STATUSES}")
        for s in sub_claims:
            if s["status"] not in STATUSES:
                raise ValueError(f"sub-claim {s['name']!r}: status {s['status']!r} is not one of {STATUSES}")
        out = {
            "claim": self.claim, "title": self.spec["title"], "source": self.spec["source"], "scale": self.scale,
            "evidential": self.evidential, "status": status, "expected": self.spec["expected"],
            "measured": measured, "criteria": self.criteria, "sub_claims": list(sub_claims),
            "summary": summary, "notes": list(notes), "regime": regime(self.runs), "figures": self.figures,
            "runs": [r.run_id for r in self.runs],
        }
        # claim.yaml's short title, sources (keys of reproductions/sources.yaml) and headline, for the report
        if "short_title" in self.spec:
            out["short_title"] = self.spec["short_title"]
        if "sources" in self.spec:
            out["sources"] = [dict(s) for s in self.spec["sources"]]
        if "headline" in self.spec:
            out["headline"] = headline(self.spec, self.scale)
        return out


THRESHOLD_FIELD = re.compile(r"\{([A-Za-z_]\w*)((?:\[\d+\])*)(?::([^{}]*))?\}")


def criteria_text(spec: dict) -> list[str]:
    """Each criterion of claim.yaml with its threshold fields filled in (``fill_thresholds``)."""
    return [fill_thresholds(c, spec.get("thresholds", {})) for c in spec["criteria"]]


def fill_thresholds(text: str, th: dict) -> str:
    """``text`` (a criterion, a claim's ``implemented`` line) with ``{name}``, ``{name[0]}`` or
    ``{name:.0%}`` replaced by the threshold's value (numbers as ``:g`` unless a format is given), so
    the numbers in the words are the numbers the analysis uses; other braces ({0.1, 0.3}) stay as
    written. A name that is not a threshold raises KeyError (load_claim turns it into a ConfigError
    before any run)."""

    def fill(m: re.Match) -> str:
        name, index, fmt = m.group(1), m.group(2), m.group(3)
        if name not in th:
            raise KeyError(f"{{{name}}} is not one of the thresholds ({', '.join(th) or 'none'})")
        value = th[name]
        for i in re.findall(r"\d+", index):
            value = value[int(i)]
        return format(value, fmt if fmt is not None else ("g" if isinstance(value, float) else ""))

    return THRESHOLD_FIELD.sub(fill, text)


def published_value(spec: dict) -> float | None:
    """The number of claim.yaml's headline.published: its ``value``, or the threshold its ``threshold``
    path leads to (keys and indices, so a number the criteria already use is written once); None
    where the source gives no number."""
    published = spec["headline"]["published"]
    if "value" in published:
        return float(published["value"])
    if "threshold" not in published:
        return None
    value = spec.get("thresholds", {})
    for step in published["threshold"]:
        value = value[step]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{published['threshold']} leads to {value!r}, not a number")
    return float(value)


def headline(spec: dict, scale: str) -> dict:
    """The verdict's headline: which of its measured figures the verdict table shows (claim.yaml's
    headline.measured, per scale where it names a size) and the published value beside it."""
    h = spec["headline"]
    key = h["measured"] if isinstance(h["measured"], str) else h["measured"][scale]
    published = {k: v for k, v in h["published"].items() if k != "threshold"}
    published["value"] = published_value(spec)
    return {"measured": key, "published": published}


def sub_claim(name: str, status: str, expected: str, measured: str, criterion: str) -> dict:
    """One line of a verdict's sub-claims table."""
    if status not in STATUSES:
        raise ValueError(f"sub-claim {name!r}: status {status!r} is not one of {STATUSES}")
    return {"name": name, "status": status, "expected": expected, "measured": measured, "criterion": criterion}


# ------------------------------------------------------------------ run fields and regime

PLAN_FIELDS = ("data", "vocab_size")  # what the plan adds to every run config (claims.finish_run_configs)


def run_fields(cfg: dict) -> dict:
    """A run config without the fields the plan adds to every run: what a claim's select_runs
    hands back to be finished again (so a chosen run has the same run_id as if planned)."""
    return {k: v for k, v in cfg.items() if k not in PLAN_FIELDS}


def tokens_of(cfg: dict) -> int:
    """Training tokens of a run config (every step a full batch)."""
    return cfg["steps"] * cfg["batch_size"] * cfg["seq_len"]


def regime(runs: list[Run]) -> dict:
    """The regime a verdict speaks for: non-embedding parameters (matmul weights, readout
    included, and gains: ``n_params_matmul`` of summary.json), tokens per such parameter, seeds,
    and the corpus (the data id of the runs). Ranges over the runs that finished, leaving out
    coordinate-check runs (``activation_steps``: a few steps that record activations, not training)."""
    ok = [r for r in runs if r.summary.get("n_params_matmul") and not r.config.get("activation_steps")]
    params = sorted({int(r.summary["n_params_matmul"]) for r in ok})
    tpp = [tokens_of(r.config) / r.summary["n_params_matmul"] for r in ok]
    seeds = sorted({r.config.get("seed", 0) for r in runs})
    span = lambda v: {"min": float(min(v)), "max": float(max(v))} if v else None  # noqa: E731
    return {"non_embedding_params": span(params), "tokens_per_param": span(tpp), "seeds": len(seeds),
            "corpus": ", ".join(sorted({str(r.config.get("data")) for r in runs})) or None}


# ------------------------------------------------------------------ seed noise


def pooled_seed_sigma(df: pd.DataFrame, by, value: str = "final_val_loss") -> float:
    """The standard deviation of one run's ``value`` over seeds, pooled over the groups ``by``
    (each group: the same config but its seed); non-finite values (diverged runs) left out."""
    by = [by] if isinstance(by, str) else list(by)
    ok = df[np.isfinite(df[value].astype(float))]
    groups = ok.groupby(by, dropna=False)[value]
    dev = ok[value] - groups.transform("mean")
    dof = len(ok) - groups.ngroups
    return float(np.sqrt((dev ** 2).sum() / dof)) if dof > 0 else math.nan


def within_seed_sigma(df: pd.DataFrame, by, across: str, seed: str = "seed", value: str = "final_val_loss") -> float:
    """The standard deviation of one run's ``value`` about its seed's level and its setting's level,
    pooled over the groups ``by``: in each group the seed × ``across`` table less its seed and
    setting means (two-way, additive; a seed fixes the initialisation and the data order at every
    setting of a group, and that shared offset moves no comparison between the settings), with
    Σ (seeds − 1)(settings − 1) degrees of freedom. A setting where some seed is missing or not
    finite (diverged) is left out of its group."""
    by = [by] if isinstance(by, str) else list(by)
    ss, dof = 0.0, 0
    for _, g in df.groupby(by, dropna=False):
        t = g.pivot_table(index=seed, columns=across, values=value, aggfunc="mean").to_numpy(float)
        t = t[:, np.isfinite(t).all(axis=0)]
        if t.shape[0] < 2 or t.shape[1] < 2:
            continue
        r = t - t.mean(axis=0, keepdims=True) - t.mean(axis=1, keepdims=True) + t.mean()
        ss, dof = ss + float((r ** 2).sum()), dof + (t.shape[0] - 1) * (t.shape[1] - 1)
    return math.sqrt(ss / dof) if dof else math.nan


def paired_difference(df: pd.DataFrame, a, b, by: str = "setting", pair: str = "seed",
                      value: str = "final_val_loss", level: float = 0.95) -> dict:
    """mean(a − b) over the pairs that share ``pair`` (a seed fixes initialisation and data order),
    with the standard deviation of one pair's difference and Student's t interval of the mean.
    Pairs with a non-finite value on either side are left out; fewer than two pairs give NaN
    spread and interval."""
    side = lambda name: df[df[by] == name].set_index(pair)[value].astype(float)  # noqa: E731
    d = (side(a) - side(b)).dropna()
    d = d[np.isfinite(d)]
    mean, low, high = t_interval(d, level)
    sd = float(d.std(ddof=1)) if len(d) > 1 else math.nan
    return {"mean": mean, "sd": sd, "low": low, "high": high, "n": len(d)}


def t_interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student's t interval of the mean of ``values`` (finite ones); NaN bounds
    with fewer than two."""
    from scipy import stats

    v = np.asarray([x for x in values if np.isfinite(x)], float)
    if len(v) == 0:
        return math.nan, math.nan, math.nan
    m = float(v.mean())
    if len(v) < 2:
        return m, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1)) * float(v.std(ddof=1)) / math.sqrt(len(v))
    return m, m - half, m + half


def measured(value: float, low: float | None = None, high: float | None = None, unit: str | None = None,
             note: str | None = None, timing: bool = False) -> dict:
    """One measured figure with its interval, JSON-safe (NaN and ∞ become null). ``timing``: it
    rests on measured wall time, which no two runs repeat, so the nightly check leaves it out."""
    clean = lambda x: None if x is None or not np.isfinite(x) else float(x)  # noqa: E731
    out = {"value": clean(value), "low": clean(low), "high": clean(high), "unit": unit}
    if note:
        out["interval"] = note
    if timing:
        out["timing"] = True
    return out


def interpolated_optimum(log2_lr: np.ndarray, loss: np.ndarray) -> tuple[float, float, bool]:
    """(grid optimum, interpolated optimum, on the grid's edge?) in log2 LR. The interpolated
    optimum is the vertex of the parabola through the best point and its neighbours, kept within
    one grid step of the best point; on the edge (or with a non-finite neighbour) it is the grid's."""
    order = np.argsort(log2_lr)
    x, y = log2_lr[order], loss[order]
    if not np.isfinite(y).any():
        return math.nan, math.nan, True
    i = int(np.nanargmin(np.where(np.isfinite(y), y, np.nan)))
    if i in (0, len(x) - 1):
        return float(x[i]), float(x[i]), True
    xs, ys = x[i - 1:i + 2], y[i - 1:i + 2]
    if not np.isfinite(ys).all():
        return float(x[i]), float(x[i]), False
    (x0, x1, x2), (y0, y1, y2) = xs, ys  # the parabola through three points, in closed form
    denom = (x0 - x1) * (x0 - x2) * (x1 - x2)
    a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / denom
    b = (x2 ** 2 * (y0 - y1) + x1 ** 2 * (y2 - y0) + x0 ** 2 * (y1 - y2)) / denom
    vertex = -b / (2 * a) if a > 0 else x[i]
    return float(x[i]), float(np.clip(vertex, x[i - 1], x[i + 1])), False


def run_analysis(claim: str, spec: dict, scale: str, evidential: bool, run_dirs: list[Path],
                 out_dir: Path, repro_dir: Path, protocol_overrides: list[str] = ()) -> dict:
    """verdict.json and table.csv of one claim. ``protocol_overrides``: run fields the workflow's
    run_overrides changed from the protocol (plan.EXECUTION_FIELDS are not among them); the runs then
    measure something other than the criteria were written for, so the verdict is no evidence and says why."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = ClaimContext(claim, spec, scale, evidential and not protocol_overrides, load_runs(run_dirs), out_dir)
    verdict, table = load_claim_module(claim, repro_dir).analyze(ctx)
    if protocol_overrides:
        verdict["protocol_overrides"] = sorted(protocol_overrides)
        verdict["notes"] = [*verdict.get("notes", []),
                            f"Not evidence: run_overrides changed {', '.join(sorted(protocol_overrides))} from the "
                            f"protocol of the {scale} scale, which the criteria were written for."]
    with atomic_output(out_dir / "table.csv") as tmp:
        table.to_csv(tmp, index=False)
    write_json(out_dir / "verdict.json", verdict)
    return verdict


def run_selection(claim: str, spec: dict, scale: str, run_dirs: list[Path], common: dict,
                  out_path: Path, repro_dir: Path, stage: int = 2) -> dict[str, dict]:
    """A claim's stage ``stage`` (≥ 2): ``select_runs(ctx)`` picks the runs that depend on the
    results of the earlier stages (e.g. budgets at the best learning rate); written as
    {run_id: config}."""
    from .claims import finish_run_configs
    from .runs import run_id

    if stage < 2:
        raise ValueError(f"stage = {stage}: selections start at stage 2 (stage 1 is the plan)")
    ctx = ClaimContext(claim, spec, scale, False, load_runs(run_dirs), Path(out_path).parent, stage=stage)
    configs = finish_run_configs(claim, scale, load_claim_module(claim, repro_dir).select_runs(ctx), common)
    selected = {run_id(cfg): cfg for cfg in configs}
    write_json(out_path, selected)
    return selected
