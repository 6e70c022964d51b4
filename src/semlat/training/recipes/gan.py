"""What every GAN recipe shares: a "generator" and a "discriminator" with their own optimisers
(``config.optim`` / ``config.optim_disc``), manifests read from ``config.data``, and the training step.
The generator is called with :meth:`GANRecipe.generator_input` (the real input for an autoencoder).

The step (HiFi-GAN's, as the Semantic-VAE, DC-Speech-VAE and BigVGAN references run it):

1. discriminator: ``L_D = lsgan(D(fake.detach()), D(real))`` over every micro-batch, one optimiser step;
2. generator, with D frozen: ``L_G = sum(weight * reconstruction terms) + adversarial * lsgan_G(D(fake))
   + feature_matching * fm(D(fake), D(real)) + extra terms``, one optimiser step.

Until ``loss.disc_start_step`` the discriminator is neither trained nor used. With one micro-batch the
generator's output (and its graph) from the discriminator step is reused by the generator step; with
gradient accumulation the generator step recomputes it against the updated discriminator. A recipe
says what "real", "fake" and the reconstruction terms are through the hooks below.
"""

from __future__ import annotations

from typing import Any

import torch

from semlat.losses.adversarial import (
    discriminate_pair,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from semlat.training.settings import OptimizerConfig
from semlat.training.trainer import Recipe

#: a generator loss term: (log name, value, weight)
Term = tuple[str, torch.Tensor, "float | torch.Tensor"]


class GANRecipe(Recipe):
    """Base of the autoencoder and vocoder recipes. ``config.loss`` has ``adversarial``,
    ``feature_matching`` and ``disc_start_step``."""

    exported = "generator"

    def optimizer_config(self, name: str) -> OptimizerConfig | None:
        return {"generator": self.config.optim, "discriminator": self.config.optim_disc}.get(name)

    # ------------------------------------------------------------------ hooks
    def real_input(self, batch: dict[str, Any]) -> torch.Tensor:
        """What the generator reconstructs and the discriminator calls real (default: the audio crops)."""
        return self.trainer.to_device(batch["audio"])

    def generator_input(self, batch: dict[str, Any], real: torch.Tensor) -> Any:
        """What the generator is called with (default: ``real``, an autoencoder's input; a vocoder's conditioning
        otherwise). Computed once per micro-batch."""
        return real

    def fake_output(self, out: Any) -> torch.Tensor:
        """The generator output the discriminator judges (default: ``out["audio"]``, or ``out`` itself)."""
        return out if isinstance(out, torch.Tensor) else out["audio"]

    def reconstruction_terms(self, batch: dict[str, Any], out: Any, fake: torch.Tensor,
                             real: torch.Tensor) -> list[Term]:
        """The non-adversarial generator losses as ``(name, value, weight)``."""
        raise NotImplementedError

    def feature_matching(self, fake_maps, real_maps) -> torch.Tensor:
        return feature_matching_loss(fake_maps, real_maps)

    def extra_generator_losses(self, batch: dict[str, Any], out: Any, real: torch.Tensor,
                               reconstruction: torch.Tensor) -> list[Term]:
        """More generator terms after the adversarial ones; ``reconstruction`` is the loss so far (with
        its graph). The semantic_vae recipe adds its alignment here."""
        return []

    # ------------------------------------------------------------------ the step
    def train_step(self, batches, step: int) -> dict[str, float]:
        t, w = self.trainer, self.config.loss
        gen, disc = t.module("generator"), t.module("discriminator")
        adversarial = step >= w.disc_start_step
        reuse = len(batches) == 1
        outputs: list[Any] = [None] * len(batches)
        reals = [self.real_input(batch) for batch in batches]
        inputs = [self.generator_input(batch, real) for batch, real in zip(batches, reals, strict=True)]
        logs: dict[str, float] = {}

        def add(key: str, value: torch.Tensor) -> None:
            logs[key] = logs.get(key, 0.0) + float(value.detach()) / len(batches)

        if adversarial:
            with t.optimizer_step("discriminator"):
                for i, _ in t.micro_batches(batches, "discriminator"):
                    with t.autocast(), torch.set_grad_enabled(reuse):
                        out = gen(inputs[i])
                    if reuse:
                        outputs[i] = out
                    with t.autocast():
                        fake = self.fake_output(out).detach()
                        d_loss = discriminator_loss(*discriminate_pair(disc, fake, reals[i])).float()
                    (d_loss / len(batches)).backward()
                    add("d_loss", d_loss)

        with t.optimizer_step("generator"), t.frozen("discriminator") as plain_disc:
            for i, batch in t.micro_batches(batches, "generator"):
                real = reals[i]
                out = outputs[i]
                if out is None:
                    with t.autocast():
                        out = gen(inputs[i])
                fake = self.fake_output(out)
                total = real.new_zeros(())
                for name, value, weight in self.reconstruction_terms(batch, out, fake, real):
                    total = total + weight * value
                    add(name, value)
                if adversarial:
                    with t.autocast():
                        fake_maps = plain_disc(fake)
                        with torch.no_grad():
                            real_maps = plain_disc(real)
                    adv = generator_adversarial_loss(fake_maps).float()
                    fm = self.feature_matching(fake_maps, real_maps).float()
                    total = total + w.adversarial * adv + w.feature_matching * fm
                    add("adversarial", adv)
                    add("feature_matching", fm)
                for name, value, weight in self.extra_generator_losses(batch, out, real, total):
                    total = total + weight * value
                    add(name, value)
                (total / len(batches)).backward()
                add("loss", total)
        return logs
