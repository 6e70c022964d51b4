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
:func:`~semlat.text.units.split_phonemes` (stress and word boundaries dropped);
``chars`` are the characters of the normalised ``text`` (:func:`~semlat.evaluation.judges.split_chars`),
with ``" "`` as a token between words. The vocabulary is every unit of the training split, sorted;
index 0 is the CTC blank.

Training is the ``judge`` recipe of the one Trainer (``semlat train judge/default`` or the
``semlat judge train`` wrapper; :mod:`semlat.training.recipes.judge`): ``torch.nn.CTCLoss`` (blank 0,
``zero_infinity``), AdamW, linear warm-up then cosine decay over the step budget, SpecAugment-style
frequency and time masks, utterances batched whole; validation logs the held-out error rate (greedy
decoding, corpus-level edit distance) on the ``valid`` split.

Output: an ordinary model folder (``model_type: ctc_judge``, :class:`CTCJudgeModel`) whose
``config.json`` holds the units, vocabulary, front-end, sizes and label, and under ``training`` the
``valid`` and ``test`` figures. ``ctc:PATH`` loads it (PATH may also be the training run, standing
for its latest checkpoint, or a judge folder of semlat 0.1 with ``judge.json``).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from semlat.audio.spectral import MelConfig, MelSpectrogram
from semlat.checkpoints import legacy_layout, load_model_of_type
from semlat.config import FromConfig, from_dict, read_json_object
from semlat.errors import CheckpointError, ConfigError
from semlat.evaluation.ctc_decoding import ctc_forced_align, greedy_decode, min_frames  # noqa: F401 (re-exported)
from semlat.evaluation.error_rates import JUDGE_RATE, as_batch, error_rate
from semlat.text.units import JUDGE_UNITS, detokenize, tokenize

FORMAT = "semlat-ctc-judge/1"
JUDGE_JSON = "judge.json"
WEIGHTS = "model.safetensors"
BLANK = "<blank>"
UNITS = JUDGE_UNITS
FEATURE_EPS = 1e-5


# --- units ----------------------------------------------------------------------------------

def source_text(utterance: Any, units: str) -> str | None:
    return utterance.phonemes if units == "phonemes" else utterance.text


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

    def hidden(self, features: torch.Tensor, lengths: torch.Tensor,
               layers: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's output before the classifier: ``h [B, T', C]`` (layer-normed) and ``lengths' [B]``.

        With ``layers``, the mean of those layers' outputs instead (0: the input conv's, ``k``: the ``k``-th
        residual block's, not normed; padded frames zero)."""
        out_lengths = self.output_lengths(lengths)
        x = F.gelu(self.conv_in(features))
        mask = (torch.arange(x.shape[-1], device=x.device)[None] < out_lengths[:, None]).to(x.dtype)
        mask = rearrange(mask, "b t -> b 1 t")
        x = x * mask
        outputs = [x]
        for block in self.blocks:
            x = block(x, mask)
            outputs.append(x)
        if layers is not None:
            chosen = torch.stack([outputs[k] for k in layers]).mean(0)
            return rearrange(chosen, "b c t -> b t c"), out_lengths
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
        source = source_text(utterance, judge.units)
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


@dataclass
class CTCJudgeConfig:
    """What a judge model folder's ``config`` holds: the units, the vocabulary (index 0 the blank), the
    label its figures carry, the front-end (:class:`FrontEnd` fields) and the recognizer's sizes
    (:class:`ModelConfig` fields)."""

    units: str
    vocab: list[str]
    label: str
    front_end: dict[str, Any]
    model: dict[str, Any]


class CTCJudgeModel(FromConfig, nn.Module):
    """The offline judge as an ordinary model folder (``model_type: ctc_judge``): a :class:`CTCRecognizer`
    (``recognizer.*``) and its :class:`CTCJudgeConfig`. ``forward(features, lengths)`` as the recognizer."""

    def __init__(self, config: CTCJudgeConfig):
        super().__init__()
        if config.units not in UNITS:
            raise ConfigError(f"ctc_judge config: units must be one of {', '.join(UNITS)}, got {config.units!r}")
        self.config = config
        self.recognizer = CTCRecognizer(from_dict(ModelConfig, config.model, "ctc_judge config 'model'"))
        if self.recognizer.config.vocab_size != len(config.vocab):
            raise ConfigError(f"ctc_judge config: {len(config.vocab)} vocabulary entries for a "
                              f"{self.recognizer.config.vocab_size}-way classifier")

    config_class = CTCJudgeConfig
    config_where = "ctc_judge config"

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.recognizer(features, lengths)

    def judge(self, info: dict[str, Any] | None = None, device: str | torch.device = "cpu") -> CTCJudge:
        """This model as a :class:`CTCJudge` (eval mode, on ``device``)."""
        cfg = self.config
        return CTCJudge(self.recognizer, cfg.vocab, cfg.units, from_dict(FrontEnd, cfg.front_end, "front_end"),
                        cfg.label, info, device)


def read_judge_info(folder: str | Path) -> dict[str, Any]:
    """``judge.json`` of a judge folder of semlat 0.1, validated; one-line ConfigError otherwise."""
    folder = Path(folder).expanduser()
    path = folder / JUDGE_JSON
    if not path.is_file():
        raise ConfigError(f"{folder} is not a CTC judge (no {JUDGE_JSON}; make one with `semlat judge train`)")
    info = read_json_object(path, "judge description")
    if info.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a {FORMAT} judge")
    return info


def load_judge(folder: str | Path, *, device: str | torch.device = "cpu") -> CTCJudge:
    """The judge at ``folder``: a ``ctc_judge`` model folder, a ``judge`` training run (its latest
    checkpoint), or a folder of semlat 0.1 (``judge.json``). Nothing is unpickled."""
    given = Path(folder).expanduser()
    if legacy_layout(given) == JUDGE_JSON:
        return _load_legacy_judge(given, device)
    try:
        model, meta, _ = load_model_of_type(given, CTCJudgeModel, "ctc_judge", "a CTC judge", "make one with `semlat judge train`")
    except CheckpointError as err:
        raise ConfigError(str(err)) from None
    return model.judge(meta, device)


def _load_legacy_judge(folder: Path, device: str | torch.device) -> CTCJudge:
    from safetensors.torch import load_file

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


# --- training helpers (the ``judge`` recipe: semlat.training.recipes.judge) ---------------------

@dataclass
class Item:
    """One utterance: normalised features ``[M, T]`` and its target ids."""

    features: torch.Tensor
    targets: list[int]
    reference: list[str]


def load_split(manifest: Any, units: str, features: Features, index: dict[str, int] | None,
                max_seconds: float, progress: bool, desc: str) -> list[Item]:
    """Load and featurise every utterance with a transcript (units missing from ``index`` are dropped
    from the targets but kept in the reference)."""
    from tqdm import tqdm

    from semlat.audio.io import load_audio

    items = []
    for i in tqdm(range(len(manifest)), desc=desc, unit="utt", disable=not progress, dynamic_ncols=True):
        source = source_text(manifest[i], units)
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
        items.append(Item(feats[0], targets, reference))
    return items


def collate_items(items: Sequence[Item]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(features [B, M, T], frames [B], targets [sum L], target_lengths [B])``."""
    frames = torch.tensor([it.features.shape[-1] for it in items])
    feats = torch.zeros(len(items), items[0].features.shape[0], int(frames.max()))
    for i, it in enumerate(items):
        feats[i, :, :it.features.shape[-1]] = it.features
    targets = torch.tensor([k for it in items for k in it.targets], dtype=torch.long)
    return feats, frames, targets, torch.tensor([len(it.targets) for it in items])


def augment(feats: torch.Tensor, frames: torch.Tensor, opts: Any, rng: np.random.Generator) -> torch.Tensor:
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
def evaluate(model: nn.Module, items: Sequence[Item], vocab: Sequence[str], batch_size: int,
             device: torch.device) -> float:
    """Corpus error rate (greedy decoding, edit distance against the full references) on ``items``."""
    was_training = model.training
    model.eval()
    hyps, refs = [], []
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        feats, frames, _, _ = collate_items(chunk)
        lp, lengths = model(feats.to(device), frames.to(device))
        for i, it in enumerate(chunk):
            hyps.append([vocab[k] for k in greedy_decode(lp[i, :int(lengths[i])])])
            refs.append(it.reference)
    model.train(was_training)
    return float(error_rate(hyps, refs)) if refs else math.nan
