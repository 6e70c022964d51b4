"""DC-Speech-VAE: a deep-compression autoencoder (DCAE) on 80-band log-mel spectrograms.

The backbone is ``diffusers.AutoencoderDC`` treating a mel spectrogram ``[B, n_mels, T]`` as a
one-channel image ``[B, 1, n_mels, T]``. Every stride-2 stage halves both the mel and the time
axis; with the released 5-stage config (4 stride-2 stages) the latent is ``[B, 16, n_mels/16,
T/16]`` — 16 channels × 5 mel rows per latent frame, i.e. 80 numbers per frame at 22050/4096 ≈
5.38 Hz. Downstream code sees the 1-D view ``[B, 80, T/16]`` whose channel index is
``c · (n_mels/16) + f`` (latent channel major, mel row minor), exactly like the reference's
inference wrapper.

Generation-friendliness (see :mod:`semlat.autoencoders.regularizers`): the encoder output is
LayerNorm-ed over its 16 channels at every (f, t) position (no affine parameters), and during
training the decoder sees the latent plus σ-VAE noise with a per-sample std in ``[0, 0.5)``.

Every ``nn.Conv2d`` carries torch's parametrization weight norm, so :meth:`MelDCAE.state_dict` has
exactly the keys of the released ``generator_700000.pt`` (``model.<diffusers path>.parametrizations
.weight.original0/1``); :meth:`MelDCAE.remove_weight_norm` folds them for inference (outputs are
unchanged). :func:`import_dcae_state_dict` maps the key variants found in the wild onto that layout.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from semlat.checkpoints import check_state_dict, unwrap_state_dict
from semlat.config import FromConfig, check_keys
from semlat.errors import CheckpointError, ConfigError
from semlat.nn.weight_norm import has_weight_norm, legacy_to_parametrized
from semlat.nn.weight_norm import remove_weight_norm as _remove_weight_norm
from semlat.nn.weight_norm import weight_norm as _weight_norm

from .regularizers import LatentNorm, sigma_vae_noise

__all__ = ["MelDCAE", "MelDCAEConfig", "import_dcae_state_dict"]

_BLOCK_TYPES = ("ResBlock", "EfficientViTBlock")
_DOWNSAMPLE_TYPES = ("Conv", "pixel_unshuffle")
_UPSAMPLE_TYPES = ("interpolate", "pixel_shuffle")
#: keys of a diffusers ``AutoencoderDC`` config.json that do not change the network semlat builds.
_IGNORED_REFERENCE_KEYS = ("_class_name", "_diffusers_version", "_name_or_path", "_use_default_values",
                           "scaling_factor")
#: per-stage fields that may list more entries than there are stages (diffusers ignores the extra ones).
_PER_STAGE_FIELDS = ("encoder_block_types", "decoder_block_types", "encoder_qkv_multiscales",
                     "decoder_qkv_multiscales", "decoder_norm_types", "decoder_act_fns")
_G, _V = ".parametrizations.weight.original0", ".parametrizations.weight.original1"


def _per_stage(name: str, value: str | Sequence[str], stages: int) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,) * stages
    value = tuple(str(v) for v in value)
    if len(value) != stages:
        raise ConfigError(f"MelDCAEConfig.{name} has {len(value)} entries for {stages} stages")
    return value


@dataclass
class MelDCAEConfig:
    """Hyper-parameters of :class:`MelDCAE`.

    The first block of fields are ``diffusers.AutoencoderDC`` constructor arguments with the same
    names; the defaults are DC-Speech-VAE's released ``models/default_config.json`` (plus diffusers'
    defaults for the keys that file omits). Per-stage string fields accept one string (repeated for
    every stage) and are stored as tuples with one entry per stage.

    ``n_mels`` is the mel height (it must be divisible by the compression ``2^(stages−1)``);
    ``latent_norm`` switches the latent LayerNorm; ``noise_max_std`` bounds the σ-VAE noise std used
    in training; ``weight_norm`` says whether the convolutions carry weight norm (the released
    checkpoints do; it becomes False after :meth:`MelDCAE.remove_weight_norm`).
    """

    in_channels: int = 1
    latent_channels: int = 16
    attention_head_dim: int = 32
    encoder_block_out_channels: tuple[int, ...] = (128, 256, 512, 512, 1024)
    decoder_block_out_channels: tuple[int, ...] = (128, 256, 512, 512, 1024)
    encoder_layers_per_block: tuple[int, ...] = (2, 2, 2, 3, 3)
    decoder_layers_per_block: tuple[int, ...] = (3, 3, 3, 3, 3)
    encoder_block_types: tuple[str, ...] = ("ResBlock",) * 5
    decoder_block_types: tuple[str, ...] = ("ResBlock",) * 5
    encoder_qkv_multiscales: tuple[tuple[int, ...], ...] = ((),) * 5
    decoder_qkv_multiscales: tuple[tuple[int, ...], ...] = ((),) * 5
    downsample_block_type: str = "Conv"
    upsample_block_type: str = "interpolate"
    decoder_norm_types: tuple[str, ...] = ("rms_norm",) * 5
    decoder_act_fns: tuple[str, ...] = ("silu",) * 5
    encoder_out_shortcut: bool = True
    decoder_in_shortcut: bool = True
    decoder_conv_act_fn: str = "relu"
    n_mels: int = 80
    latent_norm: bool = True
    noise_max_std: float = 0.5
    weight_norm: bool = True

    def __post_init__(self) -> None:
        self.encoder_block_out_channels = tuple(int(c) for c in self.encoder_block_out_channels)
        self.decoder_block_out_channels = tuple(int(c) for c in self.decoder_block_out_channels)
        self.encoder_layers_per_block = tuple(int(n) for n in self.encoder_layers_per_block)
        self.decoder_layers_per_block = tuple(int(n) for n in self.decoder_layers_per_block)
        stages = len(self.encoder_block_out_channels)
        if stages < 1:
            raise ConfigError("MelDCAEConfig.encoder_block_out_channels is empty")
        for name in ("decoder_block_out_channels", "encoder_layers_per_block", "decoder_layers_per_block"):
            if len(getattr(self, name)) != stages:
                raise ConfigError(f"MelDCAEConfig.{name} has {len(getattr(self, name))} entries, "
                                  f"encoder_block_out_channels has {stages}")
        for name in ("encoder_block_types", "decoder_block_types", "decoder_norm_types", "decoder_act_fns"):
            setattr(self, name, _per_stage(name, getattr(self, name), stages))
        for name in ("encoder_qkv_multiscales", "decoder_qkv_multiscales"):
            value = tuple(tuple(int(s) for s in scales) for scales in getattr(self, name))
            if len(value) != stages:
                raise ConfigError(f"MelDCAEConfig.{name} has {len(value)} entries for {stages} stages")
            setattr(self, name, value)
        self._validate(stages)

    def _validate(self, stages: int) -> None:
        if self.in_channels != 1:
            raise ConfigError(f"MelDCAEConfig.in_channels must be 1 (a mel is a one-channel image), "
                              f"got {self.in_channels}")
        if self.latent_channels < 1:
            raise ConfigError(f"MelDCAEConfig.latent_channels must be positive, got {self.latent_channels}")
        for name in ("encoder_layers_per_block", "decoder_layers_per_block"):
            if min(getattr(self, name)) < 1:
                raise ConfigError(f"MelDCAEConfig.{name} must be ≥ 1 in every stage, got {getattr(self, name)}")
        for name in ("encoder_block_types", "decoder_block_types"):
            bad = [t for t in getattr(self, name) if t not in _BLOCK_TYPES]
            if bad:
                raise ConfigError(f"MelDCAEConfig.{name}: unknown block type {bad[0]!r} (known: {', '.join(_BLOCK_TYPES)})")
        if self.downsample_block_type not in _DOWNSAMPLE_TYPES:
            raise ConfigError(f"MelDCAEConfig.downsample_block_type must be one of {', '.join(_DOWNSAMPLE_TYPES)}, "
                              f"got {self.downsample_block_type!r}")
        if self.upsample_block_type not in _UPSAMPLE_TYPES:
            raise ConfigError(f"MelDCAEConfig.upsample_block_type must be one of {', '.join(_UPSAMPLE_TYPES)}, "
                              f"got {self.upsample_block_type!r}")
        enc, dec = self.encoder_block_out_channels, self.decoder_block_out_channels
        for i in range(stages - 1):
            if (4 * enc[i]) % enc[i + 1]:
                raise ConfigError(f"MelDCAEConfig.encoder_block_out_channels: 4·{enc[i]} is not divisible by "
                                  f"{enc[i + 1]} (down-block shortcut of stage {i})")
            if (4 * dec[i]) % dec[i + 1]:
                raise ConfigError(f"MelDCAEConfig.decoder_block_out_channels: 4·{dec[i]} is not divisible by "
                                  f"{dec[i + 1]} (up-block shortcut of stage {i})")
        if self.encoder_out_shortcut and enc[-1] % self.latent_channels:
            raise ConfigError(f"MelDCAEConfig: encoder_block_out_channels[-1]={enc[-1]} is not divisible by "
                              f"latent_channels={self.latent_channels} (encoder_out_shortcut)")
        if self.decoder_in_shortcut and dec[-1] % self.latent_channels:
            raise ConfigError(f"MelDCAEConfig: decoder_block_out_channels[-1]={dec[-1]} is not divisible by "
                              f"latent_channels={self.latent_channels} (decoder_in_shortcut)")
        if self.n_mels < 1 or self.n_mels % self.compression:
            raise ConfigError(f"MelDCAEConfig.n_mels={self.n_mels} must be a positive multiple of the "
                              f"compression {self.compression}")
        if not self.noise_max_std >= 0:
            raise ConfigError(f"MelDCAEConfig.noise_max_std must be ≥ 0, got {self.noise_max_std}")

    @property
    def stages(self) -> int:
        """Number of stages (``len(encoder_block_out_channels)``)."""
        return len(self.encoder_block_out_channels)

    @property
    def compression(self) -> int:
        """Down-sampling factor of both the mel and the time axis: ``2^(stages−1)``."""
        return 2 ** (self.stages - 1)

    @property
    def latent_rows(self) -> int:
        """Mel rows per latent frame: ``n_mels / compression`` (5 for 80 bands)."""
        return self.n_mels // self.compression

    @property
    def latent_dim(self) -> int:
        """Size of the 1-D latent per frame: ``latent_channels · n_mels / compression`` (80)."""
        return self.latent_channels * self.latent_rows

    def diffusers_kwargs(self) -> dict[str, Any]:
        """The ``diffusers.AutoencoderDC`` constructor arguments (lists, not tuples)."""
        names = ("in_channels", "latent_channels", "attention_head_dim", "encoder_block_types",
                 "decoder_block_types", "encoder_block_out_channels", "decoder_block_out_channels",
                 "encoder_layers_per_block", "decoder_layers_per_block", "encoder_qkv_multiscales",
                 "decoder_qkv_multiscales", "upsample_block_type", "downsample_block_type",
                 "decoder_norm_types", "decoder_act_fns", "encoder_out_shortcut", "decoder_in_shortcut",
                 "decoder_conv_act_fn")
        out: dict[str, Any] = {}
        for name in names:
            value = getattr(self, name)
            if isinstance(value, tuple):
                value = [list(v) if isinstance(v, tuple) else v for v in value]
            out[name] = value
        return out

    @classmethod
    def paper(cls, **overrides: Any) -> MelDCAEConfig:
        """The released DC-Speech-VAE generator (190.0M parameters with weight norm)."""
        return cls(**overrides)

    @classmethod
    def tiny(cls, **overrides: Any) -> MelDCAEConfig:
        """A ~0.32M-parameter model with the same 16× compression, for tests and CPU demos."""
        base: dict[str, Any] = {"encoder_block_out_channels": (8, 16, 32, 32, 64),
                                "decoder_block_out_channels": (8, 16, 32, 32, 64),
                                "encoder_layers_per_block": (1, 1, 1, 1, 1),
                                "decoder_layers_per_block": (1, 1, 1, 1, 1)}
        return cls(**{**base, **overrides})

    @classmethod
    def from_reference_json(cls, data: Mapping[str, Any], where: str = "DCAE config",
                            **overrides: Any) -> MelDCAEConfig:
        """Build from a diffusers-style ``AutoencoderDC`` config.json (DC-Speech-VAE's format).

        ``_class_name`` (must be ``AutoencoderDC`` when present), ``_diffusers_version``,
        ``_name_or_path``, ``_use_default_values`` and ``scaling_factor`` are ignored; missing keys
        take diffusers' defaults *as used by DC-Speech-VAE* (this class's defaults); per-stage lists
        longer than the number of stages are cut (the released file lists 6 decoder block types for
        5 stages). semlat's own fields (``n_mels``, ``latent_norm``, ...) may appear in ``data`` or
        be passed as ``overrides``. Unknown keys raise a one-line :class:`ConfigError`.
        """
        class_name = data.get("_class_name", "AutoencoderDC")
        if class_name != "AutoencoderDC":
            raise ConfigError(f"{where}: _class_name is {class_name!r}, expected 'AutoencoderDC'")
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k not in _IGNORED_REFERENCE_KEYS}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
        values.update(overrides)
        channels = values.get("encoder_block_out_channels", cls.encoder_block_out_channels)
        stages = len(channels)
        for name in _PER_STAGE_FIELDS:
            value = values.get(name)
            if value is not None and not isinstance(value, str) and len(value) > stages:
                values[name] = list(value)[:stages]
        if stages != 5:
            # class defaults of per-stage fields are for 5 stages: repeat the single default value
            for name in _PER_STAGE_FIELDS:
                if name not in values:
                    default = getattr(cls, name)
                    values[name] = [default[0]] * stages
        try:
            return cls(**values)
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{where}: {err}") from None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "MelDCAE config") -> MelDCAEConfig:
        """Build from :func:`dataclasses.asdict` output (semlat's config.json) or a reference json
        (recognised by its ``_class_name``)."""
        if "_class_name" in data:  # a diffusers config.json
            return cls.from_reference_json(data, where)
        check_keys(cls, data, where)
        return cls.from_reference_json(data, where)


def _conv2ds(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


class MelDCAE(FromConfig, nn.Module):
    """DC-Speech-VAE mel autoencoder: ``[B, n_mels, T] -> [B, latent_dim, T/16] -> [B, n_mels, T]``.

    Submodules: ``model`` (a ``diffusers.AutoencoderDC``, every ``Conv2d`` weight-normed when
    ``config.weight_norm``) and ``norm`` (:class:`LatentNorm` over the latent channels, no keys).
    Shapes below are for the released config (16 latent channels, 16× compression, 80 mels);
    in general ``16 -> latent_channels``, ``5 -> n_mels/compression``, ``80 -> latent_dim``.

    Attributes:
        config: the :class:`MelDCAEConfig`.
        n_mels: mel bands of the input (80).
        latent_dim: numbers per latent frame in the 1-D view (80).
        compression: down-sampling factor of time (and mel) (16).
    """

    def __init__(self, config: MelDCAEConfig | None = None) -> None:
        super().__init__()
        from diffusers import AutoencoderDC  # heavy import, only when a model is built

        self.config = config = config if config is not None else MelDCAEConfig()
        self.n_mels = config.n_mels
        self.latent_channels = config.latent_channels
        self.latent_rows = config.latent_rows
        self.latent_dim = config.latent_dim
        self.compression = config.compression
        self.model = AutoencoderDC(**config.diffusers_kwargs(), scaling_factor=None)
        if config.weight_norm:
            for conv in _conv2ds(self.model):
                _weight_norm(conv)
        self.norm = LatentNorm(dim=1) if config.latent_norm else nn.Identity()

    config_class = MelDCAEConfig

    # ------------------------------------------------------------------ shapes
    def _mel_image(self, mel: Tensor) -> Tensor:
        """``[B, n_mels, T]`` or ``[B, 1, n_mels, T]`` -> ``[B, 1, n_mels, T]`` (checked)."""
        given = tuple(mel.shape)
        if mel.dim() == 3:
            mel = rearrange(mel, "b f t -> b 1 f t")
        if mel.dim() != 4 or mel.shape[1] != 1 or mel.shape[2] != self.n_mels:
            raise ValueError(f"MelDCAE expects a mel [B, {self.n_mels}, T] or [B, 1, {self.n_mels}, T], "
                             f"got shape {given}")
        if mel.shape[-1] == 0 or mel.shape[-1] % self.compression:
            raise ValueError(f"MelDCAE: mel length T={mel.shape[-1]} (shape {given}) must be a positive "
                             f"multiple of {self.compression}; pad the mel (or the audio to a multiple of "
                             f"{self.compression}·hop samples)")
        return mel

    def _latent_2d(self, latent: Tensor) -> Tensor:
        """``[B, latent_dim, T']`` or ``[B, C, F', T']`` -> ``[B, C, F', T']`` (checked)."""
        if latent.dim() == 3:
            if latent.shape[1] != self.latent_dim:
                raise ValueError(f"MelDCAE.decode expects a latent [B, {self.latent_dim}, T'], "
                                 f"got shape {tuple(latent.shape)}")
            return self.to_2d(latent)
        want = (self.latent_channels, self.latent_rows)
        if latent.dim() != 4 or tuple(latent.shape[1:3]) != want:
            raise ValueError(f"MelDCAE.decode expects a latent [B, {self.latent_dim}, T'] or "
                             f"[B, {want[0]}, {want[1]}, T'], got shape {tuple(latent.shape)}")
        return latent

    def to_1d(self, latent: Tensor) -> Tensor:
        """``[B, C, F', T'] -> [B, C·F', T']`` with channel index ``c·F' + f`` (the reference's order)."""
        return rearrange(latent, "b c f t -> b (c f) t")

    def to_2d(self, latent: Tensor) -> Tensor:
        """Inverse of :meth:`to_1d`: ``[B, C·F', T'] -> [B, C, F', T']``."""
        return rearrange(latent, "b (c f) t -> b c f t", c=self.latent_channels)

    # ------------------------------------------------------------------ model
    def encode_raw(self, mel: Tensor) -> Tensor:
        """Encoder output before the latent LayerNorm: ``[B, 80, T]`` (or ``[B, 1, 80, T]``) -> ``[B, 16, 5, T/16]``."""
        return self.model.encode(self._mel_image(mel), return_dict=False)[0]

    def encode_2d(self, mel: Tensor) -> Tensor:
        """Deterministic normalised latent: ``[B, 80, T]`` (or ``[B, 1, 80, T]``) -> ``[B, 16, 5, T/16]``."""
        return self.norm(self.encode_raw(mel))

    def encode(self, mel: Tensor) -> Tensor:
        """Deterministic normalised 1-D latent: ``[B, 80, T]`` (or ``[B, 1, 80, T]``) -> ``[B, 80, T/16]``.

        Never adds noise (also in training mode); channel index ``c·5 + f``.
        """
        return self.to_1d(self.encode_2d(mel))

    def decode(self, latent: Tensor) -> Tensor:
        """``[B, 80, T']`` (1-D view) or ``[B, 16, 5, T']`` -> mel ``[B, 80, 16·T']``."""
        out = self.model.decode(self._latent_2d(latent), return_dict=False)[0]
        return rearrange(out, "b 1 f t -> b f t")

    def forward(self, mel: Tensor, noise: bool | None = None) -> dict[str, Tensor | None]:
        """Reconstruct a mel, with σ-VAE noise on the latent in training.

        Args:
            mel: ``[B, 80, T]`` (or ``[B, 1, 80, T]``), T a multiple of 16.
            noise: add σ-VAE noise (std ~ U[0, noise_max_std) per sample) before decoding; defaults
                to ``self.training``. Draws ``randn`` (latent-shaped) then ``rand`` ([B,1,1,1]) from
                the global RNG, exactly like the reference's training step.

        Returns:
            ``mel``: reconstruction ``[B, 80, T]`` (decoded from the noisy latent when noisy);
            ``latent``: the clean normalised latent ``[B, 80, T/16]`` (what the dispersive loss sees);
            ``latent_noisy``: the latent the decoder saw ``[B, 80, T/16]`` (``latent`` without noise);
            ``noise_std``: the per-sample std ``[B, 1, 1, 1]``, or None without noise.
        """
        if noise is None:
            noise = self.training
        clean = self.encode_2d(mel)
        noisy, std = clean, None
        if noise and self.config.noise_max_std > 0:
            noisy, std = sigma_vae_noise(clean, self.config.noise_max_std)
        return {"mel": self.decode(noisy), "latent": self.to_1d(clean), "latent_noisy": self.to_1d(noisy),
                "noise_std": std}

    def remove_weight_norm(self) -> MelDCAE:
        """Fold every weight-norm parametrization into a plain ``weight`` (outputs unchanged); returns self.

        ``config.weight_norm`` becomes False, so a saved config rebuilds the folded layout.
        """
        _remove_weight_norm(self)
        self.config = dataclasses.replace(self.config, weight_norm=False)
        return self

    @property
    def has_weight_norm(self) -> bool:
        """True while any convolution still carries weight norm."""
        return has_weight_norm(self)


def _expected_shapes(config: MelDCAEConfig) -> dict[str, torch.Size]:
    with torch.device("meta"):
        model = MelDCAE(config)
    return {key: value.shape for key, value in model.state_dict().items()}


def _strip_compile_prefix(key: str) -> str:
    return key.replace("_orig_mod.", "")


def import_dcae_state_dict(state: Mapping[str, Any], config: MelDCAEConfig | None = None,
                           where: str = "DC-Speech-VAE checkpoint") -> dict[str, Tensor]:
    """Map a DC-Speech-VAE generator state dict onto a weight-normed :class:`MelDCAE`'s keys.

    Accepts the released flat file (``model.…parametrizations.weight.original0/1``), the same
    with ``_orig_mod.`` (torch.compile) anywhere in the keys, keys without the ``model.`` prefix,
    the legacy ``weight_g``/``weight_v`` names, already-folded convolution weights (``….weight``,
    4-D; they are split into ``g = ‖w‖`` per output channel and ``v = w``, which reproduces ``w``
    exactly up to rounding), and common wrappers (``{"state_dict": …}``, ``{"generator": …}``).

    Args:
        state: the loaded checkpoint (tensors, possibly wrapped).
        config: the architecture to check against (default: :meth:`MelDCAEConfig.paper`); its
            ``weight_norm`` field is ignored (the result is always for a weight-normed model).
        where: names the source in error messages.

    Returns:
        A state dict that :meth:`MelDCAE.load_state_dict` (``strict=True``) accepts for
        ``MelDCAE(dataclasses.replace(config, weight_norm=True))``.

    Raises:
        CheckpointError: one line naming missing, unexpected or mis-shaped keys.
    """
    config = dataclasses.replace(config if config is not None else MelDCAEConfig.paper(), weight_norm=True)
    flat = unwrap_state_dict(state, where=where)
    renamed: dict[str, Tensor] = {}
    for key, value in flat.items():
        key = _strip_compile_prefix(key)
        key = key.removeprefix("module.")
        if not key.startswith("model."):
            key = "model." + key
        if key in renamed:
            raise CheckpointError(f"{where}: key {key} appears twice after removing prefixes")
        renamed[key] = value
    renamed = legacy_to_parametrized(renamed)
    expected = _expected_shapes(config)
    out: dict[str, Tensor] = {}
    for key, value in renamed.items():
        stem = key[: -len(".weight")] if key.endswith(".weight") else None
        if stem is not None and key not in expected and stem + _G in expected and value.dim() == 4:
            norm = torch.linalg.vector_norm(value.float(), dim=(1, 2, 3), keepdim=True)
            direction = torch.where(norm > 0, value, torch.ones_like(value))
            out[stem + _G] = norm.to(value.dtype)
            out[stem + _V] = direction
        else:
            out[key] = value
    check_state_dict(expected, out, where)
    return out
