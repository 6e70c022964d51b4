"""The trainer on a toy GAN recipe: exact resume, DDP on two gloo processes, accumulation, EMA,
checkpoints, config errors."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file
from torch import nn

from conftest import free_port
from semlat.checkpoints import read_model_folder
from semlat.config import build_config
from semlat.errors import CheckpointError, ConfigError
from semlat.training.settings import OptimizerConfig, TrainConfig
from semlat.training.trainer import Recipe, Trainer, latest_checkpoint


@dataclass
class ToyData:
    batch_size: int = 4
    items: int = 24


@dataclass
class ToyConfig:
    recipe: str = "toy"
    run_dir: str = "runs/toy"
    data: ToyData = field(default_factory=ToyData)
    optim: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(lr=1e-2, warmup_steps=2))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        max_steps=8, num_workers=0, log_every=2, valid_every=4, checkpoint_every=4, keep_checkpoints=2,
        progress=False))


class ToyDataset(torch.utils.data.Dataset):
    """Targets y = sum(x); inputs drawn from the key's seed, so every epoch sees new data."""

    def __init__(self, items: int):
        self.items = items

    def __len__(self) -> int:
        return self.items

    def __getitem__(self, key):
        index, seed = key
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(4, generator=g)
        return {"x": x, "y": x.sum(0, keepdim=True), "index": index}


def _collate(items):
    return {k: torch.stack([torch.as_tensor(i[k]) for i in items]) for k in items[0]}


class ToyRecipe(Recipe):
    """A generator (MLP regression) with a discriminator, stepped like the GAN recipes."""

    name = "toy"
    Config = ToyConfig

    def build_modules(self):
        return {"generator": nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1)),
                "discriminator": nn.Linear(1, 1)}

    def optimizer_config(self, name):
        return self.config.optim

    def train_dataset(self):
        return ToyDataset(self.config.data.items), _collate

    def train_step(self, batches, step):
        t = self.trainer
        gen, disc = t.module("generator"), t.module("discriminator")
        d_total = g_total = 0.0
        with t.optimizer_step("discriminator"):
            for _, batch in t.micro_batches(batches, "discriminator"):
                with torch.no_grad():
                    fake = gen(batch["x"])
                d_loss = (disc(fake) ** 2).mean() + ((1 - disc(batch["y"])) ** 2).mean()
                (d_loss / len(batches)).backward()
                d_total += d_loss.item() / len(batches)
        with t.optimizer_step("generator"), t.frozen("discriminator") as plain_disc:
            for _, batch in t.micro_batches(batches, "generator"):
                noise = 0.01 * torch.randn_like(batch["y"])  # global RNG: must be restored on resume
                fake = gen(batch["x"]) + noise
                g_loss = (fake - batch["y"]).pow(2).mean() + 0.1 * ((1 - plain_disc(fake)) ** 2).mean()
                (g_loss / len(batches)).backward()
                g_total += g_loss.item() / len(batches)
        return {"loss": g_total, "d_loss": d_total}

    def export(self, model):
        return "toy", {"hidden": 16}, {"note": "toy"}

    def validate(self, step, model, logger):
        x = torch.ones(2, 4)
        return {"error": float((model(x) - 4).abs().mean())}


def _config(tmp_path, name="run", **train):
    overrides = [f"run_dir={tmp_path / name}"] + [f"train.{k}={v}" for k, v in train.items()]
    return build_config(ToyConfig, [], overrides)


def _train(config, resume=False, losses=None):
    trainer = Trainer(config, ToyRecipe, resume=resume)
    original = trainer.recipe.train_step

    def recording(batches, step):
        out = original(batches, step)
        if losses is not None:
            losses.append((step, out["loss"], out["d_loss"]))
        return out

    trainer.recipe.train_step = recording
    trainer.fit()
    weights = {n: {k: v.clone() for k, v in m.state_dict().items()} for n, m in trainer.raw.items()}
    trainer.close()
    return weights


def test_resume_continues_exactly(tmp_path):
    straight_losses, resumed_losses = [], []
    straight = _train(_config(tmp_path, "straight", max_steps=8), losses=straight_losses)
    _train(_config(tmp_path, "resumed", max_steps=4), losses=resumed_losses)
    resumed = _train(_config(tmp_path, "resumed", max_steps=8), resume=True, losses=resumed_losses)
    assert [s for s, *_ in resumed_losses] == list(range(8))
    assert straight_losses == resumed_losses  # bit-identical losses, step by step
    for name in straight:
        for key in straight[name]:
            assert torch.equal(straight[name][key], resumed[name][key]), f"{name}.{key}"
    ema_a = load_file(str(latest_checkpoint(tmp_path / "straight") / "model.safetensors"))
    ema_b = load_file(str(latest_checkpoint(tmp_path / "resumed") / "model.safetensors"))
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)


def test_time_budget_counts_the_training_time_of_every_resume(tmp_path):
    """``train.max_minutes`` is spent by ``train_seconds``, which a resume restores: a run resumed past its
    budget trains no step, and one with budget left stops once it is spent."""
    _train(_config(tmp_path, "budget", max_steps=3))
    spent = torch.load(latest_checkpoint(tmp_path / "budget") / "trainer_state.pt", weights_only=True)["train_seconds"]
    losses = []
    _train(_config(tmp_path, "budget", max_steps=50, max_minutes=spent / 60 / 2), resume=True, losses=losses)
    assert losses == [] and latest_checkpoint(tmp_path / "budget").name == "step-00000003"
    trainer = Trainer(_config(tmp_path, "budget", max_steps=10 ** 6, max_minutes=spent * 2 / 60), ToyRecipe, resume=True)
    trainer.fit()
    assert spent * 2 <= trainer.train_seconds and trainer.step < 10 ** 6
    trainer.close()


def test_run_folder_checkpoints_and_logs(tmp_path):
    config = _config(tmp_path, max_steps=10, checkpoint_every=3, keep_checkpoints=2)
    _train(config)
    run = tmp_path / "run"
    kept = sorted(p.name for p in (run / "checkpoints").glob("step-*"))
    assert kept == ["step-00000009", "step-00000010"]  # the last K, plus the final step
    assert latest_checkpoint(run).name == "step-00000010"
    state, meta = read_model_folder(latest_checkpoint(run))
    assert meta["model_type"] == "toy" and meta["config"] == {"hidden": 16} and meta["note"] == "toy"
    assert {k: meta["training"][k] for k in ("recipe", "step")} == {"recipe": "toy", "step": 10}
    assert meta["training"]["train_seconds"] > 0 and "0.weight" in state
    assert (run / "config.yaml").is_file() and "max_steps: 10" in (run / "config.yaml").read_text()
    assert any((run / "tensorboard").iterdir())
    assert not list(run.glob("checkpoints/.*"))  # no temporary folders left behind
    trainer_state = torch.load(latest_checkpoint(run) / "trainer_state.pt", weights_only=True)
    assert trainer_state["step"] == 10 and set(trainer_state["optimizers"]) == {"generator", "discriminator"}
    with pytest.raises(ConfigError, match="holds checkpoints already"):
        Trainer(_config(tmp_path, max_steps=10), ToyRecipe)


def test_ema_lags_the_model_and_accumulation_matches_big_batch(tmp_path):
    weights = _train(_config(tmp_path, "ema", max_steps=8, **{"ema.start_step": 0, "ema.every": 1,
                                                              "ema.decay": 0.5}))
    ema, _ = read_model_folder(latest_checkpoint(tmp_path / "ema"))
    assert not torch.equal(ema["0.weight"], weights["generator"]["0.weight"])
    big = _train(build_config(ToyConfig, [], [f"run_dir={tmp_path / 'big'}", "data.batch_size=8",
                                              "train.max_steps=3", "train.progress=false"]))
    acc = _train(build_config(ToyConfig, [], [f"run_dir={tmp_path / 'acc'}", "data.batch_size=4",
                                              "train.grad_accum=2", "train.max_steps=3"]))
    for key in big["discriminator"]:  # D sees no noise: 2 x 4 accumulated == one batch of 8
        torch.testing.assert_close(big["discriminator"][key], acc["discriminator"][key], atol=1e-6, rtol=1e-5)


def test_bad_resume_and_batch(tmp_path):
    with pytest.raises(CheckpointError, match="nothing to resume"):
        Trainer(_config(tmp_path, "empty"), ToyRecipe, resume=True)
    with pytest.raises(ConfigError, match="smaller than one batch"):
        _train(build_config(ToyConfig, [], [f"run_dir={tmp_path / 'small'}", "data.items=2"]))
    with pytest.raises(ConfigError, match="train.precision must be fp32 or bf16"):
        build_config(ToyConfig, [], ["train.precision=fp16"])
    with pytest.raises(ConfigError, match="override 'train.nope=1': train.nope: Key 'nope' not in"):
        build_config(ToyConfig, [], ["train.nope=1"])
    with pytest.raises(ConfigError, match="train.max_steps: Value 'many'"):
        build_config(ToyConfig, [], ["train.max_steps=many"])



def _ddp_worker(rank, world, port, run_dir, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    config = build_config(ToyConfig, [], [f"run_dir={run_dir}", "data.batch_size=8", "train.max_steps=6",
                                          "train.grad_accum=2"])
    losses = []
    trainer = Trainer(config, ToyRecipe)
    original = trainer.recipe.train_step

    def recording(batches, step):
        out = original(batches, step)
        losses.append(out["loss"])
        seen.extend(int(i) for b in batches for i in b["index"])
        return out

    seen: list[int] = []
    trainer.recipe.train_step = recording
    trainer.fit()
    state = {f"{n}.{k}": v for n, m in trainer.raw.items() for k, v in m.state_dict().items()}
    state["losses"] = torch.tensor(losses)
    state["seen"] = torch.tensor(seen)
    torch.save(state, os.path.join(out_dir, f"rank{rank}.pt"))
    trainer.close()


@pytest.mark.slow
def test_ddp_two_gloo_processes(tmp_path):
    mp.spawn(_ddp_worker, args=(2, free_port(), str(tmp_path / "run"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert torch.isfinite(r0["losses"]).all() and torch.isfinite(r1["losses"]).all()
    assert not torch.equal(r0["losses"], r1["losses"])  # each rank trains on its own data...
    first_epoch = 24 // 2  # items per rank per epoch
    assert not set(r0["seen"][:first_epoch].tolist()) & set(r1["seen"][:first_epoch].tolist())
    for key in r0:
        if key not in ("losses", "seen"):
            assert torch.equal(r0[key], r1[key]), key  # ...and DDP keeps parameters identical
    assert latest_checkpoint(tmp_path / "run").name == "step-00000006"


def _scalars(run: Path) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_throughput_and_data_wait_are_logged_and_wandb_runs_offline(tmp_path):
    _train(_config(tmp_path, max_steps=4, log_every=2, wandb="offline", wandb_project="semlat-test"))
    run = tmp_path / "run"
    scalars = _scalars(run)
    assert len(scalars["perf/items_per_s"]) == 2 and all(v > 0 for v in scalars["perf/items_per_s"])
    assert all(0 <= v <= 1 for v in scalars["perf/data_wait_fraction"])
    assert "perf/frames_per_s" not in scalars  # the toy batches have no length
    offline = list((run / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and list(offline[0].glob("*.wandb"))
    _train(_config(tmp_path, max_steps=6, log_every=2, wandb="offline", wandb_project="semlat-test"), resume=True)
    ids = {re.match(r"offline-run-\d{8}_\d{6}-([0-9a-f]+)", p.name).group(1) for p in (run / "wandb").glob("offline-run-*")}
    assert len(ids) == 1  # the resumed run continues the same W&B run
    with pytest.raises(ConfigError, match="train.wandb must be offline, online or null"):
        _config(tmp_path, "bad", wandb="yes")


def test_batch_counts():
    from semlat.training.logging import batch_counts

    assert batch_counts({"audio": torch.zeros(3, 1, 10), "length": torch.tensor([10, 8, 5])}) == (3, 23)
    assert batch_counts({"tensor": torch.zeros(2, 4, 7), "frames": torch.tensor([7, 6])}) == (2, 13)
    assert batch_counts({"x": torch.zeros(5, 4)}) == (5, None)


def _strategy_worker(rank, world, port, run_dir, out_dir, overrides, resume):
    from semlat.training import fsdp

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    config = build_config(ToyConfig, [], [f"run_dir={run_dir}", "data.batch_size=8", "train.grad_accum=2",
                                          "train.checkpoint_every=3", *overrides])
    trainer = Trainer(config, ToyRecipe, resume=resume)
    trainer.fit()
    state = {f"{n}.{k}": v for n, m in trainer.raw.items()
             for k, v in (fsdp.full_state(m) if fsdp.is_sharded(m) else m.state_dict()).items()}
    state["sharded"] = torch.tensor(len(trainer.sharded))  # (under FSDP only rank 0 gathers the full weights)
    torch.save(state, os.path.join(out_dir, f"{Path(run_dir).name}-rank{rank}.pt"))
    trainer.close()


def _spawn(tmp_path, name, *overrides, resume=False):
    mp.spawn(_strategy_worker, args=(2, free_port(), str(tmp_path / name), str(tmp_path), list(overrides), resume),
             nprocs=2, join=True)
    return [torch.load(tmp_path / f"{name}-rank{r}.pt", weights_only=True) for r in range(2)]


@pytest.mark.slow
def test_fsdp_trains_like_ddp_and_exports_full_weights(tmp_path):
    ddp = _spawn(tmp_path, "ddp", "train.max_steps=6")
    straight = _spawn(tmp_path, "fsdp", "train.max_steps=6", "train.strategy=fsdp")
    assert int(straight[0]["sharded"]) == 2 and int(ddp[0]["sharded"]) == 0  # generator and discriminator
    for key in ddp[0]:  # (exact resume from the shards: tests/test_multinode.py)
        if key != "sharded":
            torch.testing.assert_close(straight[0][key], ddp[0][key], rtol=1e-4, atol=1e-5)  # same optimisation
    folder = latest_checkpoint(tmp_path / "fsdp")
    assert (folder / "distributed").is_dir() and not list((tmp_path / "fsdp" / "checkpoints").glob(".*"))
    state, meta = read_model_folder(folder)  # the single-file model folder: full weights, any command loads it
    ddp_state, _ = read_model_folder(latest_checkpoint(tmp_path / "ddp"))
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in ddp_state.items()}
    with pytest.raises(CheckpointError, match="saved with strategy fsdp, resumed with ddp"):
        Trainer(build_config(ToyConfig, [], [f"run_dir={tmp_path / 'fsdp'}", "train.max_steps=8"]), ToyRecipe,
                resume=True)  # one process (not sharded) cannot take over the shards
