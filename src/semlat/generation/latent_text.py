"""What every latent TTS model shares (the F5 DiT's :class:`~semlat.generation.tts.TTSModel` and the
autoregressive :class:`~semlat.generation.ar_tts.ARTTSModel`): the per-channel statistics of the latents it was
trained on, kept as buffers in its weights (``latent_mean``, ``latent_std``: generation de-normalises without the
store), the text front-end of its config's ``vocab``, ``units`` and ``language``, and with ``conditioning:
durations`` (:mod:`.aligned`) the duration predictor trained beside it (``duration``,
:class:`~semlat.generation.duration.DurationPredictor` on log token seconds) and the planning of per-token
positions from it at generation."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from semlat.config import from_dict
from semlat.errors import ConfigError
from semlat.generation.aligned import positions_from_seconds
from semlat.generation.duration import DurationConfig, DurationPredictor
from semlat.text.frontend import TextFrontEnd, Vocab

#: How a model is told what to say where: F5-TTS's implicit alignment, or frame-aligned text from durations.
CONDITIONINGS = ("f5", "durations")
#: The duration loss is on ``log(seconds + DURATION_EPS)`` (a word boundary may last 0 s).
DURATION_EPS = 0.02


class LatentTextModel(nn.Module):
    """Base of the latent TTS models; subclasses set ``self.config`` (with ``conditioning``, ``duration``,
    ``position_rate``) and call :meth:`init_stats` and :meth:`init_duration`."""

    duration: DurationPredictor | None  # (set by init_duration; no class default: it would hide the submodule)

    def init_stats(self, latent_dim: int) -> None:
        self.register_buffer("latent_mean", torch.zeros(latent_dim))
        self.register_buffer("latent_std", torch.ones(latent_dim))

    def init_duration(self) -> None:
        """The duration predictor of ``durations`` conditioning (None otherwise)."""
        config = self.config
        self.duration = None
        if config.conditioning == "durations":
            self.duration = DurationPredictor(from_dict(DurationConfig, {
                **config.duration, "units": config.units, "vocab": list(config.vocab), "language": config.language,
                "utterance_offset": False}, f"{self.config_where} 'duration'"))

    def front_end(self) -> TextFrontEnd:
        return TextFrontEnd(Vocab(self.config.vocab), self.config.units, self.config.language)

    def set_stats(self, mean: Tensor, std: Tensor) -> None:
        self.latent_mean.copy_(mean)
        self.latent_std.copy_(std.clamp(min=1e-5))

    def normalize(self, latents: Tensor) -> Tensor:
        """Raw ``[B, T, D]`` -> zero mean, unit variance per channel (the training statistics)."""
        return (latents - self.latent_mean) / self.latent_std

    def denormalize(self, latents: Tensor) -> Tensor:
        return latents * self.latent_std + self.latent_mean

    def duration_loss(self, text: Tensor, token_durations: Tensor) -> Tensor:
        """Mean squared error of ``log(seconds + DURATION_EPS)`` over the tokens of ``text [B, Nt]``."""
        valid = text >= 0
        target = token_durations.float() / self.config.position_rate
        predicted = self.duration.token_seconds(text)
        error = (predicted + DURATION_EPS).log() - (target + DURATION_EPS).log()
        return error.square()[valid].mean()

    @torch.no_grad()
    def plan_durations(self, text: Tensor, prompt_text: Tensor | None = None, prompt_seconds: float | None = None,
                       speed: float = 1.0, seconds: float | None = None) -> Tensor:
        """Positions of each token of one bounded ``text [1, Nt]`` (``durations`` conditioning): the predictor's
        seconds, times the prompt's pace (``prompt_seconds`` over the predicted seconds of the bounded
        ``prompt_text [1, Np]``, clamped to ``max_rate_ratio`` either way) over ``speed``, or scaled to
        ``seconds`` in all. Returns ``[1, Nt]``."""
        if self.duration is None:
            raise ConfigError("this TTS model aligns text implicitly (f5 conditioning): it has no duration predictor")
        per_token = self.duration.token_seconds(text)[0]
        if seconds is not None:
            scale = seconds / max(float(per_token.sum()), 1e-6)
        else:
            scale = 1.0
            if prompt_text is not None and prompt_seconds is not None:
                predicted = float(self.duration.token_seconds(prompt_text).sum())
                r = self.duration.config.max_rate_ratio
                scale = min(max(prompt_seconds / max(predicted, 1e-3), 1 / r), r)
            scale /= speed
        return positions_from_seconds(per_token * scale, self.config.position_rate)[None]

    def bounded_ids(self, texts: list[str]) -> Tensor:
        """The ``durations`` conditioning's token ids of ``texts``: ``[B, Nt]`` with a space at both ends."""
        front = self.front_end()
        ids = front.encode(texts)
        rows = [[0, *[int(i) for i in row if i >= 0], 0] for row in ids]
        width = max(len(r) for r in rows)
        return torch.tensor([r + [-1] * (width - len(r)) for r in rows], dtype=torch.long)
