"""Recipe ``semantic_vocoder_gan``: Flow2GAN's second stage for a SemanticVocoder generator.

A flow-matching vocoder trained by ``semantic_vocoder`` predicts the clean waveform; where the latents leave
the phase open that estimate shrinks toward zero, so a short-trained one renders events far too quietly and
needs many steps. Flow2GAN fine-tunes such a model as a **few-step generator** with GAN losses: this recipe
starts from a trained SemanticVocoder (``init``: its folder or run; the frozen encoder and the generator's
architecture and weights come from there, ``model`` is not set by hand), unrolls ``steps`` Euler steps of
:meth:`~semlat.vocoders.flow_vocoder.FlowVocoder.sample` from fresh noise
(:class:`~semlat.vocoders.flow_vocoder.FewStepVocoder`, gradients through every step) and trains it with the
GAN step every vocoder here shares (:class:`~semlat.training.recipes.gan.GANRecipe`):

* discriminator: MPD + multi-resolution STFT discriminator (BigVGAN's, ``discriminator.channel_mult``), LSGAN;
* generator: ``loss.mel`` x the multi-scale log-mel L1 (DAC's seven scales at 24 kHz) + ``loss.adversarial``
  x LSGAN + ``loss.feature_matching`` x HiFi-GAN's feature matching; until ``loss.disc_start_step`` the
  reconstruction terms alone (a level-true start before the discriminator joins); ``loss.level`` > 0 adds
  that weight x the frame-level L1 (:class:`~semlat.losses.level.FrameLevelLoss`: log10 RMS of 1024-sample
  frames), which weighs a tonal frame's level error about twice as much as the log-mel L1 does (most of its
  bands sit at the floor); ``small`` sets 15.

Real audio is the crop at its own level (no peak normalisation: the latents carry the level, and the decode
must keep it). Latents come from the frozen encoder as in ``semantic_vocoder`` (``latent_noise`` as there).
Validation is ``semantic_vocoder``'s (flow loss, ``mel_distance@N`` and ``level_gap_db@N`` at ``valid_steps``);
the export is a ``semantic_vocoder`` space whose default decode is this recipe's ``steps`` and ``schedule``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from semlat.autoencoders.semantic_vocoder import SemanticVocoder
from semlat.checkpoints import load_model_of_type
from semlat.errors import ConfigError
from semlat.losses.level import FrameLevelLoss
from semlat.losses.mel import MultiScaleMelLoss
from semlat.semantic.dasheng import Dasheng
from semlat.training.recipes.bigvgan import BigVGANDiscriminator, BigVGANDiscriminatorConfig, feature_loss
from semlat.training.recipes.gan import GANRecipe, Term
from semlat.training.recipes.semantic_vocoder import SemanticVocoderRecipe, check_schedule, check_vocoder_settings
from semlat.training.settings import AudioDataConfig, EMAConfig, OptimizerConfig, TrainConfig
from semlat.vocoders.flow_vocoder import FewStepVocoder, FlowVocoder, FlowVocoderConfig


@dataclass
class VocoderGANLossConfig:
    """Generator loss weights (BigVGAN-v2: multi-scale mel 15, feature matching 2, adversarial 1), the
    frame-level term (``level``, off here, 15 in ``small``) and the start without the discriminator
    (``disc_start_step``)."""

    mel: float = 15.0
    feature_matching: float = 2.0
    adversarial: float = 1.0
    level: float = 0.0
    disc_start_step: int = 0

    def validate(self, where: str) -> None:
        if min(self.mel, self.feature_matching, self.adversarial, self.level) < 0 or self.disc_start_step < 0:
            raise ConfigError(f"{where}: loss weights and disc_start_step must be >= 0")


def _optim() -> OptimizerConfig:
    return OptimizerConfig(lr=1e-4, betas=(0.8, 0.99), weight_decay=0.01, grad_clip=100.0, schedule="constant")


@dataclass
class SemanticVocoderGANRecipeConfig:
    """Everything ``semlat train`` needs to fine-tune a SemanticVocoder as a few-step GAN generator."""

    recipe: str = "semantic_vocoder_gan"
    run_dir: str = "runs/semantic_vocoder_gan"
    init: str = "runs/semantic_vocoder"
    model: FlowVocoderConfig = field(default_factory=FlowVocoderConfig)  # filled from ``init``
    steps: int = 2
    schedule: str = "sine"
    valid_steps: tuple[int, ...] = (1, 2, 4)
    latent_noise: float = 0.0
    discriminator: BigVGANDiscriminatorConfig = field(default_factory=BigVGANDiscriminatorConfig)
    loss: VocoderGANLossConfig = field(default_factory=VocoderGANLossConfig)
    optim: OptimizerConfig = field(default_factory=_optim)
    optim_disc: OptimizerConfig = field(default_factory=_optim)
    data: AudioDataConfig = field(default_factory=lambda: AudioDataConfig(segment_seconds=1.0, batch_size=8))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(ema=EMAConfig(enabled=False)))

    def validate(self, where: str) -> None:
        if self.recipe != "semantic_vocoder_gan":
            raise ConfigError(f"recipe must be 'semantic_vocoder_gan' for this config, got {self.recipe!r}")
        check_schedule(self.schedule)  # here too: the other settings need the init's model, read later
        self.loss.validate("loss")


class SemanticVocoderGANRecipe(GANRecipe, SemanticVocoderRecipe):
    """The GAN step of :class:`GANRecipe` (first in the MRO: its ``train_step`` and ``optimizer_config`` win) on
    the data, latents, validation and export of :class:`SemanticVocoderRecipe` (see the module docstring)."""

    name = "semantic_vocoder_gan"
    Config = SemanticVocoderGANRecipeConfig

    def __init__(self, config: SemanticVocoderGANRecipeConfig, trainer):
        self._init_state: dict[str, torch.Tensor] | None = None
        super().__init__(config, trainer)
        check_vocoder_settings(config)  # needs the init's model config, so after loading it
        self.mel_loss = MultiScaleMelLoss(sample_rate=config.model.sampling_rate).to(trainer.device)
        self.level_loss = FrameLevelLoss()

    def load_encoder(self) -> tuple[Dasheng, Path]:
        """The ``init`` SemanticVocoder's encoder; its generator's config becomes ``model`` (a ``model`` set
        by hand that differs from it is an error) and its weights start the generator."""
        space, _, folder = load_model_of_type(self.config.init, SemanticVocoder, "semantic_vocoder", "a SemanticVocoder",
                                              "train one with `semlat train semantic_vocoder/small`")
        generator: FlowVocoder = space.generator
        given = self.config.model
        if given != FlowVocoderConfig() and given != generator.config:
            raise ConfigError(f"{folder}: model is taken from init; leave it unset (the given model differs from "
                              "the init's generator)")
        self.config.model = generator.config
        self._init_state = {k: v.detach().clone() for k, v in generator.state_dict().items()}
        return space.encoder, folder

    def flow_vocoder(self, model: nn.Module) -> FlowVocoder:
        return model.vocoder

    def build_modules(self) -> dict[str, nn.Module]:
        vocoder = FlowVocoder(self.config.model)
        vocoder.load_state_dict(self._init_state)  # strict: the init's own config built it
        return {"generator": FewStepVocoder(vocoder, self.config.steps, self.config.schedule),
                "discriminator": BigVGANDiscriminator(self.config.discriminator)}

    # ------------------------------------------------------------------ GAN hooks
    def generator_input(self, batch: dict[str, Any], real: torch.Tensor) -> torch.Tensor:
        """The frozen encoder's latents ``[B, D, F]`` of the crops (noised per ``latent_noise``)."""
        return self.augment(self.latents(real, batch["length"].to(real.device)))

    def reconstruction_terms(self, batch, out, fake, real) -> list[Term]:
        fake, real, weights = fake.float(), real.float(), self.config.loss
        with torch.autocast(fake.device.type, enabled=False):
            terms: list[Term] = [("mel", self.mel_loss(fake, real), weights.mel)]
            if weights.level:
                terms.append(("level", self.level_loss(fake, real), weights.level))
            return terms

    def feature_matching(self, fake_maps, real_maps) -> torch.Tensor:
        return feature_loss(fake_maps, real_maps)
