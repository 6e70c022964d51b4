"""The many-node rehearsal on one machine: two ``torchrun --nnodes 2`` agents on 127.0.0.1 (gloo) train a tiny
TTS with FSDP2 through ``semlat train``, streaming a latent store of many shards (each node reads its own); one
node's worker is killed with SIGKILL after a checkpoint, both nodes resume from the sharded checkpoint, and the
final weights equal an uninterrupted run's bit for bit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import free_port, reshard_store
from semlat.checkpoints import latest_checkpoint
from semlat.inference import encode_to_store, load

STEPS = 16
TINY = ["model.dim=32", "model.depth=2", "model.heads=2", "model.dim_head=16", "model.text_dim=16",
        "model.conv_layers=1", "data.max_frames=400", "data.batch_size=4", "train.progress=false",
        "train.log_every=5", "train.valid_every=1000", "train.checkpoint_every=4", f"train.max_steps={STEPS}",
        "train.strategy=fsdp", "train.activation_checkpointing=true", "train.ema.start_step=1", "data.stream=true"]


@pytest.fixture(scope="module")
def store(demo_corpus, model_dir, tmp_path_factory):
    """The demo corpus's latents in shards of 4 items (streamed: each node reads its own shards)."""
    whole = tmp_path_factory.mktemp("latents") / "whole"
    encode_to_store(load(model_dir, device="cpu"), demo_corpus / "manifest.jsonl", whole, progress=False)
    return reshard_store(whole, whole.parent / "sharded")


def _nodes(args: list[str], log: Path) -> list[subprocess.Popen]:
    """Two torchrun agents, node ranks 0 and 1, one worker each, meeting at 127.0.0.1."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    procs = []
    for node in (0, 1):
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(node),
                   "--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port", str(port),
                   "-m", "semlat.cli", "train", *args]
        procs.append(subprocess.Popen(command, env=env, stdout=open(log.with_suffix(f".{node}.log"), "w"),
                                      stderr=subprocess.STDOUT, start_new_session=True))
    return procs


def _wait(procs: list[subprocess.Popen], timeout: float = 300) -> list[int]:
    return [p.wait(timeout=timeout) for p in procs]


def _worker_of(agent: subprocess.Popen) -> int:
    """The training process torchrun started (the agent's child)."""
    for _ in range(200):
        children = Path(f"/proc/{agent.pid}/task/{agent.pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.05)
    raise AssertionError("torchrun started no worker")


def _final_weights(run: Path) -> dict[str, torch.Tensor]:
    folder = latest_checkpoint(run)
    assert folder.name == f"step-{STEPS:08d}"
    return load_file(str(folder / "model.safetensors"))


@pytest.mark.slow
def test_two_nodes_killed_and_resumed_equal_an_uninterrupted_run(store, tmp_path):
    base = ["tts/tiny_wave_vae", f"data.latents={store}", *TINY]
    straight = tmp_path / "straight"
    assert _wait(_nodes([*base, f"run_dir={straight}"], tmp_path / "straight")) == [0, 0]

    killed = tmp_path / "killed"
    procs = _nodes([*base, f"run_dir={killed}"], tmp_path / "killed")
    worker = _worker_of(procs[1])
    deadline = time.monotonic() + 240
    while not (killed / "checkpoints" / "latest").is_file():
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "no checkpoint was written"
        time.sleep(0.02)
    os.kill(worker, signal.SIGKILL)  # node 1's worker dies mid-run; node 0 loses its peer
    codes = _wait(procs)
    assert codes[1] != 0 and codes[0] != 0
    stopped_at = latest_checkpoint(killed)
    assert stopped_at is not None and stopped_at.name < f"step-{STEPS:08d}"

    assert _wait(_nodes(["--resume", str(killed)], tmp_path / "resumed")) == [0, 0]
    a, b = _final_weights(straight), _final_weights(killed)
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert (latest_checkpoint(killed) / "distributed").is_dir()
