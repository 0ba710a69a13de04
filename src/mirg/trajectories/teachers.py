"""Teacher backends: a vision-language model that writes the reasoning, given the teacher messages.

* :class:`ChatCompletionsTeacher` — any OpenAI-compatible ``/chat/completions`` endpoint over HTTP (stdlib
  ``urllib``). Images go as base64 ``data:`` URLs. Per-request timeout; 429, 5xx, timeouts and connection
  errors are retried with exponential backoff and jitter (``Retry-After`` honoured, capped); 401/403/404 raise
  :class:`TeacherFatal` (a one-line :class:`~mirg.errors.MirgError`: the run stops); other 4xx answers and
  unreadable bodies fail the attempt (:class:`TeacherReplyError`). Redirects are never followed (a 3xx is
  TeacherFatal): the ``Authorization`` header must not reach another origin, and a POST must not turn into a
  GET. The API key is read from an environment variable (a ``--base-url`` with ``user:password@`` is refused);
  it, any ``Bearer``/``Authorization`` value and the values of secret-like query parameters are redacted
  (:func:`redact`) from every error, reply and message the teacher hands on, so nothing stored
  (``dropped.jsonl``, trajectories) or printed holds them. Thread-safe: the runner calls it from several threads.
* :class:`LocalTeacher` — a local transformers checkpoint folder, greedy decoding through the shared
  generation backend (:class:`mirg.models.generation.TransformersBackend`) with the same messages.

Both expose ``name``, ``config()`` (what identifies the teacher, for the teacher key) and
``complete(messages, images) -> str`` where ``messages`` holds ``{"type": "image"}`` placeholders and
``images`` the image files in the same order.
"""

from __future__ import annotations

import base64
import contextlib
import json
import mimetypes
import random
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mirg.errors import ImageError, MirgError


class TeacherFatal(MirgError):
    """The endpoint refuses every request (bad key, unknown model or URL): stop the run."""


class TeacherReplyError(Exception):
    """One attempt failed without an answer (a 4xx other than 401/403/404, an unreadable body)."""


class TeacherUnavailable(Exception):
    """Transient failures (429/5xx/timeouts) outlasted the retries; the sample stays pending for a rerun."""


def image_data_url(path: str | Path) -> str:
    """A ``data:`` URL of an image file (its own bytes when PNG/JPEG/WebP/GIF, else re-encoded as PNG)."""
    p = Path(path)
    mime = mimetypes.guess_type(p.name)[0]
    try:
        if mime in ("image/png", "image/jpeg", "image/webp", "image/gif"):
            data = p.read_bytes()
        else:
            import io

            from mirg.images import open_image

            buf = io.BytesIO()
            open_image(p).save(buf, format="PNG")
            data, mime = buf.getvalue(), "image/png"
    except FileNotFoundError:
        raise ImageError(f"image not found: {p}") from None
    except OSError as e:
        raise ImageError(f"cannot read image {p}: {e}") from None
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def to_openai_messages(
    messages: Sequence[dict[str, Any]], images: Sequence[str | Path]
) -> list[dict[str, Any]]:
    """Replace each ``{"type": "image"}`` placeholder (in order) with an ``image_url`` part (data URL)."""
    it = iter(images)
    out = []
    for m in messages:
        content = m["content"]
        if isinstance(content, str):
            out.append({"role": m["role"], "content": content})
            continue
        parts = []
        for part in content:
            if part.get("type") == "image":
                try:
                    url = image_data_url(next(it))
                except StopIteration:
                    raise ValueError("more image placeholders than images") from None
                parts.append({"type": "image_url", "image_url": {"url": url}})
            else:
                parts.append({"type": "text", "text": part["text"]})
        out.append({"role": m["role"], "content": parts})
    return out


_AUTH_RE = re.compile(
    r"(?i)(\bbearer\s+|\bauthorization[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic)\s+)?)[^\s\"',;@]+"
)
_USERINFO_RE = re.compile(r"(//)[^/?#\s]*@")  # the user:password@ of a URL (not a port)
# one rule for query strings: a parameter whose name holds one of these words has a secret value
SECRET_PARAM_WORDS = ("key", "token", "sig", "secret", "pass", "auth", "credential")
_SECRET_NAME_RE = re.compile("|".join(SECRET_PARAM_WORDS), re.I)
_QUERY_SECRET_RE = re.compile(rf"(?i)([?&;][\w.~%-]*(?:{_SECRET_NAME_RE.pattern})[\w.~%-]*=)[^&#\s\"',;]+")


def redact(text: str, secrets: Sequence[str | None] = ()) -> str:
    """``text`` without the given secrets, ``Bearer``/``Authorization`` values, URL user info
    (``//user:password@``) and the values of secret-like query parameters (``SECRET_PARAM_WORDS``)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    text = _USERINFO_RE.sub(r"\1[redacted]@", text)
    text = _QUERY_SECRET_RE.sub(r"\1[redacted]", text)
    return _AUTH_RE.sub(lambda m: m.group(1) + "[redacted]", text)


def endpoint_url(base_url: str) -> tuple[str, list[str]]:
    """(the chat-completions URL of ``base_url``, the secret values of its query string, redacted wherever
    they appear); a one-line MirgError for a URL mirg cannot use, one with user info among them.
    ``/chat/completions`` joins the path, before any query string (``?api-version=...`` keeps working)."""
    shown = redact(base_url)
    parts = urllib.parse.urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https"):
        raise MirgError(f"--base-url must start with http:// or https://, got {shown!r}")
    if "@" in parts.netloc:
        raise MirgError(
            "--base-url must not hold credentials (user:password@): put the API key in an environment variable "
            "and name it with --api-key-env (it is sent as an Authorization: Bearer header)"
        )
    try:
        bad_port = parts.port == 0
    except ValueError:  # not a number, or out of range
        bad_port = True
    if bad_port or not parts.hostname:
        raise MirgError(f"--base-url needs a host and a valid port, got {shown!r}")
    path = parts.path.rstrip("/")
    if not path.endswith("/chat/completions"):
        path += "/chat/completions"
    secrets = []  # values of 4+ characters (shorter ones are left to the regex, not replaced everywhere)
    for pair in re.split("[&;]", parts.query):
        name, _, value = pair.partition("=")
        if len(value) >= 4 and _SECRET_NAME_RE.search(urllib.parse.unquote_plus(name)):
            secrets += [value, urllib.parse.unquote_plus(value)]
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query, "")), secrets


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # not followed: the 3xx reaches the caller as an HTTPError


_OPENER = urllib.request.build_opener(_NoRedirects)


def _reply_text(body: Any) -> str:
    """``choices[0].message.content`` of a chat-completions reply (string or list of text parts)."""
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise TeacherReplyError("reply has no choices[0].message.content") from None
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str):
        raise TeacherReplyError("reply content is not text")
    return content


class ChatCompletionsTeacher:
    """An OpenAI-compatible chat-completions endpoint (see the module docstring).

    ``base_url``: e.g. ``https://api.openai.com/v1`` or ``http://localhost:8000/v1`` (``/chat/completions`` is
    appended to the path unless present; a query string stays last; user info is refused: see
    :func:`endpoint_url`). ``api_key_env``: the environment variable holding the key (no key: no
    ``Authorization`` header, as local servers expect). ``timeout``: seconds per request. ``retries``: extra
    tries after a transient failure; the wait before try ``i`` is ``backoff * 2**i`` seconds (capped at
    ``max_backoff``) times a random factor in [0.5, 1.5).
    """

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 120.0,
        retries: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        temperature: float = 0.7,
        max_tokens: int = 1024,
        rng: random.Random | None = None,
    ):
        import os

        self.url, url_secrets = endpoint_url(base_url)
        if not model:
            raise MirgError("the HTTP teacher needs --teacher-model (the model name the endpoint serves)")
        self.model = model
        self.api_key_env = api_key_env
        self._api_key = os.environ.get(api_key_env) or None
        self._secrets = [self._api_key, *url_secrets]
        self.shown_url = redact(self.url, self._secrets)  # for messages: no credentials
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.temperature = temperature
        self.max_tokens = max_tokens
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self.counters: Counter[str] = Counter()  # requests, retries, timeouts, http_<code>

    def __repr__(self) -> str:  # never shows the key
        return f"ChatCompletionsTeacher(url={self.shown_url!r}, model={self.model!r}, key_env={self.api_key_env!r})"

    def config(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model": self.model,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }

    def _count(self, what: str) -> None:
        with self._lock:
            self.counters[what] += 1

    def _wait(self, attempt: int, retry_after: str | None) -> None:
        delay = min(self.max_backoff, self.backoff * 2**attempt)
        if retry_after:
            with contextlib.suppress(ValueError):
                delay = min(self.max_backoff, max(delay, float(retry_after)))
        with self._lock:
            jitter = 0.5 + self._rng.random()
        time.sleep(delay * jitter)

    def _post(self, payload: bytes) -> Any:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        req = urllib.request.Request(self.url, data=payload, headers=headers, method="POST")
        with _OPENER.open(req, timeout=self.timeout) as resp:
            return resp.read()

    def _clean(self, text: str) -> str:
        return redact(text, self._secrets)

    def complete(self, messages: Sequence[dict[str, Any]], images: Sequence[str | Path]) -> str:
        body = {
            "model": self.model,
            "messages": to_openai_messages(messages, images),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        payload = json.dumps(body).encode("utf-8")
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self._count("retries")
            self._count("requests")
            retry_after = None
            try:
                raw = self._post(payload)
            except urllib.error.HTTPError as e:
                code = e.code
                self._count(f"http_{code}")
                detail = self._clean(_error_detail(e))
                if 300 <= code < 400:
                    where = self._clean(urllib.parse.urljoin(self.url, e.headers.get("Location") or ""))
                    raise TeacherFatal(
                        f"teacher endpoint {self.shown_url} answered HTTP {code}, a redirect to {where}; mirg does "
                        "not follow redirects (the API key would go along and the POST would become a GET): give "
                        "the final address as --base-url"
                    ) from None
                if code in (401, 403):
                    raise TeacherFatal(
                        f"teacher endpoint {self.shown_url} refused the request (HTTP {code}{detail}); check the API key "
                        f"in ${self.api_key_env}"
                    ) from None
                if code == 404:
                    raise TeacherFatal(
                        f"teacher endpoint {self.shown_url} answered HTTP 404{detail}; check --base-url and "
                        f"--teacher-model ({self.model!r})"
                    ) from None
                if code == 429 or code >= 500:
                    last = f"HTTP {code}{detail}"
                    retry_after = e.headers.get("Retry-After") if e.headers else None
                else:
                    raise TeacherReplyError(f"HTTP {code}{detail}") from None
            except (TimeoutError, urllib.error.URLError) as e:
                if isinstance(e, TimeoutError) or isinstance(e.reason, TimeoutError):
                    self._count("timeouts")
                    last = f"timed out after {self.timeout:g} s"
                else:
                    last = self._clean(f"connection failed ({e.reason})")
            except OSError as e:  # ConnectionError included
                last = f"connection failed ({e.__class__.__name__})"
            else:
                try:
                    reply = json.loads(raw.decode("utf-8"))
                except ValueError:  # UnicodeDecodeError included
                    raise TeacherReplyError("reply is not JSON") from None
                return self._clean(_reply_text(reply))
            if attempt < self.retries:
                self._wait(attempt, retry_after)
        raise TeacherUnavailable(f"{last} ({self.retries + 1} tries)")


def _error_detail(e: urllib.error.HTTPError) -> str:
    """A short, key-free excerpt of an error body (``error.message`` when JSON)."""
    try:
        text = e.read(2000).decode("utf-8", "replace")
    except Exception:
        return ""
    try:
        msg = json.loads(text)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        msg = text
    msg = " ".join(str(msg).split())[:160]
    return f": {msg}" if msg else ""


class LocalTeacher:
    """A local Qwen2.5-VL / Qwen2-VL checkpoint folder as teacher: greedy decoding with the shared generation
    backend, one request at a time, same messages as the HTTP teacher. (Greedy: a retry repeats the reply.)"""

    name = "transformers"

    def __init__(self, path: str | Path, max_new_tokens: int = 512, device: str | None = None):
        from mirg.models.generation import TransformersBackend
        from mirg.models.loading import load_model
        from mirg.prompting import prompt_text

        self.path = str(path)
        self.max_new_tokens = max_new_tokens
        self.loaded = load_model(path, device=device)

        class _Backend(TransformersBackend):  # prompts from the teacher messages, not from the Sample
            messages: Sequence[dict[str, Any]] = ()

            def prompts(self, requests: Sequence[Any]) -> list[str]:
                return [prompt_text(self.processor, list(self.messages)) for _ in requests]

        self.backend = _Backend(self.loaded, max_new_tokens=max_new_tokens)
        self._lock = threading.Lock()
        self.counters: Counter[str] = Counter()

    def config(self) -> dict[str, Any]:
        return {"backend": self.name, "model": Path(self.path).name, "max_new_tokens": self.max_new_tokens}

    def complete(self, messages: Sequence[dict[str, Any]], images: Sequence[str | Path]) -> str:
        from mirg.images import open_images
        from mirg.models.generation import Request
        from mirg.sample import Sample

        pil = open_images(list(images))
        dummy = Sample(id="teacher", task="teacher", images=[str(p) for p in images], question="")
        with self._lock:
            self.counters["requests"] += 1
            self.backend.messages = messages
            return self.backend.generate([Request(dummy, pil)])[0].text
