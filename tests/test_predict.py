"""mirg predict: printed answer and the PNG."""

from __future__ import annotations

import numpy as np
from PIL import Image

from mirg.predict_cli import render_prediction


def test_render_prediction_frames_chosen_image_and_draws_box():
    images = [Image.new("RGB", (100, 50), (255, 255, 255)), Image.new("RGB", (57, 203), (255, 255, 255))]
    canvas = render_prediction(images, 2, (0.25, 0.25, 0.75, 0.75), caption="Q: where?", panel_height=100)
    assert canvas.height > 100 and canvas.width > 200 + 28
    reds = int((np.asarray(canvas) == (230, 40, 40)).all(-1).sum())
    assert reds > 200  # frame + box
    plain = render_prediction(images, None, None, panel_height=100)
    assert not (np.asarray(plain) == (230, 40, 40)).all(-1).any()


def test_predict_cli(tiny_model_dir, synthetic_data, tmp_path, capsys):
    from mirg.cli import main
    from mirg.sample import read_samples

    s = read_samples(synthetic_data)[1]
    images = [str(synthetic_data.parent / p) for p in s.images]
    out = tmp_path / "p.png"
    argv = ["predict", "--model", str(tiny_model_dir), "--images", *images, "--question", s.question,
            "--out", str(out), "--max-new-tokens", "16"]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "reasoning:" in text and "image:" in text and "box:" in text and f"saved {out}" in text
    assert Image.open(out).size[1] > 256


def test_predict_cli_missing_image(tiny_model_dir, tmp_path, capsys):
    from mirg.cli import main

    argv = [
        "predict",
        "--model",
        str(tiny_model_dir),
        "--images",
        str(tmp_path / "nope.png"),
        "--question",
        "q",
    ]
    assert main(argv) == 2
    assert "1 of 1 images are missing" in capsys.readouterr().err
    argv[argv.index(str(tmp_path / "nope.png"))] = str(tmp_path)  # a folder where an image belongs
    assert main(argv) == 2
    assert f"{tmp_path} (a folder)" in capsys.readouterr().err
