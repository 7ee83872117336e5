"""GAN training of the 12 Hz speech tokenizer: from scratch, fine-tuning a released one, or decoder-only.

The generator is the released ``SpeechTokenizer`` (encoder → split RVQ → decoder); the codebooks learn
by EMA (``vq_training``), everything else by gradients. Losses: multi-scale mel L1, adversarial
(multi-period + multi-band STFT discriminators), feature matching, commitment and, when a teacher
is given, distillation of the semantic codebook toward the teacher's features (e.g. a local WavLM through
``qtts.models.codec.teacher.SpeechTeacher``; the frozen teacher is kept out of checkpoints and exports). The first
``gan_warmup_steps`` generator steps train on reconstruction only; then the discriminator steps every
``disc_every`` generator steps. Lightning's ``max_steps`` counts the steps of both optimizers.
Decoder-only mode freezes encoder and quantizer, so codes stay exactly those of the starting codec.
With ``vq_warmup_steps`` the first generator steps decode the encoder's continuous latent (``vq_training.bypass``):
a codec from scratch then learns a latent before the EMA codebooks k-means-initialise on it, instead of chasing a
latent that moves faster than they follow (validation always quantizes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from qtts.audio.features import LogMelSpectrogram
from qtts.models.codec.discriminators import CodecDiscriminator, CodecDiscriminatorConfig
from qtts.models.codec.model import CodecConfig, SpeechTokenizer
from qtts.models.codec.vq_training import (
    VQTrainingConfig,
    bypass,
    decoder_quantizer_state_dict,
    quantize,
    reset_codebooks_,
)
from qtts.tasks.codec_losses import (
    CodecLossWeights,
    MultiScaleMelLoss,
    adversarial_losses,
    assemble_generator_loss,
    feature_matching_loss,
)
from qtts.tasks.codec_metrics import mel_distance, perceptual_metrics, si_sdr
from qtts.training.media import log_audio
from qtts.training.schedules import warmup_cosine

Mode = Literal["scratch", "finetune", "decoder_only"]


class CodecTask(L.LightningModule):
    def __init__(self, model: CodecConfig | dict, mode: Mode = "scratch", init_from: str | None = None,
                 num_quantizers: int | None = None, vq: dict | None = None, discriminator: dict | None = None,
                 loss_weights: dict | None = None, adversarial: Literal["lsgan", "hinge"] = "lsgan",
                 gan_warmup_steps: int = 0, disc_every: int = 1, lr: float = 3e-4, disc_lr: float = 3e-4,
                 betas: tuple[float, float] = (0.8, 0.99), warmup_steps: int = 0, grad_clip: float = 1000.0,
                 disc_grad_clip: float = 10.0, teacher: Any = None, teacher_dim: int | None = None,
                 log_media: bool = True, seed: int = 0, vq_warmup_steps: int = 0,
                 zero_biases: bool = False, encoder_init_gain: float | None = None):
        super().__init__()
        config = model if isinstance(model, CodecConfig) else CodecConfig.from_dict(model)
        if mode != "scratch" and not init_from:
            raise ValueError(f"mode={mode!r} needs init_from: a released tokenizer folder or a qtts export")
        teacher_dim = _teacher_dim(teacher, teacher_dim)
        self.save_hyperparameters(ignore=["model", "teacher"])
        self.hparams["model"] = config.to_dict()  # plain data: checkpoints load with weights_only=True
        self.hparams["teacher_dim"] = teacher_dim
        self.automatic_optimization = False
        # Generator steps taken (Lightning's global_step counts both optimizers' steps); saved, so warm-up and
        # the discriminator period continue exactly after a resume.
        self.register_buffer("generator_steps", torch.zeros((), dtype=torch.long))

        self.codec = SpeechTokenizer.from_pretrained(init_from).train() if init_from else SpeechTokenizer(config)
        self.config = self.codec.config
        if mode == "scratch":
            reset_codebooks_(self.codec.encoder.quantizer)
            if zero_biases:
                zero_biases_(self.codec)
            if encoder_init_gain is not None:
                scale_preserving_init_(self.codec.encoder, encoder_init_gain)
        if mode == "decoder_only":
            self.codec.encoder.requires_grad_(False)
        self.num_quantizers = num_quantizers or self.config.encoder_valid_num_quantizers
        self.vq = VQTrainingConfig(**(vq or {}))
        self.discriminator = CodecDiscriminator(CodecDiscriminatorConfig(**(discriminator or {})))
        self.weights = CodecLossWeights(**(loss_weights or {}))
        self.disc_loss, self.gen_adv_loss = adversarial_losses(adversarial)
        self.mel_loss = MultiScaleMelLoss(self.config.output_sample_rate)
        self.mel = LogMelSpectrogram(self.config.output_sample_rate, n_fft=1024, hop_length=256, n_mels=80)
        self.teacher = teacher
        if teacher is not None:
            teacher.requires_grad_(False)
            self.semantic_projection = nn.Linear(self.config.encoder_config.hidden_size, teacher_dim)
        # The teacher is frozen and reloads from its own folder, so checkpoints leave it out (WavLM-large alone
        # is 1.2 GB) and loading fills its keys from the current teacher: resume needs no teacher weights.
        self.register_state_dict_post_hook(_drop_teacher_keys)
        self.register_load_state_dict_pre_hook(_fill_teacher_keys)

    def setup(self, stage: str) -> None:
        """Under DDP, each backward here leaves one network unused (the discriminator step has a detached
        generator output; the generator step a frozen discriminator), which DDP accepts only when it looks
        for unused parameters. Runs before Lightning wraps the model, so set that here rather than make
        every codec run remember a strategy flag."""
        strategy = self.trainer.strategy if self._trainer is not None else None
        ddp_kwargs = getattr(strategy, "_ddp_kwargs", None)
        if isinstance(strategy, DDPStrategy) and isinstance(ddp_kwargs, dict):
            if not ddp_kwargs.get("find_unused_parameters"):
                rank_zero_info("CodecTask: DDP find_unused_parameters=True (GAN steps leave a network unused)")
            ddp_kwargs["find_unused_parameters"] = True

    # -- generator ----------------------------------------------------------------------------------
    def reconstruct(self, wav: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """wav (B, 1, S) → reconstruction (B, 1, S) and the quantizer output."""
        encoder = self.codec.encoder
        # Quantizer dropout, k-means seeds and code restarts draw from a generator seeded by (seed, step), not
        # the global RNG, which data loading also draws from: a resumed run makes the same draws.
        generator = torch.Generator().manual_seed(hash((self.hparams.seed, int(self.generator_steps))) % 2**62)
        if self.hparams.mode == "decoder_only":
            encoder.eval()
            with torch.no_grad():
                out = quantize(encoder.quantizer, encoder.encode_latent(wav), self.num_quantizers, self.vq, generator)
        elif self.training and int(self.generator_steps) < self.hparams.vq_warmup_steps:
            out = bypass(encoder.quantizer, encoder.encode_latent(wav))
        else:
            out = quantize(encoder.quantizer, encoder.encode_latent(wav), self.num_quantizers, self.vq, generator)
        fake = self.codec.decoder.decode_latent(out.quantized)[..., : wav.shape[-1]]
        return fake, out

    def semantic_loss(self, wav: torch.Tensor, semantic: torch.Tensor) -> torch.Tensor:
        """1 − cosine between the projected semantic codewords and the teacher's features at the codec's rate."""
        with torch.no_grad():
            target = self.teacher(wav[:, 0])  # (B, T', D)
        target = F.interpolate(target.transpose(1, 2), size=semantic.shape[-1], mode="linear", align_corners=False)
        predicted = self.semantic_projection(semantic.transpose(1, 2)).transpose(1, 2)
        return (1 - F.cosine_similarity(predicted, target, dim=1)).mean()

    # -- training -----------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        gen_opt, disc_opt = self.optimizers()
        gen_sched, disc_sched = self.lr_schedulers()
        real = self._crop_to_hop(batch["wav"]).unsqueeze(1)
        fake, out = self.reconstruct(real)
        step = int(self.generator_steps)
        use_gan = step >= self.hparams.gan_warmup_steps

        if use_gan and step % self.hparams.disc_every == 0:
            both = self.discriminator(torch.cat([real, fake.detach()]))
            real_logits = [logits.chunk(2)[0] for logits, _ in both]
            fake_logits = [logits.chunk(2)[1] for logits, _ in both]
            disc_loss = self.disc_loss(real_logits, fake_logits)
            disc_opt.zero_grad(set_to_none=True)
            self.manual_backward(disc_loss)
            self.clip_gradients(disc_opt, gradient_clip_val=self.hparams.disc_grad_clip, gradient_clip_algorithm="norm")
            disc_opt.step()
            disc_sched.step()
            self.log("train/disc_loss", disc_loss, batch_size=len(real))

        parts = {"mel": self.mel_loss(fake, real), "commitment": out.commitment_loss}
        if self.teacher is not None:
            parts["semantic"] = self.semantic_loss(real, out.semantic)
        if use_gan:
            self.discriminator.requires_grad_(False)
            both = self.discriminator(torch.cat([real, fake]))
            self.discriminator.requires_grad_(True)
            fake_logits = [logits.chunk(2)[1] for logits, _ in both]
            real_feats = [[f.chunk(2)[0] for f in feats] for _, feats in both]
            fake_feats = [[f.chunk(2)[1] for f in feats] for _, feats in both]
            parts["adv"] = self.gen_adv_loss(fake_logits)
            parts["feature"] = feature_matching_loss(real_feats, fake_feats)
        total, logged = assemble_generator_loss(parts, self.weights)
        if not torch.isfinite(total):
            raise FloatingPointError(f"non-finite generator loss {logged} at step {self.global_step}, "
                                     f"batch {batch['ids']}")
        gen_opt.zero_grad(set_to_none=True)
        self.manual_backward(total)
        self.clip_gradients(gen_opt, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")
        gen_opt.step()
        gen_sched.step()
        self.generator_steps += 1
        self.log_dict({f"train/{k}": v for k, v in logged.items() if k != "mel"}, batch_size=len(real))
        self.log("train/mel", logged["mel"], prog_bar=True, batch_size=len(real))
        self.log("train/levels", float(out.codes.shape[1]), batch_size=len(real))
        vq = {"vq_perplexity": out.stats["perplexity"].mean(), "vq_usage": out.stats["usage"].mean()}
        self.log_dict({f"train/{k}": v for k, v in vq.items()}, batch_size=len(real))  # collapse shows here first

    # -- validation ---------------------------------------------------------------------------------
    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        real = self._crop_to_hop(batch["wav"]).unsqueeze(1)
        fake, out = self.reconstruct(real)
        n = len(real)
        self.log("val/mel", self.mel_loss(fake, real), sync_dist=True, batch_size=n)
        self.log("val/mel_distance", mel_distance(fake[:, 0], real[:, 0], self.config.output_sample_rate),
                 sync_dist=True, batch_size=n)
        self.log("val/si_sdr", si_sdr(fake[:, 0], real[:, 0]).mean(), sync_dist=True, batch_size=n)
        for name, value in perceptual_metrics(fake[:, 0], real[:, 0], self.config.output_sample_rate).items():
            self.log(f"val/{name}", value, sync_dist=True, batch_size=n)
        for name in ("perplexity", "usage"):
            for level, value in enumerate(out.stats[name].tolist()):
                self.log(f"val/{name}_{level:02d}", value, sync_dist=True, batch_size=n)
        if batch_idx == 0 and self.hparams.log_media and self.trainer.is_global_zero and self.loggers:
            sr = self.config.output_sample_rate
            for name, wav in (("input", real[0, 0]), ("reconstruction", fake[0, 0])):
                log_audio(self.loggers, f"val/{name}", wav, sr, self.global_step, self.mel(wav[None])[0].T)

    # -- optimisation, export -----------------------------------------------------------------------
    def configure_optimizers(self):
        gen_params = [p for p in self.codec.parameters() if p.requires_grad]
        if self.teacher is not None:
            gen_params += list(self.semantic_projection.parameters())
        gen = torch.optim.AdamW(gen_params, lr=self.hparams.lr, betas=tuple(self.hparams.betas))
        disc = torch.optim.AdamW(self.discriminator.parameters(), lr=self.hparams.disc_lr,
                                 betas=tuple(self.hparams.betas))
        total = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = warmup_cosine(self.hparams.warmup_steps, total) if self.hparams.warmup_steps else (lambda s: 1.0)
        return [gen, disc], [torch.optim.lr_scheduler.LambdaLR(gen, schedule),
                             torch.optim.lr_scheduler.LambdaLR(disc, schedule)]

    def export(self, folder: str | Path) -> Path:
        """Write the released folder format; the decoder's dequantiser takes the trained encoder codebooks."""
        self.codec.decoder.quantizer.load_state_dict(
            decoder_quantizer_state_dict(self.codec.encoder.quantizer, self.config.decoder_config.num_quantizers))
        self.codec.save_pretrained(folder)
        return Path(folder)

    def on_train_end(self) -> None:
        if self.trainer.is_global_zero and self.trainer.default_root_dir:
            self.export(Path(self.trainer.default_root_dir) / "export")

    def _crop_to_hop(self, wav: torch.Tensor) -> torch.Tensor:
        hop = self.config.encode_downsample_rate
        usable = wav.shape[-1] // hop * hop
        if usable == 0:
            raise ValueError(f"audio of {wav.shape[-1]} samples is shorter than one codec frame ({hop})")
        return wav[..., :usable]


def zero_biases_(module: nn.Module) -> None:
    """Set every bias of a (transposed) convolution or linear layer in ``module`` to zero, for a codec trained
    from scratch.

    Why: with PyTorch's default init each such layer adds a random bias of up to ±1/sqrt(fan_in), far above a
    waveform's own level (speech RMS ~0.1), so a fresh encoder's latent is nearly constant (its variation over time
    is ~15 % of its size after the SEANet stack) and the decoder's transformer input projection buries what is left
    (~6 %): the decoder learns to ignore its input and the mel loss sits on the "average spectrum" plateau. With zero
    biases every activation starts as the signal's own (ELU(0) = 0), and the norms rescale it."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv1d, nn.ConvTranspose1d, nn.Linear)) and layer.bias is not None:
            nn.init.zeros_(layer.bias)


def scale_preserving_init_(module: nn.Module, gain: float = 1.0) -> None:
    """Draw every convolution weight in ``module`` from N(0, gain² / fan_in) (fan_in = in channels × kernel).

    Why: PyTorch's default (uniform, std 1/sqrt(3·fan_in)) shrinks a signal ~1.7× per conv, so after the SEANet
    stack a 0.1-RMS waveform arrives as a latent of ~0.002, far below the step Adam takes on every weight and bias
    (~lr): within a few hundred steps the biases outgrow it and the decoder ignores its input. At gain 1 the
    encoder's latent keeps about the waveform's level (ELU and the residual units roughly balance)."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv1d):
            fan_in = layer.weight.shape[1] * layer.weight.shape[2]
            nn.init.normal_(layer.weight, 0.0, gain / fan_in**0.5)


def _teacher_dim(teacher: nn.Module | None, teacher_dim: int | None) -> int | None:
    """The teacher's feature width: given, or the teacher's ``dim`` (``SpeechTeacher`` has one)."""
    if teacher is None:
        if teacher_dim is not None:
            raise ValueError("teacher_dim is set but there is no teacher")
        return None
    dim = getattr(teacher, "dim", None)
    if teacher_dim is None and dim is None:
        raise ValueError(f"teacher {type(teacher).__name__} has no `dim` attribute: set teacher_dim "
                         "(the width of its features)")
    if teacher_dim is not None and dim is not None and int(dim) != teacher_dim:
        raise ValueError(f"teacher_dim={teacher_dim} but the teacher's features are {dim} wide")
    return int(teacher_dim if teacher_dim is not None else dim)


def _drop_teacher_keys(module: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    for key in [k for k in state_dict if k.startswith(prefix + "teacher.")]:
        del state_dict[key]


def _fill_teacher_keys(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    if module.teacher is not None:
        for key, value in module.teacher.state_dict(prefix=prefix + "teacher.").items():
            state_dict.setdefault(key, value)
