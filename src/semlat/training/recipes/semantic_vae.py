"""Recipe ``semantic_vae``: the waveform VAE plus alignment to a frozen teacher (Semantic-VAE).

The generator loss of ``wave_vae`` gains ``alignment.weight * L_align`` (see
:mod:`semlat.semantic.alignment`). As published: teacher WavLM-Large layer 23, features
interpolated to the 40 Hz latent, projected by the regulator (``projectors``, part of the VAE's
checkpoint, unused at inference) and pulled to the *sampled* latent by negative cosine, weight 1.

Teacher features come from a cache (``alignment.cache``, made by ``semlat features extract``; it
must match ``alignment.teacher``), from the training shards themselves (``semlat data shard --features``: each
cut carries its features, so a streamed run never looks an utterance up in a cache's index; ``alignment.cache``
then serves the validation items only) or from the teacher run online on each training crop. With
``alignment.weight: 0`` (or no teacher) this is the vanilla VAE.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from einops import rearrange
from torch import nn
from torch.utils.data import Dataset

from semlat.autoencoders.wave_vae import RegulatorConfig, WaveVAE
from semlat.data.datasets import AudioCropDataset
from semlat.data.manifest import Manifest
from semlat.data.shards import CutFeatures, ShardSet, cut_fields, is_shard_folder
from semlat.errors import ConfigError
from semlat.semantic.alignment import (
    AlignmentConfig,
    LatentToTeacher,
    TeacherPCA,
    adaptive_weight,
    distance_matrix_loss,
    frame_loss,
    frame_mask,
    interpolate_features,
    latent_valid_frames,
    mean_cosine,
)
from semlat.training.logging import RunLogger
from semlat.training.recipes.wave_vae import WaveVAERecipe, WaveVAERecipeConfig
from semlat.training.settings import OptimizerConfig


@dataclass
class SemanticVAERecipeConfig(WaveVAERecipeConfig):
    """The ``wave_vae`` config plus ``alignment``."""

    recipe: str = "semantic_vae"
    run_dir: str = "runs/semantic_vae"
    alignment: AlignmentConfig = field(default_factory=AlignmentConfig)

    def validate(self, where: str) -> None:
        if self.recipe != "semantic_vae":
            raise ConfigError(f"recipe must be 'semantic_vae' for this config, got {self.recipe!r}")
        self.check_audio_settings()


class TeacherCropDataset(Dataset):
    """An :class:`AudioCropDataset` whose items also carry the cached teacher features of the crop:
    ``teacher [F, dim]`` (zero-padded) and ``teacher_frames`` (valid frames)."""

    def __init__(self, crops: AudioCropDataset, cache):
        self.crops, self.cache = crops, cache
        self.seconds = crops.segment / crops.sample_rate

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, key):
        item = self.crops[key]
        return with_teacher(item, self.crops.manifest[item["index"]].audio, self.cache, self.seconds,
                            self.crops.sample_rate)


def with_teacher(item: dict, audio: str, cache, seconds: float, sample_rate: int) -> dict:
    """``item`` (a crop of the manifest line whose ``audio`` is given) with the cached teacher features of the
    crop: ``teacher [F, dim]`` (zero-padded) and ``teacher_frames`` (valid frames)."""
    features, valid = cache.crop_seconds(audio, item["offset"], seconds)
    item["teacher"] = rearrange(features, "d t -> t d")
    item["teacher_frames"] = min(valid, math.ceil(item["length"] / sample_rate * cache.frame_rate))
    return item


def carried_shard_crop(cut, seed: int, *, make, frame_rate: float, seconds: float, sample_rate: int) -> dict:
    """A shard's crop (``make``) with the teacher features its cut carries (semlat data shard --features)."""
    return with_teacher(make(cut, seed), cut_fields(cut)["source"], CutFeatures(cut, frame_rate), seconds, sample_rate)


def cached_shard_crop(cut, seed: int, *, make, cache, seconds: float, sample_rate: int) -> dict:
    """A shard's crop (``make``) with its cached teacher features, found by the manifest path the shard keeps."""
    return with_teacher(make(cut, seed), cut_fields(cut)["source"], cache, seconds, sample_rate)


class SemanticVAERecipe(WaveVAERecipe):
    """Waveform VAE + GAN + alignment to a teacher (online or cached)."""

    name = "semantic_vae"
    Config = SemanticVAERecipeConfig

    def __init__(self, config: SemanticVAERecipeConfig, trainer):
        super().__init__(config, trainer)
        align = config.alignment
        self.teacher = self.cache = None
        self.teacher_dim = self.teacher_rate = None
        #: the teacher features the training shards carry (semlat data shard --features): no cache lookups
        self.shard_features: dict[str, Any] | None = None
        if align.enabled:
            from semlat.semantic.feature_cache import FeatureCache, check_features

            if is_shard_folder(config.data.train):
                self.shard_features = ShardSet(config.data.train).features
            if self.shard_features is not None:
                carried = self.shard_features
                check_features(f"shards {config.data.train}", carried["teacher"], carried["frame_rate"],
                               carried["dim"], align.teacher)
                self.teacher_dim, self.teacher_rate = int(carried["dim"]), float(carried["frame_rate"])
                if align.cache is not None:  # (then only the validation items' features are looked up there)
                    self.cache = FeatureCache(align.cache)
                    self.cache.check(align.teacher, self.teacher_rate, self.teacher_dim)
                elif trainer.dist.rank == 0:
                    print(f"[semantic_vae] teacher features from the shards of {config.data.train}; validation "
                          "reports no alignment_cosine (set alignment.cache to a feature cache of data.valid)")
            elif align.cache is not None:
                self.cache = FeatureCache(align.cache)
                self.cache.check(align.teacher)
                self.teacher_dim, self.teacher_rate = self.cache.dim, self.cache.frame_rate
            else:
                from semlat.models import load_teacher

                self.teacher = load_teacher(align.teacher, device=trainer.device)
                self.teacher_dim, self.teacher_rate = self.teacher.dim, self.teacher.frame_rate
            if align.direction == "teacher_pca":
                if self.cache is None and self.shard_features is None:
                    raise ConfigError("alignment.direction=teacher_pca fits the teacher's components on cached "
                                      "features: set alignment.cache (semlat features extract) or train from shards "
                                      "that carry them (semlat data shard --features)")
                if align.pca_channels > config.model.latent_dim:
                    raise ConfigError(f"alignment.pca_channels={align.pca_channels} is more than the latent's "
                                      f"{config.model.latent_dim} channels")
            if align.direction == "teacher_to_latent":
                regulator = config.model.regulator
                if regulator is None:  # fill in the published projector for this teacher
                    config.model.regulator = RegulatorConfig(teacher_dim=self.teacher_dim, num_blocks=2)
                    config.model.regulator.channels = 2 * config.model.latent_dim
                elif regulator.teacher_dim != self.teacher_dim:
                    raise ConfigError(f"model.regulator.teacher_dim={regulator.teacher_dim} but the teacher "
                                      f"{align.teacher} gives {self.teacher_dim}-dim features")

    # ------------------------------------------------------------------ modules and data
    def _model_config(self):
        cfg = self.config.model
        keep = self.config.alignment.enabled and self.config.alignment.direction == "teacher_to_latent"
        return cfg if keep else dataclasses.replace(cfg, regulator=None)

    def build_modules(self) -> dict[str, nn.Module]:
        modules = super().build_modules()
        modules["generator"] = WaveVAE(self._model_config())
        align = self.config.alignment
        if align.enabled and align.direction == "latent_to_teacher":
            modules["projector"] = LatentToTeacher(self.config.model.latent_dim, self.teacher_dim,
                                                   align.projector_hidden)
        if align.enabled and align.direction == "teacher_pca":
            modules["pca"] = self._fit_pca()
        return modules

    def _fit_pca(self) -> TeacherPCA:
        """The teacher's components, fitted on the features of the first ``alignment.pca_fit_items`` training
        utterances (:meth:`_pca_sample`). Deterministic, so each rank fits the same; a resumed run reloads them
        with the checkpoint."""
        align = self.config.alignment
        pca = TeacherPCA(self.teacher_dim, align.pca_channels)
        pca.fit(torch.cat(self._pca_sample(align.pca_fit_items)))
        return pca

    def _pca_sample(self, count: int) -> list[torch.Tensor]:
        """The teacher features ``[T, dim]`` of the first ``count`` training utterances: those the training shards
        carry, in ``shards.json``'s order, or the cache's (manifest order)."""
        align, data = self.config.alignment, self.config.data
        if self.shard_features is not None:
            shard_set = ShardSet(data.train)
            out: list[torch.Tensor] = []
            for shard in shard_set.shards:
                for cut in shard_set.cuts(shard):
                    out.append(torch.from_numpy(cut.load_teacher()).float())
                    if len(out) >= count:
                        return out
            return out
        ids = [item["id"] for item in self.cache.items]
        if not is_shard_folder(data.train):
            wanted = {u.audio for u in self.manifest(data.train, data.train_split)}
            ids = [i for i in ids if i in wanted]
        if not ids:
            raise ConfigError(f"alignment.cache {align.cache} holds none of the training utterances")
        return [rearrange(self.cache.get(i).float(), "d t -> t d") for i in ids[:count]]

    def optimizer_config(self, name: str) -> OptimizerConfig | None:
        return self.config.optim if name == "projector" else super().optimizer_config(name)  # pca: fixed

    def shard_items(self, make):
        data, rate = self.config.data, self.config.model.sample_rate
        if self.shard_features is not None:
            return super().shard_items(functools.partial(
                carried_shard_crop, make=make, frame_rate=self.teacher_rate, seconds=data.segment_seconds,
                sample_rate=rate))
        if self.cache is None:
            return super().shard_items(make)
        return super().shard_items(functools.partial(
            cached_shard_crop, make=make, cache=self.cache, seconds=data.segment_seconds, sample_rate=rate))

    def crop_dataset(self, manifest: Manifest, seconds: float, min_rms_db: float | None) -> Dataset:
        crops = super().crop_dataset(manifest, seconds, min_rms_db)
        return TeacherCropDataset(crops, self.cache) if self.cache is not None else crops

    # ------------------------------------------------------------------ alignment
    def _teacher_features(self, batch: dict[str, Any], real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features [B, T_g, D_t], valid teacher frames [B])`` from the batch (cache) or the teacher."""
        if "teacher" in batch:  # cached, or carried by the shards
            return self.trainer.to_device(batch["teacher"]), batch["teacher_frames"].to(real.device)
        features, frames = self.teacher.extract(real, self.config.model.sample_rate, batch["length"])
        return features.to(real.device), frames.to(real.device)

    def _pair(self, generator: nn.Module, projector: nn.Module | None, latents: torch.Tensor,
              batch: dict[str, Any], real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(a, b, mask)``: the two ``[B, T, C]`` sequences alignment compares, and the valid frames.

        ``generator`` supplies the regulator (teacher_to_latent), ``projector`` the latent-to-teacher MLP.
        """
        z = rearrange(latents, "b d t -> b t d").float()
        length = z.shape[1]
        features, teacher_frames = self._teacher_features(batch, real)
        hop = self.config.model.sample_rate / generator.frame_rate
        audio_frames = torch.ceil(batch["length"].to(real.device) / hop).to(torch.long)
        valid = torch.minimum(latent_valid_frames(teacher_frames, self.teacher_rate, generator.frame_rate, length),
                              audio_frames)
        mask = frame_mask(valid, length)
        if self.config.alignment.direction == "teacher_to_latent":
            target, _ = generator.projectors(features, valid, valid.new_full(valid.shape, length))
            return z, target.float(), mask
        if self.config.alignment.direction == "teacher_pca":
            pca = self.trainer.raw["pca"]
            return z[..., : self.config.alignment.pca_channels], pca(interpolate_features(features, length)), mask
        return projector(z), interpolate_features(features, length), mask

    def extra_generator_losses(self, batch, out, real, reconstruction):
        align = self.config.alignment
        if not align.enabled:
            return []
        generator = self.trainer.unwrapped("generator")
        projector = self.trainer.module("projector") if "projector" in self.trainer.modules else None
        a, b, mask = self._pair(generator, projector, out["z"], batch, real)
        if align.loss != "vf":
            return [("alignment", frame_loss(a, b, mask, align.loss), align.weight)]
        vf = frame_loss(a, b, mask, "margin_cosine", align.vf_margin_cos) + \
            distance_matrix_loss(a, b, mask, align.vf_margin_dist)
        weight: float | torch.Tensor = align.weight
        if align.vf_adaptive:
            weight = align.weight * adaptive_weight(reconstruction, vf, last_encoder_weight(generator),
                                                    align.vf_max_weight)
        return [("alignment", vf, weight)]

    def validate(self, step: int, model: nn.Module, logger: RunLogger) -> dict[str, float]:
        metrics = super().validate(step, model, logger)
        if self.config.alignment.enabled and (self.teacher is not None or self.cache is not None):
            batch = self._validation_batch()
            real = self.trainer.to_device(batch["audio"])
            mu, _ = model.posterior(torch.nn.functional.pad(real, (0, (-real.shape[-1]) % model.hop_length)))
            projector = self.trainer.unwrapped("projector") if "projector" in self.trainer.raw else None
            a, b, mask = self._pair(model, projector, mu, batch, real)
            metrics["alignment_cosine"] = float(mean_cosine(a, b, mask))
        return metrics


def last_encoder_weight(model: WaveVAE) -> torch.Tensor:
    """The weight (``v`` under weight norm) of the encoder's last convolution, VA-VAE's anchor for the
    adaptive alignment weight."""
    last = [m for m in model.encoder.modules() if isinstance(m, nn.Conv1d)][-1]
    parametrized = getattr(last, "parametrizations", None)
    return parametrized.weight.original1 if parametrized is not None else last.weight
