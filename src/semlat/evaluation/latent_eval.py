"""``semlat eval latents``: diagnostics of a model's frozen latents on a manifest.

Every utterance (optionally one split, optionally a seeded subset of ``max_utterances``) is loaded
at the model's rate and encoded with :class:`~semlat.inference.Codec` into latents ``[D, T]``; then:

- **speaker probe**: a linear probe on mean-pooled utterance latents, split by utterance and
  stratified by speaker (run when at least two speakers have two or more utterances; speakers with
  one utterance are left out);
- **event probe**: the same for the manifest's ``label`` (sound-event corpora);
- **phoneme probe** (with ``alignments``): a frame-level probe, each latent frame labelled with the
  segment containing its centre time ``(t + 0.5) / frame_rate``, split by utterance; and
  **phoneme probe on unseen speakers** (``phoneme_unseen_speakers``, when the evaluated utterances
  include speakers with no utterance in the manifest's ``train`` split and speakers with one): trained
  on the seen speakers' frames, scored on the unseen speakers', with a 95 % bootstrap interval over
  the test utterances;
- **dimension statistics**: per-dimension mean and variance, KL to the prior per dimension when
  the model exposes ``posterior`` (VAEs: ``(mu, logvar)``, over each utterance's first chunk),
  dead dimensions, active count;
- **robustness**: relative latent change under white noise (40 / 30 / 20 dB SNR) and gain (x0.5, x2)
  on the first few utterances;
- **plots**: t-SNE of utterance means coloured by speaker (and by event label), and of frames
  coloured by phoneme when alignments exist;
- **size**: latent dim, frame rate and values per second.

Every accuracy is printed beside its chance levels (majority class on the test rows, and 1/classes);
see :mod:`semlat.evaluation.latent_probes`. Outputs in ``out``: ``report.json`` (every figure with
provenance: model folder and its weights' sha256, manifest and its sha256, split, date, semlat
version), ``report.md`` and the PNGs, all written atomically.

Alignments file: JSON Lines, one object per utterance, ``{"id": <the manifest's "audio" string>,
"segments": [[label, start_s, end_s], ...]}``; frames outside every segment are unlabelled.
"""

from __future__ import annotations

import datetime
import json
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from semlat._version import __version__
from semlat.audio.io import load_audio
from semlat.checkpoints import WEIGHTS_NAME
from semlat.data.alignments import read_alignments
from semlat.data.manifest import Manifest
from semlat.errors import AudioError, ConfigError, DataError
from semlat.evaluation import latent_probes as P
from semlat.evaluation.plots import dimension_bars as plot_dimension_bars
from semlat.evaluation.plots import probe_bars as plot_probe_bars
from semlat.evaluation.recon_eval import output_folder, ratio_ci
from semlat.inference import Codec, load_codec
from semlat.utils.figures import percent
from semlat.utils.files import atomic_write_text, sha256_file

#: Utterances the robustness check encodes (each six more times).
ROBUST_UTTERANCES = 4
SEED = 0


def frame_labels(segments: list[tuple[str, float, float]], frames: int, frame_rate: float) -> list[str | None]:
    """Label each of ``frames`` latent frames with the segment holding its centre ``(t + 0.5) / rate``."""
    labels: list[str | None] = [None] * frames
    for label, start, end in segments:
        first = max(0, math.ceil(start * frame_rate - 0.5))
        for t in range(first, frames):
            centre = (t + 0.5) / frame_rate
            if centre >= end:
                break
            if centre >= start:
                labels[t] = label
    return labels


def _posterior(codec: Codec, audio: torch.Tensor) -> tuple[np.ndarray, np.ndarray] | None:
    """``(mu, logvar)`` ``[D, T]`` for one ``[1, N]`` input when the model has a posterior, else None.

    The posterior is not chunked, so only the first ``codec.chunk_seconds`` of the input are used
    (memory stays bounded; the KL statistics then cover those frames).
    """
    model = codec.model
    if not (hasattr(model, "posterior") and hasattr(model, "pad_to_hop")):
        return None
    audio = audio[..., : round(codec.chunk_seconds * codec.input_rate)]
    with torch.inference_mode():
        mu, logvar = model.posterior(model.pad_to_hop(audio[None].to(codec.device)))
    return mu[0].float().cpu().numpy(), logvar[0].float().cpu().numpy()


def _select(data: Manifest, max_utterances: int | None) -> list[int]:
    if max_utterances is None or max_utterances >= len(data):
        return list(range(len(data)))
    if max_utterances < 1:
        raise ConfigError(f"--max-utterances must be positive, got {max_utterances}")
    return sorted(np.random.default_rng(SEED).permutation(len(data))[:max_utterances].tolist())


def _public(probe: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in probe.items() if not k.endswith("_mask")}


def _utterance_probe(name: str, latents: list[np.ndarray], labels: list[str | None]) -> dict[str, Any]:
    """Run an utterance-level probe on the utterances whose class has two or more of them."""
    counts = Counter(v for v in labels if v is not None)
    keep = [i for i, v in enumerate(labels) if v is not None and counts[v] >= 2]
    classes = {labels[i] for i in keep}
    if len(classes) < 2:
        return {"skipped": f"needs two or more {name}s with two or more utterances each "
                           f"(found {sum(c >= 2 for c in counts.values())})"}
    probe = P.utterance_probe([latents[i] for i in keep], [labels[i] for i in keep], seed=SEED)
    return {**_public(probe), "utterances": len(keep), "left_out": len(labels) - len(keep)}


def _train_speakers(manifest: str | os.PathLike) -> set[str]:
    """The speakers of the manifest's ``train`` split (what a model trained on it has heard)."""
    return {u.speaker for u in Manifest.read(manifest) if u.split == "train" and u.speaker is not None}


def unseen_probe(tensors: list[np.ndarray], frame_sets: list[list[str | None]], ids: list[str],
                 speakers: list[str | None], heard: set[str]) -> dict[str, Any]:
    """The phoneme probe trained on the frames of speakers in ``heard`` and scored on the others'
    (utterances without a speaker are left out), with ``ci95`` over the test utterances and
    ``test_counts`` keyed by utterance id; ``{"skipped": reason}`` when one side is empty."""
    keep = [k for k, who in enumerate(speakers) if who is not None]
    flags = [speakers[k] not in heard for k in keep]
    if not any(flags) or all(flags):
        return {"skipped": "needs utterances of speakers heard in training and of speakers never heard "
                           f"(found {sum(flags)} of {len(flags)} unheard)"}
    try:
        probe = P.frame_probe([tensors[k] for k in keep], [frame_sets[k] for k in keep], seed=SEED, held_out=flags)
    except ValueError as err:
        return {"skipped": str(err)}
    counts = probe.pop("test_counts")
    _, low, high = ratio_ci([c for _, c, _ in counts], [n for _, _, n in counts])
    probe = _public(probe)
    probe["train_utterances"] = len(probe["train_utterances"])
    probe["test_utterances"] = len(probe["test_utterances"])
    probe["unseen_speakers"] = sorted({speakers[k] for k, f in zip(keep, flags) if f})
    probe["ci95"] = [low, high] if math.isfinite(low) and math.isfinite(high) else None
    probe["test_counts"] = {ids[keep[u]]: [c, n] for u, c, n in counts}
    return probe


def evaluate_latents(model_folder: str | os.PathLike, manifest: str | os.PathLike, out: str | os.PathLike, *,
                     split: str | None = None, alignments: str | os.PathLike | None = None, device: str = "cpu",
                     max_utterances: int | None = None, plot_method: str = "tsne",
                     progress: bool = True) -> dict[str, Any]:
    """Diagnose the latents of the model folder on ``manifest`` (see the module docstring); write
    ``out/report.json``, ``out/report.md`` and the PNGs, and return the report dict."""
    out = output_folder(out)
    data = Manifest.read_split(manifest, split)
    aligned = read_alignments(alignments) if alignments is not None else None
    chosen = _select(data, max_utterances)
    codec = load_codec(model_folder, device=device)
    space = codec.space
    sr, frame_rate, dim = codec.input_rate, float(space.frame_rate), int(space.latent_dim)
    model_sha = sha256_file(Path(model_folder) / WEIGHTS_NAME)

    ids, latents, audios, mus, logvars, rejects = [], [], [], [], [], []
    speakers, events = [], []
    for i in tqdm(chosen, desc="encoding", unit="utt", disable=not progress):
        u = data[i]
        try:
            audio, _ = load_audio(data.audio_path(i), sr)
        except AudioError as err:
            rejects.append({"id": u.audio, "reason": str(err)})
            continue
        latents.append(codec.encode(audio[None])[0].cpu().numpy())
        post = _posterior(codec, audio)
        if post is not None:
            mus.append(post[0])
            logvars.append(post[1])
        ids.append(u.audio)
        if len(audios) < ROBUST_UTTERANCES:  # only these are needed again (robustness)
            audios.append(audio[0].numpy())
        speakers.append(u.speaker)
        events.append(u.label)
    if not latents:
        raise DataError(f"{manifest}: no readable utterance; first: {rejects[0]['reason']}")
    out.mkdir(parents=True, exist_ok=True)

    probes: dict[str, Any] = {"speaker": _utterance_probe("speaker", latents, speakers)}
    if any(e is not None for e in events):
        probes["event"] = _utterance_probe("event label", latents, events)
    frame_sets: list[list[str | None]] = []
    if aligned is not None:
        frame_sets = [frame_labels(aligned[i], z.shape[1], frame_rate) if i in aligned else [None] * z.shape[1]
                      for i, z in zip(ids, latents)]
        covered = [k for k, labels in enumerate(frame_sets) if any(v is not None for v in labels)]
        if len(covered) < 2:
            probes["phoneme"] = {"skipped": f"needs alignments for two or more encoded utterances "
                                            f"(found {len(covered)})"}
        else:
            try:
                probe = P.frame_probe([latents[k] for k in covered], [frame_sets[k] for k in covered], seed=SEED)
            except ValueError as err:
                probes["phoneme"] = {"skipped": str(err)}
            else:
                probe = _public(probe)
                probe.pop("test_counts")
                probe["train_utterances"] = [ids[covered[k]] for k in probe["train_utterances"]]
                probe["test_utterances"] = [ids[covered[k]] for k in probe["test_utterances"]]
                probes["phoneme"] = {**probe, "utterances": len(covered)}
            probes["phoneme_unseen_speakers"] = unseen_probe(
                [latents[k] for k in covered], [frame_sets[k] for k in covered], [ids[k] for k in covered],
                [speakers[k] for k in covered], _train_speakers(manifest))

    stats = P.dimension_stats(latents, mus or None, logvars or None)
    dims = {"latent_dim": dim, "frames": stats["frames"], "active": stats["active"], "dead_dims": stats["dead_dims"],
            "kl_source": "model posterior (mu, logvar)" if logvars else None,
            "kl_total": float(stats["kl"].sum()) if stats["kl"] is not None else None,
            "per_dim": [{"dim": d, "mean": float(stats["mean"][d]), "variance": float(stats["variance"][d]),
                         "kl": float(stats["kl"][d]) if stats["kl"] is not None else None,
                         "dead": bool(stats["dead"][d])} for d in range(dim)]}

    def encode_one(x: np.ndarray) -> np.ndarray:
        return codec.encode(torch.as_tensor(x, dtype=torch.float32)[None, None])[0].cpu().numpy()

    robust = P.robustness(encode_one, audios, seed=SEED)

    figures = {}
    pooled = P.mean_pool(latents)
    for name, labels in (("speaker", speakers), ("event", events)):
        pairs = [(k, v) for k, v in enumerate(labels) if v is not None]
        if len(pairs) >= 2 and len({v for _, v in pairs}) >= 2:
            rows = [k for k, _ in pairs]
            path = P.embedding_plot(pooled[rows], [v for _, v in pairs], out / f"tsne_{name}.png",
                                    f"utterance means by {name}", method=plot_method, seed=SEED)
            figures[name] = path.name
    if frame_sets and any(v is not None for labels in frame_sets for v in labels):
        frames = [(z[:, t], v) for z, labels in zip(latents, frame_sets) for t, v in enumerate(labels) if v is not None]
        path = P.embedding_plot(np.stack([f for f, _ in frames]), [v for _, v in frames], out / "tsne_phoneme.png",
                                "latent frames by phoneme", method=plot_method, seed=SEED)
        figures["phoneme"] = path.name

    if any("accuracy" in p for p in probes.values()):
        figures["probes"] = plot_probe_bars(probes, out / "probes.png", "linear probes on frozen latents").name
    figures["dimensions"] = plot_dimension_bars(dims["per_dim"], out / "dimensions.png").name

    report = {
        "kind": "latents",
        "semlat_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": {"folder": str(Path(model_folder).resolve()), "model_type": codec.model_type,
                  "weights_sha256": model_sha, "sample_rate": sr},
        "data": {"manifest": str(Path(manifest).resolve()), "manifest_sha256": sha256_file(manifest), "split": split,
                 "utterances": len(data), "selected": len(chosen), "encoded": len(latents), "rejected": len(rejects),
                 "alignments": str(Path(alignments).resolve()) if alignments is not None else None},
        "settings": {"device": str(codec.device), "seed": SEED, "max_utterances": max_utterances,
                     "probe": "standardised features, multinomial logistic regression (scikit-learn, L-BFGS); "
                              "utterance probes split by utterance, stratified; frame probe split by utterance",
                     "chance": "majority class rate on the test rows; balanced chance = 1 / classes",
                     "dead_dim": f"variance < {P.VAR_DEAD_FRACTION:g} x mean variance, or KL < "
                                 f"{P.KL_DEAD_NATS:g} nats/frame",
                     "robustness": f"mean relative change ||z(x') - z(x)|| / ||z(x)|| over the first "
                                   f"{len(audios)} utterances",
                     "plot_method": plot_method},
        "size": {"latent_dim": dim, "frame_rate": frame_rate, "floats_per_second": P.size_per_second(dim, frame_rate)},
        "probes": probes,
        "dimensions": dims,
        "robustness": robust,
        "figures": figures,
        "rejects": rejects,
    }
    atomic_write_text(out / "report.json", json.dumps(report, indent=2, allow_nan=False) + "\n")
    atomic_write_text(out / "report.md", markdown_report(report))
    return report


def store_phoneme_probe(store_folder: str | os.PathLike, manifest: str | os.PathLike,
                        alignments: str | os.PathLike, *, split: str | None = None,
                        max_utterances: int | None = None) -> dict[str, Any]:
    """The phoneme probe of :func:`evaluate_latents` on the tensors of a store instead of a model's latents: a
    teacher's feature cache (``semlat features extract``) or a latent store, ``[D, T]`` per manifest utterance
    at the store's frame rate. The same utterance selection (``split``, ``max_utterances``, seeded), frame labels and
    probe (split by utterance), so a teacher's figure reads beside its students'. Utterances missing from the
    store or the alignments are left out; a DataError when fewer than two remain."""
    from semlat.data.store import TensorStore

    store = TensorStore(store_folder)
    data = Manifest.read_split(manifest, split)
    aligned = read_alignments(alignments)
    tensors, labels, ids, speakers = [], [], [], []
    for i in _select(data, max_utterances):
        item_id = data[i].audio
        if item_id in store and item_id in aligned:
            z = store.get(item_id).float().numpy()
            tensors.append(z)
            labels.append(frame_labels(aligned[item_id], z.shape[1], store.frame_rate))
            ids.append(item_id)
            speakers.append(data[i].speaker)
    if len(tensors) < 2:
        raise DataError(f"{store_folder}: holds {len(tensors)} aligned utterance(s) of {manifest}; the probe needs 2")
    probe = _public(P.frame_probe(tensors, labels, seed=SEED))
    probe.pop("test_counts")
    unseen = unseen_probe(tensors, labels, ids, speakers, _train_speakers(manifest))
    return {**probe, "utterances": len(tensors), "frame_rate": store.frame_rate, "dim": store.dim,
            "unseen_speakers": unseen}


def probe_table(report: dict[str, Any]) -> str:
    """The probes of a report as a Markdown table, chance levels beside each accuracy."""
    lines = ["| probe | accuracy | chance (majority) | balanced acc. | chance (1/classes) | classes | train | test |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, p in report["probes"].items():
        if "skipped" in p:
            lines.append(f"| {name} | skipped: {p['skipped']} | | | | | | |")
            continue
        ci = f" [{100 * p['ci95'][0]:.1f}, {100 * p['ci95'][1]:.1f}]" if p.get("ci95") else ""
        lines.append(f"| {name} | {percent(p['accuracy'])}{ci} | {percent(p['chance'])} | {percent(p['balanced_accuracy'])} | "
                     f"{percent(p['balanced_chance'])} | {p['classes']} | {p['n_train']} | {p['n_test']} |")
    return "\n".join(lines) + "\n"


def markdown_report(report: dict[str, Any]) -> str:
    """``report.md``: provenance, size, probes (with chance), dimensions, robustness and figures."""
    model, data, size, dims = report["model"], report["data"], report["size"], report["dimensions"]
    lines = [
        "# Latent diagnostics", "",
        (f"- model: `{model['folder']}` ({model['model_type']}, weights sha256 `{model['weights_sha256'][:16]}`), "
         f"{model['sample_rate']} Hz"),
        f"- data: `{data['manifest']}`" + (f", split {data['split']}" if data["split"] else "")
        + f": {data['encoded']} of {data['utterances']} utterances encoded ({data['selected']} selected, "
          f"{data['rejected']} rejected)" + (f"; alignments `{data['alignments']}`" if data["alignments"] else ""),
        f"- semlat {report['semlat_version']}, {report['created']}", "",
        "## Size", "",
        (f"{size['latent_dim']} dims x {size['frame_rate']:g} Hz = {size['floats_per_second']:g} floats per second "
         "(before any quantisation)"), "",
        "## Linear probes", "",
        f"{report['settings']['probe']}; chance: {report['settings']['chance']}.", "",
        probe_table(report),
        "## Dimensions", "",
        f"{dims['active']} of {dims['latent_dim']} dimensions active over {dims['frames']} frames "
        f"(dead: {report['settings']['dead_dim']})"
        + (f"; dead dims: {', '.join(map(str, dims['dead_dims']))}" if dims["dead_dims"] else "")
        + (f"; total KL {dims['kl_total']:.3f} nats/frame" if dims["kl_total"] is not None else ""), "",
        "| dim | mean | variance | KL (nats/frame) | dead |", "|---:|---:|---:|---:|---|",
    ]
    for d in dims["per_dim"]:
        kl = "–" if d["kl"] is None else f"{d['kl']:.4f}"
        lines.append(f"| {d['dim']} | {d['mean']:.4f} | {d['variance']:.4g} | {kl} | {'yes' if d['dead'] else ''} |")
    lines += ["", "## Robustness", "", f"{report['settings']['robustness']}.", "",
              "| perturbation | mean relative change | max | n |", "|---|---:|---:|---:|"]
    for name, r in report["robustness"].items():
        mean = "–" if r["mean"] is None else f"{r['mean']:.4f}"
        top = "–" if r["max"] is None else f"{r['max']:.4f}"
        lines.append(f"| {name} | {mean} | {top} | {r['n']} |")
    if report["figures"]:
        lines += ["", "## Plots", ""]
        lines += [f"![{name}]({file})" for name, file in report["figures"].items()]
    if report["rejects"]:
        lines += ["", f"Rejected inputs ({len(report['rejects'])}):", ""]
        lines += [f"- `{r['id']}`: {r['reason']}" for r in report["rejects"]]
    return "\n".join(lines) + "\n"
