"""optclaims: turn published claims about LLM optimisers into measured verdicts."""

__version__ = "0.1.0"
