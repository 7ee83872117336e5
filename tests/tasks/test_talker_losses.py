"""Which hidden state supervises which label: a three-frame example written out by hand.

The upstream fine-tuning script shifted the group-0 labels twice (facts §4); here the sequence builder
aligns once and the loss never shifts, and this test pins every position."""

from __future__ import annotations

import pytest
import torch

from qtts.data.batching import collate_training
from qtts.models.talker.layout import build_sequence
from qtts.tasks.talker_losses import dual_track_loss

EOS = 2150
# Frame j has c0 = 100 + j and c_g = 10 * g + j for the residual groups: every code says which frame it is.
FRAMES = torch.tensor([[100 + j] + [10 * g + j for g in range(1, 16)] for j in range(3)])
# Released non-streaming layout for text content [11, 12], language auto, no speaker slot (facts §3):
# 0-2 role | 3-5 nothink/think_bos/think_eos | 6 codec_pad+tts_bos | 7-8 text | 9 tts_eos | 10 codec_bos
# | 11-13 frames 0-2 | 14 codec_eos.
CODEC_BOS, FIRST_FRAME, CODEC_EOS = 10, 11, 14


def example():
    return collate_training([build_sequence([11, 12], target_codes=FRAMES)])


def test_three_frames_by_hand():
    batch = example()
    assert batch.text_ids.shape == (1, 15)
    assert batch.codec_ids[0, CODEC_BOS] == 2149 and batch.codec_ids[0, CODEC_EOS] == EOS
    assert batch.frame_mask[0].nonzero().flatten().tolist() == [11, 12, 13]
    # The state at codec_bos predicts frame 0, the state at frame j predicts frame j + 1, the last frame
    # predicts EOS; the EOS input itself and everything before codec_bos predict nothing.
    expected = [-100] * 10 + [100, 101, 102, EOS, -100]
    assert batch.labels[0].tolist() == expected

    hidden = torch.arange(15.0).view(1, 15, 1).expand(1, 15, 4).clone()  # hidden[t] = t
    logits = torch.zeros(1, 15, 3072, requires_grad=True)
    seen = {}

    def predictor(h, codes):
        seen["positions"], seen["codes"] = h[:, 0].tolist(), codes
        return torch.zeros(len(h), 15, 2048, requires_grad=True)

    loss = dual_track_loss(hidden, logits, batch.labels, batch.code_labels, predictor)
    loss.talker.backward()
    graded = logits.grad[0].abs().sum(-1).nonzero().flatten().tolist()
    assert graded == [10, 11, 12, 13]  # exactly the supervised positions, no shift
    assert logits.grad[0, graded].argmin(-1).tolist() == [100, 101, 102, EOS]  # pushed toward their labels
    # The code predictor gets the state that predicted each frame's c0 and that whole frame, all 16 groups.
    assert seen["positions"] == [10.0, 11.0, 12.0]
    assert torch.equal(seen["codes"], FRAMES)
    assert loss.talker_tokens == 4 and loss.predictor_frames == 3


def test_loss_values_and_weight():
    batch = example()
    torch.manual_seed(0)
    hidden, logits = torch.randn(1, 15, 4), torch.randn(1, 15, 3072)
    residual = torch.randn(3, 15, 2048)
    loss = dual_track_loss(hidden, logits, batch.labels, batch.code_labels, lambda h, c: residual,
                           predictor_weight=0.5)
    rows = [10, 11, 12, 13]
    talker = torch.nn.functional.cross_entropy(logits[0, rows], torch.tensor([100, 101, 102, EOS]))
    predictor = torch.nn.functional.cross_entropy(residual.flatten(0, 1), FRAMES[:, 1:].flatten())
    assert loss.talker.item() == pytest.approx(talker.item(), rel=1e-6)
    assert loss.predictor.item() == pytest.approx(predictor.item(), rel=1e-6)
    assert loss.total.item() == pytest.approx(talker.item() + 0.5 * predictor.item(), rel=1e-6)
    assert loss.predictor_accuracy.shape == (15,)


def test_predictor_fraction_subsamples_frames():
    batch = example()
    picked = []

    def predictor(h, codes):
        picked.append(h[:, 0].tolist())
        return torch.zeros(len(h), 15, 2048)

    hidden = torch.arange(15.0).view(1, 15, 1)
    for seed in range(6):
        dual_track_loss(hidden, torch.zeros(1, 15, 3072), batch.labels, batch.code_labels, predictor,
                        predictor_fraction=0.34, generator=torch.Generator().manual_seed(seed))
    assert all(len(p) == 1 and p[0] in (10.0, 11.0, 12.0) for p in picked)
    assert len({p[0] for p in picked}) > 1  # different frames for different seeds


def test_all_ignored_is_an_error():
    batch = collate_training([build_sequence([11, 12])])  # a prefill: nothing to learn
    with pytest.raises(ValueError, match="no supervised position"):
        dual_track_loss(torch.zeros(1, len(batch.labels[0]), 4), torch.zeros(1, len(batch.labels[0]), 3072),
                        batch.labels, batch.code_labels, lambda h, c: None)


def test_accuracy_counts_the_positions_the_loss_averages():
    """Loss and accuracy over the same positions: the unsupervised ones (wrong here) count in neither, and three of
    the four supervised argmaxes right give 0.75 with the CE of those four rows. Skipped accuracies are NaN."""
    batch = example()
    labels = [100, 101, 102, EOS]
    logits = torch.zeros(1, 15, 3072)
    logits[0, :, 7] = 5.0  # every position's argmax is 7 ...
    for row, label in zip([10, 11, 12], labels):
        logits[0, row, label] = 9.0  # ... except three supervised ones, right; the EOS row stays wrong
    residual = torch.zeros(3, 15, 2048)
    residual[:2, :, :].scatter_(-1, FRAMES[:2, 1:, None], 4.0)  # frames 0 and 1 right in every group, frame 2 not
    loss = dual_track_loss(torch.zeros(1, 15, 4), logits, batch.labels, batch.code_labels, lambda h, c: residual)
    assert loss.talker_accuracy.item() == pytest.approx(0.75)
    expected = torch.nn.functional.cross_entropy(logits[0, [10, 11, 12, 13]], torch.tensor(labels))
    assert loss.talker.item() == pytest.approx(expected.item(), rel=1e-6)
    assert loss.predictor_accuracy.tolist() == pytest.approx([2 / 3] * 15)

    skipped = dual_track_loss(torch.zeros(1, 15, 4), logits, batch.labels, batch.code_labels, lambda h, c: residual,
                              accuracy=False)
    assert skipped.talker_accuracy.isnan() and skipped.predictor_accuracy.isnan().all()
    assert skipped.talker.item() == loss.talker.item()
    only_eos = batch.labels.clone()
    only_eos[0, [10, 11, 12]] = -100  # no audio frame left for the code predictor
    for accuracy, check in ((True, lambda a: (a == 0).all()), (False, lambda a: a.isnan().all())):
        out = dual_track_loss(torch.zeros(1, 15, 4), logits, only_eos, batch.code_labels, lambda h, c: residual,
                              accuracy=accuracy)
        assert out.predictor_frames == 0 and check(out.predictor_accuracy), (accuracy, out.predictor_accuracy)
