"""lm-evaluation-harness adapter for an optclaims checkpoint.

``OptclaimsLM`` answers lm-eval's three request types with a trained GPT and its byte-level BPE
tokenizer: summed continuation log-probabilities, rolling-window document log-likelihoods, and
greedy generation. Scoring is batched over *windows*: a (input tokens, target tokens) pair that fits
the model's context, where the targets are the last tokens of the input shifted by one. Windows
are right-padded, so the learned absolute positions of real tokens never move.
"""

from __future__ import annotations

from pathlib import Path

import lm_eval.models  # noqa: F401  registers lm-eval's own models first (see get_model)
import torch
import torch.nn.functional as F
from lm_eval import utils
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from ..atomic import read_json
from ..checkpoint import MODEL_FILE, load_model
from ..data.tokenizer import EOT, eot_id, load_tokenizer


@register_model("optclaims")
class OptclaimsLM(LM):
    def __init__(
        self,
        run_dir: str | Path,
        tokenizer: str | Path,
        device: str = "cpu",
        batch_size: int | str = 16,
        max_gen_toks: int | str = 64,
        max_batch_size: int | None = None,  # lm-eval passes it to every model; unused
    ):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.tok = load_tokenizer(Path(tokenizer))  # encodes text exactly as the token shards were
        self.eot_id = eot_id(self.tok)
        self._device = torch.device(device or "cpu")
        self.batch_size = int(batch_size) if str(batch_size).isdigit() else 16  # "auto" → 16
        self.max_gen_toks = int(max_gen_toks)
        recorded = read_json(self.run_dir / "summary.json").get("model_sha256")
        self.model = load_model(self.run_dir / MODEL_FILE, self._device, sha256=recorded).float().eval()
        self.max_length = self.model.cfg.seq_len

    @property
    def tokenizer_name(self) -> str:
        return f"optclaims-bpe-{self.tok.get_vocab_size()}"

    def get_model_info(self) -> dict:
        return {"run_dir": str(self.run_dir), "model_config": self.model.cfg.to_dict()}

    def tok_encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    # --- scoring -------------------------------------------------------------------------------

    @torch.inference_mode()
    def _score_windows(self, windows: list[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        """Per (inputs, targets) window, where the targets are the tokens that follow the last
        len(targets) inputs: their summed log-probability and whether each is the argmax.
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

    def _windows(self, context: list[int], continuation: list[int]) -> list[tuple[list[int], list[int]]]:
        """Windows of up to max_length targets that score every continuation token, each window's
        input the max_length tokens before its last target (left-truncating the context). One
        window unless the continuation alone outgrows the context; then the chunks are those of
        ``loglikelihood_rolling``, so an empty context reproduces its document score."""
        seq, windows = context + continuation, []
        for begin in range(len(context), len(seq), self.max_length):
            end = min(begin + self.max_length, len(seq))
            windows.append((seq[max(0, end - 1 - self.max_length) : end - 1], seq[begin:end]))
        return windows

    def _sum_windows(self, per_request: list[list[tuple[list[int], list[int]]]]) -> list[tuple[float, bool]]:
        flat = [w for ws in per_request for w in ws]
        scores = iter(self._score_windows(flat))
        results = []
        for ws in per_request:
            parts = [next(scores) for _ in ws]
            results.append((sum(p[0] for p in parts), all(p[1] for p in parts)))
        return results

    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        # lm-eval convention: word-boundary whitespace belongs to the continuation
        stripped = context.rstrip()
        continuation = context[len(stripped) :] + continuation
        ctx = self.tok_encode(stripped) if stripped else [self.eot_id]
        return ctx, self.tok_encode(continuation)

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        pairs = [self._encode_pair(*req.args[:2]) for req in requests]
        results = self._sum_windows([self._windows(ctx, cont) for ctx, cont in pairs])
        for req, res in zip(requests, results):
            self.cache_hook.add_partial("loglikelihood", req.args, res)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        # Disjoint windows of the full context, the first conditioned on EOT, as lm-eval's HF model.
        per_request = [
            [
                utils.make_disjoint_window(w)
                for w in utils.get_rolling_token_windows(
                    token_list=self.tok_encode(req.args[0]),
                    prefix_token=self.eot_id,
                    max_seq_len=self.max_length,
                    context_len=1,
                )
            ]
            for req in requests
        ]
        # a disjoint window is (context, targets): its model input is context + targets[:-1]
        per_request = [[(ctx + tg[:-1], tg) for ctx, tg in ws] for ws in per_request]
        results = [ll for ll, _ in self._sum_windows(per_request)]
        for req, res in zip(requests, results):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, res)
        return results

    # --- generation ----------------------------------------------------------------------------

    @torch.inference_mode()
    def _greedy(self, context: str, until: list[str], max_new: int) -> str:
        tokens = self.tok_encode(context) or [self.eot_id]
        generated: list[int] = []
        text = ""
        for _ in range(max_new):
            inp = torch.tensor([(tokens + generated)[-self.max_length :]], device=self._device)
            logits = self.model(inp[None])[0][0]
            nxt = int(logits[0, -1].argmax())
            if nxt == self.eot_id:
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
