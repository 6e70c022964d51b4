"""A small utterance-duration predictor: text -> seconds, adapted to the prompt's speaking rate.

F5-TTS sets the length of the speech to generate by a ratio rule: ``prompt seconds / bytes(prompt text) ·
bytes(text)``. Bytes are a poor clock (digits, abbreviations, punctuation, and a prompt whose rate is not
the speaker's average), and F5's users keep asking for a predictor (F5-TTS GitHub issues #8, #299, #876).
This one learns how long each text unit lasts from a manifest's texts and durations (recipe ``duration``; the
same corpus the TTS is encoded from), then keeps the ratio rule's best idea, the prompt's rate:

    seconds(text) = softplus(offset) + Σ_tokens softplus(head(ConvStack(embed(tokens))))
                    (the offset: an utterance's leading and trailing silence; per-token seconds start near
                    ``INITIAL_TOKEN_SECONDS`` and the offset near ``INITIAL_OFFSET_SECONDS``)
    target = seconds(text) · clamp(prompt seconds / seconds(prompt text), 1/r, r) / speed

Shapes: ids ``[B, N]`` (``-1`` padded) -> seconds ``[B]``. The model folder carries its own text front-end
(units, vocabulary, espeak-ng language), so it works beside any TTS model (``semlat tts --duration-model``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from semlat.config import FromConfig
from semlat.errors import ConfigError
from semlat.nn.linear import Linear
from semlat.text.frontend import UNITS, TextFrontEnd, Vocab

INITIAL_TOKEN_SECONDS = 0.07
INITIAL_OFFSET_SECONDS = 0.3


def inverse_softplus(y: float) -> float:
    return math.log(math.expm1(y))


@dataclass
class DurationConfig:
    """What a duration model folder's ``config`` holds."""

    units: str = "phonemes"
    vocab: list[str] = field(default_factory=lambda: [" "])
    language: str = "en-us"
    dim: int = 128
    layers: int = 3
    kernel: int = 5
    max_rate_ratio: float = 2.0  # the prompt may make speech at most this much faster or slower
    utterance_offset: bool = True  # the learned leading + trailing silence (TTS durations: boundary tokens)

    def validate(self, where: str = "duration config") -> None:
        if self.units not in UNITS:
            raise ConfigError(f"{where}: units must be one of {', '.join(UNITS)}, got {self.units!r}")
        if self.dim < 1 or self.layers < 0 or self.kernel < 1 or self.kernel % 2 == 0:
            raise ConfigError(f"{where}: dim must be >= 1, layers >= 0 and kernel odd")
        if self.max_rate_ratio < 1:
            raise ConfigError(f"{where}: max_rate_ratio must be >= 1, got {self.max_rate_ratio}")


class ConvLayer(nn.Module):
    """``[B, N, C]``: Conv1d (same length) -> ReLU -> LayerNorm, residual; padded tokens stay zero."""

    def __init__(self, dim: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        h = rearrange(self.conv(rearrange(x, "b n c -> b c n")), "b c n -> b n c")
        return (x + self.norm(F.relu(h))) * valid[..., None]


class DurationPredictor(FromConfig, nn.Module):
    """See the module docstring."""

    def __init__(self, config: DurationConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.embed = nn.Embedding(len(config.vocab) + 1, config.dim, padding_idx=0)  # id + 1; 0 = padding
        self.layers = nn.ModuleList(ConvLayer(config.dim, config.kernel) for _ in range(config.layers))
        self.head = Linear(config.dim, 1)
        self.offset = (nn.Parameter(torch.tensor(inverse_softplus(INITIAL_OFFSET_SECONDS)))
                       if config.utterance_offset else None)
        with torch.no_grad():
            self.head.bias.fill_(inverse_softplus(INITIAL_TOKEN_SECONDS))

    config_class = DurationConfig
    config_where = "duration config"

    def front_end(self) -> TextFrontEnd:
        return TextFrontEnd(Vocab(self.config.vocab), self.config.units, self.config.language)

    def token_seconds(self, ids: Tensor) -> Tensor:
        """Token ids ``[B, N]`` (``-1`` padded) -> predicted seconds of each token ``[B, N]`` (0 at padding)."""
        valid = ids >= 0
        x = self.embed((ids + 1).clamp(min=0)) * valid[..., None]
        for layer in self.layers:
            x = layer(x, valid)
        return F.softplus(rearrange(self.head(x), "b n 1 -> b n")) * valid

    def forward(self, ids: Tensor) -> Tensor:
        """Token ids ``[B, N]`` (``-1`` padded) -> predicted seconds ``[B]``."""
        total = self.token_seconds(ids).sum(-1)
        return total if self.offset is None else F.softplus(self.offset) + total

    @torch.no_grad()
    def seconds(self, texts: list[str]) -> Tensor:
        """Predicted seconds ``[len(texts)]`` of each text (one-line error for a text with no known unit)."""
        ids = self.front_end().encode(texts).to(self.head.weight.device)
        return self(ids)

    def target_seconds(self, prompt_text: str, prompt_seconds: float, text: str, speed: float = 1.0) -> float:
        """Seconds of speech for ``text`` in the voice (and pace) of a prompt of ``prompt_seconds`` saying
        ``prompt_text`` (module docstring)."""
        predicted_prompt, predicted = (float(s) for s in self.seconds([prompt_text.strip(), text.strip()]))
        r = self.config.max_rate_ratio
        rate = min(max(prompt_seconds / max(predicted_prompt, 1e-3), 1 / r), r)
        return predicted * rate / speed


def ratio_rule_seconds(prompt_text: str, prompt_seconds: float, text: str, speed: float = 1.0) -> float:
    """F5-TTS's rule: the prompt's seconds per UTF-8 byte times the text's bytes, over ``speed``."""
    return prompt_seconds / max(1, len(prompt_text.encode("utf-8"))) * len(text.encode("utf-8")) / speed
