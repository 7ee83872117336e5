"""The streaming protocol (qtts.models.streaming): state lives in a ``Stream``, never on the shared modules.

So one loaded codec serves several streams at once (threads that interleave chunk by chunk get what each gets
alone), rows of a batch stream restart independently (a restarted row equals a fresh stream), and the end of a
stream is an argument of the call (the flushed stream equals the offline end).
"""

import dataclasses
import threading

import pytest
import torch

from qtts.models.codec.model import SpeechTokenizer
from qtts.models.layers import CausalConv1d, CausalConvTranspose1d, ConvState, KVStreamState
from qtts.models.random_release import tiny_codec_config
from qtts.models.random_weights import randomize_codec
from qtts.models.streaming import Stream, StreamingModule

HOP = 1920
WINDOW = 4  # decoder attention window, shorter than the streams below so the KV caches roll


@pytest.fixture(scope="module")
def codec() -> SpeechTokenizer:
    config = tiny_codec_config()
    config = dataclasses.replace(config, decoder_config=dataclasses.replace(config.decoder_config,
                                                                            sliding_window=WINDOW))
    model = SpeechTokenizer(config).eval()
    randomize_codec(model, seed=3)
    return model


def random_codes(batch: int, frames: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 2048, (batch, 16, frames), generator=torch.Generator().manual_seed(seed))


def random_wav(batch: int, samples: int, seed: int) -> torch.Tensor:
    return 0.3 * torch.randn(batch, 1, samples, generator=torch.Generator().manual_seed(seed))


def run_together(*jobs):
    """Run each job(barrier) in its own thread; the barrier makes them take turns chunk by chunk."""
    barrier, results, errors = threading.Barrier(len(jobs), timeout=120), [None] * len(jobs), []

    def target(i, job):
        try:
            results[i] = job(barrier)
        except BaseException as e:  # noqa: BLE001 - re-raised in the main thread
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=target, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def test_two_threads_share_one_decoder(codec):
    """Two threads decode different codes (different batch sizes and chunkings) through one decoder, in lockstep:
    each gets the audio it gets alone, which is the whole-sequence decode."""
    decoder = codec.decoder
    a, b = random_codes(2, 9, seed=1), random_codes(1, 9, seed=2)
    sizes_a, sizes_b = [1, 3, 2, 3], [2, 2, 4, 1]

    def with_stream(barrier):  # the Stream API
        stream, out = decoder.stream(), []
        for chunk in a.split(sizes_a, dim=-1):
            barrier.wait()
            out.append(stream(chunk))
        return torch.cat(out, dim=-1)

    def with_context(barrier):  # the old entry point: a stream active for a with-block, in this thread only
        out = []
        with decoder.streaming():
            for chunk in b.split(sizes_b, dim=-1):
                barrier.wait()
                out.append(decoder(chunk))
        return torch.cat(out, dim=-1)

    with torch.no_grad():
        together = run_together(with_stream, with_context)
        alone = [with_stream(threading.Barrier(1)), with_context(threading.Barrier(1))]
        offline = [decoder(a), decoder(b)]
    for got, expected, full in zip(together, alone, offline):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
        torch.testing.assert_close(got, full, rtol=0, atol=1e-5)


def test_two_threads_share_one_encoder(codec):
    """Two threads encode different waveforms in chunks through one encoder, in lockstep: each gets the offline
    codes, the last frame completed by its own flush."""
    encoder = codec.encoder
    a, b = random_wav(1, 4 * HOP + 100, seed=4), random_wav(2, 3 * HOP + 7, seed=5)

    def job(wav, sizes):
        def run(barrier):
            stream, out = encoder.stream(), []
            for chunk in wav.split(sizes, dim=-1):
                barrier.wait()
                with stream.active():
                    out.append(encoder.encode(chunk))
            barrier.wait()
            with stream.active(last=True):
                out.append(encoder.encode(wav[..., :0]))
            return torch.cat(out, dim=-1)
        return run

    with torch.no_grad():
        together = run_together(job(a, [1000, HOP, 3000, a.shape[-1] - 1000 - HOP - 3000]),
                                job(b, [HOP + 1, 5, 2 * HOP, b.shape[-1] - 3 * HOP - 6]))
        offline = [encoder.encode(a), encoder.encode(b)]
    for got, expected in zip(together, offline):
        assert torch.equal(got, expected)


def test_modules_keep_no_state(codec):
    """A stream leaves the model as it was: no attribute of a module changes, the states are the stream's."""
    before = {name: dict(vars(m)) for name, m in codec.named_modules()}
    with torch.no_grad():
        stream = codec.decoder.stream()
        stream(random_codes(1, 3, seed=0))
        list(codec.encoder.encode_stream([random_wav(1, HOP + 5, seed=0)]))
    assert {name: dict(vars(m)) for name, m in codec.named_modules()} == before
    streaming = [m for m in codec.decoder.modules() if isinstance(m, StreamingModule)]
    assert set(stream.states) == set(streaming) and len(streaming) > 10


def test_decoder_rows_restart_as_fresh_streams(codec):
    """``reset(rows)`` mid-stream: those rows decode their new codes as a fresh stream does (conv contexts zeroed,
    attention restarted past the window), the other rows continue as if nothing happened."""
    decoder = codec.decoder
    first, second = random_codes(3, 6, seed=7), random_codes(3, 7, seed=8)
    with torch.no_grad():
        stream = decoder.stream()
        stream(first)
        stream.reset([0, 2])
        restarted = torch.cat([stream(c) for c in second.split([2, 1, 4], dim=-1)], dim=-1)
        fresh = decoder(second)  # rows 0 and 2 as a new stream: the whole-sequence decode
        continued = decoder(torch.cat((first, second), dim=-1))[..., first.shape[-1] * HOP:]
    torch.testing.assert_close(restarted[[0, 2]], fresh[[0, 2]], rtol=0, atol=1e-5)
    torch.testing.assert_close(restarted[1], continued[1], rtol=0, atol=1e-5)
    assert (restarted[0] - continued[0]).abs().max() > 1e-2  # the restart did change something


def test_encoder_rows_restart_at_a_hop_boundary(codec):
    """Encoder rows restart at a hop boundary (strided convs hold no partial frame there), replicate padding
    included; between boundaries a restart is refused, since the rows would fall out of step."""
    encoder = codec.encoder
    first, second = random_wav(2, 2 * HOP, seed=9), random_wav(2, 3 * HOP + 50, seed=10)
    with torch.no_grad():
        stream = encoder.stream()
        with stream.active():
            encoder.encode(first)
        stream.reset(torch.tensor([True, False]))
        with stream.active(last=True):
            restarted = encoder.encode(second)
        fresh = encoder.encode(second[:1])
        continued = encoder.encode(torch.cat((first[1:], second[1:]), dim=-1))[..., 2:]
        assert torch.equal(restarted[:1], fresh)
        assert torch.equal(restarted[1:], continued)

        stream = encoder.stream()
        with stream.active():
            encoder.encode(first[..., : HOP + 3])
        with pytest.raises(ValueError, match="frame boundary"):
            stream.reset([0])
        stream.reset()  # all rows together: always
        with stream.active(last=True):
            again = encoder.encode(second)
        assert torch.equal(again, encoder.encode(second))


@pytest.mark.parametrize("kernel_size, stride, pad_mode", [(4, 2, "constant"), (4, 2, "replicate"), (5, 3, "constant")])
def test_flush_equals_the_offline_end(kernel_size, stride, pad_mode):
    """A strided conv streams complete frames only; the call marked ``last`` pads the end as the whole-sequence
    pass does, whatever the length of the last chunk."""
    conv = CausalConv1d(2, 3, kernel_size, stride=stride, pad_mode=pad_mode).double()
    x = torch.randn(2, 2, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for length in range(1, 21):
            stream = Stream(conv)
            head = [stream(c) for c in x[..., :length].split(3, dim=-1)[:-1]]
            tail = stream(x[..., :length].split(3, dim=-1)[-1], last=True)
            torch.testing.assert_close(torch.cat(head + [tail], dim=-1), conv(x[..., :length]), rtol=0, atol=1e-12)
            assert not conv.last_chunk  # the flag was the call's, not left on the module


def test_preallocated_conv_states_stay_in_place(codec):
    """A stream made for a batch size allocates its conv buffers at once and updates them in place: the
    addresses a CUDA graph would capture stay valid for the whole stream, restarts included."""
    decoder = codec.decoder
    stream = decoder.stream(batch_size=2)
    convs = [m for m in decoder.modules() if isinstance(m, (CausalConv1d, CausalConvTranspose1d))]
    buffers = {m: (s.pending if isinstance(s, ConvState) else s.previous) for m, s in stream.states.items()
               if m in convs}
    addresses = {m: b.data_ptr() for m, b in buffers.items()}
    with torch.no_grad():
        for chunk in random_codes(2, 5, seed=11).split([1, 3, 1], dim=-1):
            stream(chunk)
            stream.reset([1])
    assert len(addresses) == len(convs)
    assert {m: (s.pending if isinstance(s, ConvState) else s.previous).data_ptr()
            for m, s in stream.states.items() if m in convs} == addresses
    with pytest.raises(ValueError, match="stream of 2 rows"):
        stream(random_codes(3, 1, seed=0))



def kv_buffer_addresses(state: KVStreamState) -> list[tuple[int, int, int]]:
    return [(c.keys.data_ptr(), c.values.data_ptr(), c.positions.data_ptr()) for c in state.caches]


def test_preallocated_kv_states_stay_in_place(codec):
    """The decoder transformer's stream keeps its keys, values and slot positions in buffers of the last
    window − 1 positions, allocated once and updated in place: the addresses stay put across chunks shorter and
    longer than the window and across row and whole-stream restarts."""
    decoder = codec.decoder
    stream = decoder.stream(batch_size=2)
    state = stream.states[decoder.pre_transformer]
    addresses = kv_buffer_addresses(state)
    assert state.caches[0].keys.shape[2] == WINDOW - 1
    with torch.no_grad():
        for i, frames in enumerate([1, WINDOW + 2, 2, 1]):
            stream(random_codes(2, frames, seed=20 + i))
            stream.reset([1])
        assert state.length == WINDOW + 6 and state.restarted
        stream.reset()
        assert state.length == 0 and (state.caches[0].positions == -WINDOW).all()
    assert kv_buffer_addresses(state) == addresses


def test_windowed_encoder_streams_on_fixed_buffers(codec):
    """The windowed encoder transformer (qwen-tts attends to the whole past; the window is an option) streams on
    fixed buffers too: codes equal the offline encode, the buffers never move."""
    config = dataclasses.replace(codec.encoder.config, sliding_window=3)
    encoder = type(codec.encoder)(config, windowed_attention=True).eval()
    encoder.load_state_dict(codec.encoder.state_dict())
    wav = random_wav(2, 5 * HOP + 300, seed=12)
    with torch.no_grad():
        stream = encoder.stream(batch_size=2)
        state = stream.states[encoder.encoder_transformer]
        addresses = kv_buffer_addresses(state)
        parts = []
        for chunk in wav.split([HOP + 5, 7, 3 * HOP, wav.shape[-1] - 4 * HOP - 12], dim=-1):
            with stream.active():
                parts.append(encoder.encode(chunk))
        with stream.active(last=True):
            parts.append(encoder.encode(wav[..., :0]))
        offline = encoder.encode(wav)
        assert (encoder.encode_latent(wav) - codec.encoder.encode_latent(wav)).abs().max() > 1e-3  # window used
    assert torch.equal(torch.cat(parts, dim=-1), offline)
    assert state.caches[0].keys.shape[2] == 2 and kv_buffer_addresses(state) == addresses
