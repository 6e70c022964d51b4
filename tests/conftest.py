"""Shared test helpers.

Reference fixtures are read from ``../shared/fixtures`` (or ``$SEMLAT_FIXTURES``). Outside CI a
missing fixture or synthesis tool skips the tests that need it, with the reason; with
``SEMLAT_CI=1`` (set by ``.ci/run``) it fails them instead.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]
STRICT = os.environ.get("SEMLAT_CI") == "1"

#: 2 cores: one process uses both; under pytest-xdist (``-n 2``) each of the two workers uses one.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)


def fixtures_root() -> Path:
    return Path(os.environ.get("SEMLAT_FIXTURES", REPO.parent / "shared" / "fixtures"))


def missing(reason: str) -> None:
    """Skip the current test, or fail it under ``SEMLAT_CI=1``."""
    if STRICT:
        pytest.fail(f"{reason} (SEMLAT_CI=1 makes this a failure)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def fixtures() -> Path:
    root = fixtures_root()
    if not root.is_dir():
        missing(f"reference fixtures not found at {root}")
    return root


def fixture_file(root: Path, relative: str) -> Path:
    path = root / relative
    if not path.is_file():
        missing(f"reference fixture {path} not found")
    return path


@pytest.fixture(scope="session")
def synth_tools() -> None:
    absent = [t for t in ("flite", "espeak-ng") if shutil.which(t) is None]
    if absent:
        missing(f"{' and '.join(absent)} not installed (sudo apt-get install flite espeak-ng)")


def tone(seconds: float, sample_rate: int, freq: float = 440.0, amplitude: float = 0.5,
         channels: int = 1) -> np.ndarray:
    """A sine of ``seconds`` as ``[N, channels]`` float32 (channel c has frequency freq·(c+1))."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    cols = [amplitude * np.sin(2 * np.pi * freq * (c + 1) * t) for c in range(channels)]
    return np.stack(cols, axis=1).astype(np.float32)


def write_audio(path: Path, data: np.ndarray, sample_rate: int, subtype: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, sample_rate, subtype=subtype)
    return path


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory, synth_tools) -> Path:
    """A 1-minute demo corpus (22.05 kHz) shared by the tests that need real speech."""
    from semlat.data.demo import make_demo_corpus

    out = tmp_path_factory.mktemp("demo") / "corpus"
    make_demo_corpus(out, minutes=1.0, progress=False)
    return out


@pytest.fixture(scope="session")
def event_corpus(tmp_path_factory) -> Path:
    """A 1-minute offline sound-event corpus (16 kHz, captioned, split) shared by the event tests."""
    from semlat.data.events import make_event_corpus

    out = tmp_path_factory.mktemp("events") / "corpus"
    make_event_corpus(out, minutes=1.0, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_dasheng(tmp_path_factory) -> Path:
    """A random 32-d, 2-layer Dasheng model folder (what `semlat import dasheng` writes)."""
    from semlat.checkpoints import save_model
    from semlat.semantic.dasheng import Dasheng, DashengConfig

    torch.manual_seed(0)
    config = DashengConfig(embed_dim=32, depth=2, num_heads=2)
    out = tmp_path_factory.mktemp("dasheng") / "tiny"
    save_model(out, Dasheng(config).eval(), model_type="dasheng", config=config,
               extra={"sample_rate": 16000, "frame_rate": 25.0, "dim": 32})
    return out


@pytest.fixture(scope="session")
def event_store(event_corpus, tiny_dasheng, tmp_path_factory):
    """The event corpus encoded by a random tiny SemanticVocoder (32-d, 25 Hz), and an offline T5."""
    from semlat.autoencoders.semantic_vocoder import SemanticVocoder, SemanticVocoderConfig
    from semlat.checkpoints import read_model_folder, save_model
    from semlat.cli import main
    from semlat.semantic.dasheng import DashengConfig
    from semlat.vocoders.flow_vocoder import FlowVocoderConfig

    root = tmp_path_factory.mktemp("tta")
    state, meta = read_model_folder(tiny_dasheng)
    config = SemanticVocoderConfig(encoder=DashengConfig(**meta["config"]),
                                   generator=FlowVocoderConfig.tiny(latent_dim=32), steps=2)
    torch.manual_seed(0)
    space = SemanticVocoder(config)
    space.encoder.load_state_dict(state)
    save_model(root / "space", space.eval(), model_type="semantic_vocoder", config=config)
    assert main(["encode", str(root / "space"), str(event_corpus / "manifest.jsonl"), str(root / "latents"),
                 "--split", "train", "--device", "cpu"]) == 0
    assert main(["data", "offline-t5", str(event_corpus / "manifest.jsonl"), "--out", str(root / "t5"),
                 "--dim", "16", "--layers", "1"]) == 0
    return root


@pytest.fixture(scope="session")
def tiny_ctc_judge(demo_corpus, tmp_path_factory) -> Path:
    """An offline CTC phoneme judge trained for 3 steps on the demo corpus (32 channels, 1 block)."""
    from semlat.training.run import train_judge

    out = tmp_path_factory.mktemp("judge") / "ctc"
    return train_judge(demo_corpus / "manifest.jsonl", out, steps=3, config="judge/tiny", progress=False)


def _byte_symbols() -> list[str]:
    """GPT-2's byte-to-unicode table: the 256 symbols of a byte-level BPE vocabulary."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


@pytest.fixture(scope="session")
def tiny_whisper(tmp_path_factory):
    """A random-weight Whisper with a byte-level tokenizer (no merges) built offline."""
    import transformers

    folder = tmp_path_factory.mktemp("whisper") / "tiny-whisper"
    folder.mkdir()
    vocab = {c: i for i, c in enumerate(_byte_symbols())}
    for special in ("<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"):
        vocab[special] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    eot = "<|endoftext|>"
    tokenizer = transformers.WhisperTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                                              unk_token=eot, bos_token=eot, eos_token=eot, pad_token=eot)
    processor = transformers.WhisperProcessor(feature_extractor=transformers.WhisperFeatureExtractor(feature_size=80),
                                              tokenizer=tokenizer)
    processor.save_pretrained(folder)
    config = transformers.WhisperConfig(
        vocab_size=len(vocab), d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=80,
        max_source_positions=1500, max_target_positions=64, decoder_start_token_id=vocab["<|startoftranscript|>"],
        eos_token_id=vocab[eot], pad_token_id=vocab[eot], bos_token_id=vocab[eot])
    torch.manual_seed(0)
    transformers.WhisperForConditionalGeneration(config).save_pretrained(folder)
    return folder


def save_tiny_wavlm(folder: Path, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """A random-weight WavLM (large-like: layer-norm features, normalised input) saved as a local
    Hugging Face folder, standing in for WavLM-Large in tests."""
    import transformers

    torch.manual_seed(seed)
    config = transformers.WavLMConfig(
        hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=2 * hidden,
        conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, num_buckets=16,
        max_bucket_distance=64, feat_extract_norm="layer", do_stable_layer_norm=True)
    transformers.WavLMModel(config).save_pretrained(folder)
    transformers.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_wavlm(tmp_path_factory) -> Path:
    return save_tiny_wavlm(tmp_path_factory.mktemp("teachers") / "wavlm")


def free_port() -> int:
    """A free TCP port on localhost for a torch.distributed rendezvous."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Recorded:
    """What :func:`train_recorded` saw: the logs of every step, every validation, the final raw weights."""

    losses: list[dict[str, float]]
    validations: list[dict[str, float]]
    weights: dict[str, torch.Tensor]


def train_recorded(recipe_cls, config, *, resume: bool = False, validate_at_end: bool = False) -> Recorded:
    """Run the real Trainer on ``config``, recording every step's logs and every validation."""
    from semlat.training.trainer import Trainer

    trainer = Trainer(config, recipe_cls, resume=resume)
    losses, validations = [], []
    original_step, original_validate = trainer.recipe.train_step, trainer.recipe.validate

    def recording(batches, step):
        losses.append(original_step(batches, step))
        return losses[-1]

    def validating(step, model, logger):
        validations.append(original_validate(step, model, logger))
        return validations[-1]

    trainer.recipe.train_step, trainer.recipe.validate = recording, validating
    try:
        trainer.fit()
        if validate_at_end:
            validations.append(trainer.validate())
        weights = {f"{n}.{k}": v.clone() for n, m in trainer.raw.items() for k, v in m.state_dict().items()}
    finally:
        trainer.close()
    return Recorded(losses, validations, weights)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread: tiny models run fastest so, and far faster on a loaded machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _recipe_ddp_worker(rank: int, world: int, port: int, configure, run_dir: str, out: str,
                       log_keys: tuple[str, ...]) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    recipe_cls, config = configure(Path(run_dir))
    run = train_recorded(recipe_cls, config)
    weights = dict(run.weights)
    for log_key in log_keys:
        weights[f"log/{log_key}"] = torch.tensor([step[log_key] for step in run.losses])
    torch.save(weights, os.path.join(out, f"rank{rank}.pt"))


def check_recipe_ddp(configure, tmp_path: Path, log_key: str | tuple[str, ...] = "loss") -> list[dict[str, torch.Tensor]]:
    """Train ``configure(run_dir) -> (recipe_cls, config)`` on two gloo processes and check what DDP
    promises: finite values of each logged ``log_key`` that differ between ranks (each rank sees different data)
    and bit-identical parameters after the steps. ``configure`` must be picklable (a module-level function
    or a functools.partial of one). Returns both ranks' weights and logs."""
    import torch.multiprocessing as mp

    log_keys = (log_key,) if isinstance(log_key, str) else tuple(log_key)
    mp.spawn(_recipe_ddp_worker, args=(2, free_port(), configure, str(tmp_path / "run"), str(tmp_path), log_keys),
             nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    keys = {f"log/{k}" for k in log_keys}
    for key in keys:
        assert all(torch.isfinite(r[key]).all() for r in ranks), key
        assert not torch.equal(ranks[0][key], ranks[1][key]), key  # different data on each rank
    for name in ranks[0]:
        if name not in keys:
            assert torch.equal(ranks[0][name], ranks[1][name]), name  # identical parameters after DDP steps
    return ranks


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A random-weight tiny waveform VAE saved as a model folder."""
    from semlat.autoencoders.wave_vae import WaveVAE, WaveVAEConfig
    from semlat.checkpoints import save_model
    from semlat.config import to_dict

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model") / "tiny"
    config = WaveVAEConfig.tiny()
    save_model(folder, WaveVAE(config), model_type="wave_vae", config=to_dict(config))
    return folder


def assert_tiered_close(actual: torch.Tensor, expected: torch.Tensor, tiers: list[tuple[float | None, float]],
                        what: str = "values") -> None:
    """Log-spectra amplify float32 rounding near their floor, and by how much depends on the CPU's FFT
    kernels: every fixture README states its tolerances in tiers of the reference's value. ``tiers`` are
    ``(threshold, atol)``: where ``expected > threshold`` (``None``: everywhere) the error is ``<= atol``."""
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    error = (actual.float() - expected.float()).abs()
    for threshold, atol in tiers:
        region = error if threshold is None else error[expected > threshold]
        worst = float(region.max()) if region.numel() else 0.0
        where = "everywhere" if threshold is None else f"where the reference > {threshold}"
        assert worst <= atol, f"{what}: max error {worst:.3g} {where} (allowed {atol:.3g})"


def reshard_store(source: Path, out: Path, shard_items: int = 4) -> Path:
    """A copy of the tensor store ``source`` written with ``shard_items`` items a shard (a store of many shards,
    as a large corpus makes)."""
    from semlat.data.store import MARKER, StoreWriter, TensorStore

    store = TensorStore(source)
    settings = {k: v for k, v in json.loads((Path(source) / MARKER).read_text()).items() if k != "format"}
    with StoreWriter(out, settings, shard_items=shard_items) as writer:
        for item, tensor in store:
            writer.add(item["id"], tensor, {k: v for k, v in item.items() if k not in ("id", "shard", "frames")})
        writer.finish([item["id"] for item in store.items])
    return out

