"""The autoregressive-TTS comparison (``semlat demo --ar-experiment``): what DC-Speech-VAE was made for.

Arms (each the tiny recipe of its kind, trained for the same wall-clock minutes on the idle machine, judged on
the cross-sentence test set of the latent-TTS experiment, :mod:`.tts_convergence`, with the audio decoded in
windows as it is generated so that the first-audio latency is real), all with one of two text conditionings
(:data:`CONDITIONINGS`): ``durations`` (default; frame-aligned text from the judge's forced alignments and a
duration predictor, for the DiT and the AR model alike; learns within minutes on 2 cores) or ``f5`` (the text as
a sequence, alignment left to attention: the F5 DiT's padded text, the AR model's text prefix; learned late):

* ``dit_dc_vae`` / ``ar_dc_vae``: the F5 DiT (``tts/tiny_mel_dcae``, implicit alignment) against the
  autoregressive model (``ar_tts/tiny_mel_dcae``) on DC-VAE latents (5.4 Hz);
* ``dit_vanilla`` / ``ar_vanilla``: the same pair on the 40 Hz waveform VAE's latents;
* ``ar_dc_vae_no_sigma`` / ``ar_dc_vae_no_dispersive``: the AR model on DC-VAEs trained for the same steps
  without the sigma-VAE noise (``model.noise_max_std=0``) or without the dispersive loss (``loss.dispersive=0``):
  the DC-VAE's own claim, that these choices make latents easier for an autoregressive model.

:func:`statement` says plainly what the paired differences of the final checkpoints show.
"""

from __future__ import annotations

from typing import Any

RESULT_NAME = "ar_experiment"
#: conditioning -> (the experiment's folder in the demo's output, the overrides of every arm; ``durations`` adds
#: ``data.alignments``)
CONDITIONINGS = {"durations": ("ar_durations", ("conditioning=durations",)), "f5": ("ar", ())}
DEFAULT_CONDITIONING = "durations"
#: The DC-VAE ablations: run name -> mel_dcae overrides.
DC_VAE_ABLATIONS = {"dc_vae_no_sigma": ("model.noise_max_std=0",), "dc_vae_no_dispersive": ("loss.dispersive=0",)}
#: arm -> (latent space run name, recipe)
ARMS = {"dit_dc_vae": ("dc_vae", "tts/tiny_mel_dcae"), "ar_dc_vae": ("dc_vae", "ar_tts/tiny_mel_dcae"),
        "dit_vanilla": ("vanilla", "tts/tiny_wave_vae"), "ar_vanilla": ("vanilla", "ar_tts/tiny_wave_vae"),
        "ar_dc_vae_no_sigma": ("dc_vae_no_sigma", "ar_tts/tiny_mel_dcae"),
        "ar_dc_vae_no_dispersive": ("dc_vae_no_dispersive", "ar_tts/tiny_mel_dcae")}
#: Training minutes of every arm (the comparison is at equal wall-clock time on the idle machine).
DEFAULT_MINUTES = 8.0


def _difference(result: dict[str, Any], a: str, b: str) -> dict[str, Any] | None:
    for d in result.get("differences") or []:
        if (d["a"], d["b"]) == (a, b):
            return d
        if (d["a"], d["b"]) == (b, a):
            low, high = d["ci95"]
            flip = (lambda v: None if v is None else -v)
            return {**d, "a": a, "b": b, "difference": flip(d["difference"]), "ci95": [flip(high), flip(low)]}
    return None


def _compare(result: dict[str, Any], a: str, b: str, rate: str) -> str:
    d = _difference(result, a, b)
    if d is None or d["difference"] is None or None in d["ci95"]:
        return f"{a} vs {b}: not measured"
    low, high = d["ci95"]
    verdict = (f"{a} lower" if high < 0 else f"{b} lower" if low > 0 else "not resolved (the CI spans 0)")
    return (f"{a} − {b} = {100 * d['difference']:+.1f} points {rate.upper()} [{100 * low:+.1f}, {100 * high:+.1f}]: "
            f"{verdict}")


def statement(result: dict[str, Any], rate: str = "per") -> str:
    """What the comparison shows, in words: the AR model against the DiT in each space, and the DC-VAE's claim (its
    AR TTS better with the sigma noise and with the dispersive loss than without), each by the paired 95 % CI."""
    parts = [_compare(result, "ar_dc_vae", "dit_dc_vae", rate), _compare(result, "ar_vanilla", "dit_vanilla", rate)]
    claims = [_difference(result, "ar_dc_vae", other) for other in ("ar_dc_vae_no_sigma", "ar_dc_vae_no_dispersive")]
    parts += [_compare(result, "ar_dc_vae", other, rate) for other in ("ar_dc_vae_no_sigma", "ar_dc_vae_no_dispersive")]
    if all(c is not None and c["ci95"][1] is not None for c in claims):
        held = all(c["ci95"][1] < 0 for c in claims)
        parts.append("the DC-VAE's claim (sigma noise and the dispersive loss make its latents easier for AR TTS) is "
                     + ("reproduced" if held else "not reproduced") + " here")
    return "; ".join(parts)
