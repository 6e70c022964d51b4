"""The offline ASR judge: a small CTC phoneme (or character) recognizer trained on a manifest.

``semlat judge train MANIFEST OUT`` trains it on the manifest's real audio in a few minutes on CPU,
so generation metrics and the phoneme probe's forced alignments work with nothing downloaded. It
is a *weak* judge: its figures are labelled ``ctc-<units> (offline, trained on <manifest>)`` and
must never be reported as Whisper's.

Model (about 2 M parameters with the defaults)::

    16 kHz audio [N] -> 80-band log-mel, 25 ms Hann window, 10 ms hop (100 Hz), per-utterance
    mean/variance normalised -> Conv1d(80->C, k3, stride 2) + GELU (50 Hz)
    -> residual blocks x layers (LayerNorm, Conv1d k5, GELU; padded frames re-zeroed, so padding
    never changes a result) -> LayerNorm -> Linear -> log-softmax over [blank] + vocabulary

Units: ``phonemes`` are the manifest's espeak-ng IPA split by
:func:`~semlat.evaluation.judges.split_phonemes` (stress and word boundaries dropped);
``chars`` are the characters of the normalised ``text`` (:func:`~semlat.evaluation.judges.split_chars`),
with ``" "`` as a token between words. The vocabulary is every unit of the training split, sorted;
index 0 is the CTC blank.

Training: ``torch.nn.CTCLoss`` (blank 0, ``zero_infinity``), AdamW, linear warm-up then cosine
decay over the time (or step) budget, SpecAugment-style frequency and time masks, utterances
batched whole. Every ``eval_seconds`` the held-out error rate (greedy decoding, corpus-level edit
distance) on the ``valid`` split is logged; at the end, the ``valid`` and ``test`` figures are
stored in ``judge.json``.

Output folder (written atomically): ``model.safetensors`` (weights) and ``judge.json`` (format,
units, vocabulary, front-end, model sizes, training figures, label).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

import semlat
from semlat.audio.spectral import MelConfig, MelSpectrogram
from semlat.config import read_json_object
from semlat.errors import ConfigError, DataError
from semlat.evaluation.judges import JUDGE_RATE, as_batch, error_rate, split_chars, split_phonemes
from semlat.training.schedules import budget_progress, cosine_decay
from semlat.utils.files import atomic_dir

FORMAT = "semlat-ctc-judge/1"
JUDGE_JSON = "judge.json"
WEIGHTS = "model.safetensors"
BLANK = "<blank>"
UNITS = ("phonemes", "chars")
FEATURE_EPS = 1e-5


# --- units ----------------------------------------------------------------------------------

def tokenize(text: str, units: str) -> list[str]:
    """``text`` (IPA for phonemes, orthography for chars) -> unit tokens."""
    if units == "phonemes":
        return split_phonemes(text)
    if units == "chars":
        return split_chars(text)
    raise ConfigError(f"units must be one of {', '.join(UNITS)}, got {units!r}")


def detokenize(tokens: Sequence[str], units: str) -> str:
    """Tokens -> a string: phonemes space-separated, characters concatenated."""
    return " ".join(tokens) if units == "phonemes" else "".join(tokens).strip()


def _source_text(utterance: Any, units: str) -> str | None:
    return utterance.phonemes if units == "phonemes" else utterance.text


# --- decoding and alignment -----------------------------------------------------------------

def greedy_decode(log_probs: torch.Tensor, blank: int = 0) -> list[int]:
    """Best-path CTC decoding of ``log_probs [T, V]``: argmax per frame, repeats merged, blanks removed."""
    best = log_probs.argmax(-1).tolist()
    out, previous = [], None
    for k in best:
        if k != previous and k != blank:
            out.append(k)
        previous = k
    return out


def min_frames(targets: Sequence[int]) -> int:
    """The fewest CTC frames that can emit ``targets``: one per label plus a blank between repeats."""
    return len(targets) + sum(1 for a, b in itertools.pairwise(targets) if a == b)


def ctc_forced_align(log_probs: torch.Tensor, targets: Sequence[int], blank: int = 0) -> list[tuple[int, int]]:
    """Viterbi forced alignment of ``targets [L]`` to ``log_probs [T, V]`` under the CTC topology.

    The standard trellis over the blank-extended sequence ``[blank, y1, blank, y2, ..., yL, blank]``
    (``S = 2L + 1`` states): a state is entered from itself, from the previous state, or (for a label
    that differs from the label two states back) skipping the blank between them; the path must start
    in one of the first two states and end in one of the last two. Returns, per target, its frame span
    ``(start, end)`` (``end`` exclusive): the frames on which the best path emits that label. Spans are
    ordered and disjoint. ValueError when ``T`` is too short for the targets (``L`` plus repeats).
    """
    lp = log_probs.detach().double().cpu()
    frames, length = lp.shape[0], len(targets)
    if length == 0:
        return []
    if frames < min_frames(targets):
        raise ValueError(f"{frames} frames cannot hold {length} tokens (and a blank between repeats); "
                         "the audio is too short")
    states = torch.full((2 * length + 1,), blank, dtype=torch.long)
    states[1::2] = torch.as_tensor(list(targets), dtype=torch.long)
    n = len(states)
    can_skip = torch.zeros(n, dtype=torch.bool)
    can_skip[2:] = (states[2:] != blank) & (states[2:] != states[:-2])
    emit = lp[:, states]                                    # [T, S]
    score = torch.full((n,), -math.inf, dtype=torch.float64)
    score[:2] = emit[0, :2]
    back = torch.zeros(frames, n, dtype=torch.long)         # 0: stay, 1: from s-1, 2: from s-2
    for t in range(1, frames):
        stay = score
        step = torch.cat([score.new_full((1,), -math.inf), score[:-1]])
        skip = torch.cat([score.new_full((2,), -math.inf), score[:-2]])
        skip = torch.where(can_skip, skip, torch.full_like(skip, -math.inf))
        candidates = torch.stack([stay, step, skip])        # [3, S]
        best, back[t] = candidates.max(0)
        score = best + emit[t]
    end = n - 1 if score[n - 1] >= score[n - 2] else n - 2
    if not math.isfinite(float(score[end])):
        raise ValueError("no CTC alignment of the targets exists for these frames")
    path = [0] * frames
    s = end
    for t in range(frames - 1, -1, -1):
        path[t] = s
        s -= int(back[t, s])
    spans: list[list[int]] = [[-1, -1] for _ in range(length)]
    for t, s in enumerate(path):
        if s % 2 == 1:
            i = s // 2
            if spans[i][0] < 0:
                spans[i][0] = t
            spans[i][1] = t + 1
    return [(a, b) for a, b in spans]


# --- model ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class FrontEnd:
    """The log-mel front-end: 16 kHz, 25 ms window, 10 ms hop, 80 bands, per-utterance normalised."""

    sample_rate: int = JUDGE_RATE
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 80

    def mel_config(self) -> MelConfig:
        return MelConfig(n_fft=self.n_fft, hop_length=self.hop_length, win_length=self.win_length, center=True,
                         pad_mode="reflect", sample_rate=self.sample_rate, n_mels=self.n_mels, f_min=0.0,
                         f_max=self.sample_rate / 2, log="ln", clamp_min=FEATURE_EPS)

    def frames(self, num_samples: int) -> int:
        return num_samples // self.hop_length + 1


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of :class:`CTCRecognizer`."""

    vocab_size: int
    n_mels: int = 80
    channels: int = 256
    layers: int = 6
    kernel_size: int = 5
    dropout: float = 0.1

    #: Feature frames per output frame (the first conv's stride).
    stride: int = 2


class ConvBlock(nn.Module):
    """Pre-norm residual block on ``x [B, C, T]``: LayerNorm over channels -> Conv1d (k, same) -> GELU."""

    def __init__(self, channels: int, kernel_size: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.conv = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = rearrange(self.norm(rearrange(x, "b c t -> b t c")), "b t c -> b c t")
        return (x + self.dropout(F.gelu(self.conv(h * mask)))) * mask


class CTCRecognizer(nn.Module):
    """``features [B, M, T]`` + ``lengths [B]`` -> ``log_probs [B, T', V]`` and ``lengths' [B]``.

    Convolutional (fast on CPU): a strided input conv, then residual conv blocks. Padded frames are
    zeroed before every conv, so an item's output never depends on the batch it ran in.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.conv_in = nn.Conv1d(config.n_mels, config.channels, 3, stride=config.stride, padding=1)
        self.blocks = nn.ModuleList(ConvBlock(config.channels, config.kernel_size, config.dropout)
                                    for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.channels)
        self.head = nn.Linear(config.channels, config.vocab_size)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Output frames for ``lengths [B]`` feature frames (the strided conv, padding 1, kernel 3)."""
        return torch.div(lengths - 1, self.config.stride, rounding_mode="floor") + 1

    def hidden(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's output before the classifier: ``h [B, T', C]`` (layer-normed) and ``lengths' [B]``."""
        out_lengths = self.output_lengths(lengths)
        x = F.gelu(self.conv_in(features))
        mask = (torch.arange(x.shape[-1], device=x.device)[None] < out_lengths[:, None]).to(x.dtype)
        mask = rearrange(mask, "b t -> b 1 t")
        x = x * mask
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(rearrange(x, "b c t -> b t c")), out_lengths

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, out_lengths = self.hidden(features, lengths)
        return self.head(h).log_softmax(-1), out_lengths


class Features(nn.Module):
    """``audio [B, N]`` at 16 kHz + ``lengths [B]`` samples -> normalised log-mel ``[B, M, T]``, ``frames [B]``.

    Each item is normalised to zero mean and unit variance per band over its own valid frames;
    padded frames are zero.
    """

    def __init__(self, front: FrontEnd):
        super().__init__()
        self.front = front
        self.mel = MelSpectrogram(front.mel_config())

    def forward(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mel = self.mel(audio)                                            # [B, M, T]
        frames = torch.div(lengths, self.front.hop_length, rounding_mode="floor") + 1
        valid = (torch.arange(mel.shape[-1], device=mel.device)[None] < frames[:, None]).to(mel.dtype)
        valid = rearrange(valid, "b t -> b 1 t")
        count = valid.sum(-1, keepdim=True).clamp(min=1)
        mean = (mel * valid).sum(-1, keepdim=True) / count
        var = ((mel - mean).square() * valid).sum(-1, keepdim=True) / count
        return (mel - mean) / (var + FEATURE_EPS).sqrt() * valid, frames


def _pad(signals: Sequence[np.ndarray], minimum: int) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 signals -> ``(audio [B, N], lengths [B])``, zero-padded (to at least ``minimum`` samples)."""
    lengths = torch.tensor([len(s) for s in signals], dtype=torch.long)
    audio = torch.zeros(len(signals), max(int(lengths.max()), minimum))
    for i, s in enumerate(signals):
        audio[i, :len(s)] = torch.from_numpy(np.asarray(s, dtype=np.float32))
    return audio, lengths


# --- the loaded judge -----------------------------------------------------------------------

class CTCJudge:
    """A trained CTC recognizer: ``transcribe`` (greedy) and ``align`` (Viterbi forced alignment)."""

    def __init__(self, model: CTCRecognizer, vocab: Sequence[str], units: str, front: FrontEnd, label: str,
                 info: dict[str, Any] | None = None, device: str | torch.device = "cpu", batch_size: int = 16):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.features = Features(front).to(self.device)
        self.vocab = list(vocab)
        self.index = {token: i for i, token in enumerate(self.vocab)}
        self.units = units
        self.front = front
        self.label = label
        self.info = info or {}
        self.batch_size = batch_size

    @property
    def frame_seconds(self) -> float:
        """Seconds per output frame (20 ms with the defaults)."""
        return self.front.hop_length * self.model.config.stride / self.front.sample_rate

    def tokenize(self, text: str) -> list[str]:
        """IPA (phonemes) or text (chars) -> unit tokens, as the judge was trained on."""
        return tokenize(text, self.units)

    @torch.no_grad()
    def _run(self, audio: Any, sample_rate: int, output: str) -> list[torch.Tensor]:
        signals = as_batch(audio, sample_rate, self.front.sample_rate)
        out: list[torch.Tensor] = []
        for start in range(0, len(signals), self.batch_size):
            chunk = [s if len(s) > self.front.n_fft // 2 else np.pad(s, (0, self.front.n_fft // 2 + 1 - len(s)))
                     for s in signals[start:start + self.batch_size]]
            wave, lengths = _pad(chunk, self.front.n_fft)
            feats, frames = self.features(wave.to(self.device), lengths.to(self.device))
            if output == "hidden":
                y, out_lengths = self.model.hidden(feats, frames)
            else:
                y, out_lengths = self.model(feats, frames)
            out.extend(y[i, :int(n)].float().cpu() for i, n in enumerate(out_lengths))
        return out

    def log_probs(self, audio: Any, sample_rate: int) -> list[torch.Tensor]:
        """Per item, the frame posteriors ``log_probs [T, V]`` (float32, CPU); ``T`` at 50 Hz."""
        return self._run(audio, sample_rate, "log_probs")

    def hidden_states(self, audio: Any, sample_rate: int) -> list[torch.Tensor]:
        """Per item, the encoder's frames before the classifier ``[T, C]`` (float32, CPU; 50 Hz)."""
        return self._run(audio, sample_rate, "hidden")

    def transcribe(self, audio: Any, sample_rate: int) -> list[str]:
        """One ``[N]`` signal or a list -> one greedy transcript per item (phonemes space-separated)."""
        return [detokenize([self.vocab[k] for k in greedy_decode(lp)], self.units)
                for lp in self.log_probs(audio, sample_rate)]

    def align(self, audio: Any, sample_rate: int, transcript_tokens: Sequence[str] | str, *,
              extend: bool = False) -> list[tuple[str, float, float]]:
        """Forced alignment of one signal to its tokens: ``[(token, start_s, end_s)]``, one per token.

        ``transcript_tokens`` is a token list or a string (tokenized with :meth:`tokenize`). Segments
        are ordered, disjoint and within the audio. A CTC model emits each label on a few "peaky"
        frames and blank elsewhere, so by default a segment covers only the frames that emit its token
        (at least one 20 ms frame); ``extend=True`` stretches each segment to the start of the next
        (the last keeps its end), so segments tile the speech from the first token to the last.
        ValueError for a token not in the vocabulary or audio too short for the tokens.
        """
        tokens = self.tokenize(transcript_tokens) if isinstance(transcript_tokens, str) else list(transcript_tokens)
        unknown = [t for t in tokens if t not in self.index or t == BLANK]
        if unknown:
            raise ValueError(f"token {unknown[0]!r} is not in the judge's vocabulary")
        signals = as_batch(audio, sample_rate, self.front.sample_rate)
        if len(signals) != 1:
            raise ValueError("align takes one signal")
        duration = len(signals[0]) / self.front.sample_rate
        (lp,) = self.log_probs(signals[0], self.front.sample_rate)
        spans = ctc_forced_align(lp, [self.index[t] for t in tokens])
        if extend:
            spans = [(a, nxt[0]) for (a, _), nxt in itertools.pairwise(spans)] + spans[-1:]
        step = self.frame_seconds
        return [(t, min(a * step, duration), min(b * step, duration)) for t, (a, b) in zip(tokens, spans, strict=True)]


def write_alignments(judge: CTCJudge, manifest: str | Path, out: str | Path, *, split: str | None = None,
                     extend: bool = True, progress: bool = True) -> tuple[int, list[str]]:
    """Force-align every utterance of ``manifest`` (its ``phonemes``, or ``text`` for a chars judge)
    and write JSON Lines ``{"id": audio as in the manifest, "segments": [[token, start_s, end_s], ...]}``
    to ``out`` atomically (the format ``semlat eval latents --alignments`` reads).

    Tokens outside the judge's vocabulary are left out of the alignment; with ``extend`` (default) the
    segments tile the speech (see :meth:`CTCJudge.align`). Utterances without a transcript, unreadable,
    or too short for their tokens are skipped; returns ``(written, skipped ids with the reason)``.
    """
    from tqdm import tqdm

    from semlat.audio.io import load_audio
    from semlat.data.manifest import Manifest
    from semlat.errors import AudioError
    from semlat.utils.files import atomic_write_text

    data = Manifest.read(manifest, split=split)
    lines, skipped = [], []
    for i in tqdm(range(len(data)), desc="aligning", unit="utt", disable=not progress, dynamic_ncols=True):
        utterance = data[i]
        source = _source_text(utterance, judge.units)
        tokens = [t for t in judge.tokenize(source) if t in judge.index and t != BLANK] if source else []
        if not tokens:
            skipped.append(f"{utterance.audio}: no transcript in the judge's units")
            continue
        try:
            audio, sr = load_audio(data.audio_path(i), max_duration=None)
            segments = judge.align(audio[0], sr, tokens, extend=extend)
        except (AudioError, ValueError) as err:
            skipped.append(f"{utterance.audio}: {err}")
            continue
        rows = [[t, round(a, 4), round(b, 4)] for t, a, b in segments if round(b, 4) > round(a, 4)]
        lines.append(json.dumps({"id": utterance.audio, "segments": rows}, ensure_ascii=False))
    atomic_write_text(out, "".join(line + "\n" for line in lines))
    return len(lines), skipped


def read_judge_info(folder: str | Path) -> dict[str, Any]:
    """``judge.json`` of a CTC judge folder, validated; one-line ConfigError otherwise."""
    folder = Path(folder).expanduser()
    path = folder / JUDGE_JSON
    if not path.is_file():
        raise ConfigError(f"{folder} is not a CTC judge (no {JUDGE_JSON}; make one with `semlat judge train`)")
    info = read_json_object(path, "judge description")
    if info.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a {FORMAT} judge")
    return info


def load_judge(folder: str | Path, *, device: str | torch.device = "cpu") -> CTCJudge:
    """Load a folder written by :func:`train_judge` (weights with ``safetensors``; nothing unpickled)."""
    from safetensors.torch import load_file

    folder = Path(folder).expanduser()
    info = read_judge_info(folder)
    if not (folder / WEIGHTS).is_file():
        raise ConfigError(f"{folder}: no {WEIGHTS}")
    model = CTCRecognizer(ModelConfig(**info["model"]))
    try:
        model.load_state_dict(load_file(str(folder / WEIGHTS)))
    except RuntimeError as err:
        raise ConfigError(f"{folder / WEIGHTS}: does not fit the model in {JUDGE_JSON}: "
                          f"{str(err).splitlines()[0]}") from None
    return CTCJudge(model, info["vocab"], info["units"], FrontEnd(**info["front_end"]), info["label"], info, device)


# --- training -------------------------------------------------------------------------------

@dataclass(frozen=True)
class JudgeTrainOptions:
    """Every option of :func:`train_judge` (stored under ``training.options`` in ``judge.json``)."""

    units: str = "phonemes"
    max_minutes: float | None = 5.0
    max_steps: int | None = None
    seed: int = 0
    batch_size: int = 16
    lr: float = 2e-3
    warmup_steps: int = 100
    final_lr_ratio: float = 0.05
    weight_decay: float = 0.01
    grad_clip: float = 5.0
    channels: int = 256
    layers: int = 6
    kernel_size: int = 5
    dropout: float = 0.1
    freq_masks: int = 2
    freq_mask_width: int = 10
    time_masks: int = 2
    time_mask_width: int = 20
    eval_seconds: float = 60.0
    eval_items: int = 64
    max_seconds: float = 20.0
    threads: int | None = None
    device: str = "cpu"
    progress: bool = True

    def validate(self) -> None:
        if self.units not in UNITS:
            raise ConfigError(f"units must be one of {', '.join(UNITS)}, got {self.units!r}")
        if self.max_minutes is None and self.max_steps is None:
            raise ConfigError("judge training needs max_minutes or max_steps")
        for name in ("batch_size", "channels", "layers", "kernel_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"judge training: {name} must be >= 1, got {getattr(self, name)}")


@dataclass
class _Item:
    """One utterance: normalised features ``[M, T]`` and its target ids."""

    features: torch.Tensor
    targets: list[int]
    reference: list[str]


def _load_split(manifest: Any, units: str, features: Features, index: dict[str, int] | None,
                max_seconds: float, progress: bool, desc: str) -> list[_Item]:
    """Load and featurise every utterance with a transcript (units missing from ``index`` are dropped
    from the targets but kept in the reference)."""
    from tqdm import tqdm

    from semlat.audio.io import load_audio

    items = []
    for i in tqdm(range(len(manifest)), desc=desc, unit="utt", disable=not progress, dynamic_ncols=True):
        source = _source_text(manifest[i], units)
        if not source:
            continue
        reference = tokenize(source, units)
        audio, _ = load_audio(manifest.audio_path(i), features.front.sample_rate, max_duration=None)
        audio = audio[0, :int(max_seconds * features.front.sample_rate)]
        if not reference or audio.shape[0] <= features.front.n_fft:
            continue
        with torch.no_grad():
            feats, _ = features(audio[None], torch.tensor([audio.shape[0]]))
        targets = [index[t] for t in reference if t in index] if index is not None else []
        items.append(_Item(feats[0], targets, reference))
    return items


def _collate(items: Sequence[_Item]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(features [B, M, T], frames [B], targets [sum L], target_lengths [B])``."""
    frames = torch.tensor([it.features.shape[-1] for it in items])
    feats = torch.zeros(len(items), items[0].features.shape[0], int(frames.max()))
    for i, it in enumerate(items):
        feats[i, :, :it.features.shape[-1]] = it.features
    targets = torch.tensor([k for it in items for k in it.targets], dtype=torch.long)
    return feats, frames, targets, torch.tensor([len(it.targets) for it in items])


def _augment(feats: torch.Tensor, frames: torch.Tensor, opts: JudgeTrainOptions, rng: np.random.Generator) -> torch.Tensor:
    """SpecAugment: zero ``freq_masks`` bands and ``time_masks`` spans per item of ``feats [B, M, T]``."""
    feats = feats.clone()
    bands = feats.shape[1]
    for i in range(feats.shape[0]):
        for _ in range(opts.freq_masks):
            width = int(rng.integers(0, opts.freq_mask_width + 1))
            start = int(rng.integers(0, max(1, bands - width)))
            feats[i, start:start + width] = 0
        for _ in range(opts.time_masks):
            width = int(rng.integers(0, min(opts.time_mask_width, int(frames[i]) // 10) + 1))
            start = int(rng.integers(0, max(1, int(frames[i]) - width)))
            feats[i, :, start:start + width] = 0
    return feats


@torch.no_grad()
def evaluate(model: CTCRecognizer, items: Sequence[_Item], vocab: Sequence[str], batch_size: int,
             device: torch.device) -> float:
    """Corpus error rate (greedy decoding, edit distance against the full references) on ``items``."""
    was_training = model.training
    model.eval()
    hyps, refs = [], []
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        feats, frames, _, _ = _collate(chunk)
        lp, lengths = model(feats.to(device), frames.to(device))
        for i, it in enumerate(chunk):
            hyps.append([vocab[k] for k in greedy_decode(lp[i, :int(lengths[i])])])
            refs.append(it.reference)
    model.train(was_training)
    return float(error_rate(hyps, refs)) if refs else math.nan


def _learning_rate(opts: JudgeTrainOptions, step: int, elapsed: float) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay to ``final_lr_ratio * lr`` along the budget."""
    progress = budget_progress(step, elapsed, opts.max_steps, opts.max_minutes)
    if step < opts.warmup_steps and progress < 0.1:
        return opts.lr * (step + 1) / opts.warmup_steps
    return cosine_decay(opts.lr, opts.final_lr_ratio, progress)


def train_judge(manifest: str | Path, out: str | Path, *, units: str = "phonemes", max_minutes: float | None = 5.0,
                max_steps: int | None = None, progress: bool = True, **options: Any) -> Path:
    """Train the CTC judge on ``manifest``'s ``train`` split and write it to ``out`` (atomically).

    Stops after ``max_minutes`` of training (loading and the final evaluation come on top) or
    ``max_steps``, whichever comes first. The held-out error rate (PER for phonemes, CER for chars) is
    logged every ``eval_seconds`` on up to ``eval_items`` of the ``valid`` split, and measured at the
    end on all of ``valid`` and ``test``; ``judge.json`` keeps those figures under ``training``.
    Other keyword options are the fields of :class:`JudgeTrainOptions`. Returns the folder.
    """
    from safetensors.torch import save_file
    from tqdm import tqdm

    from semlat.data.manifest import Manifest

    unknown = set(options) - {f.name for f in dataclasses.fields(JudgeTrainOptions)}
    if unknown:
        raise ConfigError(f"unknown judge training option {min(unknown)!r}")
    opts = JudgeTrainOptions(units=units, max_minutes=max_minutes, max_steps=max_steps, progress=progress, **options)
    opts.validate()
    manifest_path, out_path = Path(manifest).resolve(), Path(out).resolve()
    if out_path.exists() and (not out_path.is_dir() or (any(out_path.iterdir())
                                                        and not (out_path / JUDGE_JSON).is_file())):
        raise ConfigError(f"{out_path} exists and is not a CTC judge; refusing to replace it")
    full = Manifest.read(manifest_path)
    train = full.split("train")
    if not any(_source_text(u, opts.units) for u in train):
        field = "phonemes" if opts.units == "phonemes" else "text"
        raise DataError(f"{manifest_path}: the train split has no utterance with {field!r}")
    device = torch.device(opts.device)
    previous_threads = torch.get_num_threads()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    try:
        front = FrontEnd()
        features = Features(front)
        vocab_tokens = sorted({t for u in train if _source_text(u, opts.units)
                               for t in tokenize(_source_text(u, opts.units), opts.units)})
        vocab = [BLANK, *vocab_tokens]
        index = {t: i for i, t in enumerate(vocab)}
        train_items = [it for it in _load_split(train, opts.units, features, index, opts.max_seconds, opts.progress,
                                                "loading train") if it.targets]
        held = {name: _load_split(full.split(name), opts.units, features, None, opts.max_seconds, opts.progress,
                                  f"loading {name}") for name in ("valid", "test")}
        # drop utterances whose targets cannot fit their frames (CTC needs T' >= L + repeats)
        train_items = [it for it in train_items if (it.features.shape[-1] - 1) // 2 + 1 >= min_frames(it.targets)]
        if not train_items:
            raise DataError(f"{manifest_path}: no usable training utterance")
        torch.manual_seed(opts.seed)
        config = ModelConfig(vocab_size=len(vocab), n_mels=front.n_mels, channels=opts.channels, layers=opts.layers,
                             kernel_size=opts.kernel_size, dropout=opts.dropout)
        model = CTCRecognizer(config).to(device)
        ctc = nn.CTCLoss(blank=0, zero_infinity=True)
        optimizer = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
        rng = np.random.default_rng(opts.seed)
        eval_set = held["valid"][:opts.eval_items] or held["test"][:opts.eval_items]
        history: list[dict[str, float]] = []
        recent: list[float] = []
        step, started, last_eval = 0, time.monotonic(), time.monotonic()
        metric = "per" if opts.units == "phonemes" else "cer"
        bar = tqdm(total=opts.max_steps, desc="judge", unit="step", dynamic_ncols=True, disable=not opts.progress)
        model.train()
        try:
            while opts.max_steps is None or step < opts.max_steps:
                order = rng.permutation(len(train_items))
                for start in range(0, len(order), opts.batch_size):
                    elapsed = time.monotonic() - started
                    if (opts.max_minutes is not None and elapsed > 60 * opts.max_minutes) or \
                            (opts.max_steps is not None and step >= opts.max_steps):
                        break
                    for group in optimizer.param_groups:
                        group["lr"] = _learning_rate(opts, step, elapsed)
                    feats, frames, targets, target_lengths = _collate([train_items[k] for k in
                                                                       order[start:start + opts.batch_size]])
                    feats = _augment(feats, frames, opts, rng)
                    lp, lengths = model(feats.to(device), frames.to(device))
                    loss = ctc(rearrange(lp, "b t v -> t b v"), targets.to(device), lengths, target_lengths.to(device))
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), opts.grad_clip)
                    optimizer.step()
                    step += 1
                    recent = (recent + [float(loss.detach())])[-20:]
                    bar.update(1)
                    postfix = {"loss": f"{np.mean(recent):.3f}"}
                    if eval_set and time.monotonic() - last_eval > opts.eval_seconds:
                        rate = evaluate(model, eval_set, vocab, opts.batch_size, device)
                        history.append({"step": step, "minutes": round((time.monotonic() - started) / 60, 3),
                                        metric: round(rate, 4)})
                        last_eval = time.monotonic()
                    if history:
                        postfix[f"valid_{metric}"] = f"{history[-1][metric]:.3f}"
                    if opts.max_minutes is not None:
                        postfix["budget"] = f"{(time.monotonic() - started) / 60:.1f}/{opts.max_minutes:g} min"
                    bar.set_postfix(postfix, refresh=False)
                else:
                    continue
                break
        finally:
            bar.close()
        minutes = (time.monotonic() - started) / 60
        heldout = {name: {metric: round(evaluate(model, items, vocab, opts.batch_size, device), 4)
                          if items else None, "utterances": len(items)} for name, items in held.items()}
    finally:
        torch.set_num_threads(previous_threads)

    label = f"ctc-{opts.units} (offline, trained on {manifest_path})"
    info = {
        "format": FORMAT, "kind": "ctc", "units": opts.units, "label": label, "vocab": vocab,
        "front_end": dataclasses.asdict(front), "model": dataclasses.asdict(config),
        "parameters": sum(p.numel() for p in model.parameters()),
        "training": {"manifest": str(manifest_path), "train_utterances": len(train_items), "steps": step,
                     "minutes": round(minutes, 3), "train_loss": float(np.mean(recent)) if recent else None,
                     "metric": metric, "heldout": heldout, "history": history,
                     "options": dataclasses.asdict(opts)},
        "semlat_version": semlat.__version__,
    }
    with atomic_dir(out_path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp / WEIGHTS))
        (tmp / JUDGE_JSON).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out_path
