import struct
import zlib

import numpy as np
import torch

from qtts.training.media import spectrogram_image, write_png


def read_png(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + length
    width, height = struct.unpack(">II", chunks[b"IHDR"][:8])
    raw = zlib.decompress(chunks[b"IDAT"])
    rows = [raw[r * (3 * width + 1) + 1:(r + 1) * (3 * width + 1)] for r in range(height)]
    return np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(height, width, 3)


def test_png_round_trip(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (7, 11, 3), dtype=np.uint8)
    write_png(tmp_path / "x.png", rgb)
    np.testing.assert_array_equal(read_png(tmp_path / "x.png"), rgb)


def test_spectrogram_image_orientation_and_range():
    spec = torch.full((20, 30), -10.0)
    spec[0] = 5.0  # loud lowest bin
    img = spectrogram_image(spec)
    assert img.shape == (20, 30, 3) and img.dtype == np.uint8
    assert img[-1].mean() > img[0].mean()  # low frequencies drawn at the bottom, bright


def test_log_rollout_audio_logs_the_first_sample_of_the_first_prompts(tmp_path):
    """One clip per prompt (its group's first row), at most ``count``, named TAG_<prompt>; none without audio."""
    from types import SimpleNamespace

    from qtts.audio.io import load_audio
    from qtts.inference.rollouts import Rollouts
    from qtts.training.media import log_rollout_audio

    audio = [torch.full((240,), 0.01 * (row + 1)) for row in range(8)]  # 4 prompts × 2 samples, each row its level
    rollouts = Rollouts([None] * 8, [torch.zeros(1, 16)] * 8, None, audio, group_size=2, sample_rate=24_000)
    logger = SimpleNamespace(log_dir=str(tmp_path))
    assert log_rollout_audio([logger], "val/rollout", rollouts, step=7, count=3) == 3
    files = sorted((tmp_path / "media").glob("*.wav"))
    assert [p.name for p in files] == [f"val_rollout_{k}-step00000007.wav" for k in range(3)]
    for prompt, path in enumerate(files):
        wav, _ = load_audio(path)
        assert torch.allclose(wav.flatten(), audio[2 * prompt], atol=1e-4)  # row 0 of each group
    assert log_rollout_audio([logger], "val/rollout", rollouts, step=8, count=9) == 4
    rollouts.audio = None
    assert log_rollout_audio([logger], "val/rollout", rollouts, step=9) == 0
