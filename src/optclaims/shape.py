"""A model's shape (``GPTConfig``): the run-config fields that fix the tensor shapes, shared by the
members of a population. No torch: the run-config check builds one (``model_config``), so the rule
that n_heads divides d_model is stated once, here, for run configs and for models alike."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from .errors import ConfigError
from .settings import RUN_DEFAULTS, SETTINGS


@dataclass(frozen=True)
class GPTConfig:
    """What fixes the tensor shapes; every field but norm_eps is the run-config field of that name."""

    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    seq_len: int
    mlp_ratio: float = RUN_DEFAULTS["mlp_ratio"]
    norm_eps: float = 1e-6

    def __post_init__(self):
        if self.d_model % self.n_heads:
            raise ConfigError(f"invalid run config: d_model = {self.d_model} is not divisible by n_heads = {self.n_heads}")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def d_mlp(self) -> int:
        return int(round(self.mlp_ratio * self.d_model))

    def to_dict(self) -> dict:
        return asdict(self)


SHAPE_KEYS = tuple(f.name for f in fields(GPTConfig) if f.name in SETTINGS)


def model_config(cfg: dict) -> GPTConfig:
    """The shape of a run config's model; a partial config (a cost-table row) gets the defaults."""
    return GPTConfig(**{k: cfg[k] for k in SHAPE_KEYS if k in cfg})


def flops_per_token(cfg: GPTConfig, n_matmul_params: int) -> float:
    """Training FLOPs per token of one member: 6N for the weight matmuls (forward + backward) plus
    the attention scores and values, 6·2·L·T·d (PaLM appendix B convention, causal mask not discounted)."""
    return 6.0 * n_matmul_params + 12.0 * cfg.n_layers * cfg.seq_len * cfg.d_model
