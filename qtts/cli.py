"""``qtts`` command line: data jobs, the speech codec, training, synthesis, export and the demo; each handler parses,
calls one library function and reports."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import inspect
import json
import re
import sys
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

# Options bound to keywords of the library function a command calls (type, choices and default from its
# signature): keyword → help.
BUILD = {"rows_per_shard": "rows per Arrow shard"}
SYNTH = {"batch_size": "sentences per generation call", "max_chars": "longest sentence piece, in characters",
         "pause": "seconds of silence between sentences", "progress": "a progress bar (on a terminal)"}
SPEAKERS_ADD = {"start": "lowest codec row for new speakers", "max_clips": "clips per speaker for its mean x-vector"}
EVAL_TALKER = {
    "by": "group the losses by",
    "layout": ("clone: x-vector from another clip of the speaker (default for Base models); speaker: the speaker's "
               "named row (default for CustomVoice); plain: no speaker slot"),
    "max_rows": "rows per group at most",
}
EVAL_COMMON = {"batch_size": "utterances per batch", "device": "torch device (ASR, model, codec)",
               "progress": "progress bars"}
EVAL_ASR = EVAL_COMMON | {"audio_dir": "score DIR/ID.wav (audio made elsewhere) instead of the test set's audio"}
EVAL_TTS = EVAL_COMMON | {
    "voice": ("auto: per item, a prompt (ref_audio) to clone, else its speaker, else its instruct, else no speaker "
              "slot (plain); xvector: clone from the prompt's x-vector alone"),
    "text_layout": ("the text layout of every request: default (interleaved for a clone, as qwen-tts; all text first "
                    "otherwise), streaming or non_streaming (e.g. the layout the talker trained in)"),
    "seed": "sampling seed (each batch's seed derives from it and the batch's ids)",
    "max_new_tokens": "most frames (80 ms) per item (default: the model's generation config)",
    "greedy": "argmax codes instead of sampling",
}
EVAL_CODEC = EVAL_COMMON | {"metrics": "PESQ-WB/NB, STOI, mel distance and SI-SDR of each reconstruction"}
MINE_PAIRS = {
    "group_size": "samples per prompt (best vs worst become its pair)",
    "min_gap": "drop a prompt whose best and worst rewards differ by less",
    "language": "mine this language only (a Seed-TTS-eval list: its language)",
    "voice": EVAL_TTS["voice"],
    "batch_size": "prompts per generation (each sampled group_size times)",
    "groups": "log-probability policy recorded while sampling: all 16 code groups or group 0 (first)",
    "seed": "sampling seed (each batch's seed derives from it and the batch's ids)",
    "max_new_tokens": "most frames (80 ms) per sample (default: the model's generation config)",
    "codec": "speech tokenizer folder (default: the model's)",
    "device": "torch device (model, ASR)",
    "progress": "a progress bar",
}
DEMO = {
    "per_speaker": "utterances per synthetic speaker",
    "train_steps": "speaker-encoder steps (0 skips it)",
    "codec_steps": "codec optimizer steps (0 skips it and the rest)",
    "talker_steps": "talker pretraining steps (0 skips it and the rest)",
    "voice_steps": "LoRA custom-voice steps (0 skips it and the synthesis)",
    "voice": "the corpus speaker who becomes the custom voice",
    "max_new_tokens": "most frames (80 ms) per synthesized sentence",
    "eval_sentences": "held-out English sentences that evaluate the codec and the voice at the end (0: none)",
}


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose library-bound options are added when it first parses or prints its help, so that a
    command imports only its own library module (``qtts data summary`` does not import the codec)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pending: list[Callable[[argparse.ArgumentParser], None]] = []

    def bind(self) -> None:
        while self.pending:
            self.pending.pop(0)(self)

    def parse_known_args(self, args=None, namespace=None):
        self.bind()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self.bind()
        return super().format_help()


def _library(target: str) -> Any:
    """``"package.module:name"`` (or ``:Class.method``) → that object."""
    module, _, name = target.partition(":")
    return functools.reduce(getattr, name.split("."), importlib.import_module(module))


def _add_option(parser: argparse.ArgumentParser, name: str, annotation: Any, default: Any, help: str | None,
                flag: str | None = None) -> None:
    """``--kebab-name`` (or ``flag``) storing into ``name``: the type from ``annotation`` (``X | None`` is X, a
    ``Literal`` gives the choices), ``default``, and the help with the default shown unless it already speaks of it.
    A bool is ``--name`` / ``--no-name``; a bool given its own ``flag`` turns the value away from its default."""
    kind = annotation
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    choices = None
    if typing.get_origin(kind) is typing.Literal:
        choices = list(typing.get_args(kind))
        kind = type(choices[0])
    if kind is inspect.Parameter.empty or not isinstance(kind, type):
        kind = str if default is None else type(default)
    text = re.sub(r"%(?!\()", "%%", help or "")  # a literal %, not %(default)s
    if "default" not in text:
        text = f"{text} (default: %(default)s)".strip()
    option = flag or "--" + name.replace("_", "-")
    if kind is bool and flag:
        action = parser.add_argument(flag, dest=name, action="store_const", const=not default, default=default)
    elif kind is bool:
        action = parser.add_argument(option, dest=name, action=argparse.BooleanOptionalAction, default=default)
    else:
        action = parser.add_argument(option, dest=name, type=kind, choices=choices, default=default)
    action.help = text  # set here: BooleanOptionalAction appends the default itself on some Python versions


def options_from_dataclass(parser: _Parser, target: str, flags: dict[str, tuple[str, str]] | None = None) -> None:
    """One option per field of the dataclass ``target`` (``"module:Class"``), named, typed, defaulted and explained
    (``metadata["help"]``) by the field; ``flags`` gives a field another spelling and help (``--allow-empty-text``
    for ``require_text``). The options are added when the command is used; ``_config`` reads them back."""

    def add(parser: argparse.ArgumentParser) -> None:
        cls = _library(target)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            flag, help = (flags or {}).get(f.name, (None, f.metadata.get("help")))
            _add_option(parser, f.name, hints[f.name], f.default, help, flag)

    parser.pending.append(add)


def options_from_signature(parser: _Parser, target: str, helps: dict[str, str]) -> None:
    """One option per keyword of the function ``target`` (``"module:function"``) named in ``helps``: type from its
    annotation, default from its signature, so a default changed in the library changes the command."""

    def add(parser: argparse.ArgumentParser) -> None:
        func = _library(target)
        params = inspect.signature(func).parameters
        for name, help in helps.items():
            param = params[name]
            annotation = param.annotation
            if isinstance(annotation, str):  # postponed annotations
                try:
                    annotation = eval(annotation, func.__globals__)  # the library's own source
                except Exception:  # noqa: BLE001 - a name imported only for type checking: type of the default
                    annotation = inspect.Parameter.empty
            _add_option(parser, name, annotation, param.default, help)

    parser.pending.append(add)


def _config(cls: type, args: argparse.Namespace) -> Any:
    """The dataclass ``cls`` from the options ``options_from_dataclass`` added."""
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def _picked(args: argparse.Namespace, names: Iterable[str]) -> dict[str, Any]:
    return {name: getattr(args, name) for name in names}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


def build_parser() -> _Parser:
    parser = _Parser(prog="qtts", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="corpus jobs").add_subparsers(dest="data_command", required=True)
    v = data.add_parser("validate", help="sort a manifest into clean.jsonl and rejects.jsonl (resumable)")
    v.add_argument("manifest")
    v.add_argument("out_dir")
    v.add_argument("--language", action="append", default=[], metavar="CODE:NAME",
                   help="register a new language the rows use (gsw:swissgerman); repeatable")
    options_from_dataclass(v, "qtts.data.validate:ValidationConfig", flags={"require_text": (
        "--allow-empty-text", ("rows may have an empty text (codec corpora without transcripts); require_text is "
                               "%(default)s without it"))})
    v.set_defaults(func=_validate)

    b = data.add_parser("build", help="write a clean manifest as an Arrow corpus (text tokenized once)")
    b.add_argument("manifest")
    b.add_argument("out_dir")
    b.add_argument("--tokenizer", default=None, help="model folder with the text tokenizer (default: built-in)")
    b.add_argument("--no-text-ids", action="store_true")
    options_from_signature(b, "qtts.data.corpus:build_corpus", BUILD)
    b.set_defaults(func=_build)

    x = data.add_parser("extract-codes", help="speech-codec codes of every manifest row as dataset shards "
                        "(resumable; data parallel under `accelerate launch`)")
    x.add_argument("manifest")
    x.add_argument("codec", help="tokenizer folder, or a model folder with speech_tokenizer/")
    x.add_argument("out_dir")
    options_from_dataclass(x, "qtts.data.extract_codes:ExtractConfig")
    x.set_defaults(func=_extract_codes)

    s = data.add_parser("summary", help="utterances, minutes and speakers per language and speaker")
    s.add_argument("corpus", help="corpus folder or manifest")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_summary)

    codec = commands.add_parser("codec", help="12 Hz speech tokenizer")
    codec = codec.add_subparsers(dest="codec_command", required=True)
    e = codec.add_parser("encode", help="audio files (any rate) → <stem>.npy codes, int64 (frames, 16)")
    e.add_argument("inputs", nargs="+", metavar="AUDIO")
    e.set_defaults(func=_codec_encode)
    c = codec.add_parser("decode", help="<stem>.npy codes → <stem>.wav at 24 kHz")
    c.add_argument("inputs", nargs="+", metavar="CODES.npy")
    options_from_signature(c, "qtts.inference.codec_files:decode_files",
                           {"windowed": "qwen-tts's 300-frame windows (its samples exactly) instead of the exact "
                                        "decode that equals streaming"})
    c.set_defaults(func=_codec_decode)
    for p in (e, c):
        p.add_argument("--model", required=True, help="tokenizer folder, or a model folder with speech_tokenizer/")
        p.add_argument("--out", required=True, help="output folder")
        p.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")

    y = commands.add_parser(
        "synth", help="text or a text file → wav files (preset speaker, designed voice or cloned voice)",
        description="Synthesize speech. The voice comes from the options: --ref-audio/--prompt clone a voice "
        "(Base models), --speaker picks a preset speaker (CustomVoice models; --instruct steers the style), "
        "--instruct alone describes a voice (VoiceDesign models). Long texts are split into sentences that are "
        "generated in batches with the same voice and joined with --pause seconds of silence. Existing output "
        "files are skipped, so a killed job resumes where it stopped.",
        epilog="A designed voice (--instruct alone) is drawn anew for every sentence and can drift between them; "
        "--seed fixes the sampling, and cloning a voice keeps it exactly.")
    y.add_argument("model", metavar="MODEL", help="model folder, run folder (its export/) or talker checkpoint")
    text = y.add_mutually_exclusive_group(required=True)
    text.add_argument("--text", help="one utterance")
    text.add_argument("--text-file", metavar="FILE",
                      help="one utterance per non-empty line, optionally 'ID<TAB>text' (written as OUT/ID.wav)")
    y.add_argument("--out", required=True, metavar="OUT",
                   help="output folder (NNNN.wav or ID.wav, and manifest.jsonl for --text-file); with --text, "
                   "a path ending in .wav is the file itself")
    voice = y.add_argument_group("voice")
    voice.add_argument("--speaker", help="preset speaker (CustomVoice models)")
    voice.add_argument("--instruct", help="style instruction with --speaker; alone: the voice description "
                       "(VoiceDesign models; the voice can drift between sentences, --seed fixes the sampling)")
    voice.add_argument("--ref-audio", metavar="FILE", help="reference recording to clone (Base models)")
    voice.add_argument("--ref-text", help="transcript of --ref-audio (in-context cloning)")
    voice.add_argument("--x-vector-only", action="store_true",
                       help="clone from the speaker vector of --ref-audio alone (no transcript needed)")
    voice.add_argument("--prompt", metavar="FILE.safetensors", help="a saved voice prompt (see --save-prompt)")
    voice.add_argument("--save-prompt", metavar="FILE.safetensors",
                       help="write the voice prompt of --ref-audio, to clone the voice again with --prompt")
    voice.add_argument("--language", default="auto", help="language name or code, or auto (default)")
    y.add_argument("--codec", default=None, help="speech tokenizer folder (default: MODEL/speech_tokenizer)")
    y.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32", help="(default: %(default)s)")
    options_from_signature(y, "qtts.inference.synthesizer:Synthesizer.from_pretrained", {"device": "torch device"})
    options_from_signature(y, "qtts.inference.long_form:synthesize_to_files", SYNTH)
    sampling = y.add_argument_group("sampling (default: the model's generation_config.json)")
    sampling.add_argument("--seed", type=int, default=None, help="fixes the sampling (reproducible output)")
    sampling.add_argument("--greedy", action="store_true", help="argmax codes (no sampling; deterministic)")
    sampling.add_argument("--temperature", type=float, default=None)
    sampling.add_argument("--top-k", type=int, default=None)
    sampling.add_argument("--top-p", type=float, default=None)
    sampling.add_argument("--repetition-penalty", type=float, default=None)
    sampling.add_argument("--max-new-tokens", type=int, default=None, help="most frames per sentence (80 ms each)")
    y.set_defaults(func=_synth, parser=y)

    sp = commands.add_parser("speakers", help="named speakers (custom voices)")
    sp = sp.add_subparsers(dest="speakers_command", required=True)
    sa = sp.add_parser("add", help="a Base folder + a corpus → the same model with a codec row per speaker of the "
                       "corpus, each started from the speaker's mean x-vector (then fine-tune it)")
    sa.add_argument("base", help="Base model folder (with speaker_encoder weights and speech_tokenizer/)")
    sa.add_argument("corpus", help="extract-codes folder or manifest .jsonl (speaker and audio of each row)")
    sa.add_argument("out")
    sa.add_argument("--codec", default=None, help="speech tokenizer folder (default: BASE/speech_tokenizer)")
    options_from_signature(sa, "qtts.adapters.speakers:add_speakers_from_corpus", SPEAKERS_ADD)
    sa.add_argument("--speakers", default=None, metavar="NAME[,NAME…]",
                    help="only these speakers of the corpus (default: all); fine-tune on their rows alone, e.g. "
                    "data.codes=[{path: CODES, speakers: [NAME]}]")
    sa.set_defaults(func=_speakers_add)

    la = commands.add_parser("languages", help="new languages for a trained model")
    la = la.add_subparsers(dest="languages_command", required=True)
    ln = la.add_parser("add", help="a model folder → the same model with a codec row for a new language (from the "
                       "mean of the language rows) and optional new text tokens (rows from their sub-tokens)")
    ln.add_argument("base", help="model folder")
    ln.add_argument("out")
    ln.add_argument("--name", required=True, help="the language's name in codec_language_id (e.g. cantonese)")
    ln.add_argument("--code", default=None, help="its short code in manifests (e.g. yue); printed for the config")
    ln.add_argument("--row", type=int, default=None, help="codec row (default: the lowest free one from 2048)")
    ln.add_argument("--tokens-file", default=None, help="new text tokens, one per line (words or subwords)")
    ln.set_defaults(func=_languages_add)

    ex = commands.add_parser("export", help="a trained talker → a released-layout folder (qwen-tts loads it)")
    ex.add_argument("source", help="talker checkpoint (.ckpt), run folder (its newest checkpoint) or model folder")
    ex.add_argument("out")
    ex.add_argument("--model-type", choices=["base", "custom_voice", "voice_design"], default=None,
                   help="custom_voice: named speakers, no speaker encoder (default: the model's own type)")
    ex.add_argument("--codec", default=None, help="speech tokenizer folder (default: the run's task.codec, or "
                   "--base's speech_tokenizer/)")
    ex.add_argument("--base", default=None, help="the folder it was fine-tuned from: tokenizer files and generation "
                   "config are copied from it (default: the run's task.init_from)")
    ex.set_defaults(func=_export)

    ev = commands.add_parser("eval-talker", help="teacher-forced losses of a trained talker on a codes folder, "
                             "per language or speaker (a new language learned? cloning kept?)")
    ev.add_argument("model", help="model folder, run folder or talker checkpoint")
    ev.add_argument("codes", help="a `qtts data extract-codes` folder")
    ev.add_argument("--languages", default=None, help="only these languages (comma-separated codes or names)")
    options_from_signature(ev, "qtts.tasks.talker_eval:evaluate_talker_on_codes", EVAL_TALKER)
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=_eval_talker)

    evaluate = commands.add_parser("eval", help="WER/CER, SIM and MOS by the Seed-TTS-eval rules: of existing audio, "
                                   "of a TTS model or of a codec (resumable; report.json/.md/.png in --out)")
    evaluate = evaluate.add_subparsers(dest="eval_command", required=True)
    ea = evaluate.add_parser("asr", help="score the audio of a test set")
    ea.add_argument("testset", help="JSONL test set (id, audio, text, language) or Seed-TTS-eval meta.lst / its folder")
    options_from_signature(ea, "qtts.eval.run:evaluate_asr", EVAL_ASR)
    et = evaluate.add_parser("tts", help="generate a test set with a model, then score it (SIM against the prompts)")
    et.add_argument("model", help="model folder, run folder or talker checkpoint")
    et.add_argument("testset", help="JSONL test set or Seed-TTS-eval meta.lst / its folder")
    et.add_argument("--codec", default=None, help="speech tokenizer folder (default: the model's)")
    options_from_signature(et, "qtts.eval.run:evaluate_tts", EVAL_TTS)
    ec = evaluate.add_parser("codec", help="reconstruct a manifest's audio with a codec and score it against the "
                             "originals (WER of both, SIM, MOS, PESQ/STOI/mel distance)")
    ec.add_argument("codec", help="tokenizer folder, or a model folder with speech_tokenizer/")
    ec.add_argument("manifest", help="JSONL manifest / test set (or a Seed-TTS-eval list with gt_wav)")
    options_from_signature(ec, "qtts.eval.run:evaluate_codec", EVAL_CODEC)
    for p, func, options in ((ea, _eval_asr, EVAL_ASR), (et, _eval_tts, EVAL_TTS), (ec, _eval_codec, EVAL_CODEC)):
        p.add_argument("--out", required=True, help="output folder (results.jsonl, report.json/.md/.png)")
        p.add_argument("--asr", default=None, metavar="PATH",
                       help="local Whisper folder (CTranslate2 or transformers; default: the built-in multilingual "
                            "Whisper base)")
        p.add_argument("--language", default=None, help="evaluate this language only (a Seed-TTS-eval list: its "
                       "language; default: the list's folder name)")
        p.add_argument("--sim", nargs="?", const="", default=None, metavar="SOURCE",
                       help="speaker similarity; SOURCE: a speaker-embedding model (default: the built-in one)")
        p.add_argument("--mos", nargs="?", const="", default=None, metavar="SOURCE",
                       help="predicted MOS; SOURCE: a MOS model (default: DNSMOS)")
        p.add_argument("--json", action="store_true", help="print report.json instead of the tables")
        p.set_defaults(func=func, options=options)

    cu = evaluate.add_parser("curve", help="a run's training curves from its logs/metrics.csv: a markdown table of "
                             "per-window means (and a PNG with --plot)")
    cu.add_argument("run", help="run folder (logs/metrics.csv) or a metrics.csv file")
    cu.add_argument("--keys", nargs="+", default=["train/loss", "val/loss"], metavar="METRIC",
                    help="metrics to show (default: %(default)s)")
    cu.add_argument("--every", type=int, default=100, help="steps per table row (default: %(default)s)")
    cu.add_argument("--plot", default=None, metavar="PNG", help="also draw the full curves into this file")
    cu.set_defaults(func=_eval_curve)

    mp = commands.add_parser("mine-pairs", help="DPO preference pairs: sample each prompt of a test set several "
                             "times, score the samples by the rewards, keep best vs worst (an HF dataset in --out)")
    mp.add_argument("model", help="model folder, run folder or talker checkpoint")
    mp.add_argument("prompts", help="JSONL test set or Seed-TTS-eval meta.lst / its folder")
    mp.add_argument("--out", required=True, help="output folder (results.jsonl, dataset/)")
    mp.add_argument("--rewards", default=None, metavar="FILE",
                    help="YAML file of the reward config (weights, duration bands, scorers; default: "
                         "qtts.eval.rewards.RewardConfig())")
    options_from_signature(mp, "qtts.eval.pairs:mine_pairs", MINE_PAIRS)
    mp.set_defaults(func=_mine_pairs)

    t = commands.add_parser("train", help="train a task: Hydra overrides over the packaged configs, as "
                            "scripts/train.py takes them (qtts train experiment=talker_demo trainer.max_steps=10)")
    t.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    t.set_defaults(func=_train)

    d = commands.add_parser("demo", help="the main job on the built-in synthetic corpus")
    d.add_argument("--out", default="demo_out", help="output folder (default: %(default)s)")
    options_from_signature(d, "qtts.demo:run_demo", DEMO)
    d.set_defaults(func=_demo)
    return parser


def _validate(args: argparse.Namespace) -> int:
    from qtts.data.validate import ValidationConfig, validate_manifest
    from qtts.text.languages import language_from_spec

    for spec in args.language:
        try:
            language_from_spec(spec)
        except (ValueError, KeyError) as e:
            print(f"error: --language {spec!r}: {e}", file=sys.stderr)
            return 2
    report = validate_manifest(args.manifest, args.out_dir, _config(ValidationConfig, args))
    print(report.summary())
    print(f"wrote {Path(args.out_dir) / 'clean.jsonl'} and {Path(args.out_dir) / 'rejects.jsonl'}")
    if report.clean == 0:
        print("error: no usable row remains", file=sys.stderr)
        return 1
    return 0


def _build(args: argparse.Namespace) -> int:
    from qtts.data.corpus import build_corpus
    from qtts.text.templates import target_ids
    from qtts.text.tokenizer import load_text_tokenizer

    encode = None
    if not args.no_text_ids:
        tokenizer = load_text_tokenizer(args.tokenizer)
        encode = lambda text: target_ids(tokenizer, text).content  # noqa: E731
    ds = build_corpus(args.manifest, args.out_dir, encode_text=encode, **_picked(args, BUILD))
    print(f"wrote {len(ds)} rows to {args.out_dir}")
    return 0


def _extract_codes(args: argparse.Namespace) -> int:
    from qtts.data.extract_codes import ExtractConfig, extract_codes

    info = extract_codes(args.manifest, args.codec, args.out_dir, _config(ExtractConfig, args))
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(f"{info['rows']} rows ({info['frames']} frames), {info['rejected']} rejected "
              f"(see {Path(args.out_dir) / 'rejects.jsonl'}); wrote {args.out_dir}")
    if info["rows"] == 0:
        print("error: no row could be encoded", file=sys.stderr)
        return 1
    return 0


def _summary(args: argparse.Namespace) -> int:
    from qtts.data.corpus import format_summary, open_corpus, summarize

    summary = summarize(open_corpus(args.corpus))
    print(json.dumps(summary, indent=2, default=str) if args.json else format_summary(summary))
    return 0


def _codec_encode(args: argparse.Namespace) -> int:
    from qtts.inference.codec_files import encode_files

    return _codec_files(args, encode_files)


def _codec_decode(args: argparse.Namespace) -> int:
    from qtts.inference.codec_files import decode_files

    return _codec_files(args, functools.partial(decode_files, windowed=args.windowed))


def _codec_files(args: argparse.Namespace, convert) -> int:
    """``convert`` every input into ``--out``; the exit status says whether any failed."""
    from qtts.models.codec import SpeechTokenizer

    try:
        model = SpeechTokenizer.from_pretrained(args.model).to(args.device)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    results = convert(model, args.inputs, args.out)
    for r in results:
        print(f"error: {r.error}" if r.error else f"{r.source} -> {r.out}", file=sys.stderr if r.error else sys.stdout)
    failed = sum(r.error is not None for r in results)
    if failed:
        print(f"error: {failed} of {len(results)} inputs failed", file=sys.stderr)
    return 1 if failed else 0


def _synth_mode(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    """The voice of ``qtts synth`` from its options: clone, custom or design (``parser.error`` if inconsistent)."""
    if args.ref_audio and args.prompt:
        parser.error("give either --ref-audio or --prompt, not both")
    if args.ref_text is not None and not args.ref_audio:
        parser.error("--ref-text goes with --ref-audio")
    if args.x_vector_only and not args.ref_audio:
        parser.error("--x-vector-only goes with --ref-audio")
    if args.ref_audio and args.ref_text is not None and args.x_vector_only:
        parser.error("give either --ref-text (in-context cloning) or --x-vector-only, not both")
    if args.ref_audio and not args.ref_text and not args.x_vector_only:
        parser.error("--ref-audio needs --ref-text (its transcript) or --x-vector-only")
    if args.ref_audio or args.prompt:
        if args.speaker or args.instruct:
            parser.error("cloning a voice (--ref-audio/--prompt) takes no --speaker or --instruct")
        return "clone"
    if args.save_prompt:
        parser.error("--save-prompt needs --ref-audio (or --prompt)")
    if args.speaker:
        return "custom"
    if args.instruct:
        return "design"
    parser.error("choose a voice: --speaker NAME, --instruct TEXT, or --ref-audio FILE / --prompt FILE")


def _synth_inputs(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[tuple[str, str, Path]]:
    """``(id, text, wav path)`` of every utterance, in input order."""
    out = Path(args.out)
    if args.text is not None:
        if not args.text.strip():
            parser.error("--text is empty")
        return [("0000", args.text.strip(), out if out.suffix.lower() == ".wav" else out / "0000.wav")]
    if out.suffix.lower() == ".wav":
        parser.error("with --text-file, --out is a folder (not a .wav file)")
    from qtts.inference.long_form import read_text_file

    try:
        return read_text_file(args.text_file, out)
    except (OSError, UnicodeDecodeError) as e:
        parser.error(f"cannot read --text-file: {e}")
    except ValueError as e:
        parser.error(str(e))


def _synth(args: argparse.Namespace) -> int:
    """``qtts synth``: every utterance is split into sentences, all pending sentences are generated in batches of
    ``--batch-size`` with the same voice, and each utterance is written once its sentences are done (resumable)."""
    import time

    parser = args.parser
    mode = _synth_mode(args, parser)
    for name in ("batch_size", "max_chars"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.pause < 0:
        parser.error("--pause must be >= 0")
    if args.ref_audio and not Path(args.ref_audio).is_file():
        parser.error(f"--ref-audio {args.ref_audio}: file not found")
    if args.prompt and not Path(args.prompt).is_file():
        parser.error(f"--prompt {args.prompt}: file not found")
    utterances = _synth_inputs(args, parser)

    import torch

    def fail(e: Exception) -> int:
        message = re.sub(r"^item \d+: ", "", str(e).strip().splitlines()[0] if str(e).strip() else repr(e))
        print(f"error: {message}", file=sys.stderr)
        return 2

    pending = [u for u in utterances if not u[2].is_file()]
    skipped = len(utterances) - len(pending)
    if skipped:
        print(f"skipped {skipped} of {len(utterances)} utterances whose wav already exists")
    start = time.perf_counter()
    written, seconds = 0, 0.0
    if pending or args.save_prompt:
        from qtts.inference import Synthesizer, VoicePrompt
        from qtts.inference.long_form import synthesize_to_files

        try:
            synth = Synthesizer.from_pretrained(args.model, codec=args.codec, device=args.device,
                                                dtype=getattr(torch, args.dtype))
        except (OSError, ValueError, KeyError, RuntimeError, AssertionError) as e:  # torch: no CUDA → assert
            return fail(e)
        try:
            synth.check_voice(clone=mode == "clone", speaker=args.speaker, instruct=args.instruct)
        except ValueError as e:
            return fail(ValueError(f"{args.model}: {e}"))

        sampling = {k: v for k, v in dict(seed=args.seed, temperature=args.temperature, top_k=args.top_k,
                                          top_p=args.top_p, repetition_penalty=args.repetition_penalty,
                                          max_new_tokens=args.max_new_tokens).items() if v is not None}
        if args.greedy:
            sampling.update(do_sample=False, subtalker_dosample=False)
        if mode == "clone":
            source = args.prompt or args.ref_audio
            try:  # the voice is encoded once and every sentence reuses it
                if args.prompt:
                    prompt = VoicePrompt.load(args.prompt)
                else:
                    prompt = synth.create_voice_prompt(args.ref_audio, args.ref_text, args.x_vector_only)
            except Exception as e:  # noqa: BLE001 - unreadable audio / prompt files: one line, not a traceback
                return fail(e if str(e).startswith(str(source)) else ValueError(f"{source}: {e}"))
            if args.save_prompt:
                prompt.save(args.save_prompt)
                print(f"wrote voice prompt {args.save_prompt}")
        else:
            prompt = None

        def generate(texts: list[str]) -> list:
            """The same voice for every sentence: one prompt, one speaker (and instruct), or one description."""
            if mode == "clone":
                return synth.voice_clone(texts, prompt=prompt, language=args.language, **sampling)
            if mode == "custom":
                return synth.custom_voice(texts, speaker=args.speaker, language=args.language,
                                          instruct=args.instruct, **sampling)
            return synth.voice_design(texts, instruct=args.instruct, language=args.language, **sampling)

        options = _picked(args, SYNTH) | {"progress": args.progress and sys.stderr.isatty()}
        try:
            written, seconds = synthesize_to_files(generate, [(text, path) for _, text, path in pending],
                                                   synth.sample_rate, **options)
        except ValueError as e:
            return fail(e)
    wall = time.perf_counter() - start

    if args.text_file is not None:
        from qtts.inference.long_form import write_manifest

        write_manifest(args.out, utterances)
    rtf = f"{wall / seconds:.3f}" if seconds else "n/a"
    print(f"wrote {written} files, {seconds:.2f} s of audio in {wall:.2f} s (real-time factor {rtf})"
          + (f" to {args.out}" if written or args.text_file else ""))
    return 0


def _speakers_add(args: argparse.Namespace) -> int:
    from qtts.adapters.speakers import add_speakers_from_corpus

    speakers = args.speakers.split(",") if args.speakers else None
    try:
        added = add_speakers_from_corpus(args.base, args.corpus, args.out, speakers=speakers, codec=args.codec,
                                         **_picked(args, SPEAKERS_ADD))
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: " + ", ".join(f"{name} → row {row}" for name, row in sorted(added.items())))
    return 0


def _languages_add(args: argparse.Namespace) -> int:
    from qtts.adapters.language import add_language_to_folder

    tokens = []
    if args.tokens_file:
        lines = Path(args.tokens_file).read_text(encoding="utf-8").splitlines()
        tokens = [line.strip() for line in lines if line.strip()]
    try:
        row = add_language_to_folder(args.base, args.out, args.name, row=args.row, tokens=tokens)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from qtts.text.languages import is_known_language

    name, code = args.name.lower(), args.code or args.name.lower()
    register = "" if is_known_language(code) else f"'languages=[{{code: {code}, name: {name}}}]' "
    print(f"wrote {args.out}: language {name!r} → codec row {row}, {len(tokens)} new text tokens\n"
          f"train with: scripts/train.py experiment=new_language task.init_from={args.out} data.codes=CODES "
          f"{register}'task.train_language_rows=[{name}]'" + (" task.train_added_tokens=true" if tokens else ""))
    return 0


def _eval_talker(args: argparse.Namespace) -> int:
    from qtts.tasks.talker_eval import evaluate_talker_on_codes

    languages = args.languages.split(",") if args.languages else None
    try:
        report, layout = evaluate_talker_on_codes(args.model, args.codes, languages=languages,
                                                  **_picked(args, EVAL_TALKER))
    except (ValueError, KeyError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{args.by:>16} | rows | loss   | talker | predictor   ({layout} layout)")
        for group, r in report.items():
            print(f"{group:>16} | {r['rows']:4d} | {r['loss']:.4f} | {r['talker_loss']:.4f} | "
                  f"{r['predictor_loss']:.4f}")
    return 0


def _eval_scorers(args: argparse.Namespace) -> dict[str, Any]:
    """The speaker embedder and MOS predictor the options ask for (None when not asked)."""
    scorers: dict[str, Any] = {"speaker_embedder": None, "mos": None}
    if args.sim is not None:
        from qtts.eval.similarity import open_speaker_embedder

        scorers["speaker_embedder"] = open_speaker_embedder(args.sim or None, device=args.device)
    if args.mos is not None:
        from qtts.eval.naturalness import open_mos

        scorers["mos"] = open_mos(args.mos or None)
    return scorers


def _eval_run(args: argparse.Namespace, run: Callable[..., dict]) -> int:
    """Open the scorers, run one evaluation, print its report; an error is one line and exit status 2."""
    from qtts.eval.report import format_report

    try:
        report = run(asr=args.asr, language=args.language, **_eval_scorers(args), **_picked(args, args.options))
    except (OSError, ValueError, KeyError, RuntimeError) as e:  # bad test set, missing model or audio, …
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else format_report(report))
    print(f"wrote {Path(args.out) / 'report.md'}, report.json, report.png and results.jsonl")
    return 0


def _eval_asr(args: argparse.Namespace) -> int:
    from qtts.eval.run import evaluate_asr

    return _eval_run(args, functools.partial(evaluate_asr, args.testset, args.out))


def _eval_tts(args: argparse.Namespace) -> int:
    from qtts.eval.run import evaluate_tts

    return _eval_run(args, functools.partial(evaluate_tts, args.model, args.testset, args.out, codec=args.codec))


def _eval_codec(args: argparse.Namespace) -> int:
    from qtts.eval.run import evaluate_codec

    return _eval_run(args, functools.partial(evaluate_codec, args.codec, args.manifest, args.out))


def _eval_curve(args: argparse.Namespace) -> int:
    from qtts.eval.curves import curve_table, plot_curves, read_metrics

    try:
        curves = read_metrics(args.run)
        print(curve_table(curves, args.keys, args.every), end="")
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)
        return 2
    if args.plot:
        print(f"wrote {plot_curves(curves, args.keys, args.plot)}")
    return 0


def _mine_pairs(args: argparse.Namespace) -> int:
    from qtts.eval.pairs import mine_pairs
    from qtts.eval.rewards import load_reward_config

    try:
        rewards = load_reward_config(args.rewards) if args.rewards else None
        summary = mine_pairs(args.model, args.prompts, args.out, rewards=rewards, **_picked(args, MINE_PAIRS))
    except (OSError, ValueError, KeyError, RuntimeError) as e:  # bad test set or rewards, missing model or audio
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


def _export(args: argparse.Namespace) -> int:
    from qtts.models.export import export_release
    from qtts.runs import open_trained

    try:
        trained = open_trained(args.source, dtype=None)
        model = trained.model
        out = export_release(model, args.out, model_type=args.model_type, codec=args.codec or trained.codec_folder,
                             source=args.base or trained.init_from)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    speakers = sorted(model.config.talker_config.spk_id or {}) if args.model_type != "base" else []
    print(f"exported {out}" + (f" (speakers: {', '.join(speakers)})" if speakers else ""))
    return 0


def _train(args: argparse.Namespace) -> int:
    from hydra.errors import HydraException

    from qtts.training.config import ConfigError
    from qtts.training.run import train_experiment

    try:
        run = train_experiment(args.overrides)
    except (ConfigError, HydraException) as e:  # a wrong key or value: one line naming it
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"run folder: {run}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from qtts.demo import run_demo

    return run_demo(Path(args.out), **_picked(args, DEMO))


if __name__ == "__main__":
    sys.exit(main())
