"""Talker training step: qtts vs the official qwen-tts fine-tuning step, side by side.

Why: a qtts training step must be at least as fast as, and use no more memory than, the step of the
official fine-tuning script (``finetuning/sft_12hz.py`` of QwenLM/Qwen3-TTS at 022e286) on the same model
and the same batch. So this script, in one process,

1. builds a model with qtts (``--shape``), gives it random weights, saves it to a temporary folder;
2. loads that folder with qtts (``TalkerTask(init_from=…)``, i.e. ``TTSModel.from_pretrained``) and with
   qwen-tts (``Qwen3TTSForConditionalGeneration`` from the folder's config + strict ``load_state_dict`` of its
   ``model.safetensors``, as the repository's parity tests do; ``from_pretrained`` would also want a
   ``speech_tokenizer/`` folder that the talker step does not use);
3. makes one batch of ``--batch`` utterances, each ``--text-tokens`` random text tokens and ``--frames``
   random 16-group frames (codes < 2048) plus a ``--ref-seconds`` reference clip for the x-vector, in the
   non-streaming SFT layout with an x-vector slot (facts §3) — qtts's ``build_sequence`` /
   ``collate_talker`` (qtts's loader collate, speaker mels included) on one side, upstream's
   ``TTSDataset.collate_fn`` (reproduced here) on the other;
4. prints checks first: the x-vectors agree, each side's losses on that batch, and cross-checks showing
   that the losses differ only through upstream's label alignment;
5. times full optimizer steps (forward, backward, grad-norm clip 1.0, AdamW step, zero_grad), after
   ``--warmup`` steps per side, alternating which side goes first every repeat, and reports medians,
   min–max, positions per second, peak memory (CUDA) and the ratio qwen-tts time / qtts time.

The upstream step, as ``sft_12hz.py`` drives the qwen-tts model (single process, accumulation 1):

* ``x = text_projection(text_embedding(text)) * text_mask + codec_embedding(codec) * codec_mask``, position 6
  := ``speaker_encoder(ref_mels).detach()``, ``+ Σ_{g=1..15} code_predictor.codec_embedding[g-1](codes_g) *
  frame_mask``. (HEAD omits ``text_projection``, which crashes every shape whose text width differs from the
  talker width, 0.6B included; the community fix, PR #188/#336, is applied here. qtts applies it too.)
* ``out = talker(inputs_embeds=x[:, :-1], attention_mask=mask[:, :-1], labels=codec_0_labels[:, 1:],
  output_hidden_states=True)``; ``sub = talker.forward_sub_talker_finetune(codec_ids[codec_mask],
  out.hidden_states[0][-1][codec_mask[:, :-1]])``; ``loss = out.loss + 0.3 * sub_loss``.
* ``AdamW(model.parameters(), lr=2e-5, weight_decay=0.01)``, ``clip_grad_norm_(…, 1.0)``.

The qtts step is ``TalkerTask.losses`` (speaker encoder ``frozen``: the x-vector without gradient, as
upstream's ``.detach()``), AdamW with ``TalkerTask.configure_optimizers``'s parameter groups, the same clip.
qtts computes the reference mel inside its step (``SpeakerEncoder.embed_audio``); upstream's dataset computes
it in the DataLoader, so here it is computed once, untimed — a small handicap for qtts.

Precision (``--dtype``):

* ``float32``: fp32 weights, no autocast, both sides.
* ``bfloat16``: bf16 weights, no autocast, both sides — what upstream actually runs: it loads the model in
  bf16, and ``Accelerator(mixed_precision="bf16")`` only wraps ``model.forward`` in autocast, which the script
  never calls (it calls ``model.talker`` and ``model.speaker_encoder``), so AdamW states are bf16 too.
* ``bf16-mixed``: fp32 weights + ``torch.autocast(bfloat16)`` both sides (qtts's recipes' Lightning precision).

Memory (CUDA): the side not being measured is parked on the CPU (weights and AdamW state), so
``torch.cuda.max_memory_allocated`` after a reset is that side's own peak: weights + grads + optimizer state +
activations. On the CPU no per-side peak is reported (both live in one process and share the allocator).

Usage: .venv/bin/python benchmarks/talker_train.py [--shape tiny|small|0.6b|1.7b --batch 4 --frames 50
       --text-tokens 20 --repeats 3 --threads 2 --device cpu --dtype float32]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from qtts.data.talker_dataset import collate_talker
from qtts.models.random_weights import randomize_tts
from qtts.models.talker import TTSModel, released_0_6b, released_1_7b, tiny
from qtts.models.talker.layout import IGNORE_INDEX, build_sequence

SAMPLE_RATE = 24_000
ROLE = [151644, 77091, 198]  # <|im_start|> assistant \n


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="tiny", choices=["tiny", "small", "0.6b", "1.7b"],
                        help="tiny: qtts's test shape (talker 64 wide, 2 layers); small: 256 wide, 4 layers; "
                             "0.6b / 1.7b: the released Base shapes")
    parser.add_argument("--batch", type=int, default=4, help="utterances per batch")
    parser.add_argument("--frames", type=int, default=50, help="audio frames per utterance (12.5 per second)")
    parser.add_argument("--text-tokens", type=int, default=20, help="text tokens per utterance")
    parser.add_argument("--ref-seconds", type=float, default=3.0, help="reference clip for the x-vector")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per side (median shown)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per side first")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (both sides run there)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "bf16-mixed"])
    parser.add_argument("--qwen-attn", default="sdpa", choices=["sdpa", "eager", "flash_attention_2"],
                        help="qwen-tts attention implementation (upstream asks for flash_attention_2)")
    parser.add_argument("--no-park", action="store_true",
                        help="CUDA: keep both sides on the GPU (peaks then include the other side's state)")
    parser.add_argument("--check-only", action="store_true", help="print the checks, skip the timing")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


# ----------------------------------------------------------------------------------------------------------
# model and batch


def model_config(shape: str):
    if shape == "tiny":
        return tiny("base")
    if shape == "small":
        return tiny("base", talker_hidden=256, predictor_hidden=256, layers=4, predictor_layers=2, text_hidden=256)
    return released_0_6b("base") if shape == "0.6b" else released_1_7b("base")


def build_folder(folder: str, shape: str, seed: int) -> None:
    torch.manual_seed(seed)
    model = TTSModel(model_config(shape))
    randomize_tts(model, seed)
    model.save_pretrained(folder)


def load_qtts(folder: str, weight_dtype: torch.dtype, device: str):
    from qtts.tasks.talker import TalkerTask

    task = TalkerTask(init_from=folder, speaker_encoder="frozen").train()
    task.model.to(device=device, dtype=weight_dtype)
    decay, no_decay = [], []  # TalkerTask.configure_optimizers's groups (its LR schedule needs a Trainer)
    for name, p in task.model.named_parameters():
        if p.requires_grad:
            (no_decay if p.dim() < 2 or "embedding" in name else decay).append(p)
    hp = task.hparams
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": hp.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=hp.lr, betas=tuple(hp.betas))
    return task, optimizer


def load_qwen(folder: str, weight_dtype: torch.dtype, device: str, attn: str):
    from pathlib import Path

    from qwen_tts.core.models.configuration_qwen3_tts import Qwen3TTSConfig
    from qwen_tts.core.models.modeling_qwen3_tts import Qwen3TTSForConditionalGeneration
    from safetensors.torch import load_file

    config = Qwen3TTSConfig.from_pretrained(folder)
    config._attn_implementation = attn
    config.talker_config._attn_implementation = attn
    config.talker_config.code_predictor_config._attn_implementation = attn
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = Qwen3TTSForConditionalGeneration(config)
    model.load_state_dict(load_file(str(Path(folder) / "model.safetensors")), strict=True)
    model.to(device=device, dtype=weight_dtype).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.01)  # sft_12hz.py
    return model, optimizer


@dataclass
class Content:
    text: torch.Tensor  # (B, N) content ids
    codes: torch.Tensor  # (B, C, 16)
    reference: torch.Tensor  # (B, samples) 24 kHz


def make_content(batch: int, text_tokens: int, frames: int, ref_seconds: float, seed: int) -> Content:
    gen = torch.Generator().manual_seed(seed + 1)
    text = torch.randint(0, 150_000, (batch, text_tokens), generator=gen)
    codes = torch.randint(0, 2048, (batch, frames, 16), generator=gen)
    t = torch.arange(int(ref_seconds * SAMPLE_RATE)) / SAMPLE_RATE
    reference = torch.stack([0.4 * torch.sin(2 * math.pi * (150 + 40 * b + 100 * t) * t)
                             + 0.05 * torch.randn(t.shape, generator=gen) for b in range(batch)])
    return Content(text, codes, reference.clamp(-1, 1))


def qtts_batch(content: Content) -> dict:
    """What qtts's DataLoader hands the step (``collate_talker``): tracks, reference clips and their speaker
    mels, computed in the loader like upstream's ``ref_mels``."""
    items = [{"id": b, "sequence": build_sequence(content.text[b].tolist(), xvector=True,
                                                   target_codes=content.codes[b]),
              "reference": content.reference[b]} for b in range(content.text.shape[0])]
    return collate_talker(items)


def qwen_batch(content: Content, config) -> dict:
    """``TTSDataset.__getitem__`` + ``collate_fn`` of finetuning/dataset.py (022e286), on the given content."""
    from qwen_tts.core.models.modeling_qwen3_tts import mel_spectrogram

    tc = config.talker_config
    items = []
    for b in range(content.text.shape[0]):
        text_ids = torch.tensor([ROLE + content.text[b].tolist()])  # the template's ids[:, :-5]
        ref_mel = mel_spectrogram(content.reference[b:b + 1], n_fft=1024, num_mels=128, sampling_rate=24000,
                                  hop_size=256, win_size=1024, fmin=0, fmax=12000).transpose(1, 2)
        items.append({"text_ids": text_ids, "audio_codes": content.codes[b], "ref_mel": ref_mel})
    lengths = [d["text_ids"].shape[1] + d["audio_codes"].shape[0] for d in items]
    b, t = len(items), max(lengths) + 8
    input_ids = torch.zeros((b, t, 2), dtype=torch.long)
    codec_ids = torch.zeros((b, t, 16), dtype=torch.long)
    text_embedding_mask = torch.zeros((b, t), dtype=torch.bool)
    codec_embedding_mask = torch.zeros((b, t), dtype=torch.bool)
    codec_mask = torch.zeros((b, t), dtype=torch.bool)
    attention_mask = torch.zeros((b, t), dtype=torch.long)
    codec_0_labels = torch.full((b, t), -100, dtype=torch.long)
    for i, data in enumerate(items):
        text_ids, codes = data["text_ids"], data["audio_codes"]
        n, c = text_ids.shape[1], codes.shape[0]
        input_ids[i, :3, 0] = text_ids[0, :3]
        input_ids[i, 3:7, 0] = config.tts_pad_token_id
        input_ids[i, 7, 0] = config.tts_bos_token_id
        input_ids[i, 8:8 + n - 3, 0] = text_ids[0, 3:]
        input_ids[i, 8 + n - 3, 0] = config.tts_eos_token_id
        input_ids[i, 8 + n - 2:8 + n + c, 0] = config.tts_pad_token_id
        text_embedding_mask[i, :8 + n + c] = True
        input_ids[i, 3:8, 1] = torch.tensor([tc.codec_nothink_id, tc.codec_think_bos_id, tc.codec_think_eos_id, 0,
                                             tc.codec_pad_id])
        input_ids[i, 8:8 + n - 3, 1] = tc.codec_pad_id
        input_ids[i, 8 + n - 3, 1] = tc.codec_pad_id
        input_ids[i, 8 + n - 2, 1] = tc.codec_bos_id
        input_ids[i, 8 + n - 1:8 + n - 1 + c, 1] = codes[:, 0]
        input_ids[i, 8 + n - 1 + c, 1] = tc.codec_eos_token_id
        codec_0_labels[i, 8 + n - 1:8 + n - 1 + c] = codes[:, 0]
        codec_0_labels[i, 8 + n - 1 + c] = tc.codec_eos_token_id
        codec_ids[i, 8 + n - 1:8 + n - 1 + c, :] = codes
        codec_embedding_mask[i, 3:8 + n + c] = True
        codec_embedding_mask[i, 6] = False
        codec_mask[i, 8 + n - 1:8 + n - 1 + c] = True
        attention_mask[i, :8 + n + c] = True
    return {"input_ids": input_ids, "ref_mels": torch.cat([d["ref_mel"] for d in items], dim=0),
            "attention_mask": attention_mask, "text_embedding_mask": text_embedding_mask.unsqueeze(-1),
            "codec_embedding_mask": codec_embedding_mask.unsqueeze(-1), "codec_0_labels": codec_0_labels,
            "codec_ids": codec_ids, "codec_mask": codec_mask}


def to_device(batch: dict, device: str) -> dict:
    out = {}
    for k, v in batch.items():
        out[k] = v.to(device) if hasattr(v, "to") else v
    return out


# ----------------------------------------------------------------------------------------------------------
# the two steps


def qwen_forward(model, batch: dict):
    """sft_12hz.py's forward (022e286), text_projection restored; returns (loss, talker out, sub loss, x-vector)."""
    input_ids, codec_ids = batch["input_ids"], batch["codec_ids"]
    codec_mask = batch["codec_mask"]
    speaker_embedding = model.speaker_encoder(batch["ref_mels"].to(model.device).to(model.dtype)).detach()
    input_text_embedding = model.talker.text_projection(
        model.talker.model.text_embedding(input_ids[:, :, 0])) * batch["text_embedding_mask"]
    input_codec_embedding = model.talker.model.codec_embedding(input_ids[:, :, 1]) * batch["codec_embedding_mask"]
    input_codec_embedding[:, 6, :] = speaker_embedding
    input_embeddings = input_text_embedding + input_codec_embedding
    for i in range(1, 16):
        codec_i_embedding = model.talker.code_predictor.get_input_embeddings()[i - 1](codec_ids[:, :, i])
        input_embeddings = input_embeddings + codec_i_embedding * codec_mask.unsqueeze(-1)
    outputs = model.talker(inputs_embeds=input_embeddings[:, :-1, :], attention_mask=batch["attention_mask"][:, :-1],
                           labels=batch["codec_0_labels"][:, 1:], output_hidden_states=True)
    hidden_states = outputs.hidden_states[0][-1]
    talker_hidden_states = hidden_states[codec_mask[:, :-1]]
    talker_codec_ids = codec_ids[codec_mask]
    _, sub_talker_loss = model.talker.forward_sub_talker_finetune(talker_codec_ids, talker_hidden_states)
    return outputs.loss + 0.3 * sub_talker_loss, outputs, sub_talker_loss, speaker_embedding


def qwen_step(model, optimizer, batch, autocast) -> torch.Tensor:
    with autocast():
        loss = qwen_forward(model, batch)[0]
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad()
    return loss.detach()


def qtts_step(task, optimizer, batch, autocast) -> torch.Tensor:
    with autocast():
        loss = task.losses(batch).total
    loss.backward()
    torch.nn.utils.clip_grad_norm_(task.model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad()
    return loss.detach()


# ----------------------------------------------------------------------------------------------------------
# checks


def check_agreement(task, qwen, qb, tb, autocast) -> list[str]:
    """x-vectors, each side's losses, and cross-scored losses (same logits, the other side's labels)."""
    lines = []
    with torch.no_grad(), autocast():
        loss, out, sub, xvec_qwen = qwen_forward(qwen, qb)
        tracks = tb["tracks"]
        xvec_ours = task.xvectors(tb, tracks)
        ours = task.losses(tb)
        talker = task.model.talker
        from qtts.models.talker.layout import embed_dual_track

        embeds = embed_dual_track(tracks, text_embed=talker.embed_text, codec_embed=talker.embed_codec,
                                  residual_embeds=talker.code_predictor.model.codec_embedding, xvectors=xvec_ours)
        ours_out = talker(embeds, position_ids=tracks.position_ids, document_ids=tracks.document_ids)
    rel = lambda a, b: ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()  # noqa: E731
    lines.append(f"x-vectors (B={xvec_ours.shape[0]}, {xvec_ours.shape[1]}): max |qtts − qwen-tts| / max |qwen-tts| "
                 f"= {rel(xvec_ours, xvec_qwen):.2e}")
    # same positions: qwen-tts saw T-1 positions, qtts all T
    n = out.logits.shape[1]
    lines.append(f"talker logits on the {n} shared positions: "
                 f"max rel. diff {rel(ours_out.logits[:, :n], out.logits):.2e}")
    lines.append(f"loss qtts     = {ours.total.item():.4f}  (talker CE {ours.talker.item():.4f} + 0.3 × predictor CE "
                 f"{ours.predictor.item():.4f}; {ours.talker_tokens} talker targets, {ours.predictor_frames} frames)")
    lines.append(f"loss qwen-tts = {loss.item():.4f}  (talker CE {out.loss.item():.4f} + 0.3 × sub-talker CE "
                 f"{sub.item():.4f})")
    # upstream's talker targets: labels[:, 1:] shifted again by ForCausalLMLoss → logits[p] vs codec_0_labels[p+2]
    up_labels = qb["codec_0_labels"][:, 2:]
    up_on_ours = F.cross_entropy(ours_out.logits[:, :up_labels.shape[1]].flatten(0, 1).float(), up_labels.flatten(),
                                 ignore_index=IGNORE_INDEX)
    ours_labels = tracks.labels[:, :n]
    ours_on_up = F.cross_entropy(out.logits.flatten(0, 1).float(), ours_labels.flatten(), ignore_index=IGNORE_INDEX)
    lines.append(f"cross-check: qtts logits scored with upstream's double-shifted labels (logits[p] vs c0 at p+2) = "
                 f"{up_on_ours.item():.4f} (qwen-tts talker CE {out.loss.item():.4f}); qwen-tts logits scored "
                 f"with qtts's aligned labels = {ours_on_up.item():.4f} (qtts talker CE {ours.talker.item():.4f})")
    lines.append(f"talker targets: qtts {int((tracks.labels != IGNORE_INDEX).sum())} (every frame's c0 + eos, "
                 f"from the position before), qwen-tts {int((up_labels != IGNORE_INDEX).sum())} "
                 f"(each from two positions before its frame: logits[p] vs c0 at p+2)")
    return lines


# ----------------------------------------------------------------------------------------------------------
# timing and memory


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def park(module: torch.nn.Module, optimizer: torch.optim.Optimizer, device: str) -> None:
    """Move a side's weights (in place: the optimizer keeps its parameters) and AdamW state."""
    module.to(device)
    for state in optimizer.state.values():
        for k, v in state.items():
            if torch.is_tensor(v) and v.dim() > 0:
                state[k] = v.to(device)


def state_bytes(module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    n = sum(p.numel() * p.element_size() for p in module.parameters())
    for state in optimizer.state.values():
        n += sum(v.numel() * v.element_size() for v in state.values() if torch.is_tensor(v) and v.dim() > 0)
    return n


@dataclass
class Side:
    name: str
    module: torch.nn.Module
    optimizer: torch.optim.Optimizer
    run: Callable[[], torch.Tensor]  # one optimizer step → the loss (detached)
    times: list[float] = field(default_factory=list)
    cpu_times: list[float] = field(default_factory=list)  # process CPU seconds (all threads)
    peaks: list[int] = field(default_factory=list)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    device = args.device
    cuda = device.startswith("cuda")
    weight_dtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32

    def autocast():
        if args.dtype == "bf16-mixed":
            return torch.autocast(device_type="cuda" if cuda else "cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        build_folder(folder, args.shape, args.seed)
        task, ours_opt = load_qtts(folder, weight_dtype, device)
        qwen, qwen_opt = load_qwen(folder, weight_dtype, device, args.qwen_attn)
        print(f"built and loaded both in {time.perf_counter() - start:.1f} s")
    params = sum(p.numel() for p in task.model.parameters())
    where = torch.cuda.get_device_name(device) if cuda else "CPU"
    content = make_content(args.batch, args.text_tokens, args.frames, args.ref_seconds, args.seed)
    tb = qtts_batch(content)
    tb["tracks"] = tb["tracks"].to(device)
    tb = to_device(tb, device)
    qb = to_device(qwen_batch(content, qwen.config), device)
    positions = int(tb["tracks"].attention_mask.sum())  # B · (N + C + 11); qwen-tts feeds B fewer (x[:, :-1])
    print(f"torch {torch.__version__}, {where}, {torch.get_num_threads()} threads, {args.dtype} "
          f"(weights {str(weight_dtype).removeprefix('torch.')}), shape {args.shape} ({params / 1e6:.1f} M params), "
          f"batch {args.batch} × ({args.text_tokens} text + {args.frames} frames) = {positions} positions, "
          f"qwen-tts attention {qwen.config.talker_config._attn_implementation}, {args.repeats} repeats after "
          f"{args.warmup} warm-up steps each, sides alternated")

    for line in check_agreement(task, qwen, qb, tb, autocast):
        print("check: " + line, flush=True)

    if args.check_only:
        return
    sides = [Side("qtts", task.model, ours_opt, lambda: qtts_step(task, ours_opt, tb, autocast)),
             Side("qwen-tts", qwen, qwen_opt, lambda: qwen_step(qwen, qwen_opt, qb, autocast))]
    parking = cuda and not args.no_park

    def measure(side: Side, record: bool) -> None:
        if parking:
            for other in sides:
                if other is not side:
                    park(other.module, other.optimizer, "cpu")
            park(side.module, side.optimizer, device)
            torch.cuda.empty_cache()
        if cuda:
            sync(device)
            torch.cuda.reset_peak_memory_stats(device)
        start, cpu_start = time.perf_counter(), time.process_time()
        loss = side.run()
        sync(device)
        elapsed, cpu_elapsed = time.perf_counter() - start, time.process_time() - cpu_start
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{side.name}: non-finite loss {loss.item()}")
        if record:
            side.times.append(elapsed)
            side.cpu_times.append(cpu_elapsed)
            if cuda:
                side.peaks.append(torch.cuda.max_memory_allocated(device))

    print("warming up …", file=sys.stderr, flush=True)
    for side in sides:
        for _ in range(args.warmup):
            measure(side, record=False)
    for r in range(args.repeats):
        print(f"repeat {r + 1}/{args.repeats} …", file=sys.stderr, flush=True)
        for side in sides if r % 2 == 0 else sides[::-1]:
            measure(side, record=True)

    rows = [("side", "step time (median)", "min–max", "positions/s", "CPU s/step", "peak memory",
             "weights + AdamW state")]
    for side in sides:
        t = statistics.median(side.times)
        peak = f"{max(side.peaks) / 2**30:.2f} GiB" if side.peaks else "n/a (CPU)"
        rows.append((side.name, f"{t * 1000:.1f} ms", f"{min(side.times) * 1000:.1f}–{max(side.times) * 1000:.1f} ms",
                     f"{positions / t:,.0f}", f"{statistics.median(side.cpu_times):.2f}", peak,
                     f"{state_bytes(side.module, side.optimizer) / 2**30:.2f} GiB"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    print()
    print("\n".join(lines))
    ours_t, qwen_t = (statistics.median(s.times) for s in sides)
    print(f"\nratio qwen-tts / qtts step time = {qwen_t / ours_t:.2f} (> 1: qtts faster); ratio of the fastest "
          f"steps = {min(sides[1].times) / min(sides[0].times):.2f} (less sensitive to load from other processes)")
    if sides[0].peaks:
        print(f"peak memory qtts / qwen-tts = {max(sides[0].peaks) / max(sides[1].peaks):.2f} (≤ 1: qtts uses no more)")
    print("positions/s counts B·(N + C + 11) real positions per step for both sides (qwen-tts feeds one fewer per "
          "row, x[:, :-1]); CPU s/step: median process CPU time of a step, all threads (with 1 thread it does not "
          "count time the process waited for a core); weights + AdamW state: the weights and the optimizer's moment "
          "buffers.")


if __name__ == "__main__":
    main()
