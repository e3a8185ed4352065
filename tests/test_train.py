import json
import math
import subprocess
import sys

import pandas as pd
import pytest

from optclaims.checkpoint import MODEL_FILE, STATE_FILE, load_model
from optclaims.errors import ConfigError
from optclaims.train import Member, train_population, train_run


def test_run_writes_the_contracted_outputs(tiny_data, tiny_run, tmp_path):
    cfg = tiny_run()
    s = train_run(cfg, tmp_path / "run", tiny_data)
    out = tmp_path / "run"
    assert {p.name for p in out.iterdir()} == {"config.json", "summary.json", "metrics.parquet", MODEL_FILE}
    assert json.loads((out / "config.json").read_text()) == cfg
    assert s["status"] == "ok" and s["steps"] == 30 and s["tokens"] == 30 * 4 * 32
    assert s["population"]["index"] == 0 and s["population"]["size"] == 1  # a solo run is a population of one
    assert s["resumed_from_step"] is None
    assert s["final_val_loss"] < math.log(320)  # it learned something
    assert s["val_bpb"] > 0 and s["flops"] == s["flops_per_token"] * s["tokens"] and s["tokens_per_s"] > 0
    assert s["mfu"] is None  # no peak is known for a CPU
    m = pd.read_parquet(out / "metrics.parquet")
    assert len(m) == 30 and m.step.tolist() == list(range(1, 31))
    assert {"tokens", "lr", "train_loss", "grad_norm", "clipped", "update_rms_hidden", "update_rms_embed",
            "update_rms_readout", "update_rms_gains", "val_loss"} <= set(m.columns)
    assert m.update_rms_hidden.notna().sum() == 6  # every log_every steps
    assert m.val_loss.notna().sum() == 3  # steps 10, 20 and the final evaluation
    assert m.grad_norm.gt(0).all()
    model = load_model(out / MODEL_FILE, sha256=s["model_sha256"])
    assert model.cfg.d_model == 32 and model.n_members == 1


def test_clipping_uses_the_pre_clip_norm(tiny_data, tiny_run, tmp_path):
    s = train_run(tiny_run(clip=1e-3, steps=10), tmp_path / "run", tiny_data)
    m = pd.read_parquet(tmp_path / "run" / "metrics.parquet")
    assert s["status"] == "ok" and m.clipped.all() and (m.grad_norm > 1e-3).all()


def test_killed_run_resumes_to_the_same_final_loss(tiny_data, tiny_run, tmp_path, kill_at):
    cfg = tiny_run()
    whole = train_run(cfg, tmp_path / "whole", tiny_data)
    with pytest.raises(kill_at(15)):  # dies at step 16: the checkpoint at step 10 survives, steps 11-15 are lost
        train_run(cfg, tmp_path / "split", tiny_data)
    assert (tmp_path / "split" / STATE_FILE).exists() and not (tmp_path / "split" / "summary.json").exists()
    resumed = train_run(cfg, tmp_path / "split", tiny_data)
    assert resumed["resumed_from_step"] == 10
    assert resumed["final_val_loss"] == whole["final_val_loss"]
    assert resumed["final_train_loss"] == whole["final_train_loss"]
    a = pd.read_parquet(tmp_path / "whole" / "metrics.parquet")
    b = pd.read_parquet(tmp_path / "split" / "metrics.parquet")
    pd.testing.assert_series_equal(a.train_loss, b.train_loss)
    assert not (tmp_path / "split" / STATE_FILE).exists()


def test_divergence_is_a_result_not_a_crash(tiny_data, tiny_run, tmp_path):
    """An absurd learning rate without clipping: status diverged, exit code 0, outputs written."""
    cfg = tiny_run(lr=1e4, clip=None, warmup_steps=0, steps=40)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "optclaims.cli", "train", "--config", str(tmp_path / "cfg.json"),
                           "--data", str(tiny_data), "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "diverged" and s["final_val_loss"] is None and s["steps"] < 40
    assert (out / "metrics.parquet").exists()


def test_a_run_dir_holding_another_config_is_not_overwritten(tiny_data, tiny_run, tmp_path):
    train_run(tiny_run(steps=5), tmp_path / "run", tiny_data)
    before = (tmp_path / "run" / "summary.json").read_bytes()
    with pytest.raises(ValueError, match="different config"):
        train_run(tiny_run(steps=6), tmp_path / "run", tiny_data)
    assert (tmp_path / "run" / "summary.json").read_bytes() == before


def test_cli_refuses_a_bad_config_before_training(tiny_data, tiny_run, tmp_path):
    bad = {**tiny_run(), "lr": -1.0}
    proc = subprocess.run([sys.executable, "-m", "optclaims.cli", "train", "--config-json", json.dumps(bad),
                           "--data", str(tiny_data), "--out", str(tmp_path / "run")], capture_output=True, text=True)
    assert proc.returncode == 2 and "lr = -1.0" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_vocab_mismatch_is_refused(tiny_data, tiny_run, tmp_path):
    with pytest.raises(ValueError, match="vocab_size"):
        train_run(tiny_run(vocab_size=999), tmp_path / "run", tiny_data)


def test_runtime_choices(tiny_run, monkeypatch):
    import torch

    from optclaims.train import resolve_runtime

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_runtime([tiny_run()]) == (torch.device("cpu"), None, False)
    assert resolve_runtime([tiny_run(dtype="bfloat16", compile=True)]) == (torch.device("cpu"), torch.bfloat16, True)
    with pytest.raises(ConfigError, match="no CUDA device"):
        resolve_runtime([tiny_run(device="cuda")])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    # the GPU defaults: bf16, and compiled only where it pays back (population.COMPILE_MIN_FLOPS)
    assert resolve_runtime([tiny_run()]) == (torch.device("cuda"), torch.bfloat16, False)
    big = tiny_run(d_model=1024, n_heads=16, steps=2_000_000)
    assert resolve_runtime([big]) == (torch.device("cuda"), torch.bfloat16, True)
    assert resolve_runtime([{**big, "activation_steps": 2_000_000}])[2] is False  # every step runs eager


def test_a_compiled_population_trains_the_losses_of_the_eager_one(tiny_data, tiny_run, tmp_path):
    """torch.compile's branch (bench-population and the full scale's large populations on CUDA),
    exercised with inductor on the CPU: the same members, the same losses to float32 rounding
    (inductor's fused kernels sum in another order; 12 steps grow that to about 2e-5 on torch 2.13 and
    1.3e-4 on 2.11, the GPU image's; hence 3e-4)."""
    def members(compile_, where):
        return [Member(tiny_run(optimizer="muon", compile=compile_, lr=lr, seed=k, steps=12, log_every=4), tmp_path / where / str(k))
                for k, lr in enumerate((0.02, 0.005))]
    eager = train_population(members(False, "eager"), tiny_data, tmp_path / "eager")
    compiled = train_population(members(True, "compiled"), tiny_data, tmp_path / "compiled")
    assert [s["compiled"] for s in compiled] == [True, True] and [s["compiled"] for s in eager] == [False, False]
    for e, c in zip(eager, compiled):
        assert c["final_val_loss"] == pytest.approx(e["final_val_loss"], rel=3e-4)
    rows = [pd.read_parquet(tmp_path / where / "0" / "metrics.parquet") for where in ("eager", "compiled")]
    assert rows[1].train_loss.tolist() == pytest.approx(rows[0].train_loss.tolist(), rel=3e-4)


def test_bf16_autocast_path_trains(tiny_data, tiny_run, tmp_path):
    """The mixed-precision branch used on GPUs, exercised on the CPU's bf16 autocast."""
    s = train_run(tiny_run(dtype="bfloat16", steps=10), tmp_path / "run", tiny_data)
    assert s["status"] == "ok" and s["autocast"] == "bfloat16" and math.isfinite(s["final_val_loss"])


def test_mfu_uses_the_devices_bf16_peak(monkeypatch):
    import torch

    from optclaims import provenance

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "NVIDIA H100 80GB HBM3")
    assert provenance.bf16_peak_flops(torch.device("cuda")) == 989e12
    assert provenance.bf16_peak_flops(torch.device("cpu")) is None


def test_unaligned_eval_and_checkpoint_steps_keep_metrics_whole(tiny_data, tiny_run, tmp_path, kill_at):
    """Evaluation and checkpoints off the logging grid: val loss sits on its own step, and a resumed
    run's metrics have every step exactly once."""
    cfg = tiny_run(log_every=4, eval_every=7, ckpt_every=9, steps=20)
    whole = train_run(cfg, tmp_path / "whole", tiny_data)
    with pytest.raises(kill_at(11)):
        train_run(cfg, tmp_path / "split", tiny_data)
    resumed = train_run(cfg, tmp_path / "split", tiny_data)
    assert resumed["resumed_from_step"] == 9
    m = pd.read_parquet(tmp_path / "split" / "metrics.parquet")
    assert m.step.tolist() == list(range(1, 21))
    assert m.loc[m.val_loss.notna(), "step"].tolist() == [7, 14, 20]
    assert resumed["final_val_loss"] == whole["final_val_loss"]
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "whole" / "metrics.parquet"), m)


def test_muon_run_resumes_exactly_and_logs_its_update_rms(tiny_data, tiny_run, tmp_path, kill_at):
    cfg = tiny_run(optimizer="muon", lr=0.02)
    whole = train_run(cfg, tmp_path / "whole", tiny_data)
    with pytest.raises(kill_at(13)):
        train_run(cfg, tmp_path / "split", tiny_data)
    resumed = train_run(cfg, tmp_path / "split", tiny_data)
    assert resumed["resumed_from_step"] == 10
    assert resumed["final_val_loss"] == whole["final_val_loss"] and whole["status"] == "ok"
    m = pd.read_parquet(tmp_path / "whole" / "metrics.parquet")
    rms = m.update_rms_hidden.dropna()
    assert len(rms) == 6 and rms.between(0.1, 0.3).all()  # 0.2·√max(A,B)·msign: RMS ≈ 0.2 (bf16 NS: a bit less)
    assert m.update_rms_embed.notna().sum() == 6  # the AdamW part is reported beside it


# ---------------------------------------------------------------- corrupted inputs are refused


def copy_data(tiny_data, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    return data


def flip_byte(path, at: float = 0.5):
    raw = bytearray(path.read_bytes())
    raw[int(len(raw) * at)] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_a_corrupted_token_shard_is_refused_before_training(tiny_data, tiny_run, tmp_path):
    from optclaims.errors import CorruptFileError

    data = copy_data(tiny_data, tmp_path)
    flip_byte(data / "tokens" / "train.bin")
    with pytest.raises(CorruptFileError, match="checksum in shards.json"):
        train_run(tiny_run(), tmp_path / "run", data)
    assert not (tmp_path / "run" / "summary.json").exists()


def test_a_truncated_token_shard_is_refused(tiny_data, tiny_run, tmp_path):
    from optclaims.errors import CorruptFileError

    data = copy_data(tiny_data, tmp_path)
    shard = data / "tokens" / "val.bin"
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(CorruptFileError, match="truncated"):
        train_run(tiny_run(), tmp_path / "run", data)


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_corrupted_checkpoint_is_refused_not_resumed(tiny_data, tiny_run, tmp_path, damage, kill_at):
    from optclaims.errors import CorruptFileError

    cfg = tiny_run()
    with pytest.raises(kill_at(10)):
        train_run(cfg, tmp_path / "run", tiny_data)
    state = tmp_path / "run" / STATE_FILE
    if damage == "flip":
        flip_byte(state, at=0.6)
    else:
        state.write_bytes(state.read_bytes()[: len(state.read_bytes()) // 2])
    with pytest.raises(CorruptFileError, match="delete it to restart"):
        train_run(cfg, tmp_path / "run", tiny_data)
    assert not (tmp_path / "run" / "summary.json").exists()


def test_cli_names_the_corrupted_file(tiny_data, tiny_run, tmp_path):
    data = copy_data(tiny_data, tmp_path)
    flip_byte(data / "tokens" / "train.bin")
    proc = subprocess.run([sys.executable, "-m", "optclaims.cli", "train", "--config-json", json.dumps(tiny_run()),
                           "--data", str(data), "--out", str(tmp_path / "run")], capture_output=True, text=True)
    assert proc.returncode == 2 and "train.bin does not match its checksum" in proc.stderr


def test_a_corrupted_model_is_refused_before_evaluation(tiny_data, tiny_run, tmp_path):
    from optclaims.checkpoint import MODEL_FILE, load_model
    from optclaims.errors import CorruptFileError

    summary = train_run(tiny_run(steps=10), tmp_path / "run", tiny_data)
    model = tmp_path / "run" / MODEL_FILE
    load_model(model, sha256=summary["model_sha256"])  # intact: loads
    flip_byte(model, at=0.7)
    with pytest.raises(CorruptFileError, match="model_sha256"):
        load_model(model, sha256=summary["model_sha256"])


def test_gradient_noise_is_measured_without_changing_the_run(tiny_data, tiny_run, tmp_path):
    plain = train_run(tiny_run(steps=12), tmp_path / "plain", tiny_data)
    noisy = train_run(tiny_run(steps=12, noise_scale_every=4), tmp_path / "noisy", tiny_data)
    a, b = (pd.read_parquet(tmp_path / d / "metrics.parquet") for d in ("plain", "noisy"))
    assert noisy["final_val_loss"] == plain["final_val_loss"] and a.train_loss.tolist() == b.train_loss.tolist()
    assert "noise_trace" not in a.columns
    measured = b[b.noise_trace.notna()]
    assert measured.step.tolist() == [4, 8, 12]
    assert (measured.noise_trace > 0).all() and measured.noise_grad_sq.notna().all()


def test_gradient_noise_is_the_unbiased_per_sequence_estimate(tiny_data, tiny_run):
    """With one sequence per micro-batch, tr(Σ) is the trace of the per-sequence gradients' sample
    covariance (ddof 1) and |G|² = |mean g|² − tr(Σ)/B; each member of a population gets its own."""
    import torch

    from optclaims.data.shards import TokenShard
    from optclaims.train import _member_batches, build_population, gradient_noise

    from contextlib import nullcontext

    cfgs = [tiny_run(seed=0), tiny_run(seed=1, lr=1e-3)]
    model, optimizers, _ = build_population(cfgs, torch.device("cpu"))
    x, y = _member_batches(TokenShard(tiny_data / "tokens", "train"), cfgs, 0, torch.device("cpu"))
    trace, grad_sq = gradient_noise(model, optimizers.params, x, y, nullcontext, micro=4)
    assert all(p.grad is None for p in optimizers.params)
    B = x.shape[1]
    for k in range(2):
        per_seq = []
        for i in range(B):
            model(x[:, i:i + 1], y[:, i:i + 1])[1][k].backward()
            per_seq.append(torch.cat([p.grad[k].flatten().double() for p in optimizers.params]))
            optimizers.zero_grad()
        g = torch.stack(per_seq)
        tr = float(((g - g.mean(0)) ** 2).sum() / (B - 1))
        assert trace[k].item() == pytest.approx(tr, rel=1e-4)
        assert grad_sq[k].item() == pytest.approx(float(g.mean(0).pow(2).sum()) - tr / B, rel=1e-3, abs=1e-6)
