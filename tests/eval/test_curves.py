"""Training curves from a run's metrics.csv: interleaved logger rows unpicked, windows averaged, table and plot."""

from __future__ import annotations

import math

import pytest

from qtts.cli import main
from qtts.eval.curves import curve_table, plot_curves, read_metrics, window_means

# What Lightning's CSV logger writes: learning-rate rows, training rows (accuracy NaN on steps that do not measure
# it) and a validation row, each leaving the others' columns empty.
CSV = """epoch,lr-AdamW,step,train/loss,train/acc,val/loss,val/wer
,0.001,9,,,,
0,,9,4.0,0.5,,
0,,19,3.0,nan,,
0,,29,2.0,0.7,,
0,,29,,,2.5,0.9
1,,39,1.0,0.8,,
"""


@pytest.fixture
def run(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "metrics.csv").write_text(CSV)
    return tmp_path


def test_rows_are_unpicked_into_curves(run):
    curves = read_metrics(run)
    assert curves["train/loss"] == [(9, 4.0), (19, 3.0), (29, 2.0), (39, 1.0)]
    assert curves["val/wer"] == [(29, 0.9)] and curves["lr-AdamW"] == [(9, 0.001)]
    assert math.isnan(curves["train/acc"][1][1]) and "epoch" not in curves and "step" not in curves
    assert str(read_metrics(run / "logs" / "metrics.csv")) == str(curves)  # the file itself works too (str: NaN)


def test_windows_average_finite_values_by_their_last_step(run):
    curves = read_metrics(run)
    assert window_means(curves["train/loss"], 20) == {20: 3.5, 40: 1.5}
    assert window_means(curves["train/acc"], 20) == {20: 0.5, 40: 0.75}  # the NaN is not a measurement
    assert window_means([(0, 1.0), (10, 3.0), (11, 5.0)], 10) == {10: 2.0, 20: 5.0}
    table = curve_table(curves, ["train/loss", "val/wer"], 20)
    assert table.splitlines() == ["| step | train/loss | val/wer |", "|---:|---:|---:|", "| 20 | 3.5 |  |",
                                  "| 40 | 1.5 | 0.9 |"]


def test_bad_files_and_keys_are_named(run, tmp_path):
    with pytest.raises(FileNotFoundError, match="no metrics file"):
        read_metrics(tmp_path / "nowhere")
    (run / "logs" / "metrics.csv").write_text(CSV.replace("2.0,0.7", "2.0,high"))
    with pytest.raises(ValueError, match=r"metrics.csv:5: column 'train/acc' must be a number, got 'high'"):
        read_metrics(run)
    with pytest.raises(KeyError, match="were not logged"):
        curve_table({"train/loss": [(0, 1.0)]}, ["val/loss"], 10)
    with pytest.raises(ValueError, match="every must be >= 1"):
        window_means([(0, 1.0)], 0)


def test_plot_and_command(run, tmp_path, capsys):
    png = plot_curves(read_metrics(run), ["train/loss", "val/wer"], tmp_path / "curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["eval", "curve", str(run), "--keys", "train/loss", "--every", "40",
                 "--plot", str(tmp_path / "c.png")]) == 0
    out = capsys.readouterr().out
    assert "| 40 | 2.5 |" in out and (tmp_path / "c.png").is_file()
    assert main(["eval", "curve", str(run), "--keys", "val/sim"]) == 2
    assert "val/sim" in capsys.readouterr().err
