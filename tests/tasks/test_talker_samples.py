"""Teacher-forced validation frames: which positions, which groups, real codes only."""

import torch

from qtts.data.batching import collate_training
from qtts.models.talker.layout import build_sequence
from qtts.tasks.talker_samples import teacher_forced_frames

FRAMES = torch.tensor([[100 + j] + [10 * g + j for g in range(1, 16)] for j in range(3)])


def test_predicted_and_target_frames():
    batch = collate_training([build_sequence([11, 12], target_codes=FRAMES)])
    labels, code_labels = batch.labels[0], batch.code_labels[0]
    logits = torch.zeros(15, 3072)
    logits[10:13, 2150] = 9.0  # EOS is not a code: never chosen for an audio frame
    logits[10:13, 7] = 5.0
    hidden = torch.arange(15.0)[:, None].expand(15, 4)
    seen = {}

    def predictor(h, codes):
        seen["h"], seen["codes"] = h[:, 0].tolist(), codes
        out = torch.zeros(len(h), 15, 2048)
        out[:, :, 3] = 1.0
        return out

    predicted, target = teacher_forced_frames(hidden, logits, labels, code_labels, predictor)
    assert torch.equal(target, FRAMES)  # the EOS position is not a frame
    assert predicted[:, 0].tolist() == [7, 7, 7] and (predicted[:, 1:] == 3).all()
    assert seen["h"] == [10.0, 11.0, 12.0] and torch.equal(seen["codes"], FRAMES)
