"""lm-evaluation-harness adapter for an optclaims checkpoint.

``OptclaimsLM`` is a ``TemplateLM``, lm-eval's base for causal models: lm-eval itself encodes each
(context, continuation) pair (the whole string, split where the context's tokens end; an empty
context becomes EOT) and hands the tokens to ``_loglikelihood_tokens``. The adapter scores them
with a trained GPT and its byte-level BPE tokenizer, scores documents in rolling windows, and
generates greedily. Scoring is batched over *windows*: an (input tokens, target tokens) pair that
fits the model's context, where the targets are the last tokens of the input shifted by one.
Windows are right-padded, so the learned absolute positions of real tokens never move.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import lm_eval.models  # noqa: F401  registers lm-eval's own models first (see get_model)
import torch
import torch.nn.functional as F
from lm_eval import utils
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from tokenizers import Tokenizer

from ..atomic import read_json
from ..checkpoint import MODEL_FILE, load_model
from ..data.tokenizer import EOT, eot_id, load_tokenizer
from ..devices import resolve_device
from ..errors import ConfigError

Window = tuple[list[int], list[int]]  # (inputs, targets): the next tokens at the last len(targets) inputs


class Args(NamedTuple):
    run_dir: Path
    tok: Tokenizer
    device: torch.device
    batch_size: int
    max_gen_toks: int


def checked_args(
    run_dir: str | Path,
    tokenizer: str | Path,
    device: str = "auto",
    batch_size: int | str = 16,
    max_gen_toks: int | str = 64,
    max_batch_size: int | None = None,
) -> Args:
    """The adapter's arguments, checked before its model is loaded; each error names its key and
    value. lm-eval hands numbers over as ints or as the strings its command line was given."""
    if max_batch_size is not None:
        raise ConfigError(f"max_batch_size = {max_batch_size!r}: it bounds lm-eval's automatic batch size, "
                          "which the optclaims model does not support; give a batch size instead")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run_dir = {run_dir}: no such directory")
    missing = [name for name in ("summary.json", MODEL_FILE) if not (run_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"run_dir = {run_dir} holds no {' and no '.join(missing)}: not a trained run")
    return Args(
        run_dir,
        load_tokenizer(Path(tokenizer)),
        resolve_device(str(device)),
        _positive_int("batch_size", batch_size, " (lm-eval's automatic batch size, 'auto' or 'auto:N', is not supported)"),
        _positive_int("max_gen_toks", max_gen_toks),
    )


def _positive_int(key: str, value: int | str, note: str = "") -> int:
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or int(text) < 1:
        raise ConfigError(f"{key} = {value!r}: the optclaims model needs a positive integer{note}")
    return int(text)


@register_model("optclaims")
class OptclaimsLM(TemplateLM):
    def __init__(self, run_dir: str | Path, tokenizer: str | Path, **options):
        """``options``: device, batch_size, max_gen_toks (their defaults are checked_args')."""
        super().__init__()
        args = checked_args(run_dir, tokenizer, **options)
        self.run_dir, self._device, self.batch_size, self.max_gen_toks = (
            args.run_dir, args.device, args.batch_size, args.max_gen_toks)
        self.tok = args.tok  # encodes text exactly as the token shards were
        self._eot_id = eot_id(self.tok)
        recorded = read_json(self.run_dir / "summary.json").get("model_sha256")
        self.model = load_model(self.run_dir / MODEL_FILE, self._device, sha256=recorded).float().eval()
        self.max_length = self.model.cfg.seq_len

    @property
    def eot_token_id(self) -> int:
        return self._eot_id

    @property
    def tokenizer_name(self) -> str:
        return f"optclaims-bpe-{self.tok.get_vocab_size()}"

    def get_model_info(self) -> dict:
        return {"run_dir": str(self.run_dir), "model_config": self.model.cfg.to_dict()}

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        # The tokenizer adds no special tokens (no BOS, no post-processor), so the flag changes nothing.
        return self.tok.encode(string, add_special_tokens=False).ids

    # --- scoring -------------------------------------------------------------------------------

    @torch.inference_mode()
    def _score_windows(self, windows: list[Window]) -> list[tuple[float, bool]]:
        """Per window: its targets' summed log-probability and whether each is the argmax.
        Windows are batched longest first, so little padding; results come back in input order."""
        order = sorted(range(len(windows)), key=lambda i: -len(windows[i][0]))
        out: list[tuple[float, bool]] = [(0.0, True)] * len(windows)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            width = len(windows[chunk[0]][0])
            batch = torch.zeros(len(chunk), width, dtype=torch.long)
            for row, i in enumerate(chunk):
                inp = windows[i][0]
                batch[row, : len(inp)] = torch.tensor(inp)
            logits = self.model(batch.to(self._device)[None])[0][0]  # a population of one
            for row, i in enumerate(chunk):
                inp, targets = windows[i]
                n_in, n_tg = len(inp), len(targets)
                logp = F.log_softmax(logits[row, n_in - n_tg : n_in].float(), dim=-1)
                tgt = torch.tensor(targets, device=logp.device)
                ll = logp.gather(-1, tgt[:, None]).sum().item()
                greedy = bool((logp.argmax(-1) == tgt).all())
                out[i] = (ll, greedy)
        return out

    def _windows(self, context: list[int], continuation: list[int]) -> list[Window]:
        """Windows of up to max_length targets that score every continuation token, each window's
        input the max_length tokens before its last target (left-truncating the context). One
        window unless the continuation alone outgrows the context; then the chunks are those of
        ``loglikelihood_rolling``, so an empty context reproduces its document score."""
        seq, windows = context + continuation, []
        for begin in range(len(context), len(seq), self.max_length):
            end = min(begin + self.max_length, len(seq))
            windows.append((seq[max(0, end - 1 - self.max_length) : end - 1], seq[begin:end]))
        return windows

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        """(summed log-probability, greedy?) per (cache key, context tokens, continuation tokens),
        every window of every request scored in one batched pass."""
        per_request = [self._windows(ctx or [self.prefix_token_id], cont) for _, ctx, cont in requests]
        scores = iter(self._score_windows([w for ws in per_request for w in ws]))
        results = []
        for (key, _, _), ws in zip(requests, per_request):
            parts = [next(scores) for _ in ws]
            result = (sum(p[0] for p in parts), all(p[1] for p in parts))
            if key is not None:  # rolling windows have none: their document is cached whole
                self.cache_hook.add_partial("loglikelihood", key, result)
            results.append(result)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        # Disjoint windows of the full context, the first conditioned on EOT, as lm-eval's HF model.
        per_request = [
            [
                utils.make_disjoint_window(w)
                for w in utils.get_rolling_token_windows(
                    token_list=self.tok_encode(req.args[0]),
                    prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length,
                    context_len=1,
                )
            ]
            for req in requests
        ]
        scores = iter(self._loglikelihood_tokens([(None, ctx, tg) for ws in per_request for ctx, tg in ws]))
        results = []
        for req, ws in zip(requests, per_request):
            ll = sum(next(scores)[0] for _ in ws)
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, ll)
            results.append(ll)
        return results

    # --- generation ----------------------------------------------------------------------------

    @torch.inference_mode()
    def _greedy(self, context: str, until: list[str], max_new: int) -> str:
        tokens = self.tok_encode(context) or [self.eot_token_id]
        generated: list[int] = []
        text = ""
        for _ in range(max_new):
            inp = torch.tensor([(tokens + generated)[-self.max_length :]], device=self._device)
            logits = self.model(inp[None])[0][0]
            nxt = int(logits[0, -1].argmax())
            if nxt == self.eot_token_id:
                break
            generated.append(nxt)
            text = self.tok.decode(generated, skip_special_tokens=False)
            if any(s in text for s in until):
                break
        cut = min((text.find(s) for s in until if s in text), default=len(text))
        return text[:cut]

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        results = []
        for req in requests:
            context, gen_kwargs = req.args[0], dict(req.args[1] or {})
            until = gen_kwargs.get("until") or [EOT]
            until = [until] if isinstance(until, str) else list(until)
            max_new = int(gen_kwargs.get("max_gen_toks", self.max_gen_toks))
            text = self._greedy(context, until, max_new)
            self.cache_hook.add_partial("generate_until", req.args, text)
            results.append(text)
        return results
