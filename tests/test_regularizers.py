"""Latent regularisers (σ-VAE noise, latent LayerNorm, dispersive loss) against DC-Speech-VAE's fixtures."""

from __future__ import annotations

import os

import pytest
import torch
import torch.multiprocessing as mp
from einops import rearrange
from safetensors.torch import load_file

from conftest import fixture_file, free_port
from semlat.autoencoders.regularizers import (
    LatentNorm,
    dispersive_loss,
    fixed_noise,
    latent_layer_norm,
    sigma_vae_noise,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def losses(fixtures):
    return load_file(fixture_file(fixtures, "dc_speech_vae/losses_io.safetensors"))


@pytest.fixture(scope="module")
def dcae_io(fixtures):
    return load_file(fixture_file(fixtures, "dc_speech_vae/dcae_tiny_io.safetensors"))


def test_latent_norm_matches_reference(dcae_io):
    norm = LatentNorm(dim=1)
    out = norm(dcae_io["latent_raw"])
    torch.testing.assert_close(out, dcae_io["latent"], atol=1e-6, rtol=1e-6)
    assert norm.state_dict() == {} and not list(norm.parameters())
    torch.testing.assert_close(out.mean(dim=1), torch.zeros(2, 5, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(dim=1, unbiased=False), torch.ones(2, 5, 4), atol=1e-3, rtol=0)
    three_d = torch.randn(2, 6, 7)
    torch.testing.assert_close(latent_layer_norm(three_d, dim=1),
                               torch.nn.functional.layer_norm(three_d.transpose(1, 2), (6,)).transpose(1, 2))


def test_sigma_vae_noise_replays_reference(dcae_io, losses):
    clean = latent_layer_norm(dcae_io["latent_raw"])  # the reference's memory layout matters for randn_like
    torch.manual_seed(777)
    noisy, std = sigma_vae_noise(clean, max_std=0.5)
    assert std.shape == (2, 1, 1, 1)
    torch.testing.assert_close(std, losses["sigma_std"], atol=0, rtol=0)
    torch.testing.assert_close(noisy, losses["sigma_latent_noisy"], atol=1e-6, rtol=0)
    torch.testing.assert_close(noisy, clean + std * losses["sigma_noise"], atol=1e-6, rtol=0)
    torch.manual_seed(777)
    assert torch.equal(torch.randn_like(clean), losses["sigma_noise"])  # noise is the first draw


def test_sigma_vae_noise_shapes_and_generator():
    latent = torch.randn(3, 80, 10)
    noisy, std = sigma_vae_noise(latent, max_std=0.0)
    assert std.shape == (3, 1, 1) and torch.equal(noisy, latent)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    a, sa = sigma_vae_noise(latent, 0.5, generator=g1)
    b, sb = sigma_vae_noise(latent, 0.5, generator=g2)
    assert torch.equal(a, b) and torch.equal(sa, sb) and (sa < 0.5).all() and (sa >= 0).all()
    assert fixed_noise(latent, 0.0) is latent
    noise = fixed_noise(torch.zeros(4, 64, 64), 0.3) / 0.3
    assert abs(noise.std().item() - 1.0) < 0.05


def test_dispersive_loss_matches_reference(losses):
    torch.testing.assert_close(dispersive_loss(losses["disp_latent"]), losses["disp_loss"], rtol=1e-5, atol=0)
    torch.testing.assert_close(dispersive_loss(losses["sigma_latent_clean"]), losses["disp_loss_tiny_latent"],
                               rtol=1e-5, atol=0)
    # the 1-D view has the same element set per sample -> same value
    flat = rearrange(losses["disp_latent"], "b c f t -> b (c f) t")
    torch.testing.assert_close(dispersive_loss(flat), losses["disp_loss"], rtol=1e-5, atol=0)
    # gather=True without an initialised process group is the plain loss
    torch.testing.assert_close(dispersive_loss(losses["disp_latent"], gather=True), losses["disp_loss"],
                               rtol=1e-5, atol=0)


def test_dispersive_loss_formula_and_edge_cases():
    z = torch.randn(5, 3, 4, dtype=torch.float64)
    rows = [v / v.norm() for v in z.reshape(5, -1)]
    brute = sum((rows[i] @ rows[j]) ** 2 for i in range(5) for j in range(5) if i != j) / (5 * 4)
    torch.testing.assert_close(dispersive_loss(z), brute)
    one = torch.randn(1, 16, 5, 4, requires_grad=True)
    loss = dispersive_loss(one)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(one.grad, torch.zeros_like(one))
    same = torch.ones(3, 8)
    assert dispersive_loss(same).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"shape \(0, 4\)"):
        dispersive_loss(torch.zeros(0, 4))


# ------------------------------------------------------------------------------ two processes (gloo)

_SPLITS = {"even": (3, 3), "uneven": (2, 4)}



def _global_batch() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return torch.randn(6, 4, 2, 5, generator=g) + 0.7 * torch.randn(1, 4, 2, 5, generator=g)


def _gather_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        z = _global_batch()
        result = {}
        for name, sizes in _SPLITS.items():
            start = sum(sizes[:rank])
            local = z[start:start + sizes[rank]].clone().requires_grad_(True)
            loss = dispersive_loss(local, gather=True)
            loss.backward()
            result[f"{name}_loss"] = loss.detach()
            result[f"{name}_grad"] = local.grad
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _expected_rank_loss(z: torch.Tensor, start: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The documented per-rank loss (local rows with gradient, the rest detached) and its gradient."""
    local = z[start:start + count].clone().requires_grad_(True)
    rows = torch.nn.functional.normalize(local.reshape(count, -1), dim=1)
    others = torch.nn.functional.normalize(z.reshape(z.shape[0], -1), dim=1).detach().clone()
    everyone = torch.cat([others[:start], rows, others[start + count:]])
    sim = rows @ everyone.T
    mask = torch.ones_like(sim, dtype=torch.bool)
    mask[torch.arange(count), torch.arange(count) + start] = False
    loss = sim[mask].square().sum() / (count * (z.shape[0] - 1))
    loss.backward()
    return loss.detach(), local.grad


@pytest.mark.slow
def test_dispersive_gather_two_gloo_processes(tmp_path):
    mp.spawn(_gather_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    z = _global_batch()
    full = dispersive_loss(z)
    for name, sizes in _SPLITS.items():
        losses = torch.stack([r[f"{name}_loss"] for r in results])
        weights = torch.tensor(sizes, dtype=losses.dtype) / sum(sizes)
        # the batch-size-weighted mean of the ranks' losses is the single-process loss on the whole batch
        torch.testing.assert_close((weights * losses).sum(), full, rtol=1e-5, atol=0)
        for rank, result in enumerate(results):
            want_loss, _ = _expected_rank_loss(z, sum(sizes[:rank]), sizes[rank])
            torch.testing.assert_close(result[f"{name}_loss"], want_loss, rtol=1e-5, atol=1e-7)
            grad = result[f"{name}_grad"]
            assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    # equal splits: DDP averages the ranks' gradients, which must give the full loss's gradient
    whole = z.clone().requires_grad_(True)
    dispersive_loss(whole).backward()
    ranks = len(results)
    averaged = torch.cat([r["even_grad"] for r in results]) / ranks
    torch.testing.assert_close(averaged, whole.grad, rtol=1e-4, atol=1e-8)
    # with equal splits the plain mean of the ranks' losses is the full loss
    torch.testing.assert_close(torch.stack([r["even_loss"] for r in results]).mean(), full, rtol=1e-5, atol=0)
