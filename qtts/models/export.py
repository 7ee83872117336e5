"""Write a model as a complete released-layout folder that qwen-tts (and every runtime built for the release) loads.

A released folder is more than the weights: ``config.json`` + ``model.safetensors``, the text tokenizer files,
``generation_config.json`` and ``speech_tokenizer/``. ``export_release`` writes all of it, taking the extras from
the folder the model was fine-tuned from (``source``) when there is one, else from the built-in tokenizer and the
released generation config. A custom-voice export is what the released CustomVoice models are: named speaker
rows (``spk_id``), no speaker encoder.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

from qtts.models.checkpoint import CONFIG_NAME, save_weights, write_json
from qtts.models.codec.model import SUBFOLDER, resolve_folder
from qtts.models.talker import TTSModel
from qtts.models.talker.config import MODEL_TYPES
from qtts.text.tokenizer import has_tokenizer, write_tokenizer_folder

TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "tokenizer.json", "special_tokens_map.json",
                   "added_tokens.json")
GENERATION_CONFIG = "generation_config.json"
RELEASED_GENERATION_CONFIG = dict(do_sample=True, top_k=50, top_p=1.0, temperature=0.9, repetition_penalty=1.05,
                                  subtalker_dosample=True, subtalker_top_k=50, subtalker_top_p=1.0,
                                  subtalker_temperature=0.9, max_new_tokens=8192)  # the released folders' file


def export_release(model: TTSModel, folder: str | os.PathLike, *, model_type: str | None = None,
                   codec: str | os.PathLike | None = None, source: str | os.PathLike | None = None) -> Path:
    """Write ``model`` to ``folder`` in the released layout.

    model_type: ``custom_voice`` writes named speakers and drops the speaker encoder (as the released CustomVoice
        models and the upstream fine-tuning do); default: the model's own type.
    codec: the speech tokenizer folder (default: ``source``'s ``speech_tokenizer/``).
    source: the released/exported folder the model came from: its tokenizer files and generation config are kept.
    """

    folder = Path(folder)
    config = copy.deepcopy(model.config)
    model_type = model_type or config.tts_model_type
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model_type must be one of {MODEL_TYPES}, got {model_type!r}")
    if model_type == "custom_voice" and not config.talker_config.spk_id:
        raise ValueError("a custom_voice export needs named speakers (talker_config.spk_id is empty)")
    if model_type == "base" and model.speaker_encoder is None:
        raise ValueError("a base export needs the speaker encoder, which this model does not have")
    config.tts_model_type = model_type
    state = {k: v for k, v in model.state_dict().items()
             if model_type == "base" or not k.startswith("speaker_encoder.")}
    source = Path(source) if source is not None else None
    codec_folder = resolve_folder(codec if codec is not None else _required(source, "codec"))

    folder.mkdir(parents=True, exist_ok=True)
    save_weights(folder, state)
    if has_tokenizer(source):
        for name in TOKENIZER_FILES:
            if (source / name).is_file():
                shutil.copyfile(source / name, folder / name)
    else:
        write_tokenizer_folder(folder)
    generation = source / GENERATION_CONFIG if source is not None else None
    if generation is not None and generation.is_file():
        shutil.copyfile(generation, folder / GENERATION_CONFIG)
    else:
        (folder / GENERATION_CONFIG).write_text(json.dumps(RELEASED_GENERATION_CONFIG, indent=2) + "\n")
    if codec_folder.resolve() != (folder / SUBFOLDER).resolve():
        shutil.copytree(codec_folder, folder / SUBFOLDER, dirs_exist_ok=True)
    write_json(folder / CONFIG_NAME, config.to_dict())  # last: a folder with config.json is complete
    return folder


def _required(source: Path | None, what: str) -> Path:
    if source is None:
        raise ValueError(f"give the {what} folder (or the source folder the model was fine-tuned from)")
    return source
