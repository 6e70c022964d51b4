"""Waveform VAE (Semantic-VAE generator): importer end to end, reference parity, regulator, key listings, API."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from conftest import fixture_file
from semlat.autoencoders.import_semantic_vae import config_from_reference, import_semantic_vae
from semlat.autoencoders.wave_vae import WaveVAE, WaveVAEConfig
from semlat.checkpoints import save_model
from semlat.errors import CheckpointError, ConfigError
from semlat.models import load_model, run_importer
from semlat.semantic.regulator import InterpolateRegulator, alignment_loss

TOL = {"atol": 1e-5, "rtol": 1e-4}

#: conf/bigvgan_conf/bigvgan_v2_16khz_40hz_base_vae64.json of the reference.
VAE64_DECODER = {"resblock": "1", "num_mels": 64, "upsample_rates": [5, 5, 2, 2, 2, 2],
                 "upsample_kernel_sizes": [9, 9, 4, 4, 4, 4], "upsample_initial_channel": 1024,
                 "resblock_kernel_sizes": [3, 7, 11], "resblock_dilation_sizes": [[1, 3, 5]] * 3,
                 "use_tanh_at_final": False, "use_bias_at_final": False, "activation": "snakebeta",
                 "snake_logscale": True}

#: the DAC.* keys of the reference's conf/svae/example.yml.
EXAMPLE_YML = """\
save_path: ckpts/16khz_40hz_5544_kl1e-2_vae64_bsz64_wavlm_23
DAC.sample_rate: 16000
DAC.encoder_dim: 64
DAC.encoder_rates: [4, 4, 5, 5]
DAC.decoder_dim: 1024
DAC.decoder_rates: [5, 5, 4, 4]
DAC.vae_dim: 64
DAC.decoder_type: bigvgan
DAC.bigvgan_conf: conf/bigvgan_conf/bigvgan_v2_16khz_40hz_base_vae64.json
DAC.distill: true
DAC.attn_proj: true
DAC.sampling_ratios: [0,1]
Discriminator.sample_rate: 16000
"""


def _t(x: torch.Tensor) -> torch.Tensor:
    """Reference time-major ``[B, T, D]`` -> semlat channel-major ``[B, D, T]``."""
    return x.transpose(1, 2)


@pytest.fixture(scope="module")
def vae_files(fixtures):
    return (fixture_file(fixtures, "semantic_vae/vae_tiny_config.json"),
            fixture_file(fixtures, "semantic_vae/vae_tiny.safetensors"),
            load_file(fixture_file(fixtures, "semantic_vae/vae_tiny_io.safetensors")))


@pytest.fixture(scope="module")
def imported(vae_files, tmp_path_factory):
    """The tiny reference model imported from a bare ``weights.pth`` and loaded back with ``load_model``."""
    config, weights, _ = vae_files
    tmp = tmp_path_factory.mktemp("import")
    torch.save(load_file(weights), tmp / "weights.pth")
    return load_model(import_semantic_vae(tmp / "weights.pth", tmp / "model", config=config))


def _check_reference_outputs(model: WaveVAE, io: dict[str, torch.Tensor]) -> None:
    with torch.inference_mode():
        out = model(io["audio_in"], eps=_t(io["eps"]))
        torch.testing.assert_close(out["encoder_out"], io["enc_out"], **TOL)
        torch.testing.assert_close(model.pre_block(_t(io["enc_out"])), io["pre_block_out"], **TOL)
        for name in ("mu", "logvar", "z"):
            torch.testing.assert_close(out[name], _t(io[name]), **TOL)
        torch.testing.assert_close(out["kl"], io["kl"], atol=0, rtol=1e-5)
        torch.testing.assert_close(out["audio"], io["audio_out_from_z"], **TOL)
        torch.testing.assert_close(model.decode(_t(io["mu"])), io["audio_out_from_mu"], **TOL)
        torch.testing.assert_close(model.encode(io["audio_in"]), _t(io["mu"]), **TOL)
        _, logvar = model.posterior(io["audio_in"])
        torch.testing.assert_close(logvar, _t(io["logvar"]), **TOL)
        odd = model(io["audio_in_odd"], eps=_t(io["eps"]))
        assert odd["audio"].shape == (2, 1, 7777) and odd["z"].shape == (2, 8, 20)
        torch.testing.assert_close(odd["audio"], io["forward_odd_audio"], **TOL)
        for name in ("z", "mu", "logvar"):
            torch.testing.assert_close(odd[name], _t(io[f"forward_odd_{name}"]), **TOL)
        torch.testing.assert_close(odd["kl"], io["forward_odd_kl"], atol=0, rtol=1e-5)
        torch.testing.assert_close(model.encode(io["audio_in_odd"]), odd["mu"])


def test_imported_model_reproduces_reference(imported, vae_files):
    assert isinstance(imported, WaveVAE) and not imported.training
    assert imported.latent_dim == 8 and imported.hop_length == 400 and imported.frame_rate == 40.0
    assert imported.config.encoder_out_dim == 128 and imported.config.regulator.teacher_dim == 32
    _check_reference_outputs(imported, vae_files[2])


def test_reference_outputs_after_weight_norm_removal(imported, vae_files):
    model = WaveVAE(imported.config).eval()
    model.load_state_dict(imported.state_dict())
    model.remove_weight_norm()
    assert not any("parametrizations" in key for key in model.state_dict())
    _check_reference_outputs(model, vae_files[2])


@pytest.mark.parametrize("form", ["wrapped_pth", "ema_pth", "safetensors"])
def test_import_accepts_released_weight_forms(form, vae_files, tmp_path):
    config, weights, _ = vae_files
    state = load_file(weights)
    if form == "wrapped_pth":
        src = tmp_path / "weights.pth"
        torch.save({"state_dict": state, "metadata": {"kwargs": {}}}, src)
    elif form == "ema_pth":
        src = tmp_path / "ema_state_dict.pth"
        ema = {f"ema_model.{k}": v for k, v in state.items()}
        torch.save({"initted": torch.tensor(True), "step": torch.tensor(1000), **ema}, src)
    else:
        src = weights
    if form == "ema_pth":  # a released checkpoint folder: the config is its metainfo.json
        (tmp_path / "metainfo.json").write_text(config.read_text())
        config = tmp_path
    model = load_model(run_importer("semantic-vae", src, tmp_path / "out", config=config))
    ours = model.state_dict()
    assert sorted(ours) == sorted(state)
    assert all(torch.equal(ours[k], v) for k, v in state.items())


def test_import_from_argbind_yml_and_without_projectors(tmp_path, vae_files):
    _, weights, io = vae_files
    reference = json.loads(vae_files[0].read_text())
    (tmp_path / "conf" / "bigvgan_conf").mkdir(parents=True)
    (tmp_path / "conf" / "bigvgan_conf" / "tiny.json").write_text(json.dumps(reference["Decoder"]))
    (tmp_path / "conf" / "svae").mkdir()
    flat = {f"DAC.{k}": v for k, v in reference["DAC"].items()}
    flat["DAC.bigvgan_conf"] = "conf/bigvgan_conf/tiny.json"
    yml = tmp_path / "conf" / "svae" / "tiny.yml"
    yml.write_text(yaml.safe_dump(flat))
    state = {k: v for k, v in load_file(weights).items() if not k.startswith("projectors.")}
    save_file(state, tmp_path / "no_projectors.safetensors")
    model = load_model(import_semantic_vae(tmp_path / "no_projectors.safetensors", tmp_path / "m", config=yml))
    assert model.config.regulator is None and not hasattr(model, "projectors")
    with torch.inference_mode():
        torch.testing.assert_close(model.encode(io["audio_in"]), _t(io["mu"]), **TOL)


def test_import_errors_are_one_line(tmp_path, vae_files):
    config, weights, _ = vae_files
    yml = tmp_path / "example.yml"
    yml.write_text(EXAMPLE_YML)
    with pytest.raises(ConfigError, match="bigvgan_v2_16khz_40hz_base_vae64.json not found") as err:
        import_semantic_vae(weights, tmp_path / "m", config=yml)
    assert str(yml) in str(err.value) and "\n" not in str(err.value)
    state = load_file(weights)
    del state["fc_mu.bias"]
    state["extra.weight"] = torch.zeros(1)
    save_file(state, tmp_path / "bad.safetensors")
    with pytest.raises(CheckpointError, match="missing key\\(s\\): fc_mu.bias.*unexpected key\\(s\\): extra.weight"):
        import_semantic_vae(tmp_path / "bad.safetensors", tmp_path / "m", config=config)
    with pytest.raises(ConfigError, match="needs a config"):
        import_semantic_vae(weights, tmp_path / "m")
    (tmp_path / "x.yml").write_text("foo: 1\n")
    with pytest.raises(ConfigError, match="no 'DAC' section"):
        import_semantic_vae(weights, tmp_path / "m", config=tmp_path / "x.yml")
    assert not (tmp_path / "m").exists()


def test_example_yml_maps_to_paper_config(tmp_path):
    yml = tmp_path / "conf" / "svae" / "example.yml"
    yml.parent.mkdir(parents=True)
    yml.write_text(EXAMPLE_YML)
    (tmp_path / "conf" / "bigvgan_conf").mkdir()
    (tmp_path / "conf" / "bigvgan_conf" / "bigvgan_v2_16khz_40hz_base_vae64.json").write_text(json.dumps(VAE64_DECODER))
    from semlat.autoencoders.import_semantic_vae import read_reference_config

    dac, decoder = read_reference_config(yml)
    assert config_from_reference(dac, decoder) == WaveVAEConfig.paper()
    attn = config_from_reference(dac, {**decoder, "attn_proj": True, "num_heads": 8})
    assert attn.decoder_input == "attn_proj"


# --- fixture 2: regulator, alignment loss, KL ------------------------------------------------------------------------

def test_regulator_reproduces_reference(fixtures):
    io = load_file(fixture_file(fixtures, "semantic_vae/regulator_tiny_io.safetensors"))
    config = json.loads(fixture_file(fixtures, "semantic_vae/regulator_tiny_config.json").read_text())
    args = config["InterpolateRegulator"]
    regulator = InterpolateRegulator(args["in_channels"], args["channels"], args["out_channels"],
                                     num_blocks=len(args["sampling_ratios"]), groups=args["groups"]).eval()
    regulator.load_state_dict(load_file(fixture_file(fixtures, "semantic_vae/regulator_tiny.safetensors")))
    with torch.no_grad():
        torch.testing.assert_close(regulator.interpolate(io["reg_ssl_in"], 20), io["reg_interp"], **TOL)
        out, lengths = regulator(io["reg_ssl_in"], io["reg_xlens"], io["reg_ylens"])
        torch.testing.assert_close(out, io["reg_out"], **TOL)
        assert torch.equal(lengths, io["reg_olens"])
        out_var, _ = regulator(io["reg_ssl_in"], io["reg_xlens_var"], io["reg_ylens_var"])
        torch.testing.assert_close(out_var, io["reg_out_var"], **TOL)
        assert (out_var[1, 15:] == 0).all()
        proj, _ = regulator(io["reg_ssl_in"], torch.tensor([25, 25]), torch.tensor([20, 20]))
        torch.testing.assert_close(proj, io["align_proj"], **TOL)
        proj_short, _ = regulator(io["align_ssl_short"], torch.tensor([15, 15]), torch.tensor([20, 20]))
        torch.testing.assert_close(proj_short, io["align_proj_short"], **TOL)
    loss = alignment_loss(io["align_z"], io["align_proj"], io["align_mask"])
    torch.testing.assert_close(loss, io["align_loss"], atol=0, rtol=1e-5)
    loss_short = alignment_loss(io["align_z"], io["align_proj_short"], io["align_mask_short"])
    torch.testing.assert_close(loss_short, io["align_loss_short"], atol=0, rtol=1e-5)
    from semlat.autoencoders.bottlenecks import gaussian_kl

    torch.testing.assert_close(gaussian_kl(io["kl_mu"], io["kl_logvar"]), io["kl_value"], atol=0, rtol=1e-5)


# --- full-size key listings ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,latent,attn", [("vae16", 16, False), ("vae32", 32, False), ("vae64", 64, False),
                                              ("vae64_attn_proj", 64, True)])
def test_full_size_keys_and_shapes(fixtures, name, latent, attn):
    listing = json.loads(fixture_file(fixtures, f"semantic_vae/keys_generator_{name}.json").read_text())
    config = WaveVAEConfig.paper(latent)
    if attn:
        config = dataclasses.replace(config, decoder_input="attn_proj")
    with torch.device("meta"):
        model = WaveVAE(config)
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == listing


# --- API -------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return WaveVAE(WaveVAEConfig.tiny(teacher_dim=24)).eval()


def test_encode_pads_and_decode_shapes(tiny_model):
    audio = 0.1 * torch.randn(2, 1, 1000)
    with torch.inference_mode():
        latents = tiny_model.encode(audio)
        assert latents.shape == (2, 16, 3)
        padded = torch.nn.functional.pad(audio, (0, 200))
        torch.testing.assert_close(latents, tiny_model.encode(padded))
        decoded = tiny_model.decode(latents)
        assert decoded.shape == (2, 1, 1200) and decoded.abs().max() <= 1
        out = tiny_model(audio, sample=False)
        assert out["audio"].shape == audio.shape and torch.equal(out["z"], out["mu"])
        torch.testing.assert_close(out["mu"], latents)
    with pytest.raises(ValueError, match="not a multiple of the hop"):
        tiny_model.posterior(audio)
    with pytest.raises(ValueError, match="expected audio shaped"):
        tiny_model.encode(audio[:, 0])
    with pytest.raises(ValueError, match="expected latents shaped"):
        tiny_model.decode(latents[:, :3])


@pytest.mark.parametrize("length", [4000, 3960, 37])
def test_encoder_tiles_match_untiled(length, monkeypatch):
    from semlat.autoencoders.encoder import Encoder

    torch.manual_seed(0)
    encoder = Encoder(dim=4, rates=(2, 4, 5), out_dim=6).eval()
    audio = torch.randn(2, 1, length)
    blocks = list(encoder.block)
    with torch.no_grad():
        expected = blocks[1](blocks[0](audio))
        monkeypatch.setattr(torch.Tensor, "new_empty", lambda self, *size, **kw: torch.full(  # poison new buffers
            tuple(size[0]) if len(size) == 1 and not isinstance(size[0], int) else size, float("nan")))
        tiled = blocks[1].forward_tiled(audio, pre=blocks[0], tile_elements=64)  # tiles of 8 output frames
        torch.testing.assert_close(tiled, expected, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(encoder(audio), encoder.block(audio), atol=1e-6, rtol=1e-5)


def test_latent_space_protocol(tiny_model):
    assert (tiny_model.sample_rate, tiny_model.latent_dim, tiny_model.frame_rate) == (16000, 16, 40.0)
    assert isinstance(tiny_model.frame_rate, float) and tiny_model.hop_length == 400


def test_config_round_trips(tmp_path, tiny_model):
    for config in (WaveVAEConfig.tiny(), WaveVAEConfig.tiny(teacher_dim=24), WaveVAEConfig.paper(32)):
        data = json.loads(json.dumps(dataclasses.asdict(config)))
        with torch.device("meta"):
            assert WaveVAE.from_config(data).config == config
    folder = save_model(tmp_path / "tiny", tiny_model, model_type="wave_vae", config=tiny_model.config)
    loaded = load_model(folder)
    assert loaded.config == tiny_model.config
    with pytest.raises(ConfigError, match="unknown key\\(s\\) bogus"):
        WaveVAE.from_config({**dataclasses.asdict(WaveVAEConfig.tiny()), "bogus": 1})
    with pytest.raises(ConfigError, match="num_mels"):
        dataclasses.replace(WaveVAEConfig.tiny(), latent_dim=32)


def test_tiny_trains_with_finite_gradients():
    torch.manual_seed(0)
    model = WaveVAE(WaveVAEConfig.tiny(teacher_dim=24)).train()
    audio = 0.1 * torch.randn(2, 1, 4000)
    out = model(audio)
    z = out["z"].transpose(1, 2)
    proj, _ = model.projectors(torch.randn(2, 12, 24), torch.tensor([12, 12]), torch.tensor([10, 10]))
    mask = torch.ones(2, 10, dtype=torch.bool)
    loss = (out["audio"] - audio).abs().mean() + 0.01 * out["kl"] + alignment_loss(z, proj, mask)
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name


def test_attn_proj_decoder_runs():
    config = dataclasses.replace(WaveVAEConfig.tiny(), decoder_input="attn_proj")
    model = WaveVAE(config).eval()
    assert "decoder.conv_pre.attn.qkv.weight" in model.state_dict()
    with torch.inference_mode():
        assert model.decode(torch.randn(1, 16, 4)).shape == (1, 1, 1600)


def test_checkpoint_folder_is_self_describing(tmp_path, tiny_model):
    folder = save_model(tmp_path / "m", tiny_model, model_type="wave_vae", config=tiny_model.config)
    meta = json.loads(Path(folder, "config.json").read_text())
    assert meta["model_type"] == "wave_vae" and meta["config"]["regulator"]["channels"] == 32


def test_latent_norm_and_sigma_noise_options():
    """DC-Speech-VAE's regularisers on the waveform VAE: normalised means, noise only in training."""
    torch.manual_seed(0)
    model = WaveVAE(dataclasses.replace(WaveVAEConfig.tiny(), latent_norm=True, noise_max_std=0.5))
    audio = 0.1 * torch.randn(2, 1, 1600)
    mu = model.encode(audio)
    torch.testing.assert_close(mu.mean(dim=1), torch.zeros(2, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(mu.var(dim=1, unbiased=False), torch.ones(2, 4), atol=1e-3, rtol=0)
    model.eval()
    a = model(audio, sample=False)["audio"]
    b = model(audio, sample=False)["audio"]
    assert torch.equal(a, b)  # no noise in eval mode
    model.train()
    c = model(audio, sample=False)["audio"]
    assert not torch.allclose(a, c)  # sigma-VAE noise in training


def test_logvar_init_option():
    """``logvar_init`` starts every posterior log-variance at the given value (narrow posterior); the
    default keeps PyTorch's init (log-variances spread around 0); the option survives config.json."""
    torch.manual_seed(0)
    audio = 0.1 * torch.randn(2, 1, 1600)
    narrow = WaveVAE(dataclasses.replace(WaveVAEConfig.tiny(), logvar_init=-6.0))
    _, logvar = narrow.posterior(audio)
    torch.testing.assert_close(logvar, torch.full_like(logvar, -6.0))
    out = narrow(audio, eps=torch.ones(2, 16, 4))
    torch.testing.assert_close(out["z"], out["mu"] + torch.exp(torch.tensor(-3.0)))
    _, default_logvar = WaveVAE(WaveVAEConfig.tiny()).posterior(audio)
    assert default_logvar.abs().max() < 3 and default_logvar.std() > 0
    again = WaveVAE.from_config(dataclasses.asdict(narrow.config))
    assert again.config.logvar_init == -6.0


def test_mel_encoder_option():
    """The log-mel + ConvNeXt encoder: latent shape and rate as the DAC encoder's, gradients reach it,
    it is used instead of the DAC encoder, and the config survives config.json."""
    from semlat.autoencoders.wave_vae import MelEncoder, MelEncoderConfig

    torch.manual_seed(0)
    config = dataclasses.replace(WaveVAEConfig.tiny(), encoder_out_dim=64,
                                 mel_encoder=MelEncoderConfig(n_mels=20, channels=32, hidden=64, layers=1))
    model = WaveVAE(config)
    assert isinstance(model.encoder, MelEncoder)
    audio = 0.1 * torch.randn(2, 1, 1800)  # padded to 2000 samples: 5 frames
    out = model(audio)
    assert out["mu"].shape == (2, 16, 5) and out["encoder_out"].shape == (2, 64, 5)
    assert out["audio"].shape == audio.shape
    out["audio"].square().mean().backward()
    assert model.encoder.out.weight.grad.abs().sum() > 0
    # the latent of a frame depends on that frame's audio (the mel frames are stacked per latent frame)
    changed = audio.clone()
    changed[..., 1200:1600] = 0
    mu_a, mu_b = model.encode(audio), model.encode(changed)
    assert not torch.allclose(mu_a[..., 3], mu_b[..., 3])
    again = WaveVAE.from_config(json.loads(json.dumps(dataclasses.asdict(config))))
    assert again.config.mel_encoder == config.mel_encoder
    with pytest.raises(ConfigError, match="frames_per_latent"):
        WaveVAE(dataclasses.replace(config, mel_encoder=MelEncoderConfig(frames_per_latent=3)))


def test_istft_decoder_option():
    """The tiny config's Vocos-style decoder: exact output length, bounded output, gradients, and a
    config that survives config.json (asdict -> from_config)."""
    from semlat.vocoders.istft_decoder import ISTFTDecoderConfig

    torch.manual_seed(0)
    config = dataclasses.replace(WaveVAEConfig.tiny(), istft_decoder=ISTFTDecoderConfig(channels=32, hidden=64,
                                                                                        layers=2, upsample=4))
    model = WaveVAE(config)
    assert model.decoder.hop == 100 and model.decoder.n_fft == 400
    audio = 0.1 * torch.randn(2, 1, 4000)
    out = model(audio)
    assert out["audio"].shape == (2, 1, 4000) and out["audio"].abs().max() <= 1
    out["audio"].square().mean().backward()
    assert all(p.grad is not None for p in model.decoder.parameters())
    assert model.decode(model.encode(audio)).shape == (2, 1, 4000)
    rebuilt = WaveVAE.from_config(json.loads(json.dumps(dataclasses.asdict(config))))
    assert rebuilt.config == config
    rebuilt.load_state_dict(model.state_dict())
    with pytest.raises(ConfigError, match="multiple of upsample"):
        dataclasses.replace(WaveVAEConfig.tiny(), istft_decoder=ISTFTDecoderConfig(upsample=3))


def test_project_teacher_is_the_regulator_and_needs_one():
    """The public alignment target (what the demo's held-out alignment cosine compares the latents with)."""
    torch.manual_seed(0)
    model = WaveVAE(WaveVAEConfig.tiny(teacher_dim=12)).eval()
    features = torch.randn(2, 50, 12)
    valid = torch.tensor([40, 25])
    with torch.no_grad():
        target = model.project_teacher(features, valid, 40)
        expected, _ = model.projectors(features, valid, torch.tensor([40, 40]))
    assert target.shape == (2, 40, 16)
    torch.testing.assert_close(target, expected)
    with pytest.raises(ConfigError, match="no alignment regulator"):
        WaveVAE(WaveVAEConfig.tiny()).project_teacher(features, valid, 40)
