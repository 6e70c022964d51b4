"""Audio I/O: reading, mono mixdown, resampling, normalisation, atomic writing, bad files."""

from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf
import torch

from conftest import tone, write_audio
from semlat.audio import load_audio, peak_normalize, probe_audio, resample, save_audio, to_mono
from semlat.audio.processing import loudness_normalize, resampled_length
from semlat.errors import AudioError


@pytest.mark.parametrize("suffix,subtype,tol", [(".wav", "FLOAT", 0.0), (".wav", "PCM_16", 1 / 32767),
                                                (".flac", "PCM_24", 2 ** -23), (".ogg", "VORBIS", 0.05)])
def test_formats_read_back(tmp_path, suffix, subtype, tol):
    data = tone(0.5, 16000)
    path = write_audio(tmp_path / f"a{suffix}", data, 16000, subtype)
    audio, sr = load_audio(path)
    assert sr == 16000 and audio.shape == (1, 8000) and audio.dtype == torch.float32
    assert np.abs(audio[0].numpy() - data[:, 0]).max() <= tol + 1e-7
    info = probe_audio(path)
    assert (info.sample_rate, info.channels, info.frames) == (16000, 1, 8000)


def test_mono_mixdown_is_channel_mean(tmp_path):
    data = tone(0.25, 8000, channels=2)
    path = write_audio(tmp_path / "stereo.wav", data, 8000, "FLOAT")
    mono, _ = load_audio(path)
    both, _ = load_audio(path, mono=False)
    assert both.shape == (2, 2000)
    torch.testing.assert_close(mono[0], torch.from_numpy(data.mean(axis=1)))
    dual = write_audio(tmp_path / "dual.wav", np.repeat(data[:, :1], 2, axis=1), 8000, "FLOAT")
    torch.testing.assert_close(load_audio(dual)[0][0], torch.from_numpy(data[:, 0]))
    with pytest.raises(ValueError):
        to_mono(torch.zeros(3))


def test_resample_keeps_frequency_and_length():
    x = torch.from_numpy(tone(1.0, 22050, freq=1000.0)[:, 0])[None]
    y = resample(x, 22050, 16000)
    assert y.shape == (1, resampled_length(22050, 22050, 16000)) == (1, 16000)
    spectrum = np.abs(np.fft.rfft(y[0].numpy()))
    assert abs(np.argmax(spectrum) - 1000) <= 1  # 1 Hz bins for a 1 s signal
    batch = resample(torch.stack([x, 2 * x]), 22050, 16000)  # [2, 1, N]: leading dims kept
    assert batch.shape == (2, 1, 16000)
    torch.testing.assert_close(batch[1], 2 * batch[0])
    assert resample(x, 16000, 16000) is x


def test_load_resamples_and_reads_excerpts(tmp_path):
    path = write_audio(tmp_path / "a.wav", tone(2.0, 22050), 22050, "FLOAT")
    audio, sr = load_audio(path, 16000)
    assert sr == 16000 and audio.shape == (1, 32000)
    part, _ = load_audio(path, offset=0.5, duration=0.25)
    full, _ = load_audio(path)
    torch.testing.assert_close(part, full[:, 11025:11025 + 5512])
    with pytest.raises(AudioError, match="past the end"):
        load_audio(path, offset=5.0)


def test_peak_and_loudness_normalisation(tmp_path):
    x = torch.from_numpy(tone(2.0, 16000, amplitude=0.1)[:, 0])[None]
    assert abs(float(peak_normalize(x, -6.0).abs().max()) - 10 ** (-6 / 20)) < 1e-6
    assert torch.equal(peak_normalize(torch.zeros(1, 10)), torch.zeros(1, 10))
    y = loudness_normalize(x, 16000, -23.0)
    measured = pyloudnorm.Meter(16000).integrated_loudness(y[0].double().numpy())
    assert abs(measured - (-23.0)) < 0.05
    loud = loudness_normalize(x, 16000, 0.0, max_peak_db=-1.0)  # target unreachable without clipping
    assert abs(float(loud.abs().max()) - 10 ** (-1 / 20)) < 1e-5
    path = write_audio(tmp_path / "short.wav", tone(0.1, 16000), 16000)
    with pytest.raises(AudioError, match="short.wav: .*too short for loudness"):
        load_audio(path, normalize="loudness")
    loaded, _ = load_audio(write_audio(tmp_path / "l.wav", tone(1.0, 16000), 16000, "FLOAT"),
                           normalize="peak", target_db=-3.0)
    assert abs(float(loaded.abs().max()) - 10 ** (-3 / 20)) < 1e-6


def _zero_length_wav(path):
    with sf.SoundFile(str(path), "w", 16000, 1, "PCM_16"):
        pass
    return path


@pytest.mark.parametrize("case,pattern", [
    ("missing", "no such file"),
    ("empty", "file is empty"),
    ("corrupt", "unreadable or corrupt"),
    ("zero", "zero length"),
    ("nan", "NaN or infinite"),
    ("inf", "NaN or infinite"),
    ("folder", "is a folder"),
    ("long", "longer than the limit"),
])
def test_bad_files_give_one_line_errors(tmp_path, case, pattern):
    path = tmp_path / f"{case}.wav"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "corrupt":
        path.write_bytes(b"RIFF\x00\x01garbage" + bytes(range(256)) * 4)
    elif case == "zero":
        _zero_length_wav(path)
    elif case in ("nan", "inf"):
        data = tone(0.1, 8000)
        data[:] = np.nan if case == "nan" else np.inf
        write_audio(path, data, 8000, "FLOAT")
    elif case == "folder":
        path.mkdir()
    elif case == "long":
        write_audio(path, tone(2.0, 8000), 8000)
    with pytest.raises(AudioError) as err:
        load_audio(path, max_duration=1.0)
    message = str(err.value)
    assert message.startswith(str(path)) and pattern in message and "\n" not in message


def test_save_is_atomic_and_refuses_bad_audio(tmp_path):
    path = tmp_path / "out" / "x.wav"
    save_audio(path, torch.full((1, 100), 0.25), 8000)
    before = path.read_bytes()
    with pytest.raises(AudioError, match="NaN"):
        save_audio(path, torch.full((1, 100), float("nan")), 8000)
    with pytest.raises(AudioError, match="unknown audio format"):
        save_audio(tmp_path / "x.xyz", torch.zeros(1, 10), 8000)
    with pytest.raises(AudioError, match="zero-length"):
        save_audio(tmp_path / "z.wav", torch.zeros(1, 0), 8000)
    assert path.read_bytes() == before  # the failed write left the old file alone
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.wav"]  # and no temporary files
    save_audio(tmp_path / "clip.flac", torch.tensor([[2.0, -2.0, 0.5]]), 8000)
    back, _ = load_audio(tmp_path / "clip.flac")
    assert float(back.abs().max()) <= 1.0  # PCM output is clipped, not wrapped
    save_audio(tmp_path / "st.wav", torch.zeros(2, 50), 8000, subtype="FLOAT")
    assert probe_audio(tmp_path / "st.wav").channels == 2


def test_mp3_reads(tmp_path):
    path = write_audio(tmp_path / "a.mp3", tone(1.0, 16000, freq=500.0), 16000)
    audio, sr = load_audio(path)
    assert sr == 16000 and abs(audio.shape[-1] - 16000) < 2000  # encoder delay/padding
    spectrum = np.abs(np.fft.rfft(audio[0].numpy()))
    assert abs(np.argmax(spectrum) * sr / audio.shape[-1] - 500) < 5
