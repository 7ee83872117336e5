"""Preference pairs for DPO, mined from a model's own samples: ``qtts mine-pairs MODEL PROMPTS --out DIR``.

Why from its own samples: DPO moves probability from the rejected to the chosen utterance; pairs the model could
have produced itself (on-policy) keep the update close to what it does, and the rewards (``qtts.eval.rewards``)
decide which of its utterances are better. Each prompt of a test set (``qtts.eval.testset``: JSONL or Seed-TTS-eval
list; the voice per item by ``qtts.eval.run.item_requests``) is sampled ``group_size`` times
(``qtts.inference.rollouts.sample_rollouts``), the samples are scored, and the best and the worst become a pair
unless their rewards differ by less than ``min_gap`` (a coin flip between near-equal samples teaches noise).

Output, in ``out``:

    settings.json, results.jsonl   one line per prompt as it is mined (``qtts.eval.results``): a rerun skips the
                                   prompts done; a rerun with other settings is refused
    dataset/                       the pairs as an HF ``datasets`` dataset (``datasets.load_from_disk``), rewritten
                                   at the end of every run from results.jsonl

A pair's row: the request (``id, text, language, speaker, instruct, non_streaming_mode``, and for a cloned voice
``ref_audio, ref_text`` with the prompt as the model encoded it: ``xvector``, ``ref_codes``), then per side
(``chosen_`` / ``rejected_``) the ``codes`` (frames × 16), whether it ``ended`` with EOS, its ``reward`` (the
weighted total) and its reward ``components``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from qtts.eval.results import ResultsStore
from qtts.eval.rewards import RewardConfig, Rewards, RewardSample
from qtts.eval.run import CLONES, Voice, _batch_seed, _items, _settings, choose_voice, item_requests
from qtts.eval.testset import TestItem
from qtts.inference.logprobs import PolicyGroups

DATASET = "dataset"
SYSTEM = "pair"  # the results store's system name of a mined prompt


def mine_pairs(model, prompts: str | os.PathLike | Sequence[TestItem], out: str | os.PathLike,
               group_size: int = 8, rewards: Rewards | RewardConfig | dict | None = None, min_gap: float = 0.1,
               language: str | None = None, voice: Voice = "auto", batch_size: int = 2,
               groups: PolicyGroups = "all", seed: int = 0, max_new_tokens: int | None = None,
               codec: str | None = None, device: str = "cpu", progress: bool = True) -> dict[str, Any]:
    """Mine one DPO pair per prompt of ``prompts`` with ``model`` (a ``Synthesizer`` or anything it opens) into
    ``out`` (see the module docstring). ``rewards``: a ``Rewards``, or its config (None: ``RewardConfig()``).
    ``batch_size`` prompts (× ``group_size`` samples) per generation, seeded per batch from ``seed`` and the prompts'
    ids (a resumed run samples as it would have); ``max_new_tokens`` caps the frames (default: the model's generation
    config). Returns ``{prompts, pairs, dropped, mean_reward, dataset}`` over every prompt mined in ``out``."""
    from qtts.inference.rollouts import sample_rollouts
    from qtts.inference.synthesizer import Synthesizer

    if group_size < 2:
        raise ValueError(f"group_size must be >= 2 (a pair needs two samples), got {group_size}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if min_gap < 0:
        raise ValueError(f"min_gap must be >= 0, got {min_gap}")
    out = Path(out)
    items = _items(prompts, language)
    synth = model if isinstance(model, Synthesizer) else Synthesizer.from_pretrained(model, codec=codec, device=device)
    scorer = rewards if isinstance(rewards, Rewards) else Rewards(rewards, device=device)
    # every item's voice and prompt file checked before any work
    missing = [f"{item.where} ({item.ref_audio})" for item in items if choose_voice(item, synth, voice) in CLONES
               and not Path(item.ref_audio).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} prompt audio files (ref_audio) missing: " + "; ".join(missing[:5]))
    sampling = {} if max_new_tokens is None else {"max_new_tokens": max_new_tokens}
    settings = _settings("pairs", prompts, language, model=str(Path(model).resolve()) if isinstance(
        model, (str, os.PathLike)) else f"<{synth.model_type} model>", voice=voice, seed=seed, sampling=sampling,
        group_size=group_size, groups=groups, min_gap=min_gap, rewards=scorer.describe())
    store = ResultsStore(out, settings)
    todo = [item for item in items if not store.done(SYSTEM, item.id)]
    with tqdm(total=len(todo), unit="prompt", desc="mine", disable=not progress) as bar:
        for first in range(0, len(todo), batch_size):
            batch = todo[first:first + batch_size]
            requests = item_requests(synth, batch, voice)
            rollouts = sample_rollouts(synth, requests, group_size, groups=groups,
                                       seed=_batch_seed(seed, [i.id for i in batch]), **sampling)
            ended = rollouts.logprobs.ended.tolist()
            samples = [RewardSample(item.text, item.language, rollouts.audio[row], rollouts.sample_rate,
                                    len(rollouts.codes[row]), ended[row], item.ref_audio)
                       for p, item in enumerate(batch) for row in range(*rollouts.group(p).indices(len(rollouts)))]
            scores = scorer(samples)
            store.append(_pair_row(item, requests[p], rollouts, scores, p, min_gap) for p, item in enumerate(batch))
            bar.update(len(batch))
    return write_dataset(out, [i.id for i in items], store, list(scorer.weights), progress)


def _pair_row(item: TestItem, request, rollouts, scores, prompt: int, min_gap: float) -> dict[str, Any]:
    """The results line of one prompt: its samples' totals, and the pair when the gap is wide enough."""
    rows = rollouts.group(prompt)
    totals = scores.total[rows]
    best, worst = int(totals.argmax()), int(totals.argmin())
    gap = float(totals[best] - totals[worst])
    row: dict[str, Any] = {"system": SYSTEM, "id": item.id, "rewards": totals.tolist(), "gap": gap,
                           "kept": gap > 0 and gap >= min_gap}
    if not row["kept"]:
        return row
    prompt_voice = request.prompt
    row["request"] = {
        "text": request.text, "language": request.language, "speaker": request.speaker,
        "instruct": request.instruct, "non_streaming_mode": request.non_streaming_mode,
        "ref_audio": item.ref_audio if prompt_voice is not None else None,
        "ref_text": prompt_voice.ref_text if prompt_voice is not None else None,
        "xvector": prompt_voice.xvector.float().cpu().tolist() if prompt_voice is not None else None,
        "ref_codes": prompt_voice.ref_codes.tolist() if prompt_voice is not None and prompt_voice.in_context
        else None,
    }
    components = {name: values[rows] for name, values in scores.components.items()}
    ended = rollouts.logprobs.ended[rows]
    for side, index in (("chosen", best), ("rejected", worst)):
        row[side] = {"codes": rollouts.codes[rows.start + index].tolist(), "ended": bool(ended[index]),
                     "reward": float(totals[index]),
                     "components": {name: float(v[index]) for name, v in components.items()}}
    return row


def write_dataset(out: str | os.PathLike, ids: Sequence[str], store: ResultsStore,
                  components: Sequence[str], progress: bool = True) -> dict[str, Any]:
    """``out/dataset`` from the mined lines of ``ids`` in ``store`` (``out/results.jsonl``), each side with the reward
    ``components`` (replaced whole: written aside, then renamed), and the summary ``mine_pairs`` returns."""
    import datasets

    out = Path(out)
    lines = store.select(SYSTEM, ids)
    pairs = [_dataset_row(line) for line in lines if line["kept"]]
    features = _features(components)
    table = datasets.Dataset.from_dict({name: [row[name] for row in pairs] for name in features}, features=features)
    tmp, final = out / f".{DATASET}.tmp", out / DATASET
    shutil.rmtree(tmp, ignore_errors=True)
    quiet = not progress and not datasets.utils.are_progress_bars_disabled()
    if quiet:
        datasets.utils.disable_progress_bars()
    try:
        table.save_to_disk(str(tmp), num_shards=1)  # one shard also when empty (zero shards do not load back)
    finally:
        if quiet:
            datasets.utils.enable_progress_bars()
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    rewards = [r for line in lines for r in line["rewards"]]
    return {"prompts": len(lines), "pairs": len(pairs), "dropped": len(lines) - len(pairs),
            "mean_reward": sum(rewards) / len(rewards) if rewards else float("nan"), "dataset": str(final)}


def _dataset_row(line: dict[str, Any]) -> dict[str, Any]:
    row = {"id": line["id"], **line["request"]}
    for side in ("chosen", "rejected"):
        for key, value in line[side].items():
            row[f"{side}_{key}"] = value
    return row


def _features(names: Sequence[str]):
    """Explicit column types (codes int16, x-vectors float32), so an empty dataset or one without cloned voices
    has the same columns as any other."""
    import datasets

    codes = datasets.Sequence(datasets.Sequence(datasets.Value("int16")))
    components = {name: datasets.Value("float64") for name in names}
    side = {"codes": codes, "ended": datasets.Value("bool"), "reward": datasets.Value("float64")}
    return datasets.Features({
        "id": datasets.Value("string"), "text": datasets.Value("string"), "language": datasets.Value("string"),
        "speaker": datasets.Value("string"), "instruct": datasets.Value("string"),
        "non_streaming_mode": datasets.Value("bool"), "ref_audio": datasets.Value("string"),
        "ref_text": datasets.Value("string"), "xvector": datasets.Sequence(datasets.Value("float32")),
        "ref_codes": codes,
        **{f"chosen_{k}": v for k, v in side.items()}, "chosen_components": components,
        **{f"rejected_{k}": v for k, v in side.items()}, "rejected_components": components,
    })


def pair_requests(rows: Sequence[dict[str, Any]]) -> list:
    """The ``Synthesizer`` requests of dataset rows (the voice prompt rebuilt from the stored x-vector and codes)."""
    from qtts.inference.synthesizer import Request
    from qtts.inference.voice import VoicePrompt

    requests = []
    for row in rows:
        prompt = None
        if row["xvector"] is not None:
            prompt = VoicePrompt(torch.tensor(row["xvector"], dtype=torch.float32),
                                 None if row["ref_codes"] is None else torch.tensor(row["ref_codes"],
                                                                                    dtype=torch.long),
                                 row["ref_text"] if row["ref_codes"] is not None else None)
        requests.append(Request(row["text"], row["language"], speaker=row["speaker"], instruct=row["instruct"],
                                prompt=prompt, non_streaming_mode=row["non_streaming_mode"]))
    return requests
