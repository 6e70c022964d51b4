"""Judges for generation metrics: an ASR model (WER / CER / PER) and a speaker model (SIM).

Every judge has a ``label`` that names what produced a figure; reports must print it next to the
figure, so a number from an offline judge is never mistaken for one from Whisper.

=====================  ==========================================================  =============
spec                   judge                                                       needs
=====================  ==========================================================  =============
``whisper:/path``      :class:`WhisperJudge`: ``WhisperForConditionalGeneration``   a local folder
                       + ``WhisperProcessor``, greedy decoding, English by default
``ctc:/path``          :class:`~semlat.evaluation.ctc_judge.CTCJudge`, the offline   ``semlat judge
                       recognizer trained by ``semlat judge train`` (phonemes or     train``
                       characters)
``wavlm-sv:/path``     :class:`WavLMSpeakerJudge`: ``WavLMForXVector`` x-vectors     a local folder
``resemblyzer``        :class:`ResemblyzerJudge`: resemblyzer's bundled GE2E         nothing
                       encoder (offline)
=====================  ==========================================================  =============

Nothing is downloaded: Hugging Face folders load with ``local_files_only=True``.

Error rates (:func:`wer`, :func:`cer`, :func:`phoneme_error_rate`) are *corpus-level*: the sum of
Levenshtein edits (substitutions + deletions + insertions) over all pairs divided by the number of
reference units, so long references weigh more (the convention of jiwer and the TTS papers). They
return a :class:`~semlat.evaluation.metrics.Score`, NaN with a reason when the references hold no
unit. Text normalisation (:func:`normalize_text`): Unicode NFKC, lower case, curly apostrophes
made straight, every character that is not a letter, digit, apostrophe or whitespace becomes a
space (so "well-known" is two words), apostrophes not inside a word are dropped, whitespace
collapsed. WER counts words of the normalised text; CER counts its characters, single spaces
between words included (as jiwer's ``cer`` does). PER counts phoneme symbols from
:func:`split_phonemes` (stress marks and word boundaries are ignored).
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from semlat.errors import ConfigError, first_line
from semlat.evaluation.error_rates import (  # noqa: F401 (re-exported: the judges' error rates)
    JUDGE_RATE,
    as_batch,
    cer,
    edit_distance,
    error_rate,
    phoneme_error_rate,
    wer,
)
from semlat.evaluation.metrics import Score, undefined
from semlat.text.units import IPA_MODIFIERS, STRESS_MARKS, normalize_text, split_chars, split_phonemes  # noqa: F401

# --- protocols ------------------------------------------------------------------------------

@runtime_checkable
class ASRJudge(Protocol):
    """A recognizer: ``transcribe(audio, sample_rate) -> list[str]`` for one ``[N]`` signal or a list.

    ``units`` says what the strings hold: ``"text"`` (score with :func:`wer` / :func:`cer`),
    ``"phonemes"`` (space-separated IPA symbols, :func:`phoneme_error_rate`) or ``"chars"``.
    """

    label: str
    units: str

    def transcribe(self, audio: Any, sample_rate: int) -> list[str]: ...


@runtime_checkable
class SpeakerJudge(Protocol):
    """A speaker model: ``embed(audio [N], sample_rate) -> [D]`` float tensor; ``similarity`` -> cosine."""

    label: str

    def embed(self, audio: Any, sample_rate: int) -> torch.Tensor: ...

    def similarity(self, estimate: Any, reference: Any, sample_rate: int) -> Score: ...


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def _folder(path: str | Path, kind: str) -> Path:
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"{kind} judge: {folder} is not a folder (judges load from local folders)")
    return folder


class _CosineSimilarity:
    """``similarity`` from ``embed``: the cosine of two embeddings, NaN with a reason when undefined."""

    def embed(self, audio: Any, sample_rate: int) -> torch.Tensor:
        raise NotImplementedError

    def similarity(self, estimate: Any, reference: Any, sample_rate: int) -> Score:
        """Cosine of the embeddings of ``estimate`` and ``reference`` (-1..1; 1 is the same voice)."""
        embeddings = {}
        for which, signal in (("reference", reference), ("estimate", estimate)):
            try:
                embeddings[which] = self.embed(signal, sample_rate).double()
            except ValueError as err:
                return undefined(f"{which}: {err}")
        e, r = embeddings["estimate"], embeddings["reference"]
        norm = float(e.norm() * r.norm())
        if not norm > 0:
            return undefined("zero embedding")
        return Score(float(torch.dot(e, r)) / norm)


# --- implementations ------------------------------------------------------------------------

class WhisperJudge:
    """Whisper (any size) from a local folder through ``transformers``: greedy decoding, no timestamps.

    ``language`` (default ``"en"``) and ``task="transcribe"`` are forced when the checkpoint is
    multilingual (its generation config has ``lang_to_id``); English-only checkpoints take none.
    Each item is resampled to 16 kHz; Whisper hears at most its 30 s window (longer items are cut).
    """

    units = "text"

    def __init__(self, folder: str | Path, *, language: str | None = "en", device: str | torch.device = "cpu",
                 batch_size: int = 8, max_new_tokens: int = 128):
        import transformers

        self.folder = _folder(folder, "whisper")
        try:
            self.processor = transformers.WhisperProcessor.from_pretrained(self.folder, local_files_only=True)
            self.model = transformers.WhisperForConditionalGeneration.from_pretrained(
                self.folder, local_files_only=True).to(device).eval()
        except (OSError, ValueError, KeyError) as err:
            raise ConfigError(f"whisper judge: cannot load {self.folder}: {first_line(err)}") from None
        self.device = torch.device(device)
        self.language = language
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.label = f"whisper ({self.folder.name}, transformers {_version('transformers')})"

    @torch.no_grad()
    def transcribe(self, audio: Any, sample_rate: int) -> list[str]:
        """One ``[N]`` signal or a list -> one transcript per item (greedy, special tokens removed)."""
        signals = as_batch(audio, sample_rate)
        # start, language, task and timestamp tokens take a few of the decoder's positions
        room = int(getattr(self.model.config, "max_target_positions", 448)) - 8
        options: dict[str, Any] = {"do_sample": False, "num_beams": 1,
                                   "max_new_tokens": max(1, min(self.max_new_tokens, room))}
        if self.language and getattr(self.model.generation_config, "lang_to_id", None):
            options.update(language=self.language, task="transcribe")
        texts: list[str] = []
        for start in range(0, len(signals), self.batch_size):
            chunk = signals[start:start + self.batch_size]
            features = self.processor.feature_extractor(chunk, sampling_rate=JUDGE_RATE, return_tensors="pt")
            input_features = features.input_features.to(self.device, self.model.dtype)
            ids = self.model.generate(input_features, **options)
            if not isinstance(ids, torch.Tensor):  # a ModelOutput with .sequences
                ids = ids.sequences
            texts.extend(t.strip() for t in self.processor.batch_decode(ids, skip_special_tokens=True))
        return texts


class WavLMSpeakerJudge(_CosineSimilarity):
    """A WavLM speaker-verification model (``WavLMForXVector``, e.g. wavlm-base-plus-sv) from a local
    folder; the embedding is its x-vector ``[D]`` (float32), compared by cosine."""

    def __init__(self, folder: str | Path, *, device: str | torch.device = "cpu"):
        import transformers

        self.folder = _folder(folder, "wavlm-sv")
        try:
            self.feature_extractor = transformers.AutoFeatureExtractor.from_pretrained(
                self.folder, local_files_only=True)
            self.model = transformers.WavLMForXVector.from_pretrained(self.folder, local_files_only=True)
        except (OSError, ValueError, KeyError) as err:
            raise ConfigError(f"wavlm-sv judge: cannot load {self.folder}: {first_line(err)}") from None
        self.device = torch.device(device)
        self.model = self.model.to(self.device).eval()
        self.label = f"wavlm-sv ({self.folder.name}, transformers {_version('transformers')})"

    @torch.no_grad()
    def embed(self, audio: Any, sample_rate: int) -> torch.Tensor:
        """The x-vector ``[D]`` of one signal; ValueError (one line) for silence or under 0.1 s."""
        (x,) = as_batch(audio, sample_rate)
        if len(x) < JUDGE_RATE // 10:
            raise ValueError("too short for a speaker embedding (under 0.1 s)")
        if np.abs(x).max() < 1e-5:
            raise ValueError("silent signal")
        inputs = self.feature_extractor(x, sampling_rate=JUDGE_RATE, return_tensors="pt")
        values = inputs.input_values.to(self.device, self.model.dtype)
        embedding = self.model(input_values=values).embeddings[0]
        return embedding.float().cpu()


class ResemblyzerJudge(_CosineSimilarity):
    """resemblyzer's bundled GE2E encoder (offline), as :class:`~semlat.evaluation.metrics.SpeakerEncoder`."""

    def __init__(self, device: str | torch.device = "cpu"):
        from semlat.evaluation.metrics import SpeakerEncoder

        self.encoder = SpeakerEncoder(device)
        self.label = self.encoder.judge

    def embed(self, audio: Any, sample_rate: int) -> torch.Tensor:
        """The ``[256]`` d-vector of one signal; ValueError (one line) when it has none."""
        embedding = self.encoder.embed(audio, sample_rate)
        if isinstance(embedding, str):
            raise ValueError(embedding)  # noqa: TRY004 (a reason string: the audio has no embedding)
        return torch.from_numpy(embedding).float()


# --- specs ----------------------------------------------------------------------------------

ASR_SPECS = ("whisper:/path", "ctc:/path")
SPEAKER_SPECS = ("wavlm-sv:/path", "resemblyzer")


def _split_spec(spec: str, known: tuple[str, ...], what: str) -> tuple[str, str]:
    kind, sep, path = str(spec).partition(":")
    kind = kind.strip().lower()
    takes_path = kind != "resemblyzer"
    if kind not in {k.partition(":")[0] for k in known} or bool(sep) != takes_path or (sep and not path):
        raise ConfigError(f"unknown {what} judge {spec!r}; use one of {', '.join(known)}")
    return kind, path


def load_asr_judge(spec: str, *, device: str | torch.device = "cpu") -> ASRJudge:
    """An ASR judge from ``whisper:/path`` or ``ctc:/path``; a wrong spec is a one-line ConfigError."""
    kind, path = _split_spec(spec, ASR_SPECS, "ASR")
    if kind == "ctc":
        from semlat.evaluation.ctc_judge import load_judge  # imported on use: it brings the judge's model

        return load_judge(path, device=device)
    return WhisperJudge(path, device=device)


def load_speaker_judge(spec: str, *, device: str | torch.device = "cpu") -> SpeakerJudge:
    """A speaker judge from ``wavlm-sv:/path`` or ``resemblyzer``; a wrong spec is a one-line ConfigError."""
    kind, path = _split_spec(spec, SPEAKER_SPECS, "speaker")
    if kind == "wavlm-sv":
        return WavLMSpeakerJudge(path, device=device)
    return ResemblyzerJudge(device)
