"""The semantic_vae recipe: alignment with an online teacher and with a feature cache, cache
mismatch refusal, the latent-to-teacher and VF variants, the vanilla special case, DDP."""

from __future__ import annotations

import functools
import json

import pytest
import torch
from einops import rearrange

from conftest import check_recipe_ddp, train_recorded
from semlat.checkpoints import read_model_folder
from semlat.configs import builtin_config
from semlat.errors import ConfigError
from semlat.semantic.alignment import TeacherPCA
from semlat.semantic.feature_cache import extract_features
from semlat.training.recipes import load_recipe
from semlat.training.trainer import Trainer, latest_checkpoint


def _config(corpus, run_dir, teacher, *extra):
    return load_recipe(builtin_config("semantic_vae/tiny"), [
        f"run_dir={run_dir}", f"data.train={corpus / 'manifest.jsonl'}", f"alignment.teacher={teacher}",
        "data.batch_size=2", "data.segment_seconds=0.5", "data.valid_items=2", "data.valid_seconds=0.5",
        "loss.disc_start_step=1", "train.num_workers=0", "train.progress=false", "train.log_every=1",
        "train.valid_every=2", "train.checkpoint_every=100", "train.max_steps=2", *extra])


def _run(recipe_cls, config):
    run = train_recorded(recipe_cls, config, validate_at_end=True)
    return run.losses, run.validations[-1], run.weights


@pytest.fixture(scope="module")
def cache(demo_corpus, tiny_wavlm, tmp_path_factory):
    out = tmp_path_factory.mktemp("features") / "wavlm1"
    from semlat.models import load_teacher

    extract_features(load_teacher(f"hf:{tiny_wavlm}@1"), demo_corpus / "manifest.jsonl", out, progress=False)
    return out


def test_online_teacher(demo_corpus, tiny_wavlm, tmp_path):
    recipe_cls, config = _config(demo_corpus, tmp_path / "run", f"hf:{tiny_wavlm}@1")
    logs, metrics, _ = _run(recipe_cls, config)
    assert all("alignment" in step and torch.isfinite(torch.tensor(step["alignment"])) for step in logs)
    assert -1.0 <= logs[0]["alignment"] <= 1.0 and -1.0 <= metrics["alignment_cosine"] <= 1.0
    state, meta = read_model_folder(latest_checkpoint(tmp_path / "run"))
    assert meta["config"]["regulator"]["teacher_dim"] == 32  # filled in from the teacher
    assert "projectors.model.0.weight" in state  # the regulator ships in the checkpoint, as in the reference


def test_cached_features_match_online(demo_corpus, tiny_wavlm, cache, tmp_path):
    recipe_cls, config = _config(demo_corpus, tmp_path / "cached", f"hf:{tiny_wavlm}@1", f"alignment.cache={cache}")
    logs, metrics, _ = _run(recipe_cls, config)
    assert all(torch.isfinite(torch.tensor(step["alignment"])) for step in logs)
    assert "alignment_cosine" in metrics


def test_cache_made_by_another_teacher_is_refused(demo_corpus, tiny_wavlm, cache, tmp_path):
    recipe_cls, config = _config(demo_corpus, tmp_path / "bad", f"hf:{tiny_wavlm}@2", f"alignment.cache={cache}")
    with pytest.raises(ConfigError, match="@1.*@2|@2.*@1"):
        Trainer(config, recipe_cls)


@pytest.mark.parametrize("extra", [
    ("alignment.direction=latent_to_teacher", "alignment.loss=mse", "alignment.projector_hidden=16"),
    ("alignment.loss=vf",),
    ("alignment.loss=l1",),
    # teacher alignment combined with DC-Speech-VAE's regularisers
    ("model.latent_norm=true", "model.noise_max_std=0.5", "loss.kl=0", "loss.dispersive=0.25"),
])
def test_variants_train(demo_corpus, tiny_wavlm, cache, tmp_path, extra):
    recipe_cls, config = _config(demo_corpus, tmp_path / "v", f"hf:{tiny_wavlm}@1", f"alignment.cache={cache}",
                                 *extra)
    logs, _, weights = _run(recipe_cls, config)
    assert all(torch.isfinite(torch.tensor(step["alignment"])) for step in logs)
    if "loss.dispersive=0.25" in extra:
        assert all(0 <= step["dispersive"] <= 1 for step in logs)
    if "alignment.direction=latent_to_teacher" in extra:
        assert any(k.startswith("projector.") for k in weights)
        assert not any(k.startswith("generator.projectors.") for k in weights)


def test_teacher_pca_ties_the_first_channels_to_fixed_components(demo_corpus, tiny_wavlm, cache, tmp_path):
    """direction=teacher_pca: the components are fitted on the training items' cached features (the same fit
    again gives the same buffers), never trained (still equal after the steps), not exported; the MSE is logged."""
    from einops import rearrange

    from semlat.data.manifest import Manifest
    from semlat.semantic.alignment import TeacherPCA
    from semlat.semantic.feature_cache import FeatureCache

    extra = (f"alignment.cache={cache}", "alignment.direction=teacher_pca", "alignment.loss=mse",
             "alignment.pca_channels=4")
    recipe_cls, config = _config(demo_corpus, tmp_path / "pca", f"hf:{tiny_wavlm}@1", *extra)
    logs, metrics, weights = _run(recipe_cls, config)
    assert all(torch.isfinite(torch.tensor(step["alignment"])) and step["alignment"] > 0 for step in logs)
    assert -1.0 <= metrics["alignment_cosine"] <= 1.0
    features = FeatureCache(cache)
    train = {u.audio for u in Manifest.read(demo_corpus / "manifest.jsonl", split="train")}
    ids = [item["id"] for item in features.items if item["id"] in train][:256]
    again = TeacherPCA(32, 4)
    again.fit(torch.cat([rearrange(features.get(i).float(), "d t -> t d") for i in ids]))
    for name, value in again.state_dict().items():
        torch.testing.assert_close(weights[f"pca.{name}"], value)
    state, _ = read_model_folder(latest_checkpoint(tmp_path / "pca"))
    assert not any("pca" in k or "projector" in k for k in state)  # the exported VAE carries no alignment module
    for bad, pattern in [(("alignment.pca_channels=17",), "more than the latent's 16"),
                         (("alignment.cache=null",), "set alignment.cache")]:
        recipe_cls, config = _config(demo_corpus, tmp_path / "bad", f"hf:{tiny_wavlm}@1", *extra, *bad)
        with pytest.raises(ConfigError, match=pattern):
            Trainer(config, recipe_cls)


def test_weight_zero_is_the_vanilla_vae(demo_corpus, tiny_wavlm, tmp_path):
    recipe_cls, config = _config(demo_corpus, tmp_path / "vanilla", f"hf:{tiny_wavlm}@1", "alignment.weight=0")
    logs, metrics, weights = _run(recipe_cls, config)
    assert "alignment" not in logs[0] and "alignment_cosine" not in metrics
    assert not any(".projectors." in k for k in weights)



def _ddp_config(corpus, teacher, run_dir):
    return _config(corpus, run_dir, teacher, "data.batch_size=4", "train.valid_every=1000")


@pytest.mark.slow
def test_ddp_with_online_teacher(demo_corpus, tiny_wavlm, tmp_path):
    check_recipe_ddp(functools.partial(_ddp_config, demo_corpus, f"hf:{tiny_wavlm}@1"), tmp_path, log_key="alignment")


def test_cached_teacher_trains_from_shards(demo_corpus, tiny_wavlm, cache, tmp_path):
    """Shards keep each utterance's manifest path, so streamed crops find their features in the cache."""
    from semlat.data.manifest import Manifest
    from semlat.data.shards import write_shards

    shards = write_shards(Manifest.read_split(demo_corpus / "manifest.jsonl", "train"), tmp_path / "shards",
                          shard_size=2, progress=False)
    recipe_cls, config = _config(demo_corpus, tmp_path / "run", f"hf:{tiny_wavlm}@1", f"alignment.cache={cache}",
                                 f"data.train={shards}", f"data.valid={demo_corpus / 'manifest.jsonl'}")
    trainer = Trainer(config, recipe_cls)
    try:
        dataset, _ = trainer.recipe.train_dataset()
        key = next(iter(trainer.recipe.batch_sampler(dataset)))[0]
        item = dataset[key]
        assert item["teacher"].shape[-1] == 32 and item["teacher_frames"] > 0
    finally:
        trainer.close()
    logs, metrics, _ = _run(*_config(demo_corpus, tmp_path / "run2", f"hf:{tiny_wavlm}@1", f"alignment.cache={cache}",
                                     f"data.train={shards}", f"data.valid={demo_corpus / 'manifest.jsonl'}"))
    assert all(torch.isfinite(torch.tensor(step["alignment"])) for step in logs) and "alignment_cosine" in metrics


def test_shards_carry_the_teacher_features(demo_corpus, tiny_wavlm, cache, tmp_path, capsys):
    """``semlat data shard --features``: every cut carries its utterance's cached features, so a streamed crop gets
    exactly the features the cache gives for the same crop without looking the cache up; teacher_pca fits on them;
    a teacher other than the shards' is refused, and a cache lacking an utterance is a one-line error."""
    from semlat.cli import main
    from semlat.data.shards import ShardSet, cut_fields
    from semlat.semantic.feature_cache import FeatureCache

    manifest = demo_corpus / "manifest.jsonl"
    shards = tmp_path / "shards"
    assert main(["data", "shard", str(manifest), str(shards), "--shard-size", "2", "--features", str(cache)]) == 0
    assert "teacher features of" in capsys.readouterr().out
    shard_set = ShardSet(shards)
    assert shard_set.features["dim"] == 32 and all("teacher" in s for s in shard_set.shards)
    features = FeatureCache(cache)
    recipe_cls, config = _config(demo_corpus, tmp_path / "run", f"hf:{tiny_wavlm}@1", f"data.train={shards}",
                                 f"data.valid={manifest}")
    trainer = Trainer(config, recipe_cls)
    try:
        assert trainer.recipe.cache is None and trainer.recipe.teacher is None  # neither a cache nor the teacher
        dataset, _ = trainer.recipe.train_dataset()
        checked = 0
        for batch in trainer.recipe.batch_sampler(dataset):
            for cut, seed in batch:
                item = dataset[(cut, seed)]
                expected, _ = features.crop_seconds(cut_fields(cut)["source"], item["offset"], 0.5)
                torch.testing.assert_close(item["teacher"], rearrange(expected, "d t -> t d"))
                assert item["teacher_frames"] > 0
                checked += 1
        assert checked >= 4
    finally:
        trainer.close()
    logs, metrics, weights = _run(*_config(demo_corpus, tmp_path / "pca", f"hf:{tiny_wavlm}@1", f"data.train={shards}",
                                           f"data.valid={manifest}", "alignment.direction=teacher_pca",
                                           "alignment.loss=mse", "alignment.pca_channels=4"))
    assert all(torch.isfinite(torch.tensor(step["alignment"])) for step in logs)
    assert "alignment_cosine" not in metrics  # no features for the validation items without a cache
    assert "validation reports no alignment_cosine" in capsys.readouterr().out
    first = [cut_fields(c)["source"] for s in shard_set.shards for c in shard_set.cuts(s)]
    again = TeacherPCA(32, 4)
    again.fit(torch.cat([rearrange(features.get(i).float(), "d t -> t d") for i in first[:256]]))
    torch.testing.assert_close(weights["pca.components"], again.components)
    recipe_cls, config = _config(demo_corpus, tmp_path / "bad", f"hf:{tiny_wavlm}@2", f"data.train={shards}",
                                 f"data.valid={manifest}")
    with pytest.raises(ConfigError, match="was made with teacher"):
        Trainer(config, recipe_cls)
    one = tmp_path / "one.jsonl"  # a cache of one utterance (by its absolute path): the manifest's are missing
    row = json.loads(manifest.read_text().splitlines()[0])
    one.write_text(json.dumps({**row, "audio": str(demo_corpus / row["audio"])}) + "\n")
    from semlat.models import load_teacher

    extract_features(load_teacher(f"hf:{tiny_wavlm}@1"), one, tmp_path / "one_cache", progress=False)
    assert main(["data", "shard", str(manifest), str(tmp_path / "s2"), "--features", str(tmp_path / "one_cache")]) == 1
    err = capsys.readouterr().err
    assert "no teacher features for" in err and "Traceback" not in err and not (tmp_path / "s2").exists()
