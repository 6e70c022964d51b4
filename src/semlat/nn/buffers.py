"""``NamedBuffer``: a module that only holds one persistent buffer, for released key layouts such as
torchaudio's ``spectrogram.window`` / ``mel_scale.fb`` or Flow2GAN's ``fft.window``."""

from __future__ import annotations

from torch import Tensor, nn


class NamedBuffer(nn.Module):
    """Holds ``value`` as the persistent buffer ``name`` (so it is saved and loaded under ``<module>.<name>``)."""

    def __init__(self, name: str, value: Tensor):
        super().__init__()
        self.register_buffer(name, value)
