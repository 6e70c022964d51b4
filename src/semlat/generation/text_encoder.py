"""The frozen caption encoder of text-to-audio: a T5 encoder from a local transformers folder.

``T5CaptionEncoder(folder)(captions) -> (hidden [B, L, d_model] float32, mask [B, L] bool)``: the folder's
tokenizer (padding, truncation to ``max_length`` tokens) and ``T5EncoderModel``'s last hidden state in fp32
with autocast off, as the reference runs FLAN-T5-large. Nothing is downloaded: the folder is what
``save_pretrained`` writes (``config.json``, weights, tokenizer files). The projection to the backbone's context
width is part of the text-to-audio model (it trains), not of this frozen encoder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from semlat.errors import ConfigError


class T5CaptionEncoder:
    """See the module docstring. ``dim`` is the encoder's ``d_model``; ``label`` names the folder."""

    def __init__(self, folder: str | os.PathLike, *, device: str | torch.device = "cpu", max_length: int = 512):
        path = Path(folder).expanduser()
        if not (path / "config.json").is_file():
            raise ConfigError(f"{path}: not a transformers T5 folder (no config.json); give the local folder of a "
                              "T5 encoder such as flan-t5-large (nothing is downloaded)")
        from transformers import AutoTokenizer, T5EncoderModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a per-load progress bar of a frozen encoder is noise
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            self.model = T5EncoderModel.from_pretrained(str(path), local_files_only=True).to(device).eval()
        except (OSError, ValueError) as err:
            raise ConfigError(f"{path}: cannot load a T5 encoder and its tokenizer: {str(err).splitlines()[0]}") from None
        self.model.requires_grad_(False)
        self.folder, self.device, self.max_length = path.resolve(), torch.device(device), max_length
        self.dim = int(self.model.config.d_model)
        self.label = f"T5 encoder {path.name} ({self.dim}-d)"

    @torch.no_grad()
    def __call__(self, captions: Sequence[str]) -> tuple[Tensor, Tensor]:
        for caption in captions:
            if not caption or not caption.strip():
                raise ConfigError("empty caption: give a description of the sound")
        tokens = self.tokenizer(list(captions), padding=True, truncation=True, max_length=self.max_length,
                                return_tensors="pt")
        ids, mask = tokens["input_ids"].to(self.device), tokens["attention_mask"].to(self.device)
        with torch.autocast(self.device.type, enabled=False):
            hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        return hidden.float(), mask.bool()


def make_offline_t5(out: str | os.PathLike, captions: Sequence[str], *, d_model: int = 64, layers: int = 2,
                    heads: int = 4, seed: int = 0) -> Path:
    """Write a **random-weight** T5 encoder with a word-level tokenizer over ``captions``' words (lower-cased,
    punctuation split off) to ``out``: the stand-in text encoder where no pretrained T5 can be downloaded. Its
    embeddings tell the words apart but carry no meaning learned from text; figures made with it say so."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    words: set[str] = set()
    splitter = pre_tokenizers.Whitespace()
    for caption in captions:
        words.update(w for w, _ in splitter.pre_tokenize_str(caption.lower()))
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for word in sorted(words):
        vocab[word] = len(vocab)
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = splitter
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    torch.manual_seed(seed)
    config = T5Config(vocab_size=len(vocab), d_model=d_model, d_kv=d_model // heads, d_ff=2 * d_model,
                      num_layers=layers, num_heads=heads, feed_forward_proj="gated-gelu", pad_token_id=0,
                      eos_token_id=1, decoder_start_token_id=0)
    model = T5EncoderModel(config).eval()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    fast.save_pretrained(str(out))
    (out / "SEMLAT_OFFLINE_T5.txt").write_text("random-weight T5 encoder written by semlat (make_offline_t5): "
                                               "not a pretrained text encoder\n")
    return out
