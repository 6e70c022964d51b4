"""F5-TTS's backbones and flow matching against the reference fixtures: the v1 DiT and the v0 flags in every
drop / mask / CFG mode with their intermediates, E2's UNetT, the Euler sampling run with injected and seeded
noise, the infilling loss with injected draws, the released key listings, and semlat's masked attention."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import fixture_file
from semlat.errors import CheckpointError, ConfigError
from semlat.generation.f5_checkpoint import backbone_from_arch, backbone_state, read_backbone_weights, read_f5_config
from semlat.generation.flow import infilling_loss, initial_noise, sample
from semlat.sampling import EPSS_GRIDS, time_grid

TOL = {"atol": 1e-4, "rtol": 1e-4}  # the fixture README's suggestion (measured here: <= 1.6e-5)
MODES = [("out_plain", {}), ("out_drop_audio", {"drop_audio_cond": True}), ("out_drop_text", {"drop_text": True}),
         ("out_drop_both", {"drop_audio_cond": True, "drop_text": True}), ("out_masked", {"mask": True}),
         ("out_masked_drop_both", {"mask": True, "drop_audio_cond": True, "drop_text": True}),
         ("out_cfg_infer_masked", {"mask": True, "cfg_infer": True})]


def _backbone(fixtures, name: str, weights: str):
    backbone, arch = read_f5_config(fixture_file(fixtures, f"f5_tts/{name}_config.json"))
    model = backbone_from_arch(backbone, arch).eval()
    state = read_backbone_weights(fixture_file(fixtures, f"f5_tts/{weights}"))
    model.load_state_dict(state, strict=True)
    return model


@pytest.mark.parametrize("name", ["dit_tiny", "dit_tiny_v0"])
def test_dit_reproduces_every_mode_and_intermediate(fixtures, name):
    model = _backbone(fixtures, name, "dit_tiny.safetensors")
    assert model.config.attn_mask is False  # the releases' attention over padding, for parity
    io = load_file(fixture_file(fixtures, f"f5_tts/{name}_io.safetensors"))
    x, cond, text, time, mask = io["x"], io["cond"], io["text"], io["time"], io["mask"]
    with torch.inference_mode():
        torch.testing.assert_close(model.time_embed(time), io["plain_time_emb"], **TOL)
        text_emb = model.text_embed(text, 40)
        torch.testing.assert_close(text_emb, io["plain_text_emb"], **TOL)
        torch.testing.assert_close(model.text_embed(text, 40, True), io["plain_text_emb_dropped"], **TOL)
        torch.testing.assert_close(model.input_embed(x, cond, text_emb), io["plain_input_emb"], **TOL)
        masked_text = model.text_embed(text, 40, False, mask)
        torch.testing.assert_close(masked_text, io["masked_text_emb"], **TOL)
        torch.testing.assert_close(model.input_embed(x, cond, masked_text, False, mask), io["masked_input_emb"], **TOL)
        for key, options in MODES:
            kwargs = {**options, "mask": mask} if options.get("mask") else options
            torch.testing.assert_close(model(x, cond, text, time, **kwargs), io[key], **TOL, msg=key)
        torch.testing.assert_close(model(x, cond, text, io["time_scalar"]), io["out_scalar_time"], **TOL)


def test_e2_unett_reproduces_its_modes(fixtures):
    model = _backbone(fixtures, "e2_tiny", "e2_tiny.safetensors")
    io = load_file(fixture_file(fixtures, "f5_tts/e2_tiny_io.safetensors"))
    with torch.inference_mode():
        for key, options in MODES:
            if key not in io:
                continue
            kwargs = {**options, "mask": io["mask"]} if options.get("mask") else options
            torch.testing.assert_close(model(io["x"], io["cond"], io["text"], io["time"], **kwargs), io[key], **TOL,
                                       msg=key)


def test_euler_sampling_with_cfg_and_sway(fixtures):
    model = _backbone(fixtures, "dit_tiny", "cfm_sample_tiny.safetensors")
    io = load_file(fixture_file(fixtures, "f5_tts/cfm_sample_tiny_io.safetensors"))
    torch.testing.assert_close(time_grid(4, "epss", sway_coef=-1.0), io["sample_t_grid"], atol=1e-6, rtol=0)
    y0 = initial_noise(io["sample_duration"], 16, int(io["sample_seed"]))
    torch.testing.assert_close(y0, io["sample_y0"], atol=0, rtol=0)  # the reference's per-item seeding
    args = (model, io["sample_cond"], io["sample_text"], io["sample_duration"], io["sample_lens"])
    run = sample(*args, steps=4, guidance=3.0, sway_coef=-1.0, y0=io["sample_y0"], keep_trajectory=True)
    torch.testing.assert_close(run.trajectory, io["sample_trajectory"], **TOL)
    torch.testing.assert_close(run.step_outputs, io["sample_step_pred_cfg"], **TOL)
    torch.testing.assert_close(run.out, io["sample_out"], **TOL)
    torch.testing.assert_close(run.times[:-1], io["sample_step_times"], atol=1e-6, rtol=0)
    seeded = sample(*args, steps=4, guidance=3.0, seed=int(io["sample_seed"]))
    torch.testing.assert_close(seeded.out, run.out, atol=0, rtol=0)  # same seed -> same output
    single = sample(model, io["sample_cond"][:1], io["sample_text"][:1], io["sample_duration"][:1],
                    io["sample_lens"][:1], steps=4, guidance=3.0, y0=io["single_y0"], keep_trajectory=True)
    torch.testing.assert_close(single.trajectory, io["single_trajectory"], **TOL)
    torch.testing.assert_close(single.out, io["single_out"], **TOL)
    # the prompt frames are copied into the output; midpoint runs too
    assert torch.equal(run.out[0, :10], io["sample_cond"][0, :10])
    mid = sample(*args, steps=4, guidance=3.0, method="midpoint", seed=1)
    assert mid.out.shape == run.out.shape and torch.isfinite(mid.out).all()


@pytest.mark.parametrize("case", ["a", "b", "c"])
def test_infilling_loss_with_injected_draws(fixtures, case):
    model = _backbone(fixtures, "dit_tiny", "cfm_sample_tiny.safetensors")
    io = load_file(fixture_file(fixtures, "f5_tts/cfm_sample_tiny_io.safetensors"))
    draws = {"frac": io[f"train_{case}_frac_lengths"], "u": io[f"train_{case}_span_rand"], "x0": io[f"train_{case}_x0"],
             "time": io[f"train_{case}_time"], "drop_audio_cond": bool(io[f"train_{case}_drop_audio_cond"]),
             "drop_text": bool(io[f"train_{case}_drop_text"])}
    with torch.no_grad():
        loss, details = infilling_loss(model, io["train_inp"], io["train_text"], io["train_lens"], draws=draws)
    assert torch.equal(details["mask"], io[f"train_{case}_rand_span_mask"])
    assert torch.equal(details["start"], io[f"train_{case}_span_start"])
    assert torch.equal(details["span"], io[f"train_{case}_span_len"])
    torch.testing.assert_close(details["cond"], io[f"train_{case}_cond"], atol=0, rtol=0)
    torch.testing.assert_close(details["pred"], io[f"train_{case}_pred"], **TOL)
    torch.testing.assert_close(loss, io[f"train_{case}_loss"], atol=0, rtol=1e-5)


def test_epss_grids_and_sway():
    for steps, grid in EPSS_GRIDS.items():
        t = time_grid(steps, "epss")
        assert len(t) == steps + 1 == len(grid) and t[0] == 0 and t[-1] == 1 and bool((t[1:] > t[:-1]).all())
    assert torch.allclose(time_grid(32, "epss"), torch.linspace(0, 1, 33))
    swayed = time_grid(32, "epss", sway_coef=-1.0)
    assert bool((swayed[1:] > swayed[:-1]).all()) and float(swayed[16]) < 0.5  # sway -1 crowds early steps


LISTINGS = {"F5TTS_v1_Base": ("DiT", dict(dim=1024, depth=22, heads=16, ff_mult=2, text_dim=512, conv_layers=4)),
            "F5TTS_Base": ("DiT", dict(dim=1024, depth=22, heads=16, ff_mult=2, text_dim=512, conv_layers=4,
                                       text_mask_padding=False, pe_attn_head=1)),
            "F5TTS_v1_Small": ("DiT", dict(dim=768, depth=18, heads=12, ff_mult=2, text_dim=512, conv_layers=4)),
            "F5TTS_Small": ("DiT", dict(dim=768, depth=18, heads=12, ff_mult=2, text_dim=512, conv_layers=4,
                                        text_mask_padding=False, pe_attn_head=1)),
            "E2TTS_Base": ("UNetT", dict(dim=1024, depth=24, heads=16, ff_mult=4)),
            "E2TTS_Small": ("UNetT", dict(dim=768, depth=20, heads=12, ff_mult=4))}


@pytest.mark.parametrize("name", sorted(LISTINGS))
def test_full_size_backbones_accept_the_released_listings(fixtures, name):
    keys = json.loads(fixture_file(fixtures, f"f5_tts/keys_{name}.json").read_text())
    backbone, arch = LISTINGS[name]
    with torch.device("meta"):
        model = backbone_from_arch(backbone, arch, text_num_embeds=2545, mel_dim=100)
    state = backbone_state({k: torch.empty(shape, device="meta") for k, shape in keys.items()}, name)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == {k: tuple(v.shape) for k, v in state.items()}


def test_masked_attention_makes_outputs_independent_of_padding(fixtures):
    """semlat's default masks padded keys: a shorter item's valid frames do not depend on what fills its
    padding; the releases' mode (kept for parity) lets them leak."""
    io = load_file(fixture_file(fixtures, "f5_tts/dit_tiny_io.safetensors"))
    backbone, arch = read_f5_config(fixture_file(fixtures, "f5_tts/dit_tiny_config.json"))
    state = read_backbone_weights(fixture_file(fixtures, "f5_tts/dit_tiny.safetensors"))
    x, cond, text, time, mask = io["x"], io["cond"], io["text"], io["time"], io["mask"]
    noisy = x.clone()
    noisy[1, 33:] = torch.randn(7, 16) * 5  # change only item 1's padding
    for masked in (True, False):
        model = backbone_from_arch(backbone, arch, attn_mask=masked).eval()
        model.load_state_dict(state)
        with torch.inference_mode():
            a = model(x, cond, text, time, mask=mask)[1, :33]
            b = model(noisy, cond, text, time, mask=mask)[1, :33]
        if masked:
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        else:
            assert (a - b).abs().max() > 1e-3


def test_bad_checkpoints_and_configs_are_one_line_errors(fixtures, tmp_path):
    with pytest.raises(CheckpointError, match="no transformer"):
        backbone_state({"initted": torch.tensor(True)}, "x.safetensors")
    with pytest.raises(CheckpointError, match="unexpected key 'encoder.w'"):
        backbone_state({"encoder.w": torch.zeros(1)}, "x.safetensors")
    bad = tmp_path / "c.yaml"
    bad.write_text("model: {backbone: Conformer, arch: {}}\n")
    with pytest.raises(ConfigError, match="expected 'backbone'"):
        read_f5_config(bad)
    with pytest.raises(ConfigError, match="unknown key"):
        backbone_from_arch("DiT", {"dim": 8, "wings": 2})
    # a trainer .pt with the EMA weights inside
    state = load_file(fixture_file(fixtures, "f5_tts/dit_tiny.safetensors"))
    torch.save({"ema_model_state_dict": state, "update": 5}, tmp_path / "model_5.pt")
    assert read_backbone_weights(tmp_path / "model_5.pt").keys() == read_backbone_weights(
        fixture_file(fixtures, "f5_tts/dit_tiny.safetensors")).keys()


def test_import_f5_tts_runs_end_to_end_through_vocos(fixtures, tmp_path):
    """`semlat import f5-tts` of the tiny release (16 mel bands, 32 tokens) with a 16-band Vocos: the DiT inside
    the TTS folder reproduces the fixture, the vocoder encodes prompts with F5's 1e-5 floor, `semlat tts` speaks."""
    import soundfile as sf

    from semlat.checkpoints import save_model
    from semlat.cli import main
    from semlat.models import load_model
    from semlat.vocoders.vocos import Vocos, VocosConfig

    torch.manual_seed(0)
    vocos = Vocos(VocosConfig(n_mels=16, input_channels=16, dim=32, intermediate_dim=64, num_layers=1))
    save_model(tmp_path / "vocos16", vocos, model_type="vocos", config=vocos.info)
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join([" ", *"abcdefghijklmnopqrstuvwxyz.,!?'"]) + "\n", encoding="utf-8")  # 32 tokens
    out = tmp_path / "f5"
    assert main(["import", "f5-tts", str(fixture_file(fixtures, "f5_tts/dit_tiny.safetensors")), str(out),
                 "--config", str(fixture_file(fixtures, "f5_tts/dit_tiny_config.json")), "--vocab", str(vocab),
                 "--vocoder", str(tmp_path / "vocos16")]) == 0
    model = load_model(out)
    io = load_file(fixture_file(fixtures, "f5_tts/dit_tiny_io.safetensors"))
    with torch.inference_mode():
        torch.testing.assert_close(model.transformer(io["x"], io["cond"], io["text"], io["time"]), io["out_plain"], **TOL)
    assert model.config.arch["attn_mask"] is False and load_model(out / "vocoder").config.mel_floor == 1e-5
    t = torch.arange(24000) / 24000
    sf.write(tmp_path / "prompt.wav", (0.3 * torch.sin(2 * torch.pi * 220 * t)).numpy(), 24000)
    assert main(["tts", str(out), str(tmp_path / "said.wav"), "--text", "hello there", "--prompt",
                 str(tmp_path / "prompt.wav"), "--prompt-text", "a tone.", "--steps", "2", "--seed", "0",
                 "--device", "cpu"]) == 0
    said, rate = sf.read(tmp_path / "said.wav")
    assert rate == 24000 and len(said) > 0
    assert main(["import", "vocos", "x.bin", str(tmp_path / "v"), "--vocab", str(vocab)]) == 2  # not for vocos
