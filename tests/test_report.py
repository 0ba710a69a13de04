"""``mirg report``: tables with hits and intervals from mirg.scoring, curves from training folders, a gallery with
ground truth and prediction drawn, one self-contained HTML; MIG-Bench runs with --image-root; one-line errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from test_compare import RIGHT, WRONG_BOX, make_data, make_run


def write_training(folder: Path, stage: str, steps: int = 6) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for s in range(1, steps + 1):
        row = {"stage": stage, "step": s, "loss": 2.0 / s}
        if stage == "rl":
            row |= {"reward": 0.1 * s, "rewards/format_reward/mean": 0.05 * s, "rewards/image_reward/mean": 0.5,
                    "rewards/object_reward/mean": 0.02 * s}  # fmt: skip
        rows.append(row)
    rows.append({"stage": stage, "step": steps, "train_runtime": 1.0, "train_loss": 1.0})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.fixture
def runs(tmp_path):
    data = make_data(tmp_path / "data", images=True)
    a = make_run(tmp_path / "sft", data, {f"s{k}": (2, RIGHT if k < 3 else WRONG_BOX) for k in range(8)})
    b = make_run(tmp_path / "rl", data, {f"s{k}": (2, RIGHT) if k < 5 else (1, RIGHT) for k in range(8)})
    return a, b


def test_report_cli_writes_markdown_and_self_contained_html(runs, tmp_path, capsys):
    from mirg.cli import main

    out = tmp_path / "rep"
    train = [
        write_training(tmp_path / "train" / "sft", "sft"),
        write_training(tmp_path / "train" / "rl", "rl"),
    ]
    assert main(["report", str(runs[0]), str(runs[1]), "--out", str(out), "--gallery", "2",
                 "--training", *map(str, train)]) == 0  # fmt: skip
    assert "report.html" in capsys.readouterr().out
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "| sft | 37.5 | 100.0 | 37.5 | 8 | 3/8 (13.7-69.4) | 8/8 (67.6-100.0) |" in md
    assert "| rl | 62.5 | 62.5 | 62.5 | 8 | 5/8 (30.6-86.3) | 5/8 (30.6-86.3) |" in md
    assert (
        "- rl vs sft on the same 8 samples: right only for rl 2, only for sft 0; exact McNemar p = 0.5" in md
    )
    assert "| diff |" in md and "| reasoning |" in md and "| AVG |" in md
    assert "![sft loss](plots/sft_loss.png)" in md and "![rl rewards](plots/rl_rewards.png)" in md
    gallery = sorted((out / "gallery").glob("*.png"))
    assert [p.name.split("-")[0] for p in gallery] == ["failure", "failure", "success", "success"]
    assert "## Gallery (rl; green: ground truth, red: prediction)" in md
    assert "target Image-2, predicted Image-1, IoU 0.00" in md and "I pick Image-1." in md  # the reasoning
    assert '"model": "/m/rl"' in md  # the configuration: each run's metrics.json run block
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.count("src='data:image/png;base64,") == 2 + len(gallery)
    assert not re.search(r"src='(?!data:)", page)  # nothing refers to a file
    assert "<td>rl</td>" in page and "Question:" in page


def test_gallery_draws_ground_truth_green_and_prediction_red(runs, tmp_path):
    from PIL import Image

    from mirg.report import GT, PRED, write_report
    from mirg.runs import load_run

    write_report(tmp_path / "rep", [load_run(runs[1])], per_kind=1)
    (fail,) = (tmp_path / "rep" / "gallery").glob("failure-*.png")
    with Image.open(fail) as im:
        colours = {c for _, c in im.getcolors(1 << 16)}
    assert GT in colours and PRED in colours
    from mirg.report import draw_sample

    im = draw_sample([Image.new("RGB", (40, 30))] * 2, 1, (0.1, 0.1, 0.5, 0.5), 2, (1.1, 0.5, 0.4, 0.7))
    assert PRED in {c for _, c in im.getcolors(1 << 16)}  # an inverted box, off the image, is drawn clipped


def test_migbench_run_needs_its_image_root(tmp_path, capsys):
    from PIL import Image

    from mirg.cli import main
    from mirg.migbench import load_bench

    items = [{"task": "common_object", "images": [f"MIG-Bench/images/{k}a.jpg", f"MIG-Bench/images/{k}b.jpg"],
              "question": f"({k}) Recognize and locate the common object in the 1th image.", "answer": [100, 100, 500, 500]} for k in range(4)]  # fmt: skip
    bench = tmp_path / "bench" / "revised_MIG_bench.json"
    bench.parent.mkdir()
    bench.write_text(json.dumps(items))
    root = tmp_path / "root"
    (root / "MIG-Bench" / "images").mkdir(parents=True)
    for it in items:
        for p in it["images"]:
            Image.new("RGB", (80, 60), (90, 90, 90)).save(root / p)
    answers = {s.id: (1, RIGHT if k % 2 else WRONG_BOX) for k, s in enumerate(load_bench(bench))}
    run = make_run(tmp_path / "mig7b", bench, answers)
    assert main(["report", str(run), "--out", str(tmp_path / "r0")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "image not found" in err and "pass --image-root" in err
    assert main(["report", str(run), "--out", str(tmp_path / "r1"), "--image-root", str(root)]) == 0
    md = (tmp_path / "r1" / "report.md").read_text()
    assert "| mig7b | 50.0 | 100.0 |" in md and len(list((tmp_path / "r1" / "gallery").glob("*.png"))) == 4
    assert main(["report", str(run), "--out", str(tmp_path / "r2"), "--gallery", "0"]) == 0  # tables only
    # no target image known (the question names none): image accuracy is n/a, Acc@0.5 the box alone
    bench.write_text(
        json.dumps([it | {"question": "Recognize and locate the common object."} for it in items])
    )
    run = make_run(tmp_path / "unknown", bench, {s.id: (None, RIGHT) for s in load_bench(bench)})
    assert main(["report", str(run), "--out", str(tmp_path / "r3"), "--gallery", "0"]) == 0
    assert (
        "| unknown | 100.0 | n/a | 100.0 | 4 | 4/4 (51.0-100.0) | n/a |"
        in (tmp_path / "r3" / "report.md").read_text()
    )


def test_report_errors_are_one_line(runs, tmp_path, capsys):
    from mirg.cli import main

    assert main(["report", str(runs[0]), "--out", str(tmp_path / "r"), "--training", str(tmp_path)]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err == f"mirg: error: run folder not found: {tmp_path / 'nowhere'}\n"


def test_constant_image_floor_is_the_best_fixed_image_averaged_over_tasks():
    from mirg.report import constant_image_line
    from mirg.sample import Sample

    assert constant_image_line([]) == ""
    targets = {"a": [1, 1, 1, 2], "b": [2, 2, 3, 3, 3, 3]}  # Image-1: (75 + 0) / 2; Image-2: (25 + 33.3) / 2
    samples = [Sample(id=f"{t}{i}", task=t, images=["x", "y", "z"], question="q", target_image=k)
               for t, ks in targets.items() for i, k in enumerate(ks)]  # fmt: skip
    line = constant_image_line(samples)
    assert line.startswith("Naming Image-1 for every sample") and "image accuracy 37.5:" in line
