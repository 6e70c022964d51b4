"""Hugging Face speech models as teachers: WavLM, HuBERT, wav2vec 2.0, data2vec-audio and Whisper's encoder.

``hf:/models/wavlm-large@23`` loads the model in that local folder through ``transformers``
(``local_files_only``: nothing is ever downloaded) and returns the mean of the selected
``hidden_states`` of the model, time-major, as float32.

Layers. ``hidden_states`` has ``num_layers + 1`` entries as ``transformers`` returns them:
index 0 is the input to the first transformer layer, index ``k`` the output of layer ``k``.
Negative indices count from the end. A spec without layers takes the model's ``last_hidden_state``
(for pre-LayerNorm models, such as WavLM-Large and Whisper, this includes the encoder's final
LayerNorm; ``@-1`` is ``hidden_states[-1]``, which ``transformers`` 5 leaves before that LayerNorm in
the wav2vec 2.0 family and 4.x did not, so prefer no layer or an explicit index below the last).
``@all`` is the mean of *all* ``num_layers + 1`` entries, index 0 included, as in the SUPERB
weighted-sum convention (``use_weighted_layer_sum`` in ``transformers``). Layers above the highest
selected one are dropped at load time (one extra is kept so that the selected state is never the one
``transformers`` may replace by the final-LayerNormed output), which saves their compute.

wav2vec 2.0 family (``wav2vec2``, ``hubert``, ``wavlm``, ``data2vec-audio``), at the folder's
``preprocessor_config.json`` settings (a folder without one gets the fairseq convention: a
LayerNorm feature encoder goes with normalised input and an attention mask, a GroupNorm one with
neither):

- ``do_normalize``: each item is normalised to zero mean and unit variance over its *valid* samples
  (``Wav2Vec2FeatureExtractor``'s rule, eps 1e-7); padding is zero.
- ``return_attention_mask``: wav2vec2/HuBERT/WavLM with a LayerNorm feature encoder run as one
  padded batch with an attention mask. This is exact (to float rounding): conv frames only see their
  own samples, and the encoder zeroes padded frames before its single positional conv.
- Everything else runs in groups of equal length with no padding at all, so features never depend on
  the batch (one forward per distinct length; fixed-length training crops are a single forward):
  GroupNorm feature encoders (``feat_extract_norm == "group"``, the "base" models) normalise each conv
  channel over *time*, so padding would change every frame (``transformers``' recipe, zero padding
  without a mask, is only approximate); data2vec-audio stacks positional convs with LayerNorms in
  between, so padding leaks into the last ~45 frames (0.9 s) of a shorter item and, through
  attention, slightly into all of them.
- Frames: the conv stack's output length, ``floor((n - k) / s) + 1`` per layer; 320 samples per
  frame, 50 Hz at 16 kHz.

Whisper (a ``WhisperModel`` or ``WhisperForConditionalGeneration`` folder): only the encoder is kept.
Each item is cut into windows of the encoder's fixed input (30 s for the released models), each window
goes through the folder's ``WhisperFeatureExtractor`` (log-mel, padded to the window), the encoder
runs, and each window's output is cropped to its valid frames (``samples // 320`` at 16 kHz, 50 Hz)
and the windows are concatenated. Padding never reaches an item's features.

Models run in their own dtype (``dtype="auto"``: the checkpoint's), in eval mode, without gradients;
features come back as float32.

WavLM-Large (the Semantic-VAE teacher, ``hf:/path/to/wavlm-large@23``, the released Large checkpoint):

- ``config.json`` (last changed in commit 38b04af "correct", Dec 2021): ``model_type`` ``wavlm``,
  ``WavLMModel``, ``hidden_size`` 1024, ``num_hidden_layers`` 24 (so ``@23`` is the output of the
  second-to-last layer, before the final LayerNorm), 16 heads, ``intermediate_size`` 4096,
  ``conv_dim`` 7 x 512, ``conv_kernel`` (10, 3, 3, 3, 3, 2, 2), ``conv_stride`` (5, 2, 2, 2, 2, 2, 2)
  (320 samples per frame: 50 Hz), ``conv_bias`` false, ``feat_extract_norm`` ``"layer"``,
  ``do_stable_layer_norm`` true (pre-LN), ``num_buckets`` 320, ``max_bucket_distance`` 800,
  ``torch_dtype`` float32.
- ``preprocessor_config.json`` (214 bytes, unchanged since the upload commit f2443e9):
  ``Wav2Vec2FeatureExtractor``, ``sampling_rate`` 16000, ``do_normalize`` true,
  ``return_attention_mask`` true. The two flags are inferred, not read: 214 bytes fits only that
  combination of the file's seven keys, and the WavLM authors state that WavLM-Large, unlike Base,
  was pre-trained on normalised waveforms (microsoft/unilm issue 708). Either way this module reads
  the flags from the folder.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from einops import reduce
from torch import Tensor, nn

from semlat.errors import ConfigError, first_line
from semlat.semantic.teachers import Teacher, TeacherSpec

WAV2VEC2_FAMILY = ("wav2vec2", "hubert", "wavlm", "data2vec-audio")
SUPPORTED_MODEL_TYPES = (*WAV2VEC2_FAMILY, "whisper")
DEFAULT_SAMPLE_RATE = 16000
NORM_EPS = 1e-7  # Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm


def read_preprocessor_config(folder: Path) -> dict[str, Any]:
    """The folder's feature-extractor settings (``preprocessor_config.json``), or ``{}`` without one."""
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"teacher folder {folder}: cannot read preprocessor_config.json: "
                          f"{first_line(error)}") from None
    if isinstance(data.get("feature_extractor"), dict):  # processor-style file: the extractor is nested
        data = data["feature_extractor"]
    return data


def resolve_layers(layers: tuple[int, ...] | str | None, num_layers: int, where: str) -> tuple[int, ...] | None:
    """Non-negative ``hidden_states`` indices for a spec's ``layers`` (``None``: the last hidden state).

    ``num_layers`` transformer layers give ``num_layers + 1`` hidden states; ``"all"`` selects them all.
    """
    if layers is None:
        return None
    count = num_layers + 1
    if layers == "all":
        return tuple(range(count))
    if isinstance(layers, str) or len(layers) == 0:
        raise ConfigError(f"teacher {where}: layers must be an integer, a comma list, or 'all', got {layers!r}")
    for k in layers:
        if not -count <= k < count:
            raise ConfigError(f"teacher {where}: layer {k} is out of range; the model has {num_layers} layers, "
                              f"so hidden states run from 0 to {num_layers} (or -{count} to -1)")
    return tuple(k % count for k in layers)


def conv_output_length(num_samples: Tensor, kernels: tuple[int, ...], strides: tuple[int, ...]) -> Tensor:
    """Frames a stack of unpadded 1-D convolutions makes of ``num_samples`` (``[B]`` long); 0 if too short."""
    n = num_samples.to(torch.long)
    for k, s in zip(kernels, strides, strict=True):
        n = torch.div(n - k, s, rounding_mode="floor") + 1
    return n.clamp(min=0)


class HFTeacher(Teacher):
    """A frozen ``transformers`` speech model from a local folder; see the module docstring.

    ``spec.layers`` picks the hidden states (resolved once, here: overwriting ``.spec`` afterwards, as
    wrapping teachers do, changes nothing). The folder is ``model_path`` if given, else ``spec.path``.
    """

    def __init__(self, spec: TeacherSpec, *, model_path: str | os.PathLike | None = None,
                 model: nn.Module | None = None, preprocessor: dict[str, Any] | None = None) -> None:
        """``model`` (with ``preprocessor``, a ``preprocessor_config.json``'s settings) wraps a model that is
        already built, e.g. one a semlat model folder holds; otherwise the folder is loaded."""
        super().__init__()
        spec = TeacherSpec.parse(spec)
        folder = Path(model_path if model_path is not None else spec.path).expanduser().resolve()
        self.preprocessor = preprocessor
        if model is None:
            if not folder.is_dir():
                raise ConfigError(f"teacher {spec}: {folder} is not a folder (teachers load from local folders)")
            config = _load_config(folder)
        else:
            config = model.config
        model_type = str(config.model_type)
        if getattr(config, "add_adapter", False):
            raise ConfigError(f"teacher folder {folder}: models with an output adapter (add_adapter=true) are not "
                              "supported; use the pre-trained model without it")
        self.spec = spec
        self.folder = folder
        self.model_type = model_type
        self.is_whisper = model_type == "whisper"
        num_layers = int(config.encoder_layers if self.is_whisper else config.num_hidden_layers)
        self.num_layers = num_layers
        self.layer_indices = resolve_layers(spec.layers, num_layers, str(spec))
        self.dim = int(config.d_model if self.is_whisper else config.hidden_size)
        if model is None:
            model = _load_model(folder)
        if self.is_whisper:
            self._setup_whisper(folder, model.encoder)
        else:
            self._setup_wav2vec2(folder, config, model)
        self._drop_unused_layers()
        self.freeze()

    # -- setup ----------------------------------------------------------------------------------

    def _setup_wav2vec2(self, folder: Path, config: Any, model: nn.Module) -> None:
        layer_norm_convs = getattr(config, "feat_extract_norm", "layer") == "layer"  # data2vec-audio: always
        # Wav2Vec2FeatureExtractor's defaults for a file without the keys; the fairseq convention without a file
        defaults = {"do_normalize": True, "return_attention_mask": False}
        if self.preprocessor is not None:
            pre = {**defaults, **self.preprocessor}
        else:
            if not (folder / "preprocessor_config.json").is_file():
                defaults = {"do_normalize": layer_norm_convs, "return_attention_mask": layer_norm_convs}
            pre = {**defaults, **read_preprocessor_config(folder)}
        self.model = model
        self.sample_rate = int(pre.get("sampling_rate", DEFAULT_SAMPLE_RATE))
        self.do_normalize = bool(pre["do_normalize"])
        # a padded batch is exact only with per-frame conv norms, a mask and a single positional conv
        self.padded_batches = (layer_norm_convs and bool(pre["return_attention_mask"])
                               and self.model_type != "data2vec-audio")
        self.conv_kernel = tuple(int(k) for k in config.conv_kernel)
        self.conv_stride = tuple(int(s) for s in config.conv_stride)
        self.frame_rate = self.sample_rate / math.prod(self.conv_stride)

    def _setup_whisper(self, folder: Path, encoder: nn.Module) -> None:
        from transformers import WhisperFeatureExtractor

        if (folder / "preprocessor_config.json").is_file():
            extractor = WhisperFeatureExtractor.from_pretrained(str(folder), local_files_only=True)
        else:
            extractor = WhisperFeatureExtractor(feature_size=encoder.config.num_mel_bins)
        self.model = encoder
        self.mel_extractor = extractor
        self.sample_rate = int(extractor.sampling_rate)
        conv_stride = encoder.conv1.stride[0] * encoder.conv2.stride[0]
        self.samples_per_frame = int(extractor.hop_length) * conv_stride
        self.window_frames = int(encoder.config.max_source_positions)
        self.window_samples = self.window_frames * self.samples_per_frame
        self.frame_rate = self.sample_rate / self.samples_per_frame

    def _drop_unused_layers(self) -> None:
        """Keep the transformer layers up to one past the highest selected hidden state."""
        if self.layer_indices is None:
            return
        keep = max(self.layer_indices) + 1
        holder = self.model if self.is_whisper else self.model.encoder
        if keep < len(holder.layers):
            holder.layers = nn.ModuleList(list(holder.layers)[:keep])

    # -- Teacher API ----------------------------------------------------------------------------

    def num_frames(self, num_samples: int) -> int:
        """Frames for ``num_samples`` samples at ``sample_rate``."""
        if self.is_whisper:
            return max(int(num_samples), 0) // self.samples_per_frame
        return int(conv_output_length(torch.tensor([int(num_samples)]), self.conv_kernel, self.conv_stride)[0])

    @torch.no_grad()
    def features(self, audio: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``audio [B, N]`` at ``sample_rate``, valid ``lengths [B]`` -> ``(features [B, T, dim] float32,
        frame_lengths [B] long)``, ``T = max(frame_lengths)``; frames past an item's length are zero."""
        if audio.dim() != 2:
            raise ValueError(f"HFTeacher.features expects audio [B, N], got shape {tuple(audio.shape)}")
        lengths = lengths.to(torch.long).cpu().clamp(0, audio.shape[-1])
        if self.is_whisper:
            return self._whisper_features(audio, lengths)
        return self._wav2vec2_features(audio, lengths)

    # -- wav2vec 2.0 family ---------------------------------------------------------------------

    def _wav2vec2_features(self, audio: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        batch, num_samples = audio.shape
        device = audio.device
        frame_lengths = conv_output_length(lengths, self.conv_kernel, self.conv_stride)
        frames = int(frame_lengths.max()) if batch else 0
        if frames == 0:
            return torch.zeros(batch, 0, self.dim, device=device), frame_lengths
        valid = torch.arange(num_samples, device=device) < lengths.to(device)[:, None]  # [B, N]
        x = torch.where(valid, audio.float(), 0.0)
        if self.do_normalize:
            x = self._normalize(x, valid, lengths.to(device))
        if self.padded_batches:
            width = int(lengths.max())  # the longest item, at least one receptive field as frames > 0
            mask = (torch.arange(width, device=device) < lengths.to(device)[:, None]).long()
            keep = torch.arange(frames, device=device) < frame_lengths.to(device)[:, None]
            return self._run_wav2vec2(x[:, :width], mask)[:, :frames] * keep[..., None], frame_lengths
        out = torch.zeros(batch, frames, self.dim, device=device)
        for n in lengths.unique().tolist():  # equal-length groups: no padding at all
            f = self.num_frames(n)
            if f > 0:
                rows = (lengths == n).nonzero().squeeze(1).to(device)
                out[rows, :f] = self._run_wav2vec2(x[rows, :n], None)[:, :f]
        return out, frame_lengths

    @staticmethod
    def _normalize(x: Tensor, valid: Tensor, lengths: Tensor) -> Tensor:
        """Zero mean, unit variance over each row's valid samples; padding stays zero. ``x, valid [B, N]``."""
        count = lengths.clamp(min=1).to(torch.float64)[:, None]
        xd = x.double() * valid
        mean = xd.sum(-1, keepdim=True) / count
        var = ((xd - mean) * valid).square().sum(-1, keepdim=True) / count
        return ((xd - mean) / torch.sqrt(var + NORM_EPS) * valid).float()

    def _run_wav2vec2(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """``x [b, n]`` float32 -> selected features ``[b, t, dim]`` float32."""
        dtype = next(self.model.parameters()).dtype
        with warnings.catch_warnings():  # WavLM's float position bias beside a bool padding mask
            warnings.filterwarnings("ignore", message="Support for mismatched key_padding_mask", category=UserWarning)
            output = self.model(x.to(dtype), attention_mask=mask, output_hidden_states=self.layer_indices is not None)
        return self._select(output)

    # -- Whisper --------------------------------------------------------------------------------

    def _whisper_features(self, audio: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        batch = audio.shape[0]
        device = audio.device
        frame_lengths = lengths // self.samples_per_frame
        frames = int(frame_lengths.max()) if batch else 0
        out = torch.zeros(batch, frames, self.dim, device=device)
        # every window of every item: (item, first frame, valid frames, samples)
        windows: list[tuple[int, int, int, np.ndarray]] = []
        wave = audio.detach().float().cpu().numpy()
        for b in range(batch):
            n = int(lengths[b])
            for start in range(0, n, self.window_samples):
                stop = min(start + self.window_samples, n)
                valid_frames = (stop - start) // self.samples_per_frame
                if valid_frames > 0:
                    windows.append((b, start // self.samples_per_frame, valid_frames, wave[b, start:stop]))
        chunk = max(batch, 1)
        for first in range(0, len(windows), chunk):
            group = windows[first:first + chunk]
            encoded = self._run_whisper([w[3] for w in group], device)
            for (b, frame0, valid_frames, _), feats in zip(group, encoded, strict=True):
                out[b, frame0:frame0 + valid_frames] = feats[:valid_frames]
        return out, frame_lengths

    def _run_whisper(self, windows: list[np.ndarray], device: torch.device) -> Tensor:
        """Up to ``window_samples`` samples each -> selected features ``[W, window_frames, dim]`` float32."""
        mel = self.mel_extractor(windows, sampling_rate=self.sample_rate, max_length=self.window_samples,
                                 padding="max_length", truncation=True, return_tensors="pt")
        dtype = next(self.model.parameters()).dtype
        features = mel["input_features"].to(device, dtype)  # [W, n_mels, 2 * window_frames]
        output = self.model(features, output_hidden_states=self.layer_indices is not None)
        return self._select(output)

    # -- layers ---------------------------------------------------------------------------------

    def _select(self, output: Any) -> Tensor:
        """The spec's layer selection from a ``transformers`` output, ``[b, t, dim]`` float32."""
        if self.layer_indices is None:
            return output.last_hidden_state.float()
        chosen = torch.stack([output.hidden_states[k].float() for k in self.layer_indices])
        return reduce(chosen, "l b t d -> b t d", "mean")


def _load_config(folder: Path) -> Any:
    """The folder's ``transformers`` config, or a one-line ConfigError (also for unsupported model types)."""
    path = folder / "config.json"
    if not path.is_file():
        raise ConfigError(f"teacher folder {folder} has no config.json (expected a Hugging Face model folder)")
    try:
        model_type = json.loads(path.read_text(encoding="utf-8")).get("model_type")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as error:
        raise ConfigError(f"teacher folder {folder}: cannot read config.json: {first_line(error)}") from None
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ConfigError(f"teacher folder {folder}: model_type {model_type!r} is not a supported speech model "
                          f"({', '.join(SUPPORTED_MODEL_TYPES)})")
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError) as error:
        raise ConfigError(f"teacher folder {folder}: cannot read config.json: {first_line(error)}") from None


def _load_model(folder: Path) -> nn.Module:
    """The folder's base model (``AutoModel``) in its checkpoint dtype, or a one-line ConfigError."""
    from transformers import AutoModel

    try:
        return AutoModel.from_pretrained(str(folder), local_files_only=True, dtype="auto")
    except (OSError, ValueError) as error:
        raise ConfigError(f"teacher folder {folder}: cannot load the model: {first_line(error)}") from None
