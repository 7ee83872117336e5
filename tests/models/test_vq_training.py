import socket
from types import SimpleNamespace

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from qtts.models.codec.encoder import SplitResidualQuantizer
from qtts.models.codec.quantizer import SplitResidualVectorQuantizer
from qtts.models.codec.vq_training import (
    VQTrainingConfig,
    bypass,
    decoder_quantizer_state_dict,
    ema_update_,
    kmeans_init_,
    perplexity,
    quantize,
    reset_codebooks_,
    restart_dead_codes_,
)


def make_quantizer(levels=4, dim=4, size=8, hidden=None, seed=0) -> SplitResidualQuantizer:
    """A split RVQ (1 semantic level) with random codewords; projections when ``hidden`` differs from ``dim``."""
    config = SimpleNamespace(num_quantizers=levels, num_semantic_quantizers=1, quantizer_dim=dim,
                             codebook_size=size, hidden_size=hidden or dim)
    quantizer = SplitResidualQuantizer(config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _name, p in quantizer.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) / p.shape[1] ** 0.5)
        for name, b in quantizer.named_buffers():
            if name.endswith("cluster_usage"):
                b.copy_(0.5 + torch.rand(b.shape, generator=gen))
            elif name.endswith("embed_sum"):
                b.copy_(torch.randn(b.shape, generator=gen))
    return quantizer


def set_codewords(book, codewords):
    book.cluster_usage.fill_(1.0)
    book.embed_sum.copy_(torch.tensor(codewords, dtype=torch.float32))


def clusters(n_centers, dim, seed):
    return torch.randn(n_centers, dim, generator=torch.Generator().manual_seed(seed)) * 5


def sample(centers, n, noise, gen):
    pick = torch.randint(len(centers), (n,), generator=gen)
    return centers[pick] + noise * torch.randn(n, centers.shape[1], generator=gen)


def buffers(quantizer):
    return {k: v.clone() for k, v in quantizer.named_buffers()}


def test_eval_is_the_nearest_codeword_encode_and_changes_nothing():
    quantizer = make_quantizer(levels=6, dim=4, size=8, hidden=6).eval()
    x = torch.randn(2, 6, 5)
    before = buffers(quantizer)
    for n in (1, 3, 6):
        out = quantize(quantizer, x, n, VQTrainingConfig(dropout_prob=1.0))
        assert torch.equal(out.codes, quantizer.encode(x, n))
    assert all(torch.equal(before[k], v) for k, v in quantizer.named_buffers())


def test_decoder_state_dequantizes_to_the_quantized_latent():
    quantizer = make_quantizer(levels=6, dim=4, size=8, hidden=6).eval()
    decoder_side = SplitResidualVectorQuantizer(5, 1, 4, 8, 6)
    decoder_side.load_state_dict(decoder_quantizer_state_dict(quantizer, 5), strict=True)
    x = torch.randn(2, 6, 5)
    out = quantize(quantizer, x, 5)
    torch.testing.assert_close(decoder_side.decode(out.codes), out.quantized)


def test_straight_through_gradient_is_the_identity_through_the_projections():
    """Gradient of the quantized latent reaches x as if quantization were the identity (not × levels)."""
    quantizer = make_quantizer(levels=5, dim=4, size=8, hidden=6).train()
    x = torch.randn(2, 6, 7, requires_grad=True)
    weight = torch.randn(2, 6, 7)
    out = quantize(quantizer, x, 5, VQTrainingConfig(dropout_prob=0.0))
    (out.quantized * weight).sum().backward()
    assert out.codes.shape == (2, 5, 7)

    x_ref = x.detach().clone().requires_grad_()
    sem, ac = quantizer.semantic_residual_vector_quantizer, quantizer.acoustic_residual_vector_quantizer
    ((sem.output_proj(sem.input_proj(x_ref)) + ac.output_proj(ac.input_proj(x_ref))) * weight).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad)
    assert sem.input_proj.weight.grad is not None and ac.output_proj.weight.grad is not None


def test_bypass_is_quantize_without_quantization_error_and_leaves_codebooks_alone():
    """The warm-up path: the projections applied to the continuous latent (what an exact quantizer would give),
    every projection trained, no codes, zero commitment, and no codebook statistic touched (none initialised)."""
    quantizer = make_quantizer(levels=5, dim=4, size=8, hidden=6).train()
    reset_codebooks_(quantizer)
    before = buffers(quantizer)
    x = torch.randn(2, 6, 7)
    out = bypass(quantizer, x)
    sem, ac = quantizer.semantic_residual_vector_quantizer, quantizer.acoustic_residual_vector_quantizer
    torch.testing.assert_close(out.quantized, sem.output_proj(sem.input_proj(x)) + ac.output_proj(ac.input_proj(x)))
    torch.testing.assert_close(out.semantic, sem.output_proj(sem.input_proj(x)))
    assert out.codes.shape == (2, 0, 7) and float(out.commitment_loss) == 0.0
    out.quantized.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in quantizer.parameters())
    assert all(torch.equal(before[k], v) for k, v in quantizer.named_buffers())
    assert not any(level.codebook.initialized.item() for level in sem.layers + ac.layers)


def test_semantic_only_step_still_reaches_every_parameter():
    """Dropout down to the semantic level must not leave the acoustic projections gradient-less (DDP)."""
    quantizer = make_quantizer(levels=5, dim=4, size=8, hidden=6).train()
    out = quantize(quantizer, torch.randn(2, 6, 7), 1, VQTrainingConfig(dropout_prob=0.0))
    (out.quantized.sum() + out.commitment_loss).backward()
    assert out.codes.shape[1] == 1
    acoustic = quantizer.acoustic_residual_vector_quantizer
    assert all(p.grad is not None and not p.grad.any() for p in acoustic.parameters())


def test_commitment_loss_on_a_hand_example():
    quantizer = make_quantizer(levels=3, dim=2, size=2).eval()
    books = [quantizer.semantic_residual_vector_quantizer.layers[0].codebook,
             *(level.codebook for level in quantizer.acoustic_residual_vector_quantizer.layers)]
    set_codewords(books[0], [[0.0, 0.0], [2.0, 0.0]])
    set_codewords(books[1], [[1.0, 1.0], [-1.0, -1.0]])
    set_codewords(books[2], [[0.0, 0.0], [0.5, 0.0]])
    x = torch.tensor([1.5, 0.5]).view(1, 2, 1)
    out = quantize(quantizer, x, 3)
    # semantic: [1.5, .5] → [2, 0], MSE .25; acoustic from x: → [1, 1], MSE .25;
    # then its residual [.5, −.5] → [.5, 0], MSE .125; the loss is their mean
    assert out.codes.flatten().tolist() == [1, 0, 1]
    torch.testing.assert_close(out.commitment_loss, torch.tensor((0.25 + 0.25 + 0.125) / 3))
    torch.testing.assert_close(out.stats["commitment"], torch.tensor([0.25, 0.25, 0.125]))
    torch.testing.assert_close(out.quantized, torch.tensor([2.0 + 1.0 + 0.5, 0.0 + 1.0 + 0.0]).view(1, 2, 1))


def test_ema_update_on_a_hand_example():
    quantizer = make_quantizer(levels=2, dim=1, size=2)
    book = quantizer.semantic_residual_vector_quantizer.layers[0].codebook
    book.cluster_usage.copy_(torch.tensor([1.0, 1.0]))
    book.embed_sum.copy_(torch.tensor([[1.0], [3.0]]))
    vectors = torch.tensor([[0.8], [1.2], [3.5]])
    counts = ema_update_(book, vectors, torch.tensor([0, 0, 1]), decay=0.9)
    assert counts.tolist() == [2.0, 1.0]
    usage = torch.tensor([0.9 * 1 + 0.1 * 2, 0.9 * 1 + 0.1 * 1])  # [1.1, 1.0]
    total, eps = usage.sum(), book.eps
    torch.testing.assert_close(book.cluster_usage, (usage + eps) / (total + 2 * eps) * total)
    torch.testing.assert_close(book.embed_sum, torch.tensor([[0.9 * 1 + 0.1 * 2.0], [0.9 * 3 + 0.1 * 3.5]]))


def test_kmeans_init_fits_clustered_data_and_marks_initialized():
    gen = torch.Generator().manual_seed(0)
    centers = clusters(4, 3, seed=1)
    vectors = sample(centers, 400, 0.05, gen)
    quantizer = make_quantizer(levels=2, dim=3, size=32)
    reset_codebooks_(quantizer)
    book = quantizer.semantic_residual_vector_quantizer.layers[0].codebook
    kmeans_init_(book, vectors, iters=10, generator=gen)
    assert book.initialized.item() == 1
    distortion = (vectors - book.codewords[book.encode(vectors, book.codewords)]).pow(2).mean()
    assert distortion < 0.05**2 * 1.5  # within the noise: every cluster has a codeword
    torch.testing.assert_close(book.cluster_usage.sum(), torch.tensor(400.0), rtol=0, atol=1e-2)


def test_training_step_initializes_only_the_levels_it_uses():
    quantizer = make_quantizer(levels=4, dim=3, size=8).train()
    reset_codebooks_(quantizer)
    quantize(quantizer, torch.randn(2, 3, 20), 2, VQTrainingConfig(dropout_prob=0.0))
    flags = [quantizer.semantic_residual_vector_quantizer.layers[0].codebook.initialized.item()]
    flags += [level.codebook.initialized.item() for level in quantizer.acoustic_residual_vector_quantizer.layers]
    assert flags == [1, 1, 0, 0]


def test_restarts_take_distinct_vectors_the_least_used_codes_first():
    quantizer = make_quantizer(levels=2, dim=2, size=8)
    book = quantizer.semantic_residual_vector_quantizer.layers[0].codebook
    book.cluster_usage.copy_(torch.tensor([10.0, 1e-3, 2e-3, 10.0, 3e-3, 10.0, 1e-4, 10.0]))
    before = book.codewords.clone()
    vectors = torch.randn(3, 2)
    assert restart_dead_codes_(book, vectors, ratio=0.1, generator=torch.Generator().manual_seed(0)) == 3
    changed = [i for i in range(8) if not torch.equal(book.codewords[i], before[i])]
    assert changed == [1, 2, 6]  # the three least used of the four dead codes
    restarted = {tuple(book.codewords[i].tolist()) for i in changed}
    assert len(restarted) == 3 and all((book.codewords[i] - vectors).abs().sum(dim=1).min() < 1e-6 for i in changed)
    assert restart_dead_codes_(book, vectors, ratio=0.1) == 1  # the last one, on the next batch


def test_dead_codes_are_restarted_from_batch_vectors():
    quantizer = make_quantizer(levels=2, dim=2, size=4)
    book = quantizer.semantic_residual_vector_quantizer.layers[0].codebook
    book.cluster_usage.copy_(torch.tensor([10.0, 10.0, 1e-3, 10.0]))
    before = book.codewords.clone()
    vectors = torch.randn(16, 2)
    restarted = restart_dead_codes_(book, vectors, ratio=0.1, generator=torch.Generator().manual_seed(0))
    assert restarted == 1
    torch.testing.assert_close(book.cluster_usage[2], torch.tensor((30 + 1e-3) / 4))  # the uniform share
    assert (book.codewords[2] - vectors).abs().sum(dim=1).min() < 1e-6
    torch.testing.assert_close(book.codewords[[0, 1, 3]], before[[0, 1, 3]])
    assert restart_dead_codes_(book, vectors, ratio=0.1) == 0


def test_quantizer_dropout_varies_levels_in_training_and_not_in_eval():
    quantizer = make_quantizer(levels=16, dim=4, size=8).train()
    x = torch.randn(1, 4, 6)
    gen = torch.Generator().manual_seed(0)
    config = VQTrainingConfig(dropout_prob=1.0)
    counts = {quantize(quantizer, x, 16, config, gen).codes.shape[1] for _ in range(40)}
    assert len(counts) > 5 and min(counts) >= 1 and max(counts) <= 16
    assert {quantize(quantizer, x, 16, VQTrainingConfig(dropout_prob=0.0)).codes.shape[1] for _ in range(5)} == {16}
    quantizer.eval()
    assert {quantize(quantizer, x, 16, config, gen).codes.shape[1] for _ in range(5)} == {16}


def test_perplexity():
    torch.testing.assert_close(perplexity(torch.tensor([[1.0, 1, 1, 1], [5, 0, 0, 0]])), torch.tensor([4.0, 1.0]))


def test_tiny_training_loop_lowers_quantization_error():
    """A poor start (k-means on 8 vectors for 32 codes: duplicates and dead codes), then 100 EMA steps
    with restarts on a 24-cluster mixture: each chain's error on held-out data falls several-fold. (Both
    chains quantize the same latent and their outputs add, so each is measured against it on its own.)"""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    centers = clusters(24, 4, seed=2)
    held_out = sample(centers, 512, 0.1, gen).T[None]
    quantizer = make_quantizer(levels=3, dim=4, size=32)
    reset_codebooks_(quantizer)
    config = VQTrainingConfig(decay=0.9, kmeans_iters=2, dropout_prob=0.5)

    def error():
        quantizer.eval()
        semantic, both = (quantize(quantizer, held_out, n).quantized for n in (1, 3))
        quantizer.train()
        return torch.stack([(semantic - held_out).pow(2).mean(), (both - semantic - held_out).pow(2).mean()])

    quantizer.train()
    quantize(quantizer, sample(centers, 8, 0.1, gen).T[None], 3, VQTrainingConfig(dropout_prob=0.0), gen)
    start = error()
    for _ in range(100):
        out = quantize(quantizer, sample(centers, 256, 0.1, gen).T[None], 3, config, gen)
    end = error()
    assert (end < start / 4).all(), (start, end)
    assert out.stats["perplexity"][0] > 16


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        torch.manual_seed(100 + rank)  # different global RNG per rank: only rank 0's draws may count
        gen = torch.Generator().manual_seed(rank)
        data_gen = torch.Generator().manual_seed(10 + rank)
        centers = clusters(12, 6, seed=3)
        quantizer = make_quantizer(levels=4, dim=4, size=16, hidden=6, seed=0).train()
        reset_codebooks_(quantizer)
        config = VQTrainingConfig(decay=0.9, kmeans_iters=3, dropout_prob=0.5)
        levels = []
        for _step in range(6):
            x = sample(centers, 24 + 8 * rank, 0.1, data_gen).T[None]  # (1, hidden 6, T), T differs per rank
            out = quantize(quantizer, x, 4, config, gen)
            levels.append(out.codes.shape[1])
        book = quantizer.acoustic_residual_vector_quantizer.layers[0].codebook
        book.cluster_usage[[3, 5, 7]] = 1e-4  # the same dead codes on both ranks; different candidates per rank, and
        # fewer on rank 0 (2) than dead codes: both restart rank 0's count
        restarted = restart_dead_codes_(book, torch.randn(2 + 4 * rank, 4, generator=data_gen), 0.1, gen)
        quantize(quantizer, x, 4, config, gen)
        torch.save({"buffers": buffers(quantizer), "levels": levels, "restarted": restarted},
                   f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_codebooks_stay_bit_identical(tmp_path, monkeypatch):
    for name in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    assert r0["levels"] == r1["levels"] and len(set(r0["levels"])) > 1  # dropout drawn once, shared
    assert r0["restarted"] == r1["restarted"] == 2
    assert r0["buffers"]["semantic_residual_vector_quantizer.layers.0.codebook.initialized"].item() == 1
    for name, value in r0["buffers"].items():
        assert torch.equal(value, r1["buffers"][name]), name
