"""Issue 29 (reliability and security) and the reward part of issue 32: one test per finding, each failing on
the code before the fix. CLI cases call ``mirg.cli.main`` in-process and expect one ``mirg: error:`` line and
exit 2."""

from __future__ import annotations

import json
import random
import struct
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mirg.cli import main
from mirg.errors import DataError, MirgError

REPLY = '<think>I look at both.</think><answer>{"image": 1, "bbox_2d": [2, 2, 30, 30]}</answer>'


# --- helpers -------------------------------------------------------------------------------------------------


def write_samples_with_images(folder: Path, n: int = 4, seed: int = 0, target_shift: float = 0.0) -> Path:
    """``n`` one- or two-image Samples with small PNGs; ``target_shift`` moves every target box (same ids)."""
    from PIL import Image

    from mirg.sample import Sample, write_samples

    rng = random.Random(seed)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    samples = []
    for i in range(n):
        paths = []
        for j in range(1 + i % 2):
            rel = f"img/{i}_{j}.png"
            Image.new("RGB", (64 + 8 * j, 56), (rng.randrange(256), 90, 90)).save(folder / rel)
            paths.append(rel)
        box = (0.1 + target_shift, 0.2, 0.5 + target_shift, 0.6)
        samples.append(Sample(f"s{i}", "common_object", paths, "Which image shows it? Locate it.", 1, box))
    path = folder / "samples.jsonl"
    write_samples(samples, path)
    return path


def bomb_png(path: Path, w: int = 20000, h: int = 20000) -> Path:
    """A 100-byte PNG whose header claims ``w`` x ``h`` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))  # fmt: skip
    return path


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], *needles: str) -> str:
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("mirg: error: "), (rc, err)
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def bench_item(task: str = "refer_grounding", answer: list | None = None, **extra: object) -> dict:
    item = {"task": task, "images": ["a.png", "b.png"], "question": "Find it in the second image.",
            "answer": answer or [100, 200, 300, 400], "additional_info": "", "need_format": True}  # fmt: skip
    return item | extra


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two tiny Qwen2.5-VL checkpoints with different weights."""
    from mirg.models.tiny import build_tiny_model

    return tuple(  # type: ignore[return-value]
        build_tiny_model(tmp_path_factory.mktemp(f"tiny{seed}"), size="tiny", seed=seed) for seed in (0, 1)
    )


def eval_argv(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["eval", "--model", model, "--data", data, "--out", out, "--batch-size", "2", "--max-new-tokens", "4",
            "--no-progress", *extra]  # fmt: skip


# --- 1. resume checks what made the outputs ------------------------------------------------------------------


def test_f1_eval_resume_refuses_another_model_or_other_data(tiny_dirs, tmp_path, capsys):
    model_a, model_b = tiny_dirs
    data = write_samples_with_images(tmp_path / "d1")
    out = tmp_path / "out"
    assert main([str(a) for a in eval_argv(model_a, data, out)]) == 0
    capsys.readouterr()
    one_line_error(capsys, eval_argv(model_b, data, out), "model", "--overwrite", "new --out")
    other = write_samples_with_images(tmp_path / "d2", target_shift=0.3)  # same ids, other ground truth
    one_line_error(capsys, eval_argv(model_a, other, out), "data", "--overwrite")
    assert main([str(a) for a in eval_argv(model_b, data, out, "--overwrite")]) == 0
    assert "0 resumed, 4 generated" in capsys.readouterr().out
    assert main([str(a) for a in eval_argv(model_b, data, out)]) == 0
    assert "4 resumed, 0 generated" in capsys.readouterr().out


# --- 2. teacher credentials ----------------------------------------------------------------------------------

KEY = "sk-live-TOPSECRET-42"


class Recorder(BaseHTTPRequestHandler):
    """Behaviour set per server: 'redirect' (302 to ``target``), 'echo' (400 echoing the key), 'ok' (200)."""

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self) -> None:
        srv = self.server
        srv.seen.append((self.command, self.headers.get("Authorization")))  # type: ignore[attr-defined]
        mode = srv.mode  # type: ignore[attr-defined]
        if mode == "redirect":
            self.send_response(302)
            self.send_header("Location", srv.target)  # type: ignore[attr-defined]
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        auth = self.headers.get("Authorization", "")
        if mode == "echo":
            body = json.dumps({"error": {"message": f"invalid header Authorization: {auth} for key {KEY}"}})
            code = 400
        else:
            body = json.dumps({"choices": [{"message": {"content": f"{REPLY} (your key: {KEY}; {auth})"}}]})
            code = 200
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer


def serve(mode: str, target: str = "") -> ThreadingHTTPServer:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    srv.mode, srv.target, srv.seen = mode, target, []  # type: ignore[attr-defined]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def test_f2_teacher_never_sends_the_key_elsewhere_and_redacts_it(tmp_path, monkeypatch):
    from mirg.trajectories.teachers import ChatCompletionsTeacher, TeacherFatal, TeacherReplyError

    monkeypatch.setenv("MIRG_TEST_KEY", KEY)
    messages = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    other = serve("ok")  # another port on 127.0.0.1: another origin
    redirector = serve("redirect", f"http://127.0.0.1:{other.server_address[1]}/v1/chat/completions")
    try:
        t = ChatCompletionsTeacher(f"http://127.0.0.1:{redirector.server_address[1]}/v1", "m",
                                   api_key_env="MIRG_TEST_KEY", retries=0, timeout=5)  # fmt: skip
        with pytest.raises(TeacherFatal, match="redirect") as e:
            t.complete(messages, [])
        assert other.seen == [] and KEY not in str(e.value)  # nothing reached the other origin
        assert redirector.seen == [("POST", f"Bearer {KEY}")]

        echo = serve("echo")
        t = ChatCompletionsTeacher(f"http://127.0.0.1:{echo.server_address[1]}/v1", "m",
                                   api_key_env="MIRG_TEST_KEY", retries=0, timeout=5)  # fmt: skip
        with pytest.raises(TeacherReplyError) as e:
            t.complete(messages, [])
        assert KEY not in str(e.value) and "TOPSECRET" not in str(e.value) and "[redacted]" in str(e.value)
        echo.shutdown()

        t = ChatCompletionsTeacher(f"http://127.0.0.1:{other.server_address[1]}/v1", "m",
                                   api_key_env="MIRG_TEST_KEY", retries=0, timeout=5)  # fmt: skip
        reply = t.complete(messages, [])  # a reply echoing the key: what the store would keep
        assert reply.startswith(REPLY) and "TOPSECRET" not in reply and KEY not in repr(t)
    finally:
        other.shutdown()
        redirector.shutdown()


# --- 3. one bad record never changes units for the whole file ----------------------------------------------


def test_f3_revised_bench_with_one_float_answer_is_refused_by_record(tmp_path, capsys):
    from mirg.migbench import load_bench

    items = [bench_item(answer=[100 + i, 200, 300, 400]) for i in range(6)]
    items[3]["answer"] = [100, 200.5, 300, 400]
    bench = tmp_path / "revised.json"
    bench.write_text(json.dumps(items, indent=1))
    with pytest.raises(DataError, match=r"item 3.*field 'answer'|field 'answer'.*item 3"):
        load_bench(bench)
    items[3]["answer"] = [100, 200, 300, 400]
    bench.write_text(json.dumps(items, indent=1))
    assert load_bench(bench)[0].target_box == pytest.approx((0.1, 0.2, 0.3, 0.4))
    original = [bench_item(answer=[0.1, 0.2, 0.3, 0.4]) for _ in range(3)] + [
        bench_item(answer=[100, 200, 300, 400])
    ]
    bench.write_text(json.dumps(original, indent=1))
    with pytest.raises(DataError, match="original"):
        load_bench(bench)


# --- 4. one run at a time per output folder -----------------------------------------------------------------


def test_f4_concurrent_eval_into_one_folder_is_refused(tiny_dirs, tmp_path, capsys):
    from mirg.evaluation.runner import evaluate

    model, _ = tiny_dirs
    data = write_samples_with_images(tmp_path / "d", n=6)
    out = tmp_path / "out"
    second: list[tuple[int, str]] = []

    def run_second(_n: int) -> None:
        if not second:
            capsys.readouterr()  # the first run's weight-loading bar
            rc = main([str(a) for a in eval_argv(model, data, out)])
            second.append((rc, capsys.readouterr().err))

    evaluate(model, data, out, batch_size=2, max_new_tokens=4, progress=False, after_batch=run_second)
    rc, err = second[0]
    assert rc == 2 and "in use by another mirg run (pid" in err and err.count("\n") == 1, err
    ids = [json.loads(x)["id"] for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 6


# --- 5. no inf/NaN reaches a file ---------------------------------------------------------------------------


def test_f5_huge_coordinate_is_a_miss_and_never_written_as_infinity(tmp_path, capsys):
    from mirg.answers import get_dialect
    from mirg.evaluation.backends import Generation
    from mirg.evaluation.runner import parse_generation
    from mirg.evaluation.writer import PredictionsWriter
    from mirg.sample import Sample

    huge = "9" * 400
    sample = Sample("s0", "t", ["a.png", "b.png"], "q", 1, (0.1, 0.1, 0.5, 0.5))
    for dialect, text in (
        ("qwen2_vl", f"<answer>Image-1 <|box_start|>(1,2),({huge},4)<|box_end|></answer>"),
        ("qwen2_5_vl", f'<answer>{{"image": 1, "bbox_2d": [1, 2, {huge}, 4]}}</answer>'),
        ("qwen2_5_vl", f"the box is [1, 2, {huge}.5, 4] in Image-1"),
    ):
        rec = parse_generation(sample, Generation(text, 1, [(56, 56), (56, 56)]), get_dialect(dialect))
        assert rec["pred_box"] is None and rec["parse_error"], (dialect, rec)
    path = tmp_path / "predictions.jsonl"
    with PredictionsWriter(path) as w:
        w.write([{"id": "s0", "task": "t", "raw_output": text, **rec, "seconds": 0.1}])
    assert "Infinity" not in path.read_text() and "NaN" not in path.read_text()
    bench = tmp_path / "bench.jsonl"
    bench.write_text(json.dumps(sample.to_dict()) + "\n")
    assert main(["score", "--bench", str(bench), "--predictions", str(path)]) == 0
    with pytest.raises(ValueError), PredictionsWriter(tmp_path / "p2.jsonl") as w:
        w.write([{"id": "x", "task": "t", "raw_output": "", "pred_box": [float("inf")] * 4}])


# --- 6. one line, never a traceback -------------------------------------------------------------------------


def test_f6_bad_bench_records_are_one_line(tmp_path, capsys):
    preds = tmp_path / "p.jsonl"
    preds.write_text("")
    for bad in (bench_item(images=["a.png", 3]), bench_item(task="group_grounding", additional_info=5)):
        bench = tmp_path / "bench.json"
        bench.write_text(json.dumps([bench_item(), bad], indent=1))
        field = "images" if bad["task"] != "group_grounding" else "additional_info"
        one_line_error(
            capsys, ["score", "--bench", bench, "--predictions", preds], f"field '{field}'", "item 1"
        )


def test_f6_decompression_bomb_is_one_line_in_every_verb(tiny_dirs, tmp_path, capsys):
    bomb_png(tmp_path / "bomb.png")
    from PIL import Image

    Image.new("RGB", (64, 64)).save(tmp_path / "ok.png")
    sample = {"id": "s0", "task": "t", "images": ["ok.png", "bomb.png"], "question": "q", "target_image": 2,
              "target_box": [0.1, 0.1, 0.5, 0.5]}  # fmt: skip
    data = tmp_path / "samples.jsonl"
    data.write_text(json.dumps(sample) + "\n")
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"id": "s0", "raw_output": '<answer>{"image": 2, "bbox_2d": [1, 1, 9, 9]}</answer>'})
                     + "\n")  # fmt: skip
    limit = "limit of"
    one_line_error(capsys, ["score", "--bench", data, "--predictions", preds, "--dialect", "qwen2_5_vl",
                            "--image-root", tmp_path], "bomb.png", limit)  # fmt: skip
    one_line_error(capsys, eval_argv(tiny_dirs[0], data, tmp_path / "e"), "bomb.png", limit)
    one_line_error(capsys, ["predict", "--model", tiny_dirs[0], "--images", tmp_path / "ok.png", tmp_path / "bomb.png",
                            "--question", "q"], "bomb.png", limit)  # fmt: skip
    one_line_error(capsys, ["trajectories", "--data", data, "--out", tmp_path / "t", "--mode", "template",
                            "--no-progress"], "bomb.png", limit)  # fmt: skip


def test_f6_bad_options_and_outputs_are_one_line(tiny_dirs, tmp_path, capsys):
    import torch

    model = tiny_dirs[0]
    data = write_samples_with_images(tmp_path / "d", n=2)
    file_out = tmp_path / "afile"
    file_out.write_text("x")
    one_line_error(capsys, eval_argv(model, data, file_out), "--out")
    one_line_error(
        capsys, [*eval_argv(model, data, tmp_path / "e"), "--max-new-tokens", "0"], "--max-new-tokens"
    )
    if not torch.cuda.is_available():
        one_line_error(capsys, [*eval_argv(model, data, tmp_path / "e2"), "--device", "cuda"], "CUDA")
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"id": "s0", "raw_output": '{"image": 1, "bbox_2d": [1, 1, 9, 9]}'}) + "\n")
    score = ["score", "--bench", data, "--predictions", preds]
    one_line_error(capsys, [*score, "--dialect", "qwen2_5_vl", "--image-root", data.parent, "--max-pixels", "0"],
                   "--max-pixels")  # fmt: skip
    one_line_error(capsys, [*score, "--json", tmp_path], "--json", "folder")
    image = data.parent / "img" / "0_0.png"
    predict = [
        "predict",
        "--model",
        model,
        "--images",
        image,
        "--question",
        "Where is it?",
        "--max-new-tokens",
        "4",
    ]
    one_line_error(capsys, [*predict, "--out", tmp_path / "answer.txt"], "--out", ".png")
    assert main([str(a) for a in [*predict, "--out", tmp_path / "new" / "folder" / "a.png"]]) == 0
    assert (tmp_path / "new" / "folder" / "a.png").is_file()


# --- 7. an output never overwrites an input ----------------------------------------------------------------


def test_f7_score_items_cannot_overwrite_the_predictions(tmp_path, capsys):
    data = write_samples_with_images(tmp_path / "d", n=2)
    preds = tmp_path / "p.jsonl"
    text = (
        json.dumps({"id": "s0", "raw_output": "x", "pred_image": 1, "pred_box": [0.1, 0.2, 0.5, 0.6]}) + "\n"
    )
    preds.write_text(text)
    one_line_error(capsys, ["score", "--bench", data, "--predictions", preds, "--items", preds], "--items")
    assert preds.read_text() == text


# --- 8. nonsense is refused, not scored ---------------------------------------------------------------------


def test_f8_nonsense_inputs_are_refused(tmp_path, capsys):
    data = write_samples_with_images(tmp_path / "d", n=2)
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"id": "s0", "raw_output": "x", "pred_image": 1, "pred_box": [100, 200, 500, 600]})
                     + "\n")  # fmt: skip
    one_line_error(capsys, ["score", "--bench", data, "--predictions", preds], "pred_box", "normalized")
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    one_line_error(capsys, ["score", "--bench", empty, "--predictions", preds], "empty")
    preds.write_text(json.dumps({"id": "s0", "raw_output": '{"image": 1, "bbox_2d": [1, 1, 9, 9]}'}) + "\n")
    one_line_error(capsys, ["score", "--bench", data, "--predictions", preds, "--dialect", "qwen2_5_vl",
                            "--image-root", data.parent, "--min-pixels", "5000", "--max-pixels", "4000"],
                   "--min-pixels")  # fmt: skip
    png = data.parent / "img" / "1_1.png"
    from PIL import Image

    Image.frombytes("RGB", (64, 56), random.Random(0).randbytes(64 * 56 * 3)).save(png)
    png.write_bytes(png.read_bytes()[: png.stat().st_size // 2])  # truncated
    one_line_error(capsys, ["trajectories", "--data", data, "--out", tmp_path / "t", "--mode", "template",
                            "--no-progress"], "1_1.png")  # fmt: skip


# --- 9. formats told by content, with a hint toward the right verb ------------------------------------------


def test_f9_formats_by_content_with_hints(tmp_path, capsys):
    from mirg.sample import read_samples
    from mirg.training.data import trajectory_records

    data = write_samples_with_images(tmp_path / "d", n=2)
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"id": "s0", "raw_output": "x", "pred_image": 1, "pred_box": [0.1, 0.2, 0.5, 0.6]})
                     + "\n")  # fmt: skip
    obj = tmp_path / "obj.json"
    obj.write_text(json.dumps({"task": "x", "items": []}, indent=2))
    err = one_line_error(capsys, ["score", "--bench", obj, "--predictions", preds], "one JSON object")
    assert "Expecting" not in err
    named_json = tmp_path / "predictions.json"  # mirg JSONL named .json
    named_json.write_text(preds.read_text())
    assert main(["score", "--bench", str(data), "--predictions", str(named_json), "--missing", "skip"]) == 0
    capsys.readouterr()
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps([bench_item()], indent=1))
    err = one_line_error(capsys, ["trajectories", "--data", bench, "--out", tmp_path / "t", "--mode", "template"],
                         "MIG-Bench")  # fmt: skip
    assert "conversations" not in err
    with pytest.raises(DataError, match="mirg trajectories") as e:
        trajectory_records(data)
    assert "messages" not in str(e.value)
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + data.read_bytes())
    assert [s.id for s in read_samples(bom)] == ["s0", "s1"]


# --- 10. the format reward is what its docstring says --------------------------------------------------------


def test_f10_format_reward_is_exact():
    from mirg.rewards import reward_terms

    def terms(answer: str, think: str = "I compare the images.", n: int = 2):
        return reward_terms(f"<think>{think}</think><answer>{answer}</answer>", 1, (0.1, 0.1, 0.5, 0.5), n,
                            [(100, 100)] * n)  # fmt: skip

    good = terms('{"image": 1, "bbox_2d": [10, 10, 50, 50]}')
    assert good.format == 1.0 and good.image == 1.0 and good.object == pytest.approx(1.0)
    for answer in ('{"image": "Image-1", "bbox_2d": [10, 10, 50, 50]}', '{"image": 1.0, "bbox_2d": [10, 10, 50, 50]}',
                   'Image-1 is it: [10, 10, 50, 50]'):  # fmt: skip
        assert terms(answer).format == 0.0, answer
    empty = terms('{"image": 1, "bbox_2d": [10, 10, 50, 50]}', think="  ")
    assert empty.format == 0.0 and "empty" in empty.reason
    no_image = terms('{"bbox_2d": [10, 10, 50, 50]}')
    assert (
        no_image.format == 0.0 and no_image.reason != "image out of range" and "no image" in no_image.reason
    )


# --- issue 32: the rewards by dotted path, through TRL's own loader ------------------------------------------


def test_i32_trl_cli_loads_module_rewards_by_dotted_path(monkeypatch, tmp_path):
    import datasets
    import trl
    from trl.scripts import grpo

    captured: dict[str, list] = {}

    class Stop(Exception):
        pass

    class FakeTrainer:
        def __init__(self, *, reward_funcs, **kwargs):
            captured["funcs"] = reward_funcs
            raise Stop

    monkeypatch.setattr(trl, "GRPOTrainer", FakeTrainer)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: {"train": None})
    names = ["mirg.rewards.format_reward", "mirg.rewards.image_reward", "mirg.rewards.object_reward"]
    parser = grpo.make_parser()
    script_args, training_args, model_args, dataset_args = parser.parse_args_and_config(
        [
            "--model_name_or_path",
            "x",
            "--dataset_name",
            "x",
            "--output_dir",
            str(tmp_path),
            "--bf16",
            "false",
            "--reward_funcs",
            *names,
        ]
    )
    with pytest.raises(Stop):
        grpo.main(script_args, training_args, model_args, dataset_args)
    funcs = captured["funcs"]
    assert [f.__name__ for f in funcs] == ["format_reward", "image_reward", "object_reward"]
    right = '<think>The red one is in the first image.</think><answer>{"image": 1, "bbox_2d": [10, 10, 50, 50]}</answer>'
    wrong = '<think>The red one is in the second image.</think><answer>{"image": 2, "bbox_2d": [60, 60, 90, 90]}</answer>'
    completions = [[{"role": "assistant", "content": right}], [{"role": "assistant", "content": wrong}]]
    columns = {"target_image": [1, 1], "target_box": [[0.1, 0.1, 0.5, 0.5]] * 2, "images": [["a", "b"]] * 2,
               "resized_sizes": [[[100, 100], [100, 100]]] * 2, "dialect": ["qwen2_5_vl"] * 2}  # fmt: skip
    totals = [0.0, 0.0]
    for f in funcs:  # called as GRPOTrainer calls them
        scores = f(prompts=[[], []], completions=completions, completion_ids=[[1], [2]], trainer_state=None,
                   log_extra=None, log_metric=None, **columns)  # fmt: skip
        totals = [t + s for t, s in zip(totals, scores, strict=True)]
    assert totals[0] > totals[1] and totals[0] == pytest.approx(3.0)
    del columns["dialect"]  # the default dialect (qwen2_5_vl) without the column
    assert funcs[0](completions=completions, **columns) == [1.0, 1.0]


def test_outputs_helper_refuses_unreadable_or_foreign_manifest(tmp_path):
    from mirg.outputs import open_run

    with open_run(tmp_path, "eval", {"a": 1}, outputs=["x.jsonl"]) as resumed:
        assert not resumed
        (tmp_path / "x.jsonl").write_text("{}\n")
    with open_run(tmp_path, "eval", {"a": 1}, outputs=["x.jsonl"]) as resumed:
        assert resumed
    with (
        pytest.raises(MirgError, match="mirg eval run, not trajectories"),
        open_run(tmp_path, "trajectories", {"a": 1}, outputs=["x.jsonl"]),
    ):
        pass
    with open_run(tmp_path, "eval", {"a": 2}, outputs=["x.jsonl"], overwrite=True) as resumed:
        assert not resumed and not (tmp_path / "x.jsonl").exists()


# --- the second hostile-user sweep (6 Dec): outputs checked before work, values TRL refuses late ---------------

TINY_SFT = Path(__file__).resolve().parents[1] / "src/mirg/configs/tiny/sft.yaml"
TINY_RL = TINY_SFT.with_name("rl.yaml")


def test_outputs_that_cannot_be_written_are_one_line_before_any_work(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    one_line_error(
        capsys, ["sft", "--config", TINY_SFT, "--output_dir", afile, "--check"], "output_dir", "file"
    )
    one_line_error(
        capsys, ["rl", "--config", TINY_RL, "--output_dir", afile, "--check"], "output_dir", "file"
    )
    one_line_error(capsys, ["report", tmp_path / "no-run", "--out", afile], "--out", "file")
    one_line_error(
        capsys, ["report", tmp_path / "no-run", "--out", tmp_path / "r", "--gallery", "-1"], "--gallery"
    )
    one_line_error(capsys, ["tiny-model", "--out", afile], "--out", "file")
    one_line_error(capsys, ["tiny-model", "--out", tmp_path / "t", "--seed", "-1"], "--seed")
    one_line_error(
        capsys, ["compare", tmp_path / "a", tmp_path / "b", "--json", tmp_path], "--json", "folder"
    )
    syn = tmp_path / "syn"
    one_line_error(capsys, ["synth", "--out", syn, "--n-per-task", "1", "--preview", tmp_path], "--preview")
    assert not (syn / "samples.jsonl").exists()  # refused before generating, not after
    if Path("/proc/self").is_dir():  # a folder no one can write into, root included
        one_line_error(
            capsys, ["compare", tmp_path / "a", tmp_path / "b", "--json", "/proc/x.json"], "cannot write"
        )
        one_line_error(capsys, ["synth", "--out", "/proc/x", "--n-per-task", "1"], "/proc/x")


def test_training_values_trl_refuses_late_are_one_line_at_check(tmp_path, capsys):
    sft = ["sft", "--config", TINY_SFT, "--check"]
    one_line_error(capsys, [*sft, "--per_device_train_batch_size", "0"], "per_device_train_batch_size")
    one_line_error(capsys, [*sft, "--learning_rate", "nan"], "learning_rate")
    one_line_error(capsys, [*sft, "--max_steps", "-5", "--num_train_epochs", "0"], "nothing to train")
    one_line_error(capsys, ["rl", "--config", TINY_RL, "--check", "--temperature", "-1"], "temperature")
    one_line_error(capsys, ["sft", "--check"], "model_name_or_path is required")
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes("# caf\xe9\nmax_steps: 3\n".encode("latin-1"))
    one_line_error(capsys, ["sft", "--config", latin, "--check"], "UTF-8")
    not_ckpt = tmp_path / "not-a-checkpoint"
    not_ckpt.mkdir()
    argv = ["sft", "--config", TINY_SFT, "--train_file", tmp_path / "t.jsonl", "--output_dir", tmp_path / "o",
            "--resume", not_ckpt]  # fmt: skip
    assert main([str(a) for a in argv]) == 2  # after the run's log notes, one error line
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("mirg: error: --resume")


def test_checkpointing_alias_moves_to_the_new_name():
    from mirg.training.config import _checkpointing_alias

    values = {"gradient_checkpointing": True, "activation_checkpointing": None}
    _checkpointing_alias(values)
    assert values == {"gradient_checkpointing": None, "activation_checkpointing": True}
    old_only = {"gradient_checkpointing": True}  # a transformers without the new name: left as it is
    _checkpointing_alias(old_only)
    assert old_only == {"gradient_checkpointing": True}


def test_paths_of_the_wrong_kind_and_eval_folders(tmp_path, capsys):
    data = write_samples_with_images(tmp_path / "d", n=2)
    folder = tmp_path / "ev"
    folder.mkdir()
    (folder / "predictions.jsonl").write_text(
        json.dumps({"id": "s0", "raw_output": '{"image": 1, "bbox_2d": [1, 1, 9, 9]}'}) + "\n"
    )
    # mirg score takes a mirg eval folder for its predictions.jsonl
    raw = ["--dialect", "qwen2_5_vl", "--image-root", data.parent]
    assert main([str(a) for a in ["score", "--bench", data, "--predictions", folder, *raw]]) == 0
    capsys.readouterr()
    one_line_error(
        capsys, ["report", folder / "predictions.jsonl", "--out", tmp_path / "r"], "is a file", str(folder)
    )
    one_line_error(capsys, ["eval", "--model", tmp_path, "--data", tmp_path, "--out", tmp_path / "e"],
                   "is a folder, not a file")  # fmt: skip
    one_line_error(capsys, ["trajectories", "--data", data, "--format", "mgrounding", "--mode", "template", "--out",
                            tmp_path / "t"], "drop --format mgrounding")  # fmt: skip
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(data.read_bytes().splitlines(keepends=True)[0] + b'{"id": "\xff"}\n')
    one_line_error(capsys, ["score", "--bench", bad, "--predictions", folder], f"{bad}:2:", "UTF-8")
    demo_yaml = tmp_path / "demo.yaml"
    demo_yaml.write_text("images: 3\n")
    one_line_error(
        capsys, ["demo", "--config", demo_yaml, "--out", tmp_path / "demo"], "images must be [min, max]"
    )


def test_an_unreachable_teacher_is_an_error_and_the_samples_stay_pending(tmp_path, capsys):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = write_samples_with_images(tmp_path / "d", n=1)
    argv = ["trajectories", "--data", data, "--out", tmp_path / "t", "--mode", "teacher", "--base-url",
            f"http://127.0.0.1:{port}", "--teacher-model", "x", "--http-retries", "0", "--no-progress"]  # fmt: skip
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == 1 and "could not be reached" in err and "1 sample(s) stay pending" in err, (rc, err)


# --- the third hostile-user sweep (6 Dec, afternoon): inputs never overwritten, runs never taken over or mixed --


def fake_eval(folder: Path, data: Path) -> Path:
    """An eval folder as ``mirg eval`` leaves it: predictions, metrics naming the data, a manifest."""
    from mirg.outputs import MANIFEST, file_fingerprint
    from mirg.sample import read_samples

    folder.mkdir(parents=True)
    preds = [{"id": s.id, "raw_output": "x", "pred_image": 1, "pred_box": list(s.target_box)}
             for s in read_samples(data)]  # fmt: skip
    (folder / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preds))
    (folder / "metrics.json").write_text(json.dumps({"run": {"data": str(data.resolve())}}))
    (folder / MANIFEST).write_text(json.dumps({"job": "eval", "settings": {"data": file_fingerprint(data)}}))
    return folder


def test_s3_outputs_never_overwrite_a_run_folders_files_or_its_data(tmp_path, capsys):
    data = write_samples_with_images(tmp_path)
    ev, ev2 = fake_eval(tmp_path / "e1", data), fake_eval(tmp_path / "e2", data)
    before = (ev / "predictions.jsonl").read_text()
    for flag, target in (("--items", ev / "predictions.jsonl"), ("--json", ev / "metrics.json")):
        one_line_error(
            capsys, ["score", "--bench", data, "--predictions", ev, flag, target], "overwrite the input"
        )
    # compare: a run's files, and the data its metrics.json names (not given on the command line)
    one_line_error(capsys, ["compare", ev, ev2, "--json", ev2 / "predictions.jsonl"], "overwrite the input")
    one_line_error(capsys, ["compare", ev, ev2, "--json", data], "a run's data", "overwrite the input")
    assert (ev / "predictions.jsonl").read_text() == before and data.read_text().startswith('{"id"')
    assert main(["compare", str(ev), str(ev2), "--json", str(tmp_path / "c.json")]) == 0


def test_s3_a_changed_data_file_is_not_scored_against_old_predictions(tmp_path, capsys):
    data = write_samples_with_images(tmp_path)
    ev, ev2 = fake_eval(tmp_path / "e1", data), fake_eval(tmp_path / "e2", data)
    assert main(["compare", str(ev), str(ev2)]) == 0
    capsys.readouterr()
    write_samples_with_images(tmp_path, target_shift=0.3)  # same ids and images, other boxes
    one_line_error(capsys, ["compare", ev, ev2], "predictions were made on other data")
    one_line_error(capsys, ["report", ev, "--out", tmp_path / "rep"], "predictions were made on other data")


def test_s3_manifest_another_verb_is_refused_and_an_empty_output_does_not_block(tmp_path):
    from mirg.outputs import check_manifest

    check_manifest(tmp_path, "eval", {"model": "a"}, ["predictions.jsonl"], overwrite=False)
    for overwrite in (False, True):  # nothing of eval's is there yet: another verb still may not take it over
        with pytest.raises(MirgError, match="holds a mirg eval run, not trajectories; use a new --out"):
            check_manifest(tmp_path, "trajectories", {}, ["trajectories.jsonl"], overwrite=overwrite)
    # a start that failed before its first answer leaves an empty file: the corrected run starts afresh
    (tmp_path / "predictions.jsonl").write_text("")
    assert not check_manifest(tmp_path, "eval", {"model": "b"}, ["predictions.jsonl"], overwrite=False)
    (tmp_path / "predictions.jsonl").write_text("{}\n")
    with pytest.raises(MirgError, match="different model"):
        check_manifest(tmp_path, "eval", {"model": "c"}, ["predictions.jsonl"], overwrite=False)


def test_s3_image_fingerprint_is_the_same_from_another_working_directory(tmp_path, monkeypatch):
    import shutil

    from mirg.outputs import files_fingerprint

    write_samples_with_images(tmp_path / "p")
    monkeypatch.chdir(tmp_path / "p")
    here = files_fingerprint(["img/0_0.png", "img/1_0.png"], "out")
    monkeypatch.chdir(tmp_path)
    assert files_fingerprint(["p/img/0_0.png", "p/img/1_0.png"], "p/out") == here
    shutil.move(tmp_path / "p", tmp_path / "q")  # data and outputs moved together
    assert files_fingerprint(["q/img/0_0.png", "q/img/1_0.png"], "q/out") == here
    assert files_fingerprint(["q/img/0_0.png", "q/img/0_0.png"], "q/out") != here


def test_s3_numbers_too_large_for_a_float_are_one_line(tmp_path, capsys):
    from mirg.predictions import _gt_key

    data = write_samples_with_images(tmp_path)
    rows = [json.loads(x) for x in data.read_text().splitlines()]
    rows[0]["target_box"] = [10**401, 0, 0.5, 0.5]
    big = tmp_path / "big.jsonl"
    big.write_text("".join(json.dumps(r) + "\n" for r in rows))
    one_line_error(capsys, ["score", "--bench", big, "--predictions", fake_eval(tmp_path / "e", data)],
                   "big.jsonl:1", "target_box", "finite numbers")  # fmt: skip
    preds = tmp_path / "p.jsonl"
    preds.write_text(
        json.dumps({"id": "s0", "raw_output": "x", "pred_image": 1, "pred_box": [10**401, 0, 1, 1]})
    )
    one_line_error(capsys, ["score", "--bench", data, "--predictions", preds], "p.jsonl:1", "pred_box")
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps([bench_item(answer=[10**401, 2, 3, 4])]))
    one_line_error(capsys, ["score", "--bench", bench, "--predictions", preds], "bench.json")
    assert _gt_key([float("inf"), 0, 0, 0], 1.0) is None


def test_s3_a_torn_last_prediction_is_left_out_and_other_bad_lines_named(tmp_path, capsys):
    from mirg.predictions import read_predictions_jsonl

    good = json.dumps({"id": "s0", "raw_output": "x", "pred_image": 1, "pred_box": [0.1, 0.2, 0.5, 0.6]})
    path = tmp_path / "predictions.jsonl"
    path.write_text(good + '\n{"id": "s1", "raw_output": "unfini')  # what a killed eval leaves
    assert [p.id for p in read_predictions_jsonl(path)] == ["s0"]
    assert "unfinished last line" in capsys.readouterr().err
    path.write_text('{"id": "s1", "raw_output": "unfini\n' + good + "\n")
    with pytest.raises(
        DataError, match=r"predictions.jsonl:1: invalid JSON at column \d+: Unterminated string"
    ):
        read_predictions_jsonl(path)


def test_s3_predict_refuses_a_picture_format_pillow_cannot_write_rgb_to(tmp_path, capsys):
    from PIL import Image

    img = tmp_path / "a.png"
    Image.new("RGB", (32, 32)).save(img)
    for suffix in (".xbm", ".h5", ".msp"):
        one_line_error(capsys, ["predict", "--model", tmp_path / "no-model", "--images", img, "--question", "q",
                                "--out", tmp_path / f"x{suffix}"], "unsupported extension")  # fmt: skip


def test_s3_training_dtype_is_one_of_three_floats():
    import torch

    from mirg.training.modeling import _torch_dtype

    assert _torch_dtype("auto") == "auto" and _torch_dtype("bfloat16") == torch.bfloat16
    for bad in ("float8_e4m3fn", "int8", "float99"):
        with pytest.raises(MirgError, match="use auto, bfloat16, float16 or float32"):
            _torch_dtype(bad)
