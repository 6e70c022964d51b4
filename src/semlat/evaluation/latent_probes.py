"""Latent diagnostics as pure functions on arrays: linear probes, per-dimension statistics,
robustness to small input changes, 2-D embedding plots and the latent's size per second.

Shapes: ``features [N, D]`` (one row per sample), ``labels [N]`` (any hashable values), one
utterance's latents ``[D, T]`` (channel-major, as :meth:`LatentSpace.encode` returns them without
the batch axis), one utterance's audio ``[N]`` samples.

Probes are *linear*: features are standardised with the training rows' mean and standard deviation
and a multinomial logistic regression (scikit-learn, L-BFGS, ``max_iter`` bounded) is fitted on the
training rows and scored on held-out rows. Every accuracy is reported beside two chance levels:
``chance``, the rate of the most frequent class on the test rows (what always answering the
majority class scores), and ``balanced_chance``, ``1 / classes``. Everything is seeded, so the same
inputs give the same numbers.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from einops import rearrange, reduce

from semlat.errors import ConfigError

#: Dimensions whose mean KL to the prior is below this (nats per frame) count as dead.
KL_DEAD_NATS = 0.01
#: Dimensions whose variance is below this fraction of the mean variance over dimensions count as dead.
VAR_DEAD_FRACTION = 1e-3
#: Robustness defaults: white noise at these SNRs (dB) and these gains.
ROBUST_SNRS = (40.0, 30.0, 20.0)
ROBUST_GAINS = (0.5, 2.0)


def _as_features(features: Any, name: str = "features") -> np.ndarray:
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be [N, D], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} has non-finite values")
    return x


def stratified_split(labels: Sequence[Hashable], test_fraction: float = 0.3, seed: int = 0) -> np.ndarray:
    """A seeded stratified split of ``labels [N]``: a boolean test mask ``[N]``.

    Every class with at least two members gets at least one row in test and at least one in train;
    a class with one member stays in train. About ``test_fraction`` of each class goes to test.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    labels = list(labels)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), dtype=bool)
    by_class: dict[Hashable, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    for key in sorted(by_class, key=str):
        rows = np.asarray(by_class[key])
        if len(rows) < 2:
            continue
        n_test = min(len(rows) - 1, max(1, round(test_fraction * len(rows))))
        test[rng.permutation(rows)[:n_test]] = True
    return test


def group_split(groups: Sequence[Hashable], test_fraction: float = 0.3, seed: int = 0) -> np.ndarray:
    """A seeded split by group (e.g. utterance): a boolean test mask ``[N]`` where every group lies
    wholly in train or wholly in test. About ``test_fraction`` of the groups (at least one, and at
    least one left for training) go to test."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    groups = np.asarray([str(g) for g in groups])
    unique = np.unique(groups)
    if len(unique) < 2:
        raise ValueError("a group split needs at least two groups")
    n_test = min(len(unique) - 1, max(1, round(test_fraction * len(unique))))
    chosen = np.random.default_rng(seed).permutation(unique)[:n_test]
    return np.isin(groups, chosen)


def linear_probe(features: Any, labels: Sequence[Hashable], *, groups: Sequence[Hashable] | None = None,
                 train_mask: Any = None, test_mask: Any = None, test_fraction: float = 0.3, seed: int = 0,
                 max_iter: int = 300, C: float = 1.0, classify: Any = None) -> dict[str, Any]:
    """Fit a linear classifier on ``features [N, D]`` -> ``labels [N]`` and score it on held-out rows.

    The split is ``test_mask`` (and ``train_mask``, default: every row not in test) when given; else
    by ``groups [N]`` (no group in both, see :func:`group_split`); else stratified by label
    (:func:`stratified_split`). Test rows whose class never occurs in training count as errors.

    Returns ``accuracy``, ``balanced_accuracy`` (mean per-class recall on test), ``chance`` (rate of
    the most frequent class on the test rows), ``balanced_chance`` (``1 / classes``), ``n_train``,
    ``n_test``, ``classes`` (number of distinct labels), ``train_mask`` / ``test_mask`` (boolean
    arrays ``[N]``) and ``converged``; with ``classify [M, D]`` (other rows, e.g. generated items' features)
    also ``classified``: the fitted probe's label for each of them.
    """
    from sklearn.linear_model import LogisticRegression

    x = _as_features(features)
    y_raw = np.asarray([str(v) for v in labels])
    if len(y_raw) != len(x):
        raise ValueError(f"{len(x)} feature rows but {len(y_raw)} labels")
    if test_mask is not None:
        test = np.asarray(test_mask, dtype=bool)
        train = ~test if train_mask is None else np.asarray(train_mask, dtype=bool)
    elif groups is not None:
        test = group_split(groups, test_fraction, seed)
        train = ~test
    else:
        test = stratified_split(y_raw, test_fraction, seed)
        train = ~test
    if test.shape != (len(x),) or train.shape != (len(x),):
        raise ValueError("train/test masks must be boolean arrays [N]")
    if (train & test).any():
        raise ValueError("a row is in both train and test")
    if not train.any() or not test.any():
        raise ValueError("the probe needs at least one training and one test row")
    classes, y = np.unique(y_raw, return_inverse=True)
    x_train, y_train, x_test, y_test = x[train], y[train], x[test], y[test]
    mean = reduce(x_train, "n d -> d", "mean")
    std = x_train.std(axis=0)
    std[std < 1e-12] = 1.0
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    converged = True
    seen = np.unique(y_train)
    other = None if classify is None else (_as_features(classify) - mean) / std
    if len(seen) == 1:
        predicted = np.full(len(y_test), seen[0])
        other_predicted = None if other is None else np.full(len(other), seen[0])
    else:
        model = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(x_train, y_train)
        converged = not any("converge" in str(w.message).lower() for w in caught)
        predicted = model.predict(x_test)
        other_predicted = None if other is None else model.predict(other)
    correct = predicted == y_test
    test_classes, test_counts = np.unique(y_test, return_counts=True)
    recalls = [correct[y_test == c].mean() for c in test_classes]
    return {
        "accuracy": float(correct.mean()),
        "balanced_accuracy": float(np.mean(recalls)),
        "chance": float(test_counts.max() / len(y_test)),
        "balanced_chance": 1.0 / len(classes),
        "n_train": int(train.sum()), "n_test": int(test.sum()), "classes": len(classes),
        "train_mask": train, "test_mask": test, "correct_mask": correct, "converged": converged,
        **({} if other_predicted is None else {"classified": [str(classes[i]) for i in other_predicted]}),
    }


def mean_pool(latents: Sequence[Any]) -> np.ndarray:
    """Utterance latents, each ``[D, T_i]`` -> their time means ``[N, D]``."""
    return np.stack([reduce(np.asarray(z, dtype=np.float64), "d t -> d", "mean") for z in latents])


def utterance_probe(latents: Sequence[Any], labels: Sequence[Hashable], *, test_fraction: float = 0.3,
                    seed: int = 0, max_iter: int = 300) -> dict[str, Any]:
    """A probe on mean-pooled utterance latents (each ``[D, T_i]``) for one label per utterance,
    split by utterance, stratified: every class with two or more utterances is in train and test."""
    return linear_probe(mean_pool(latents), labels, test_fraction=test_fraction, seed=seed, max_iter=max_iter)


def speaker_probe(latents: Sequence[Any], speakers: Sequence[Hashable], *, test_fraction: float = 0.3,
                  seed: int = 0, max_iter: int = 300) -> dict[str, Any]:
    """Speaker identity from mean-pooled latents (each ``[D, T_i]``); see :func:`utterance_probe`."""
    return utterance_probe(latents, speakers, test_fraction=test_fraction, seed=seed, max_iter=max_iter)


def frame_probe(latents: Sequence[Any], frame_labels: Sequence[Sequence[Hashable | None]], *,
                test_fraction: float = 0.3, seed: int = 0, max_frames: int = 20000,
                max_iter: int = 300, held_out: Sequence[bool] | None = None) -> dict[str, Any]:
    """A frame-level probe (e.g. phoneme classes): utterance ``i``'s latents ``[D, T_i]`` and its
    labels ``[T_i]`` (``None`` for unlabelled frames, which are left out).

    The split is **by utterance** (:func:`group_split`), so no utterance contributes frames to both
    train and test; with ``held_out [N]`` (booleans per utterance) the flagged utterances are the test
    side and the others the training side (e.g. speakers never heard in training). At most
    ``max_frames`` labelled frames are used (a seeded subsample, taken after the split, in the same
    proportion from each side). The result adds ``train_utterances`` and ``test_utterances`` (indices
    into ``latents``) and ``test_counts`` (``[utterance, correct frames, test frames]`` per test
    utterance, for intervals over utterances) to :func:`linear_probe`'s.
    """
    if len(latents) != len(frame_labels):
        raise ValueError(f"{len(latents)} utterances but {len(frame_labels)} label sequences")
    rows, labels, owner = [], [], []
    for i, (z, lab) in enumerate(zip(latents, frame_labels)):
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 2 or z.shape[1] != len(lab):
            raise ValueError(f"utterance {i}: latents {z.shape} do not match {len(lab)} frame labels")
        keep = [t for t, label in enumerate(lab) if label is not None]
        if keep:
            rows.append(rearrange(z[:, keep], "d t -> t d"))
            labels += [lab[t] for t in keep]
            owner += [i] * len(keep)
    if not rows:
        raise ValueError("no labelled frames")
    x = np.concatenate(rows)
    owner_arr = np.asarray(owner)
    if held_out is not None:
        if len(held_out) != len(latents):
            raise ValueError(f"{len(latents)} utterances but {len(held_out)} held-out flags")
        test = np.asarray(held_out, dtype=bool)[owner_arr]
        if test.all() or not test.any():
            raise ValueError("the held-out flags leave one side of the split without labelled frames")
    else:
        test = group_split(owner_arr, test_fraction, seed)
    if len(x) > max_frames:
        chosen = np.sort(np.random.default_rng(seed + 1).permutation(len(x))[:max_frames])
        x, owner_arr, test = x[chosen], owner_arr[chosen], test[chosen]
        labels = [labels[j] for j in chosen]
        if test.all() or not test.any():
            raise ValueError("the frame subsample left one side of the split empty")
    result = linear_probe(x, labels, test_mask=test, seed=seed, max_iter=max_iter)
    result["train_utterances"] = sorted({int(u) for u in owner_arr[~test]})
    result["test_utterances"] = sorted({int(u) for u in owner_arr[test]})
    tested, correct = owner_arr[test], result["correct_mask"]
    result["test_counts"] = [[u, int(correct[tested == u].sum()), int((tested == u).sum())]
                             for u in result["test_utterances"]]
    return result


def dimension_stats(latents: Sequence[Any], mu: Sequence[Any] | None = None, logvar: Sequence[Any] | None = None,
                    *, var_fraction: float = VAR_DEAD_FRACTION, kl_nats: float = KL_DEAD_NATS) -> dict[str, Any]:
    """Per-dimension statistics over every frame of every utterance (each ``[D, T_i]``).

    - ``mean``, ``variance`` ``[D]``: over all frames of ``latents``;
    - ``kl`` ``[D]`` (when ``logvar`` is given, with ``mu`` defaulting to ``latents``): the mean over
      frames of the KL to a standard normal, ``0.5 (mu² + exp(lv) - 1 - lv)`` nats per frame;
    - ``dead`` ``[D]`` booleans: variance below ``var_fraction`` x the mean variance over dimensions
      (a constant dimension), or KL below ``kl_nats`` (a dimension the posterior does not use);
    - ``active``: the number of dimensions not dead; ``dead_dims``: their indices.
    """
    if not len(latents):
        raise ValueError("no latents")
    z = np.concatenate([rearrange(np.asarray(x, dtype=np.float64), "d t -> t d") for x in latents])
    mean, variance = z.mean(axis=0), z.var(axis=0)
    dead = variance <= var_fraction * variance.mean() + 1e-12
    kl = None
    if logvar is not None:
        m = np.concatenate([rearrange(np.asarray(x, dtype=np.float64), "d t -> t d") for x in (mu or latents)])
        lv = np.concatenate([rearrange(np.asarray(x, dtype=np.float64), "d t -> t d") for x in logvar])
        if m.shape != lv.shape or m.shape[1] != z.shape[1]:
            raise ValueError(f"mu {m.shape} and logvar {lv.shape} do not match latents {z.shape}")
        kl = reduce(0.5 * (m ** 2 + np.exp(lv) - 1.0 - lv), "t d -> d", "mean")
        dead |= kl < kl_nats
    return {"mean": mean, "variance": variance, "kl": kl, "dead": dead,
            "dead_dims": [int(i) for i in np.flatnonzero(dead)], "active": int((~dead).sum()),
            "latent_dim": int(z.shape[1]), "frames": int(z.shape[0])}


def add_noise(audio: Any, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """``audio [N]`` plus white Gaussian noise at ``snr_db`` relative to the signal's mean power."""
    x = np.asarray(audio, dtype=np.float64)
    power = float(np.mean(x ** 2))
    return x + rng.standard_normal(x.shape) * math.sqrt(power / 10 ** (snr_db / 10))


def relative_change(z: Any, z_new: Any) -> float:
    """``‖z_new - z‖ / ‖z‖`` (Frobenius); both ``[D, T]``, cropped to the shorter T. NaN when ``z`` is 0."""
    a, b = np.asarray(z, dtype=np.float64), np.asarray(z_new, dtype=np.float64)
    t = min(a.shape[-1], b.shape[-1])
    a, b = a[..., :t], b[..., :t]
    norm = float(np.linalg.norm(a))
    return float(np.linalg.norm(b - a)) / norm if norm > 0 else math.nan


def robustness(encode_fn: Callable[[np.ndarray], Any], audio: Sequence[Any], *, snrs: Sequence[float] = ROBUST_SNRS,
               gains: Sequence[float] = ROBUST_GAINS, seed: int = 0) -> dict[str, dict[str, Any]]:
    """How far latents move under small input changes.

    ``encode_fn`` maps one utterance's audio ``[N]`` (float64) to latents ``[D, T]``. For each
    perturbation (white noise at each SNR in dB; each gain, unclipped) the relative change
    :func:`relative_change` is averaged over the utterances ``audio`` (each ``[N]``). Noise is seeded
    per (seed, utterance, SNR). Returns ``{name: {"kind", "value", "mean", "max", "n"}}`` with names
    like ``noise_30dB`` and ``gain_x0.5``.
    """
    base = [np.asarray(encode_fn(np.asarray(a, dtype=np.float64))) for a in audio]
    out: dict[str, dict[str, Any]] = {}
    for k, snr in enumerate(snrs):
        changes = []
        for i, (a, z) in enumerate(zip(audio, base)):
            rng = np.random.default_rng([seed, i, k])
            changes.append(relative_change(z, encode_fn(add_noise(a, snr, rng))))
        out[f"noise_{snr:g}dB"] = _summary("noise_snr_db", snr, changes)
    for gain in gains:
        changes = [relative_change(z, encode_fn(np.asarray(a, dtype=np.float64) * gain)) for a, z in zip(audio, base)]
        out[f"gain_x{gain:g}"] = _summary("gain", gain, changes)
    return out


def _summary(kind: str, value: float, changes: list[float]) -> dict[str, Any]:
    finite = [c for c in changes if math.isfinite(c)]
    return {"kind": kind, "value": float(value), "mean": float(np.mean(finite)) if finite else None,
            "max": float(np.max(finite)) if finite else None, "n": len(finite)}


def embed_2d(features: Any, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """``features [N, D]`` -> ``[N, 2]`` by t-SNE (perplexity ``min(30, (N - 1) / 3)``, PCA init) or
    PCA (``method="pca"``; also used for fewer than 6 points, where t-SNE is meaningless)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = _as_features(features)
    if method not in ("tsne", "pca"):
        raise ConfigError(f"embedding method must be tsne or pca, got {method!r}")
    if len(x) < 2:
        return np.zeros((len(x), 2))
    x = (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-12)
    if method == "pca" or len(x) < 6:
        y = PCA(n_components=min(2, x.shape[1], len(x)), random_state=seed).fit_transform(x)
        return np.pad(y, ((0, 0), (0, 2 - y.shape[1])))
    perplexity = float(min(30.0, max(1.0, (len(x) - 1) / 3.0)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)


def embedding_plot(features: Any, labels: Sequence[Hashable], path: str | os.PathLike, title: str, *,
                   method: str = "tsne", seed: int = 0, max_points: int = 3000) -> Path:
    """Scatter ``features [N, D]`` embedded in 2-D (:func:`embed_2d`), coloured by ``labels [N]``, to
    a PNG at ``path`` (written atomically). At most ``max_points`` rows (a seeded subsample) are
    drawn; with more than 20 classes the legend is left out."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from semlat.utils.files import atomic_path

    x = _as_features(features)
    labels = np.asarray([str(v) for v in labels])
    if len(labels) != len(x):
        raise ValueError(f"{len(x)} feature rows but {len(labels)} labels")
    if len(x) > max_points:
        chosen = np.sort(np.random.default_rng(seed).permutation(len(x))[:max_points])
        x, labels = x[chosen], labels[chosen]
    xy = embed_2d(x, method=method, seed=seed)
    classes = np.unique(labels)
    fig = Figure(figsize=(7, 6), dpi=100)
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["tab20" if len(classes) > 10 else "tab10"]
    for k, c in enumerate(classes):
        inside = labels == c
        ax.scatter(xy[inside, 0], xy[inside, 1], s=10, color=cmap(k % cmap.N), label=c, alpha=0.8)
    shown = "t-SNE" if method == "tsne" and len(x) >= 6 else "PCA"
    ax.set_title(f"{title} ({shown}, {len(x)} points, {len(classes)} classes)")
    ax.set_xticks([])
    ax.set_yticks([])
    if len(classes) <= 20:
        ax.legend(fontsize=7, markerscale=1.5, loc="best", frameon=False)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def size_per_second(latent_dim: int, frame_rate: float) -> float:
    """Latent values per second of audio (``latent_dim x frame_rate``), before any quantisation."""
    if latent_dim <= 0 or frame_rate <= 0:
        raise ValueError(f"latent_dim and frame_rate must be positive, got {latent_dim}, {frame_rate}")
    return float(latent_dim * frame_rate)
