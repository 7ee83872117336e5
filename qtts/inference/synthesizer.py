"""``Synthesizer``: text → 24 kHz speech with a released, exported or freshly trained model, offline or streamed.

The three voices of the released models — cloning a reference (Base), preset speakers (CustomVoice) and voices
described in words (VoiceDesign) — are the same pipeline with different prefills (``qtts.models.talker.layout``, the
builder training uses too): prefill → ``generate_frames`` → codec decoder. Offline output equals qwen-tts's
(greedy codes and waveforms are tested against it); ``stream=True`` yields audio packets while generating.
For post-training, ``generate_codes(…, return_logprobs=…)`` records the log-probabilities of what it samples and
``code_logprobs`` recomputes them with the training forward (``qtts.inference.logprobs``).

Inputs follow qwen-tts: a string gives one waveform, a list gives a list (other arguments are broadcast or
given per item). Outputs are float32 CPU tensors at ``sample_rate``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from qtts.audio.io import load_audio, resample
from qtts.data.batching import DualTrackBatch, collate_prefill, collate_training
from qtts.inference.generation import Frame, generate_frames
from qtts.inference.logprobs import PolicyGroups, SequenceLogProbs, sequence_logprobs
from qtts.inference.sampling import CodeSampler, SamplingConfig
from qtts.inference.static_decoding import StaticDecoding
from qtts.inference.streaming import StreamDecoder
from qtts.inference.voice import VoicePrompt
from qtts.models.codec.model import SpeechTokenizer
from qtts.models.talker import TTSModel
from qtts.models.talker.layout import IGNORE_INDEX, DualTrackSequence, build_sequence
from qtts.runs import open_trained
from qtts.text.special_ids import CodecSpecialIds, TextSpecialIds
from qtts.text.templates import instruct_ids, ref_text_ids, target_ids
from qtts.text.tokenizer import TextTokenizer, has_tokenizer, load_text_tokenizer

AudioLike = Any  # a file path, a (samples, sample_rate) pair, or a 1-D tensor/array at 24 kHz


@dataclass
class Request:
    """One utterance to synthesize: the text and everything that selects its voice."""

    text: str
    language: str = "auto"
    speaker: str | None = None
    instruct: str | None = None
    prompt: VoicePrompt | None = None
    non_streaming_mode: bool = True  # text layout: all text before the audio (True) or interleaved with it


class Synthesizer:
    """``codec`` None makes a Synthesizer without audio: it builds and scores requests (``teacher_forced_batch``,
    ``code_logprobs``, ``generate_codes``), as a training task does with the model it trains.

    ``cuda_graphs``: on CUDA, generate with static KV caches and CUDA graphs (``qtts.inference.static_decoding``;
    the same codes, far fewer kernel launches); ``None`` turns them on when the model is on CUDA. Ignored off CUDA.

    ``windowed_decode``: decode offline audio in qwen-tts's 300-frame windows (``SpeechTokenizer.decode``), for
    sample parity with qwen-tts past 300 frames (reference included); by default offline audio equals the
    streamed packets at any length."""

    def __init__(self, model: TTSModel, codec: SpeechTokenizer | None, tokenizer: TextTokenizer,
                 sampling: SamplingConfig | None = None, cuda_graphs: bool | None = None,
                 windowed_decode: bool = False):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.codec = codec.eval() if codec is not None else None  # None: requests and scores only, no audio
        self.sampling = sampling or SamplingConfig()
        self.cuda_graphs = cuda_graphs
        self.windowed_decode = windowed_decode
        self._static: StaticDecoding | None = None  # built on first use; dropped when weights or adapters change
        config = model.config
        self.text_ids = TextSpecialIds.from_config(config.to_dict())
        self.codec_ids = CodecSpecialIds.from_config(config.talker_config.to_dict())
        self._peft = None

    # -- loading ---------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, codec: str | os.PathLike | None = None,
                        tokenizer: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32, cuda_graphs: bool | None = None,
                        windowed_decode: bool = False) -> Synthesizer:
        """Load anything ``qtts.runs.open_trained`` opens: a released or exported model folder, a training run
        folder (its ``export/``, else its newest checkpoint), a talker checkpoint (full or LoRA; a file or a sharded
        folder) or a LoRA ``adapter/`` folder. The codec is ``codec``, the run's ``task.codec``, or the
        ``speech_tokenizer/`` of the model folder (of a run: of its ``init_from``); the text tokenizer and
        generation config come from the same folder, else the built-in Qwen2 BPE and the released defaults. The
        codec stays float32 (its codes change in bfloat16)."""
        trained = open_trained(path, dtype=dtype)
        sampling = SamplingConfig.from_folder(trained.folder) if trained.folder is not None else SamplingConfig()
        tokenizer = load_text_tokenizer(tokenizer) if tokenizer is not None else trained.text_tokenizer()
        return cls(trained.model.to(device), trained.speech_tokenizer(codec).to(device), tokenizer, sampling,
                   cuda_graphs, windowed_decode)

    # -- LoRA adapters ---------------------------------------------------------------------------------------
    def load_adapter(self, folder: str | os.PathLike, name: str = "default") -> None:
        """Load a peft LoRA adapter folder (a qtts run's ``adapter/``) under ``name`` and make it the active one.
        The rows its run added (speakers, a language, text tokens: ``qtts.adapters.added_rows``) go into the
        model first, growing the text table when needed, and the adapter's tokenizer replaces the model's; they
        stay when the adapter is switched off (they serve only the names it added)."""
        from qtts.adapters.added_rows import apply_added_rows, has_added_rows
        from qtts.adapters.lora import load_adapters, set_adapter

        if has_added_rows(folder):
            apply_added_rows(self.model, folder)
            if has_tokenizer(folder):
                self.tokenizer = load_text_tokenizer(folder)
        if self._peft is None:
            self._peft = load_adapters(self.model, {name: folder})
        else:
            self._peft.load_adapter(str(folder), adapter_name=name)
        self.model.eval()
        set_adapter(self.model, name)
        self._static = None  # captured graphs hold the modules and scales they ran

    def set_adapter(self, name: str | None, scale: float = 1.0) -> None:
        """Switch to adapter ``name`` at ``scale`` × its trained strength, or to the base model (``None``)."""
        from qtts.adapters.lora import set_adapter

        set_adapter(self.model, name, scale)
        self._static = None

    def merge_adapter(self) -> None:
        """Fold the active adapter into the weights (faster; no more switching)."""
        from qtts.adapters.lora import merge_lora

        if self._peft is None:
            raise ValueError("no adapter loaded")
        self.model, self._peft = merge_lora(self._peft).eval(), None
        self._static = None

    # -- what the model offers -------------------------------------------------------------------------------
    @property
    def model_type(self) -> str | None:
        """``base`` (voice clone), ``custom_voice`` (preset speakers) or ``voice_design`` (instruct)."""
        return self.model.config.tts_model_type

    @property
    def speakers(self) -> list[str]:
        return list(self.model.config.talker_config.speaker_codec_rows())

    @property
    def languages(self) -> list[str]:
        """``auto`` and the model's languages (dialects are chosen through their speakers)."""
        names = self.model.config.talker_config.codec_language_id or {}
        return ["auto"] + [k.lower() for k in names if "dialect" not in k.lower()]

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    @property
    def device(self) -> torch.device:
        return next(self.model.talker.parameters()).device

    def check_voice(self, *, clone: bool = False, speaker: str | None = None, instruct: str | None = None) -> None:
        """Raise a ValueError, before any work, when this model cannot speak in the voice asked for. What decides is
        what the model has, not its ``tts_model_type``: cloning needs the speaker encoder (Base models); a named
        speaker needs a row of that name (CustomVoice models, and Base folders given voices by ``qtts speakers
        add`` or a custom-voice fine-tune); a voice described by ``instruct`` alone needs a VoiceDesign model."""
        if clone:
            if speaker or instruct:
                raise ValueError("cloning a voice takes no speaker or instruct")
            if self.model.speaker_encoder is None:
                raise ValueError(f"voice cloning needs a Base model (with a speaker encoder); this one is "
                                 f"{self.model_type!r}")
        elif speaker:
            if speaker.lower() not in self.speakers:
                raise ValueError(f"speaker {speaker!r} is not one of this model's: {self.speakers}")
        elif instruct:
            if self.model_type != "voice_design":
                raise ValueError(f"a voice described by instruct alone needs a VoiceDesign model; this one is "
                                 f"{self.model_type!r}")
        else:
            raise ValueError("choose a voice: a reference to clone, a speaker name, or an instruct (VoiceDesign)")

    # -- the three voices ------------------------------------------------------------------------------------
    def request(self, text: str, language: str = "auto", *, speaker: str | None = None,
                instruct: str | None = None, prompt: VoicePrompt | None = None,
                non_streaming_mode: bool | None = None) -> Request:
        """One utterance as ``voice_clone`` (``prompt``), ``custom_voice`` (``speaker``, steered by ``instruct``),
        ``voice_design`` (``instruct`` alone) or the plain layout (none of them) build it, for callers that batch
        requests themselves (evaluation, rollouts). ``non_streaming_mode`` defaults as those methods do: False for
        a cloned voice (qwen-tts's default), True otherwise. A 0.6B custom-voice model takes no instruct: it is
        dropped with a warning, as qwen-tts drops it."""
        if speaker and instruct and self.model.config.tts_model_size == "0b6":
            warnings.warn("this 0.6B custom-voice model takes no instruct; it is ignored", stacklevel=2)
            instruct = None
        if non_streaming_mode is None:
            non_streaming_mode = prompt is None
        return Request(text, language, speaker=speaker, instruct=instruct or None, prompt=prompt,
                       non_streaming_mode=non_streaming_mode)

    def voice_clone(self, text: str | Sequence[str], ref_audio: AudioLike | Sequence[AudioLike] | None = None,
                    ref_text: str | Sequence[str | None] | None = None, x_vector_only: bool = False,
                    language: str | Sequence[str] = "auto", prompt: VoicePrompt | Sequence[VoicePrompt] | None = None,
                    non_streaming_mode: bool = False, stream: bool = False, packet_frames: int = 4,
                    first_packet_frames: int | None = None, **sampling):
        """Speak ``text`` in the voice of a reference recording (Base models). In-context cloning (the default)
        needs ``ref_text``, the reference's transcript; ``x_vector_only`` uses the speaker vector alone. Give a
        ``prompt`` (``create_voice_prompt``) to reuse a reference without re-encoding it."""
        texts, single = _as_list(text)
        if prompt is None:
            if ref_audio is None:
                raise ValueError("voice_clone needs ref_audio (with ref_text, or x_vector_only=True) or a prompt")
            prompt = self.create_voice_prompt(ref_audio, ref_text, x_vector_only)
        prompts = _broadcast(prompt, len(texts), "prompt")
        requests = [self.request(t, lang, prompt=p, non_streaming_mode=non_streaming_mode)
                    for t, lang, p in zip(texts, _broadcast(language, len(texts), "language"), prompts)]
        return self._run(requests, single, stream, packet_frames, first_packet_frames, sampling)

    def custom_voice(self, text: str | Sequence[str], speaker: str | Sequence[str],
                     language: str | Sequence[str] = "auto", instruct: str | Sequence[str | None] | None = None,
                     non_streaming_mode: bool = True, stream: bool = False, packet_frames: int = 4,
                     first_packet_frames: int | None = None, **sampling):
        """Speak ``text`` as one of the model's named speakers; ``instruct`` steers the style (1.7B models; the
        0.6B CustomVoice models were not trained with it, and it is dropped with a warning, as qwen-tts drops it)."""
        texts, single = _as_list(text)
        requests = [self.request(t, lang, speaker=s, instruct=i, non_streaming_mode=non_streaming_mode)
                    for t, lang, s, i in zip(texts, _broadcast(language, len(texts), "language"),
                                             _broadcast(speaker, len(texts), "speaker"),
                                             _broadcast(instruct, len(texts), "instruct"))]
        return self._run(requests, single, stream, packet_frames, first_packet_frames, sampling)

    def voice_design(self, text: str | Sequence[str], instruct: str | Sequence[str],
                     language: str | Sequence[str] = "auto", non_streaming_mode: bool = True, stream: bool = False,
                     packet_frames: int = 4, first_packet_frames: int | None = None, **sampling):
        """Speak ``text`` in a voice described by ``instruct`` (VoiceDesign models)."""
        texts, single = _as_list(text)
        for i in _broadcast(instruct, len(texts), "instruct"):
            self.check_voice(instruct=i)
        requests = [self.request(t, lang, instruct=i, non_streaming_mode=non_streaming_mode)
                    for t, lang, i in zip(texts, _broadcast(language, len(texts), "language"),
                                          _broadcast(instruct, len(texts), "instruct"))]
        return self._run(requests, single, stream, packet_frames, first_packet_frames, sampling)

    @torch.inference_mode()
    def create_voice_prompt(self, ref_audio: AudioLike | Sequence[AudioLike], ref_text: str | Sequence | None = None,
                            x_vector_only: bool = False) -> VoicePrompt | list[VoicePrompt]:
        """Encode reference recordings once: the speaker vector, and for in-context cloning the codes (all
        references in one padded codec batch, as qwen-tts encodes them)."""
        self.check_voice(clone=True)
        audios, single = _as_list(ref_audio, atom=_is_audio)
        texts = _broadcast(ref_text, len(audios), "ref_text")
        if not x_vector_only:
            missing = [i for i, t in enumerate(texts) if not t]
            if missing:
                raise ValueError(f"in-context cloning needs ref_text for every reference (missing for item(s) "
                                 f"{missing}); or pass x_vector_only=True")
        wavs = [self._load_reference(a, i) for i, a in enumerate(audios)]
        encoder = self.model.speaker_encoder
        dtype = next(encoder.parameters()).dtype
        xvectors = [encoder.embed_audio(w.to(self.device, dtype)) for w in wavs]
        codes = [None] * len(wavs) if x_vector_only else self.codec.encode([w.to(self.device) for w in wavs])
        prompts = [VoicePrompt(x, None if x_vector_only else c.cpu(), None if x_vector_only else t)
                   for x, c, t in zip(xvectors, codes, texts)]
        return prompts[0] if single else prompts

    # -- codes -----------------------------------------------------------------------------------------------
    def generate_codes(self, requests: Sequence[Request], *, return_logprobs: bool | PolicyGroups = False,
                       **sampling) -> list[torch.Tensor] | tuple[list[torch.Tensor], SequenceLogProbs]:
        """The codes (frames, 16) of each request, up to its EOS (the reference's codes not included).

        ``return_logprobs``: also return the log-probabilities of what was drawn, under the distribution it was drawn
        from (``qtts.inference.logprobs``: per step, the frames then EOS where a row ended), over all 16 groups
        (True, ``"all"``) or group 0 (``"first"``); ``code_logprobs`` recomputes them teacher-forced. It needs
        sampling (not greedy); the codes are those drawn without it."""
        if return_logprobs not in (False, True, "all", "first"):
            raise ValueError(f"return_logprobs must be a bool, 'all' or 'first', got {return_logprobs!r}")
        config = self.sampling.replace(**sampling)
        record = ("all" if return_logprobs is True else return_logprobs) or None
        sampler = self._sampler(len(requests), config, record)
        frames = list(self._frames(requests, config, check_every=8, sampler=sampler))
        groups = self.model.config.talker_config.num_code_groups
        if frames:
            all_codes = torch.stack([f.codes for f in frames], 1)
            counts = torch.stack([f.alive for f in frames], 1).sum(1)
            codes = [c[:n].cpu() for c, n in zip(all_codes, counts.tolist())]
        else:
            counts = torch.zeros(len(requests), dtype=torch.long, device=self.device)
            codes = [torch.zeros(0, groups, dtype=torch.long)] * len(requests)
        if record is None:
            return codes
        return codes, _recorded(sampler, counts, counts < config.max_new_tokens, groups if record == "all" else 1)

    def code_logprobs(self, requests: Sequence[Request], codes: Sequence[torch.Tensor],
                      ended: Sequence[bool] | torch.Tensor | None = None, groups: PolicyGroups = "all",
                      policy: Literal["sampling", "model"] = "sampling", **sampling) -> SequenceLogProbs:
        """Teacher-forced log-probabilities of ``codes`` (one (frames, 16) tensor per request, as
        ``generate_codes`` returns them) spoken for ``requests``, by the training forward
        (``qtts.inference.logprobs.sequence_logprobs``). ``ended``: per request, whether its codes were followed by
        EOS (default: all were; ``SequenceLogProbs.ended`` of the recording). ``policy``: ``"sampling"`` scores
        the distribution this Synthesizer samples from (its sampling config with ``sampling``'s overrides),
        ``"model"`` the raw logits. Gradients follow the caller's mode."""
        if policy not in ("sampling", "model"):
            raise ValueError(f"policy must be 'sampling' or 'model', got {policy!r}")
        tracks, xvectors = self.teacher_forced_batch(requests, codes, ended)
        config = self.sampling.replace(**sampling) if policy == "sampling" else None
        return sequence_logprobs(self.model, tracks, xvectors, groups, config)

    def teacher_forced_batch(self, requests: Sequence[Request], codes: Sequence[torch.Tensor],
                             ended: Sequence[bool] | torch.Tensor | None = None
                             ) -> tuple[DualTrackBatch, torch.Tensor | None]:
        """The training rows (``collate_training``, on this device) of ``requests`` with ``codes`` as their targets,
        laid out as generation read them (the prefill of ``generate_codes``, then each frame with its text track),
        and the x-vectors of their slots. A row whose codes did not end with EOS (``ended`` False) has no EOS
        label; one that ended with no frame is scored on its EOS alone."""
        if len(codes) != len(requests):
            raise ValueError(f"{len(codes)} code tensors for {len(requests)} requests")
        ended = [True] * len(requests) if ended is None else [bool(e) for e in ended]
        if len(ended) != len(requests):
            raise ValueError(f"ended: {len(ended)} values for {len(requests)} requests")
        seqs, xvectors = self._sequences(requests, codes, ended)
        batch = collate_training(seqs).to(self.device)
        return batch, (torch.stack(xvectors).to(self.device) if xvectors else None)

    def _sampler(self, batch: int, sampling: SamplingConfig, record: str | None = None) -> CodeSampler:
        config = self.model.config.talker_config
        return CodeSampler(sampling, batch, config.vocab_size, config.code_predictor_config.vocab_size,
                           self.codec_ids.eos, self.device, record=record)

    def _frames(self, requests: Sequence[Request], sampling: SamplingConfig, check_every: int = 1,
                sampler: CodeSampler | None = None) -> Iterator[Frame]:
        talker = self.model.talker
        embeds, mask, trailing, pad = self._prefill(requests)
        sampler = sampler or self._sampler(len(requests), sampling)
        if self.device.type != "cuda":
            check_every = 1  # a check costs nothing off-GPU, and saves the steps of an ended batch
        return generate_frames(talker, embeds, mask, trailing, pad, sampler, sampling.max_new_tokens, check_every,
                               self._static_decoding())

    def _static_decoding(self) -> StaticDecoding | None:
        """The talker's graphed decoding when it is on CUDA and ``cuda_graphs`` allows it (kept between calls)."""
        talker, device = self.model.talker, self.device
        if device.type != "cuda" or self.cuda_graphs is False:
            return None
        if self._static is None or self._static.talker is not talker or self._static.device != device:
            self._static = StaticDecoding(talker, graphs=True)
        return self._static

    @torch.inference_mode()
    def _prefill(self, requests: Sequence[Request]):
        seqs, xvectors = self._sequences(requests)
        talker = self.model.talker
        batch = collate_prefill(seqs, text_special=self.text_ids).to(self.device)
        embeds = self.model.embed_tracks(batch, torch.stack(xvectors).to(self.device) if xvectors else None)
        trailing = talker.embed_text(batch.trailing_text_ids)
        pad = talker.embed_text(torch.tensor([self.text_ids.tts_pad], device=self.device))[0]
        return embeds, batch.attention_mask, trailing, pad

    def _sequences(self, requests: Sequence[Request], codes: Sequence[torch.Tensor] | None = None,
                   ended: Sequence[bool] | None = None) -> tuple[list[DualTrackSequence], list[torch.Tensor]]:
        """The dual-track sequence of each request (prefills; with ``codes``, training rows whose labels are the
        codes, then EOS where ``ended``) and the x-vectors of their slots, in order."""
        seqs, xvectors = [], []
        for i, r in enumerate(requests):
            if not r.text or not r.text.strip():
                raise ValueError(f"item {i}: the text is empty")
            target = target_ids(self.tokenizer, r.text)
            speaker = self._speaker_id(r.speaker, i)
            prompt = r.prompt
            frames = None if codes is None else torch.as_tensor(codes[i], dtype=torch.long).cpu()
            if frames is not None and len(frames) == 0 and not ended[i]:
                raise ValueError(f"item {i}: no frames and no EOS: there is nothing to score")
            seq = build_sequence(
                target.content, role_ids=target.role, language=self._language_row(r.language, r.speaker, i),
                speaker=speaker, xvector=prompt is not None,
                instruct_ids=list(instruct_ids(self.tokenizer, r.instruct).ids) if r.instruct else None,
                ref_text_ids=(ref_text_ids(self.tokenizer, prompt.ref_text).content
                              if prompt and prompt.in_context else None),
                ref_codes=prompt.ref_codes if prompt and prompt.in_context else None,
                target_codes=frames if frames is not None and len(frames) else None, allow_unread_text=True,
                streaming=not r.non_streaming_mode, text_special=self.text_ids, codec_special=self.codec_ids,
            )
            if frames is not None:
                if len(frames) == 0:
                    seq.labels[-1] = self.codec_ids.eos  # the prefill's last position chose EOS at once
                elif not ended[i]:
                    seq.labels[seq.labels == self.codec_ids.eos] = IGNORE_INDEX  # stopped at max_new_tokens
            seqs.append(seq)
            if prompt is not None:
                xvectors.append(prompt.xvector)
        return seqs, xvectors

    def _language_row(self, language: str | None, speaker: str | None, item: int) -> int | None:
        try:
            return self.model.config.talker_config.language_row(language, speaker)
        except ValueError as e:
            raise ValueError(f"item {item}: {e}") from None

    def _speaker_id(self, speaker: str | None, item: int) -> int | None:
        if not speaker:
            return None
        rows = self.model.config.talker_config.speaker_codec_rows()
        if speaker.lower() not in rows:
            raise ValueError(f"item {item}: speaker {speaker!r} is not one of this model's: {self.speakers}")
        return rows[speaker.lower()]

    def _load_reference(self, audio: AudioLike, item: int) -> torch.Tensor:
        rate = self.codec.config.input_sample_rate
        if isinstance(audio, (str, os.PathLike)):
            return load_audio(audio, rate)[0][0]
        if isinstance(audio, tuple):
            wav, sr = audio
            wav = torch.as_tensor(wav, dtype=torch.float32)
            wav = wav.mean(0) if wav.dim() == 2 else wav
            return resample(wav.unsqueeze(0), int(sr), rate)[0]
        wav = torch.as_tensor(audio, dtype=torch.float32)
        if wav.dim() != 1 or wav.numel() == 0:
            raise ValueError(f"reference {item}: a waveform must be 1-D and non-empty at {rate} Hz "
                             f"(or pass (samples, sample_rate)), got shape {tuple(wav.shape)}")
        return wav

    # -- audio -----------------------------------------------------------------------------------------------
    def _run(self, requests: list[Request], single: bool, stream: bool, packet_frames: int,
             first_packet_frames: int | None, sampling: dict):
        if stream:
            chunks = self.stream(requests, packet_frames, first_packet_frames, **sampling)
            return (c[0] for c in chunks) if single else chunks
        wavs = self.decode(self.generate_codes(requests, **sampling), [r.prompt for r in requests])
        return wavs[0] if single else wavs

    def decode(self, codes: Sequence[torch.Tensor], prompts: Sequence[VoicePrompt | None] | None = None
               ) -> list[torch.Tensor]:
        """Codes → waveforms, as qwen-tts decodes them: in one batch; with an in-context prompt, its reference
        codes are decoded in front and their ``frames × hop`` samples cut off again. Equal to ``stream``'s packets
        unless ``windowed_decode`` (then equal to qwen-tts's windows, which count the reference's frames)."""
        prompts = list(prompts) if prompts is not None else [None] * len(codes)
        refs = [p.ref_codes if p is not None and p.in_context else None for p in prompts]
        full = [c if r is None else torch.cat([r.to(c.device), c]) for c, r in zip(codes, refs)]
        hop = self.codec.config.decode_upsample_rate
        keep = [i for i, c in enumerate(full) if len(c)]
        out = [torch.zeros(0)] * len(codes)
        if keep:
            wavs = self.codec.decode([full[i].to(self.device) for i in keep], windowed=self.windowed_decode)
            for i, wav in zip(keep, wavs):
                start = 0 if refs[i] is None else len(refs[i]) * hop
                out[i] = wav[start:].float().cpu()
        return out

    def stream(self, requests: Sequence[Request], packet_frames: int = 4, first_packet_frames: int | None = None,
               **sampling) -> Iterator[list[torch.Tensor]]:
        """Yield, every ``packet_frames`` generated frames (the first after ``first_packet_frames``), one audio
        chunk per request (empty once it has ended). Rows with in-context references of equal length share one
        decoder state, primed with their reference codes."""
        if packet_frames < 1 or (first_packet_frames is not None and first_packet_frames < 1):
            raise ValueError("packet sizes must be >= 1 frame")
        sampling_config = self.sampling.replace(**sampling)
        frames = self._frames(requests, sampling_config, check_every=packet_frames)
        groups: dict[int, list[int]] = {}
        for i, r in enumerate(requests):
            ref = r.prompt.ref_codes if r.prompt is not None and r.prompt.in_context else None
            groups.setdefault(0 if ref is None else len(ref), []).append(i)
        decoders = {}
        for length, rows in groups.items():
            prefix = None if length == 0 else torch.stack([requests[i].prompt.ref_codes for i in rows]).to(self.device)
            decoders[length] = (rows, StreamDecoder(self.codec.decoder, prefix))
        hop = self.codec.config.decode_upsample_rate
        size, packet = first_packet_frames or packet_frames, []
        for frame in frames:
            packet.append(frame)
            if len(packet) == size:
                yield self._decode_packet(packet, decoders, hop)
                size, packet = packet_frames, []
        if packet:
            yield self._decode_packet(packet, decoders, hop)

    @staticmethod
    def _decode_packet(packet: list[Frame], decoders: dict, hop: int) -> list[torch.Tensor]:
        codes = torch.stack([f.codes for f in packet], 1)
        alive = torch.stack([f.alive for f in packet], 1)
        codes = codes.masked_fill(~alive.unsqueeze(-1), 0)  # ended rows decode code 0; their audio is dropped
        counts = alive.sum(1).tolist()
        out: list[torch.Tensor] = [torch.zeros(0)] * len(codes)
        for rows, decoder in decoders.values():
            if not any(counts[i] for i in rows):
                continue
            audio = decoder(codes[rows])
            for j, i in enumerate(rows):
                out[i] = audio[j, : counts[i] * hop].float().cpu()
        return out


def _recorded(sampler: CodeSampler, counts: torch.Tensor, ended: torch.Tensor, groups: int) -> SequenceLogProbs:
    """A recording sampler's log-probabilities as ``SequenceLogProbs``: row b's steps are its ``counts[b]`` frames
    (every recorded group) and, where ``ended``, the EOS step after them (group 0)."""
    steps = counts + ended.long()
    length = int(steps.max()) if len(steps) else 0
    zeros = torch.zeros(len(counts), groups, device=counts.device)
    values = []
    for s in range(length):
        row = [sampler.first_logprobs[s]] + list(sampler.residual_logprobs[s][: groups - 1])
        values.append(torch.cat([torch.stack(row, 1), zeros[:, len(row):]], 1))
    values = torch.stack(values, 1) if values else zeros.new_zeros(len(counts), 0, groups)
    index = torch.arange(length, device=counts.device)
    mask = index < steps.unsqueeze(1)
    keep = torch.stack([mask] + [index < counts.unsqueeze(1)] * (groups - 1), -1)  # EOS steps: group 0 only
    values = torch.where(keep, values, torch.zeros((), device=values.device))
    return SequenceLogProbs(values.cpu(), mask.cpu(), ended.cpu())


def _is_audio(x) -> bool:
    return isinstance(x, (str, os.PathLike, tuple)) or (hasattr(x, "dim") and x.dim() == 1) or (
        hasattr(x, "ndim") and x.ndim == 1)


def _as_list(x, atom=lambda v: isinstance(v, str)) -> tuple[list, bool]:
    """(items, whether a single item was given)."""
    return ([x], True) if atom(x) else (list(x), False)


def _broadcast(value, n: int, name: str) -> list:
    """A single value for every item, or one per item."""
    if value is None or isinstance(value, (str, VoicePrompt)) or _is_audio(value):
        return [value] * n
    values = list(value)
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise ValueError(f"{name}: {len(values)} values for {n} texts")
    return values
