"""Training of the dual-track talker (pretraining stages, post-training, full and LoRA fine-tuning).

The model is the released ``TTSModel`` (talker + code predictor, and for Base models the speaker
encoder); batches are dual-track sequences (``qtts.models.talker.layout``) whose labels are already aligned.
Loss = CE(group 0) + ``predictor_weight`` · CE(groups 1..15) (``dual_track_loss``). The speaker encoder
is trained with the talker (as in the paper) or frozen (``speaker_encoder: frozen``). With ``lora`` only the
adapters and the rows a fine-tune adds (speakers', new languages' and added tokens' rows) train; checkpoints then
hold just those, and the run ends with a peft adapter folder (``adapter/``) besides the merged export.
"""

from __future__ import annotations

import copy
import inspect
import time
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.strategies import ModelParallelStrategy
from torch import nn

from qtts.data.batching import DualTrackBatch
from qtts.models.checkpoint import CONFIG_NAME
from qtts.models.talker.config import TTSConfig
from qtts.models.talker.model import TTSModel
from qtts.tasks.talker_losses import DualTrackLoss, dual_track_loss
from qtts.tasks.talker_samples import teacher_forced_frames
from qtts.training.media import log_audio
from qtts.training.schedules import warmup_cosine


class TalkerTask(L.LightningModule):
    """model: a ``TTSConfig`` (or its dict) for a new model; ``init_from``: a released / exported model folder
    to start from instead (the folder's config then wins over ``model``). ``codec``: a speech tokenizer folder;
    with it, validation logs one utterance's teacher-forced prediction and its target as audio."""

    def __init__(self, model: TTSConfig | dict | None = None, init_from: str | None = None,
                 predictor_weight: float = 0.3, predictor_fraction: float = 1.0,
                 speaker_encoder: Literal["joint", "frozen"] = "joint", lr: float = 2e-4,
                 betas: tuple[float, float] = (0.9, 0.95), weight_decay: float = 0.1, warmup_steps: int = 0,
                 min_lr_ratio: float = 0.1, gradient_checkpointing: bool = False, seed: int = 0,
                 codec: str | None = None, log_media: bool = True, lora: dict | None = None,
                 train_speaker_rows: bool = False, train_language_rows: list[str] | None = None,
                 train_added_tokens: bool = False):
        super().__init__()
        if model is None and init_from is None:
            raise ValueError("give model (a config for a new model) or init_from (a model folder)")
        if not 0.0 < predictor_fraction <= 1.0:
            raise ValueError(f"predictor_fraction must be in (0, 1], got {predictor_fraction}")
        if init_from is not None:
            self.model = TTSModel.from_pretrained(init_from).train()
        else:
            self.model = TTSModel(model if isinstance(model, TTSConfig) else TTSConfig.from_dict(model))
        self.config = self.model.config
        self.save_hyperparameters(ignore=["model"])
        self.hparams["model"] = self.config.to_dict()  # plain data: checkpoints load with weights_only=True
        self.model.talker.gradient_checkpointing = gradient_checkpointing
        if self.model.speaker_encoder is not None and speaker_encoder == "frozen":
            self.model.speaker_encoder.requires_grad_(False)
        self._peft: list = []  # the peft handle (a list: not a submodule, its parameters are the model's)
        if lora is not None:
            from qtts.adapters.lora import LoraSettings, add_lora

            if init_from is None:
                raise ValueError("LoRA fine-tunes a trained model: set task.init_from")
            self._peft.append(add_lora(self.model, LoraSettings(**lora)))
            self.strict_loading = False  # checkpoints hold only what trains; the rest comes from init_from
        self._train_new_rows(train_speaker_rows, train_language_rows or [], train_added_tokens,
                             frozen=lora is not None)
        self._clock: float | None = None
        # loaded at the first validation; held in a list so it is no submodule (nor in checkpoints)
        self._codec: list = []

    def save_own_hyperparameters(self) -> None:
        """For a task built on this one (DPO, GSPO): record the subclass's own ``__init__`` arguments beside the
        talker task's (Lightning's ``save_hyperparameters`` would otherwise replace them), so a checkpoint holds
        both."""
        talker_hparams = dict(self.hparams)
        self.save_hyperparameters(ignore=["model"], frame=inspect.currentframe().f_back)
        for key, value in talker_hparams.items():
            self.hparams.setdefault(key, value)
    def _train_new_rows(self, speakers: bool, languages: list[str], added_tokens: bool, frozen: bool) -> None:
        """Train the rows a fine-tune adds on a frozen table (LoRA, or a frozen embedding): the named speakers'
        and ``languages``' codec rows, and the text rows of tokens added to the tokenizer (``qtts languages add
        --tokens-file``: every id past the built-in Qwen2 BPE's). Only those rows train and are checkpointed
        (``qtts.adapters.trained_rows``); the tables stay frozen."""
        from qtts.adapters.trained_rows import TrainedRows

        talker = self.config.talker_config
        codec_rows: list[int] = []
        if speakers:
            codec_rows += list(talker.speaker_codec_rows().values())
            if not codec_rows:
                raise ValueError("train_speaker_rows: the model names no speakers (run `qtts speakers add` first)")
        for name in languages:
            try:
                row = None if str(name).strip().lower() == "auto" else talker.language_row(name)
            except ValueError as e:
                raise ValueError(f"train_language_rows: {e} (add one with `qtts languages add`)") from None
            if row is None:
                raise ValueError("train_language_rows: name languages (codes or names), not 'auto'")
            codec_rows.append(row)
        text_rows: list[int] = []
        if added_tokens:
            from qtts.text.tokenizer import has_tokenizer, load_text_tokenizer

            source = self.hparams.init_from
            if not has_tokenizer(source):
                raise ValueError("train_added_tokens: init_from must be a model folder with its own tokenizer")
            text_rows = list(range(load_text_tokenizer(None).vocab_size, load_text_tokenizer(source).vocab_size))
            if not text_rows:
                raise ValueError(f"train_added_tokens: the tokenizer of {source} adds no tokens "
                                 "(qtts languages add --tokens-file adds some)")
        self.trained_rows = nn.ModuleDict()
        model = self.model.talker.model
        for name, rows in (("codec_embedding", codec_rows), ("text_embedding", text_rows)):
            table = getattr(model, name)
            table = getattr(table, "base_layer", table)  # under LoRA on the embeddings
            if rows and (frozen or not table.weight.requires_grad):
                self.trained_rows[name] = TrainedRows(table, rows)

    # -- sharding (FSDP2) -------------------------------------------------------------------------------
    def configure_model(self) -> None:
        """Under ``ModelParallelStrategy`` (``trainer=fsdp2``): ``fully_shard`` every transformer block of the
        talker and the code predictor, then the whole model (embeddings, heads, norms, speaker encoder). Other
        strategies: nothing. Idempotent (Lightning may call it again). Runs before the first step, so what a
        strategy cannot train is refused here: LoRA under FSDP2 and FSDP1, new rows of frozen tables under FSDP2."""
        from lightning.pytorch.strategies import FSDPStrategy

        strategy = self._trainer.strategy if self._trainer is not None else None
        if self._peft and isinstance(strategy, (ModelParallelStrategy, FSDPStrategy)):
            # Training, the gathered export and the merge work under FSDP2; resuming does not: a LoRA checkpoint
            # keeps only what trains, and Lightning loads FSDP's distributed checkpoints requiring every key.
            raise ValueError("LoRA (task.lora) is not supported under trainer=fsdp2 or trainer=fsdp: a LoRA run's "
                             "checkpoints hold only the adapters and trained rows, which an FSDP distributed "
                             "checkpoint cannot resume from. The frozen base needs no sharding: use trainer=ddp")
        if not isinstance(strategy, ModelParallelStrategy):
            return
        from torch.distributed.fsdp import FSDPModule, fully_shard, register_fsdp_forward_method

        if isinstance(self.model, FSDPModule):
            return
        if len(self.trained_rows):
            raise ValueError("training new rows of frozen tables (train_speaker_rows, train_language_rows, "
                             "train_added_tokens) is not supported under trainer=fsdp2: use trainer=ddp")
        if hasattr(strategy, "fully_shard_kwargs"):  # qtts.training.strategies.FSDP2Strategy
            block_kwargs, root_kwargs = strategy.fully_shard_kwargs(), strategy.fully_shard_kwargs(root=True)
        else:  # plain ModelParallelStrategy: float32, data parallel over its mesh
            block_kwargs = root_kwargs = {"mesh": self.device_mesh["data_parallel"]}
        talker = self.model.talker
        for block in [*talker.model.layers, *talker.code_predictor.model.layers]:
            fully_shard(block, **block_kwargs)
        fully_shard(self.model, **root_kwargs)
        # The steps call several submodules (embeddings, talker, predictor heads, speaker encoder), not one
        # forward: run the whole loss as the root's forward so its parameters are gathered around it.
        self.model.sharded_losses = self._sharded_losses
        register_fsdp_forward_method(self.model, "sharded_losses")

    def _sharded_losses(self, batch: dict[str, Any]) -> tuple[DualTrackLoss, torch.Tensor]:
        loss = self._losses(batch)
        return loss, loss.total  # a plain tensor in the output: FSDP hooks the backward through it

    # -- the forward pass both steps share --------------------------------------------------------------
    def losses(self, batch: dict[str, Any]) -> DualTrackLoss:
        if hasattr(self.model, "sharded_losses"):
            return self.model.sharded_losses(batch)[0]
        return self._losses(batch)

    def _losses(self, batch: dict[str, Any]) -> DualTrackLoss:
        tracks: DualTrackBatch = batch["tracks"]
        out = self._forward(batch)
        generator = torch.Generator().manual_seed(hash((self.hparams.seed, self.global_step)) % 2**62)
        return dual_track_loss(out.hidden, out.logits, tracks.labels, tracks.code_labels,
                               self.model.talker.predictor_logits, self.hparams.predictor_weight,
                               self.hparams.predictor_fraction, generator, accuracy=batch.get("with_accuracy", True))

    def _forward(self, batch: dict[str, Any]):
        tracks: DualTrackBatch = batch["tracks"]
        return self.model.forward_tracks(tracks, self.xvectors(batch), packed=batch.get("packed", True))

    def xvectors(self, batch: dict[str, Any]) -> torch.Tensor | None:
        """One speaker-encoder vector per x-vector slot (with gradients unless the encoder is frozen)."""
        context = torch.no_grad() if self.hparams.speaker_encoder == "frozen" else torch.enable_grad()
        with context:
            return self.model.reference_xvectors(batch)

    # -- steps ------------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        # Accuracies (argmax over every logit) only on the steps that log them.
        batch["with_accuracy"] = (self.global_step + 1) % max(1, self.trainer.log_every_n_steps) == 0 \
            or self.global_step == 0
        loss = self.losses(batch)
        if not torch.isfinite(loss.total):
            raise FloatingPointError(f"non-finite loss at step {self.global_step}, batch {batch['ids']}")
        n = len(batch["ids"])
        self.log("train/loss", loss.total, prog_bar=True, batch_size=n)
        self.log_dict({"train/talker_loss": loss.talker, "train/predictor_loss": loss.predictor}, batch_size=n)
        # Logged on every step, NaN ("not measured") where the argmaxes were skipped: Lightning keeps a metric's last
        # value until it is logged again, so a skipped accuracy would otherwise be read (callback_metrics, the row a
        # stopped run writes at its last step) next to a later step's loss, e.g. a loss spike beside accuracy 1.0.
        self.log_dict({"train/talker_acc": loss.talker_accuracy,
                       "train/predictor_acc": loss.predictor_accuracy.mean()}, batch_size=n)
        tokens = batch.get("num_tokens") or int(batch["tracks"].attention_mask.sum())
        now = time.perf_counter()
        if self._clock is not None:
            self.log("train/tokens_per_s", tokens / max(now - self._clock, 1e-9), batch_size=n)
        self._clock = now
        return loss.total

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        loss = self.losses(batch)
        n = len(batch["ids"])
        self.log_dict({"val/loss": loss.total, "val/talker_loss": loss.talker, "val/predictor_loss": loss.predictor,
                       "val/talker_acc": loss.talker_accuracy}, sync_dist=True, batch_size=n)
        for group, accuracy in enumerate(loss.predictor_accuracy.tolist(), start=1):
            self.log(f"val/acc_group_{group:02d}", accuracy, sync_dist=True, batch_size=n)
        if batch_idx == 0 and self.hparams.codec and self.hparams.log_media and self.trainer.is_global_zero \
                and self.loggers and not hasattr(self.model, "sharded_losses"):
            self.log_samples(batch)

    def log_samples(self, batch: dict[str, Any]) -> None:
        """The first utterance of the batch: teacher-forced prediction and target, decoded by ``codec``."""
        from qtts.models.codec.model import SpeechTokenizer

        if not self._codec:
            self._codec.append(SpeechTokenizer.from_pretrained(self.hparams.codec))
        codec = self._codec[0].to(self.device)
        tracks: DualTrackBatch = batch["tracks"]
        with torch.no_grad():
            out = self._forward(batch)
        predicted, target = teacher_forced_frames(out.hidden[0], out.logits[0], tracks.labels[0], tracks.code_labels[0],
                                                  self.model.talker.predictor_logits,
                                                  codec.config.decoder_config.codebook_size)
        if len(target) == 0:
            return
        sr = codec.sample_rate
        for name, frames in (("teacher_forced", predicted), ("target", target)):
            wav = codec.decode([frames.clamp(0, codec.config.decoder_config.codebook_size - 1)])[0]
            log_audio(self.loggers, f"val/{name}", wav, sr, self.global_step)

    # -- optimisation, export ---------------------------------------------------------------------------
    def configure_optimizers(self):
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                # Norms, biases and embedding tables are not weight-decayed (standard LM practice).
                (no_decay if p.dim() < 2 or "embedding" in name else decay).append(p)
        no_decay += list(self.trained_rows.parameters())  # embedding rows
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": self.hparams.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}],
                                      lr=self.hparams.lr, betas=tuple(self.hparams.betas))
        total = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = warmup_cosine(self.hparams.warmup_steps, total, self.hparams.min_lr_ratio)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, schedule),
                                 "interval": "step"}}

    def codec_folder(self) -> str | None:
        """The speech tokenizer that turns the run's codes into audio (exports, validation samples): ``codec``, else
        ``init_from``'s ``speech_tokenizer/``; None when there is neither."""
        from qtts.models.codec.model import SUBFOLDER

        source = self.hparams.init_from
        if self.hparams.codec is not None:
            return self.hparams.codec
        if source is not None and (Path(source) / SUBFOLDER / CONFIG_NAME).is_file():
            return source
        return None

    def export(self, folder: str | Path, state: dict[str, torch.Tensor] | None = None) -> Path:
        """The released folder format, loadable by qwen-tts: complete (tokenizer files, generation config,
        ``speech_tokenizer/``) when the run has a codec or an ``init_from`` folder with one, else ``config.json`` +
        ``model.safetensors``. LoRA runs write the merged model, and their adapter as a peft folder next to it
        (``adapter/``, with the rows the run added: ``qtts.adapters.added_rows``).

        state: the task's full state dict (``qtts.training.strategies.gather_full_state``, what ``on_train_end``
        gathers under every strategy): the export is written from a plain CPU copy of the model built from it.
        Default: this task's own modules, which must then hold full weights (no sharding)."""
        from qtts.adapters.trained_rows import unhooked
        from qtts.models.export import export_release

        if state is not None:
            model, peft, trained_rows = self._plain_copy(state)
        else:
            model, peft, trained_rows = self.model, self._peft[0] if self._peft else None, self.trained_rows
        with unhooked(trained_rows.values()):  # the trained rows folded into their tables
            if peft is not None:
                from qtts.adapters.added_rows import save_added_rows
                from qtts.adapters.lora import merge_lora, save_adapter

                adapter = save_adapter(peft, Path(folder).parent / "adapter", base=self.hparams.init_from)
                added = {name: rows.rows.tolist() for name, rows in trained_rows.items()}  # LoRA: all of them
                save_added_rows(model, adapter, added, tokenizer_folder=self.hparams.init_from)
                model = merge_lora(copy.deepcopy(peft))
            codec = self.codec_folder()
            if codec is not None:
                export_release(model, folder, codec=codec, source=self.hparams.init_from)
            else:
                model.save_pretrained(folder)
        return Path(folder)

    def _plain_copy(self, state: dict[str, torch.Tensor]) -> tuple[TTSModel, Any, nn.ModuleDict]:
        """From the task's full state dict: a plain float32 CPU ``TTSModel`` (with the run's LoRA layers and their
        peft handle, else None) and the run's trained rows hooked on its tables, as the task holds them in
        training. Every key is checked (``check_weights``)."""
        from qtts.adapters.trained_rows import TrainedRows
        from qtts.models.checkpoint import check_weights

        source = "the gathered training state"
        weights = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
        peft = None
        if self._peft:  # the run's LoRA layers on an empty model, then every weight (base and adapter) assigned
            from qtts.adapters.lora import LoraSettings, add_lora

            model = TTSModel.empty(self.config)
            peft = add_lora(model, LoraSettings(**self.hparams.lora))
            check_weights(model.state_dict(), weights, source)
            model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in weights.items()},
                                  strict=True, assign=True)
            model.eval()
        else:
            model = TTSModel.from_state(self.config, weights, source)
        trained_rows = nn.ModuleDict()
        for name in self.trained_rows:
            table = getattr(model.talker.model, name)
            table = getattr(table, "base_layer", table)  # under LoRA on the embeddings
            trained_rows[name] = TrainedRows(table, state[f"trained_rows.{name}.rows"].tolist())
        trained_rows.load_state_dict({k.removeprefix("trained_rows."): v.float() if v.is_floating_point() else v
                                      for k, v in state.items() if k.startswith("trained_rows.")}, strict=True)
        return model, peft, trained_rows

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """LoRA runs keep only the trained tensors (adapters, speaker rows) and buffers: the frozen weights are
        ``init_from``'s, which the task loads before resuming."""
        if self._peft:
            trained = {f"model.{n}" for n, p in self.model.named_parameters() if p.requires_grad}
            frozen = {f"model.{n}" for n, p in self.model.named_parameters() if not p.requires_grad}
            checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items()
                                        if k in trained or k not in frozen}

    def on_train_end(self) -> None:
        if not self.trainer.default_root_dir:
            return
        from qtts.training.strategies import gather_full_state, holds_full_weights

        # Sharded weights (FSDP1, FSDP2, DeepSpeed): every rank enters the gather (a collective) and rank 0 writes
        # the export from the full state; one device or DDP: rank 0 exports its own modules.
        strategy = self.trainer.strategy
        state = None if holds_full_weights(strategy) else gather_full_state(strategy, self)
        if self.trainer.is_global_zero:
            self.export(Path(self.trainer.default_root_dir) / "export", state=state)
