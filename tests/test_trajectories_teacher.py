"""Teacher mode end to end against a scripted chat-completions server on localhost, the local-model teacher,
and an SFT run with TRL on a written trajectory file."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mirg.answers import get_dialect
from mirg.errors import MirgError
from mirg.sample import Sample, write_samples
from mirg.trajectories.records import Resizer, completion_of
from mirg.trajectories.runner import TeacherSettings, compute_stats, run_teacher
from mirg.trajectories.store import TrajectoryStore
from mirg.trajectories.teachers import ChatCompletionsTeacher

API_KEY = "sk-test-SECRET-0123456789"
REASONING = (
    "Looking over every picture in turn, only one of them shows the shape the question is about, so I pick "
    "that picture and draw the box tightly around the shape."
)
TIMEOUT = 0.4

# per sample: the reply behaviour of attempt 1, 2, 3, ... (the last one repeats)
SCRIPT: dict[str, list[str]] = {
    "q0": ["ok"],
    "q1": ["wrong_image"],  # always wrong: dropped
    "q2": ["low_iou", "ok"],  # kept on the second try
    "q3": ["malformed"],  # never parses: dropped
    "q4": ["slow", "ok"],  # the first request times out, the retry succeeds
    "q5": ["503", "ok"],  # server error, retried
    "q6": ["quote"],  # copies the hints: dropped
    "q7": ["429"],  # rate-limited forever: stays pending
    "q8": ["not_json", "ok"],  # unreadable body fails one attempt
    "q9": ["ok"],
}
KEPT = {"q0", "q2", "q4", "q5", "q8", "q9"}
DROPPED = {"q1": "wrong_image", "q3": "no_answer", "q6": "quotes_hints"}
PENDING = {"q7"}


class ScriptedServer:
    """A ThreadingHTTPServer speaking /v1/chat/completions, replying per sample and attempt from SCRIPT."""

    def __init__(self, script: dict[str, list[str]]):
        self.script = script
        self.requests: Counter[str] = Counter()
        self.auth: set[str] = set()
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.fixed: dict[str, int] = {}  # forced HTTP status for every request
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def do_POST(self):
                with server.lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    server.handle(self)
                finally:
                    with server.lock:
                        server.in_flight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def send(self, h, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            h.wfile.write(body)

    def handle(self, h) -> None:
        length = int(h.headers.get("Content-Length", 0))
        req = json.loads(h.rfile.read(length))
        with self.lock:
            self.auth.add(h.headers.get("Authorization", ""))
        if h.path != "/v1/chat/completions":
            return self.send(h, 404, b'{"error": {"message": "no such route"}}')
        if self.fixed:
            code = self.fixed["code"]
            return self.send(h, code, json.dumps({"error": {"message": f"status {code}"}}).encode())
        user = req["messages"][-1]["content"]
        text = "".join(p.get("text", "") for p in user if p["type"] == "text")
        n_images = sum(p["type"] == "image_url" for p in user)
        assert all(
            p["image_url"]["url"].startswith("data:image/png;base64,")
            for p in user
            if p["type"] == "image_url"
        )
        sid = re.search(r"\[(q\d+)\]", text).group(1)
        with self.lock:
            self.requests[sid] += 1
            attempt = self.requests[sid]
        steps = self.script[sid]
        kind = steps[min(attempt, len(steps)) - 1]
        m = re.search(r"Correct answer: Image-(\d+), box \[(\d+), (\d+), (\d+), (\d+)\]", text)
        image, box = int(m.group(1)), [int(v) for v in m.group(2, 3, 4, 5)]
        hints = text.split("<hints>")[1].split("</hints>")[0].strip()
        if kind == "slow":
            time.sleep(TIMEOUT * 3)
            kind = "ok"
        if kind in ("503", "429"):
            return self.send(h, int(kind), b'{"error": {"message": "busy"}}', {"Retry-After": "0"})
        if kind == "not_json":
            return self.send(h, 200, b"<html>oops</html>")
        if kind == "wrong_image":
            image = image % n_images + 1
        if kind == "low_iou":
            w = box[2] - box[0]
            box = [box[0] + w, box[1], box[2] + w, box[3]]
        reasoning = REASONING if kind != "quote" else "Hmm. " + hints.split("\n")[0]
        answer = json.dumps({"image": image, "bbox_2d": box})
        content = f"<think>{reasoning}</think>\n<answer>{answer}</answer>"
        if kind == "malformed":
            content = f"<think>{reasoning}</think>\nThe answer is image {image}."
        body = {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}  # fmt: skip
        self.send(h, 200, json.dumps(body).encode())


@pytest.fixture
def server():
    s = ScriptedServer({k: list(v) for k, v in SCRIPT.items()})
    yield s
    s.close()


@pytest.fixture(scope="module")
def teacher_data(tmp_path_factory) -> tuple[list[Sample], Path]:
    """Ten two-image samples (PNG images), questions tagged [qK] so the server can script per sample."""
    from PIL import Image, ImageDraw

    root = tmp_path_factory.mktemp("teacher-data")
    samples = []
    for i in range(10):
        paths = []
        for k in (1, 2):
            im = Image.new("RGB", (90 + 10 * i, 80), (230, 230, 230))
            if k == 2:
                ImageDraw.Draw(im).ellipse((20, 20, 60, 60), fill=(220, 30, 30))
            im.save(root / f"q{i}_{k}.png")
            paths.append(f"q{i}_{k}.png")
        w = 90 + 10 * i
        samples.append(
            Sample(
                f"q{i}",
                ["alpha", "beta"][i % 2],
                paths,
                f"[q{i}] Which image has the red circle? Locate it.",
                2,
                (20 / w, 20 / 80, 60 / w, 60 / 80),
                source="test",
                relations=[
                    {
                        "type": "note",
                        "text": "Image-2 holds a red circle; Image-1 is an empty grey background.",
                    }
                ],
            )
        )
    write_samples(samples, root / "samples.jsonl")
    return samples, root


def _teacher(url: str, **kw) -> ChatCompletionsTeacher:
    opts = {"timeout": TIMEOUT, "retries": 2, "backoff": 0.01, "max_backoff": 0.05}
    opts.update(kw)
    return ChatCompletionsTeacher(url, "teacher-vl", api_key_env="MIRG_TEST_KEY", **opts)


def _run(samples, root, out, teacher, **kw):
    settings = TeacherSettings(dialect=get_dialect("qwen2_5_vl"), concurrency=3, max_attempts=3, **kw)
    with TrajectoryStore(out) as store:
        rep = run_teacher(samples, root, store, teacher, settings, Resizer())
        stats = compute_stats(samples, store, next(iter(store.runs)))
    return rep, stats


def test_http_teacher_end_to_end(server, teacher_data, tmp_path, monkeypatch):
    monkeypatch.setenv("MIRG_TEST_KEY", API_KEY)
    samples, root = teacher_data
    out = tmp_path / "out"
    teacher = _teacher(server.url)
    assert API_KEY not in repr(teacher)
    rep, stats = _run(samples, root, out, teacher)

    records = [json.loads(x) for x in (out / "trajectories.jsonl").read_text().splitlines()]
    assert {r["id"] for r in records} == KEPT and len(records) == len(KEPT)
    dropped = {json.loads(x)["id"]: json.loads(x) for x in (out / "dropped.jsonl").read_text().splitlines()}
    assert {k: v["reason"] for k, v in dropped.items()} == DROPPED
    assert all(len(v["attempts"]) == 3 for v in dropped.values())
    assert (rep.kept, rep.dropped, rep.pending) == (len(KEPT), len(DROPPED), len(PENDING))
    assert stats["kept_samples"] == 6 and stats["dropped_samples"] == 3 and stats["pending_samples"] == 1
    assert stats["drop_reasons"] == {"no_answer": 1, "quotes_hints": 1, "wrong_image": 1}
    # retries and timeouts
    assert server.requests["q2"] == 2 and server.requests["q8"] == 2
    assert server.requests["q4"] == 2 and teacher.counters["timeouts"] == 1
    assert server.requests["q5"] == 2 and server.requests["q7"] == 3  # 1 + 2 HTTP retries
    assert server.requests["q1"] == server.requests["q3"] == server.requests["q6"] == 3
    # at most `concurrency` requests of the client's at once; a request the client gave up on (timeout) may
    # still be sleeping in the server while its retry runs, so the server can see one more per timeout
    assert 1 < server.max_in_flight <= 3 + teacher.counters["timeouts"]
    assert server.auth == {f"Bearer {API_KEY}"}
    # what was kept: our format, ground-truth answer, the teacher's reasoning
    key = records[0]["teacher_key"]
    assert all(r["mode"] == "teacher" and r["teacher_key"] == key for r in records)
    assert all(completion_of(r).startswith(f"<think>{REASONING}</think>") for r in records)
    assert API_KEY not in (out / "runs.json").read_text() + (out / "trajectories.jsonl").read_text()

    # restart: nothing done is asked again; the pending sample is retried
    before = Counter(server.requests)
    rep2, _stats2 = _run(samples, root, out, _teacher(server.url))
    assert (rep2.skipped_done, rep2.skipped_dropped, rep2.pending) == (6, 3, 1)
    assert server.requests - before == Counter({"q7": 3})
    # the endpoint recovers; a killed run left a torn line: both are made whole, nothing is lost
    server.script["q7"] = ["ok"]
    text = (out / "trajectories.jsonl").read_text()
    (out / "trajectories.jsonl").write_text(text + text.splitlines()[0][:40])
    rep3, stats3 = _run(samples, root, out, _teacher(server.url))
    assert rep3.kept == 1 and stats3["kept_samples"] == 7 and stats3["trajectories"] == 7
    assert len((out / "trajectories.jsonl").read_text().splitlines()) == 7
    # --retry-dropped asks the dropped ones again (q1 still wrong)
    server.script["q3"] = ["ok"]
    rep4, stats4 = _run(samples, root, out, _teacher(server.url), retry_dropped=True)
    assert rep4.kept == 1 and rep4.dropped == 2 and stats4["kept_samples"] == 8


@pytest.mark.parametrize("code", [401, 403, 404])
def test_http_teacher_fatal_errors(server, teacher_data, tmp_path, monkeypatch, code):
    monkeypatch.setenv("MIRG_TEST_KEY", API_KEY)
    samples, root = teacher_data
    server.fixed = {"code": code}
    with pytest.raises(MirgError) as e:
        _run(samples, root, tmp_path / "o", _teacher(server.url))
    msg = str(e.value)
    assert f"HTTP {code}" in msg and "\n" not in msg and API_KEY not in msg
    assert ("API key" in msg) if code != 404 else ("--base-url" in msg)


def test_cli_teacher_http(server, teacher_data, tmp_path, monkeypatch, capsys):
    from mirg.cli import main

    monkeypatch.setenv("MIRG_TEST_KEY", API_KEY)
    _samples, root = teacher_data
    out = tmp_path / "cli"
    argv = ["trajectories", "--data", str(root / "samples.jsonl"), "--out", str(out), "--mode", "teacher",
            "--base-url", server.url, "--teacher-model", "teacher-vl", "--api-key-env", "MIRG_TEST_KEY",
            "--timeout", str(TIMEOUT), "--http-retries", "2", "--backoff", "0.01", "--concurrency", "4"]  # fmt: skip
    assert main(argv) == 0
    stats = json.loads((out / "stats.json").read_text())
    assert (stats["kept_samples"], stats["dropped_samples"], stats["pending_samples"]) == (6, 3, 1)
    assert stats["mode"] == "teacher" and len(stats["teacher_key"]) == 16
    assert stats["run"]["requests"]["timeouts"] == 1
    assert stats["per_task"]["beta"]["why"] == {"wrong_image": 1, "no_answer": 1}
    printed = capsys.readouterr()
    assert API_KEY not in printed.out + printed.err
    server.fixed = {"code": 401}
    assert main([*argv, "--retry-dropped"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "MIRG_TEST_KEY" in err and API_KEY not in err


@pytest.mark.slow
def test_local_teacher_backend(tiny_model_dir, teacher_data, tmp_path):
    from mirg.trajectories.teachers import LocalTeacher

    samples, root = teacher_data
    teacher = LocalTeacher(tiny_model_dir, max_new_tokens=12)
    settings = TeacherSettings(dialect=get_dialect("qwen2_5_vl"), concurrency=1, max_attempts=1)
    with TrajectoryStore(tmp_path / "o") as store:
        rep = run_teacher(samples[:3], root, store, teacher, settings, Resizer())
        stats = compute_stats(samples[:3], store, next(iter(store.runs)))
    # a random tiny model does not answer correctly: every sample is tried once, verified and dropped
    assert teacher.counters["requests"] == 3
    assert rep.kept + rep.dropped == 3 and rep.pending == 0
    assert stats["kept_samples"] + stats["dropped_samples"] == 3
    assert set(stats["drop_reasons"]) <= {
        "no_answer",
        "invalid_box",
        "wrong_image",
        "low_iou",
        "empty_reasoning",
    }


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_sft_runs_on_written_trajectories(tiny_model_dir, tmp_path):
    """A few TRL SFTTrainer steps on a file written by `mirg trajectories` (the format cannot drift)."""
    import torch
    from trl import SFTConfig, SFTTrainer

    from mirg.cli import main
    from mirg.models.loading import load_model
    from mirg.synth import SynthConfig, generate_dataset
    from mirg.training.data import load_trajectories

    data = tmp_path / "synth"
    generate_dataset(data, 1, seed=77, tasks=["diff", "reasoning", "cross_relation"],
                     config=SynthConfig(image_size=64, object_size=(0.15, 0.3)), progress=False)  # fmt: skip
    out = tmp_path / "traj"
    assert main(["trajectories", "--data", str(data / "samples.jsonl"), "--out", str(out), "--mode", "template",
                 "--model", str(tiny_model_dir), "--no-progress"]) == 0  # fmt: skip
    ds = load_trajectories(out / "trajectories.jsonl")  # the SFT stage's own reader
    assert len(ds) == 3 and ds[0]["images"][0].size == (64, 64)
    loaded = load_model(tiny_model_dir)
    torch.manual_seed(0)
    args = SFTConfig(output_dir=str(tmp_path / "sft"), max_steps=2, per_device_train_batch_size=2,
                     learning_rate=1e-3, bf16=False, gradient_checkpointing=False, report_to="none",
                     save_strategy="no", logging_steps=1, max_length=None, assistant_only_loss=True,
                     dataloader_num_workers=0, use_cpu=True)  # fmt: skip
    trainer = SFTTrainer(model=loaded.model, args=args, train_dataset=ds, processing_class=loaded.processor)
    result = trainer.train()
    assert result.global_step == 2
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses and all(x == x and x > 0 for x in losses)


def test_no_requests_for_samples_without_target(server, teacher_data, tmp_path, monkeypatch):
    monkeypatch.setenv("MIRG_TEST_KEY", API_KEY)
    samples, root = teacher_data
    s = Sample("nt", "t", samples[0].images, "[q0] where?")
    rep, stats = _run([s], root, tmp_path / "o", _teacher(server.url))
    assert (
        rep.dropped == 1 and sum(server.requests.values()) == 0 and stats["drop_reasons"] == {"no_target": 1}
    )


def test_backoff_waits_grow(monkeypatch):
    import random

    t = ChatCompletionsTeacher(
        "http://127.0.0.1:9/v1", "m", backoff=1.0, max_backoff=5.0, rng=random.Random(0)
    )
    waits = []
    monkeypatch.setattr(time, "sleep", waits.append)
    for i in range(5):
        t._wait(i, None)
    assert all(0.5 * min(5, 2**i) <= w < 1.5 * min(5, 2**i) for i, w in enumerate(waits))
    t._wait(0, "3")
    assert 1.5 <= waits[-1] < 4.5
    with pytest.raises(MirgError):
        ChatCompletionsTeacher("localhost:8000", "m")


# --- credentials in --base-url ----------------------------------------------------------------------------

QSECRET = "QSECRET-qs-0123"


class EchoServer:
    """Answers every POST with HTTP ``code``: an error body echoing the request path (query string included), or
    for a 3xx a ``Location`` of ``location``. Records (path, Authorization) of each request."""

    def __init__(self, code: int = 400, location: str = ""):
        self.code, self.location, self.seen = code, location, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.seen.append((self.path, self.headers.get("Authorization")))
                body = json.dumps({"error": {"message": f"no route {self.path}"}}).encode()
                self.send_response(server.code)
                if server.location:
                    self.send_header("Location", server.location)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _cli_teacher(root: Path, out: Path, base_url: str, *extra: str) -> list[str]:
    return ["trajectories", "--data", str(root / "samples.jsonl"), "--out", str(out), "--mode", "teacher",
            "--base-url", base_url, "--teacher-model", "teacher-vl", "--api-key-env", "MIRG_TEST_KEY",
            "--timeout", "5", "--http-retries", "0", "--max-attempts", "1", "--no-progress", *extra]  # fmt: skip


@pytest.mark.parametrize("netloc", ["alice:hunter2@127.0.0.1", "alice:hunter2@127.0.0.1:9"])
def test_base_url_with_user_info_is_refused(teacher_data, tmp_path, monkeypatch, capsys, netloc):
    """A password in --base-url is refused in one line that shows neither it nor a traceback."""
    from mirg.cli import main

    monkeypatch.setenv("MIRG_TEST_KEY", API_KEY)
    _samples, root = teacher_data
    assert main(_cli_teacher(root, tmp_path / "o", f"http://{netloc}/v1")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--api-key-env" in err and "hunter2" not in err and "alice" not in err
    assert not (tmp_path / "o").exists()  # refused before the output folder is made
    with pytest.raises(MirgError, match="credentials"):
        ChatCompletionsTeacher(f"http://{netloc}/v1", "m")


@pytest.mark.parametrize(
    "extra",
    [["--temperature", "nan"], ["--temperature", "-1"], ["--max-tokens", "0"], ["--timeout", "nan"],
     ["--backoff", "nan"]],
)  # fmt: skip
def test_bad_teacher_numbers_are_refused_before_any_request(teacher_data, tmp_path, capsys, extra):
    """A nan or negative sampling setting is one line before the output folder is made, never sent on."""
    from mirg.cli import main

    _samples, root = teacher_data
    assert main(_cli_teacher(root, tmp_path / "o", "http://127.0.0.1:9/v1", *extra)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and extra[0] in err
    assert not (tmp_path / "o").exists()


def test_redact_keeps_ports_and_hides_user_info_and_secret_parameters():
    from mirg.trajectories.teachers import redact

    assert redact("http://127.0.0.1:8000/v1/chat/completions") == "http://127.0.0.1:8000/v1/chat/completions"
    assert redact("at http://u:p4ss@h:81/v1 now") == "at http://[redacted]@h:81/v1 now"
    url = "https://h/v1?api-version=2024-02-01&api_key=K1&Api-Key=K2&token=K3&sig=K4&x-password=K5&secret=K6"
    shown = redact(url)
    assert "api-version=2024-02-01" in shown and not re.search(r"K\d", shown)


def test_query_string_secrets_stay_out_of_messages_and_files(teacher_data, tmp_path, monkeypatch, capsys):
    """/chat/completions joins the path before the query string; a secret query value is in no error line,
    dropped.jsonl or other file, even when the server echoes it back; ports are shown."""
    from mirg.cli import main

    monkeypatch.setenv("MIRG_TEST_KEY", API_KEY)
    _samples, root = teacher_data
    srv = EchoServer(400)
    try:
        base = f"http://{srv.host}/v1?api-version=2024-02-01&api_key={QSECRET}"
        out = tmp_path / "o"
        assert main(_cli_teacher(root, out, base, "--limit", "2")) == 0
        assert srv.seen[0] == (
            f"/v1/chat/completions?api-version=2024-02-01&api_key={QSECRET}",
            f"Bearer {API_KEY}",
        )
        dropped = (out / "dropped.jsonl").read_text()
        assert "HTTP 400" in dropped and "api_key=[redacted]" in dropped
        srv.code = 404
        assert main(_cli_teacher(root, out, base, "--retry-dropped")) == 2
        printed = capsys.readouterr()
        assert f"{srv.host}/v1/chat/completions?api-version=2024-02-01&api_key=[redacted]" in printed.err
        files = "".join(p.read_text() for p in out.iterdir() if p.is_file())
        for secret in (QSECRET, API_KEY):
            assert secret not in printed.out + printed.err + files
    finally:
        srv.close()


def test_unreachable_teacher_line_hides_query_secrets(teacher_data, tmp_path, monkeypatch, capsys):
    import socket

    from mirg.cli import main

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _samples, root = teacher_data
    assert main(_cli_teacher(root, tmp_path / "o", f"http://127.0.0.1:{port}/v1?token={QSECRET}")) == 1
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port}/v1?token=[redacted] could not be reached" in err and QSECRET not in err


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_redirects_carry_no_key_to_another_origin(monkeypatch, code):
    monkeypatch.setenv("MIRG_TEST_KEY", API_KEY)
    other = EchoServer(200)
    redirector = EchoServer(code, f"http://{other.host}/v1/chat/completions?key={QSECRET}")
    try:
        t = ChatCompletionsTeacher(
            f"http://{redirector.host}/v1", "m", api_key_env="MIRG_TEST_KEY", retries=0
        )
        with pytest.raises(MirgError, match=f"HTTP {code}, a redirect") as e:
            t.complete([{"role": "user", "content": "hi"}], [])
        assert other.seen == [] and redirector.seen == [("/v1/chat/completions", f"Bearer {API_KEY}")]
        assert QSECRET not in str(e.value) and API_KEY not in str(e.value)
    finally:
        other.close()
        redirector.close()
