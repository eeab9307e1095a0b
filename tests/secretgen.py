"""Fake but well-formed secrets inside realistic agent transcript lines.

Everything is drawn from a seeded `random.Random`, so a corpus is the same on
every machine and no real credential ever sits in the repository: the source
holds only public prefixes ("ghp_", "AKIA", ...) and the generator fills in
random bodies.  The redaction tests use `corpus()`; the benchmark uses
`write_transcript()`.

Lines imitate Claude Code (``type: user/assistant``, ``tool_result`` plus
``toolUseResult``) and Codex (``response_item`` with ``function_call`` and
``function_call_output`` whose payload is itself JSON, so the secret is
escaped twice), plus a few plain-text lines such as a pasted ``.env`` or a
PEM key over several real lines.
"""

from __future__ import annotations

import base64
import json
import math
import random
import string
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

ALNUM = string.ascii_letters + string.digits
B64 = ALNUM + "+/"
B64URL = ALNUM + "-_"
UPPER_B32 = string.ascii_uppercase + "234567"
PASSWORD_CHARS = ALNUM + "!#%^&*-_+=.?@~"


@dataclass(frozen=True)
class Planted:
    """One planted secret: what must disappear, where, and which rule should name it."""

    kind: str
    """Expected rule id."""
    secret: str
    line: int
    """0-based index into `Corpus.lines` of the first line that holds it."""
    count: int = 1
    """How many findings it should produce (a tool result repeats its output)."""
    nlines: int = 1
    """Lines it spans: more than one only for plain-text snippets."""

    @property
    def needles(self) -> tuple[str, ...]:
        """Substrings that must not survive: the secret and, for keys, every body line."""
        parts = [self.secret] + [p for p in self.secret.splitlines() if len(p) >= 16]
        return tuple(parts)


@dataclass
class Corpus:
    """Transcript lines plus the ground truth about them."""

    lines: list[bytes] = field(default_factory=list)
    """Each ends with a newline."""
    planted: list[Planted] = field(default_factory=list)
    innocent: list[int] = field(default_factory=list)
    """Indices of lines that hold no secret and must come out byte-for-byte unchanged."""

    def data(self) -> bytes:
        return b"".join(self.lines)


def _s(rng: random.Random, n: int, alphabet: str = ALNUM) -> str:
    return "".join(rng.choices(alphabet, k=n))


def _b64(rng: random.Random, nbytes: int) -> str:
    return base64.b64encode(rng.randbytes(nbytes)).decode()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choices("0123456789abcdef", k=n))


def _entropy(text: str) -> float:
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values())


# ---------------------------------------------------------------------------
# Secret makers: kind -> random well-formed value.


def _private_key(rng: random.Random) -> str:
    label = rng.choice(["RSA ", "EC ", "OPENSSH ", "", "ENCRYPTED "])
    body = "\n".join(_s(rng, 64, B64) for _ in range(rng.randint(4, 9)))
    return f"-----BEGIN {label}PRIVATE KEY-----\n{body}\n{_s(rng, 20, B64)}==\n-----END {label}PRIVATE KEY-----"


def _openai(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return f"sk-proj-{_s(rng, 74, B64URL)}T3BlbkFJ{_s(rng, 74, B64URL)}"
    return f"sk-{_s(rng, 20)}T3BlbkFJ{_s(rng, 20)}"


def _jwt(rng: random.Random) -> str:
    header = _b64url(b'{"alg":"HS256","typ":"JWT"}')
    claims = {"sub": _uuid(rng), "iat": rng.randint(1_700_000_000, 1_800_000_000), "role": "admin"}
    payload = _b64url(json.dumps(claims).encode())
    return f"{header}.{payload}.{_b64url(rng.randbytes(32))}"


def _password(rng: random.Random, n: int) -> str:
    while True:
        value = rng.choice(ALNUM) + _s(rng, n - 1, PASSWORD_CHARS)
        if any(c.isdigit() for c in value) and _entropy(value) >= 3.0:
            return value


def _generic(rng: random.Random) -> str:
    while True:
        value = _s(rng, rng.randint(24, 48), ALNUM + "-_")
        if any(c.isdigit() for c in value) and _entropy(value) >= 4.0:
            return value


def _sas_sig(rng: random.Random) -> str:
    sig = _b64(rng, 32)
    return sig.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")


MAKERS: dict[str, Callable[[random.Random], str]] = {
    "private-key": _private_key,
    "anthropic-api-key": lambda r: f"sk-ant-api03-{_s(r, 93, B64URL)}AA",
    "openai-api-key": _openai,
    "hf-token": lambda r: "hf_" + _s(r, 34, string.ascii_letters),
    "hf-org-token": lambda r: "api_org_" + _s(r, 34, string.ascii_letters),
    "google-api-key": lambda r: "AIza" + _s(r, 35, B64URL),
    "google-oauth-secret": lambda r: "GOCSPX-" + _s(r, 28, B64URL),
    "google-oauth-token": lambda r: "ya29." + _s(r, 120, B64URL),
    "github-pat": lambda r: "ghp_" + _s(r, 36) if r.random() < 0.6 else f"github_pat_11{_s(r, 20)}_{_s(r, 59)}",
    "github-token": lambda r: r.choice(["gho_", "ghs_", "ghu_", "ghr_"]) + _s(r, 36),
    "gitlab-token": lambda r: r.choice(["glpat-", "glpat-", "gldt-", "glrt-"]) + _s(r, 20, B64URL),
    "aws-access-key-id": lambda r: r.choice(["AKIA", "ASIA"]) + _s(r, 16, UPPER_B32),
    "aws-secret-access-key": lambda r: _s(r, 40, B64),
    "azure-account-key": lambda r: _b64(r, 64),
    "azure-sas-token": _sas_sig,
    "azure-ad-client-secret": lambda r: f"{_s(r, 3)}{r.randint(0, 9)}Q~{_s(r, 34, ALNUM + '_~.-')}",
    "slack-webhook-url": lambda r: (
        f"https://hooks.slack.com/services/T{_s(r, 10, string.ascii_uppercase + string.digits)}"
        f"/B{_s(r, 10, string.ascii_uppercase + string.digits)}/{_s(r, 24)}"
    ),
    "slack-token": lambda r: (
        f"{r.choice(['xoxb', 'xoxp'])}-{r.randint(10**11, 10**12)}-{r.randint(10**11, 10**12)}-{_s(r, 24)}"
    ),
    "stripe-key": lambda r: r.choice(["sk_live_", "rk_live_", "sk_test_"]) + _s(r, r.randint(24, 99)),
    "npm-token": lambda r: "npm_" + _s(r, 36),
    "pypi-token": lambda r: "pypi-AgEIcHlwaS5vcmc" + _s(r, r.randint(70, 150), B64URL),
    "jwt": _jwt,
    "url-password": lambda r: _password(r, r.randint(12, 24)),  # raw "@" and "?" too, as people paste them
    "auth-header": lambda r: _s(r, 40, ALNUM + "._-"),
    "cli-password": lambda r: _password(r, r.randint(12, 20)),
    "generic-password": lambda r: _password(r, r.randint(14, 24)),
    "generic-secret": _generic,
}


KINDS: tuple[str, ...] = tuple(MAKERS)


# ---------------------------------------------------------------------------
# Snippets: how each kind shows up in a terminal, a config file or a prompt.
# `{s}` is the secret.

SNIPPETS: dict[str, tuple[str, ...]] = {
    "private-key": ("$ cat ~/.ssh/id_deploy\n{s}\n", "key.pem:\n{s}\n"),
    "anthropic-api-key": ("ANTHROPIC_API_KEY={s}\n", "export ANTHROPIC_API_KEY='{s}'"),
    "openai-api-key": ("OPENAI_API_KEY={s}\nOPENAI_ORG=org-main\n", 'client = OpenAI(api_key="{s}")'),
    "hf-token": ("HF_TOKEN={s}\n", "$ huggingface-cli login --token {s}\nLogin successful"),
    "hf-org-token": ("HfApi(token='{s}').whoami()", "org token {s}"),
    "google-api-key": ("GOOGLE_API_KEY={s}\n", "https://maps.googleapis.com/maps/api/geocode/json?key={s}"),
    "google-oauth-secret": ('{{"client_id": "1234.apps.googleusercontent.com", "client_secret": "{s}"}}',),
    "google-oauth-token": ("access token: {s}\nexpires_in: 3599",),
    "github-pat": (
        "$ git remote -v\norigin\thttps://x-access-token:{s}@github.com/acme/api.git (fetch)\n",
        "GITHUB_TOKEN={s}\n",
        "here is my token {s} please push the branch",
    ),
    "github-token": ("GH_TOKEN={s}\n", "Authorization: token {s}"),
    "gitlab-token": ("https://oauth2:{s}@gitlab.com/acme/infra.git", "GITLAB_TOKEN={s}\n"),
    "aws-access-key-id": ("[default]\naws_access_key_id = {s}\nregion = eu-west-1\n", "AWS_ACCESS_KEY_ID={s}\n"),
    "aws-secret-access-key": ("[default]\naws_secret_access_key = {s}\n", "AWS_SECRET_ACCESS_KEY={s}\n"),
    "azure-account-key": (
        "AZURE_STORAGE_CONNECTION_STRING=DefaultEndpointsProtocol=https;AccountName=acmelogs;"
        "AccountKey={s};EndpointSuffix=core.windows.net\n",
    ),
    "azure-sas-token": (
        "https://acmelogs.blob.core.windows.net/traces/a.jsonl?sv=2022-11-02&ss=b&srt=o&sp=rl"
        "&se=2026-01-01T00:00:00Z&spr=https&sig={s}",
    ),
    "azure-ad-client-secret": ("AZURE_CLIENT_ID=7c1d2e3f\nAZURE_CLIENT_SECRET={s}\n", "secret value: {s}"),
    "slack-webhook-url": ("SLACK_WEBHOOK_URL={s}\n", "curl -X POST -d 'payload' {s}"),
    "slack-token": ("SLACK_BOT_TOKEN={s}\n", "slack token {s} has chat:write"),
    "stripe-key": ("STRIPE_SECRET_KEY={s}\n", 'stripe.api_key = "{s}"'),
    "npm-token": ("//registry.npmjs.org/:_authToken={s}\n", "NPM_TOKEN={s}\n"),
    "pypi-token": ("[pypi]\nusername = __token__\npassword = {s}\n", "twine upload -p {s} dist/*"),
    "jwt": ("Authorization: Bearer {s}", '{{"id_token": "{s}", "expires_in": 3600}}', "session={s}"),
    "url-password": (
        "DATABASE_URL=postgres://app:{s}@db.internal:5432/app\n",
        "mongodb+srv://admin:{s}@cluster0.abcde.mongodb.net/prod?retryWrites=true",
        "redis://:{s}@cache:6379/0",
    ),
    "auth-header": ('curl -H "Authorization: Bearer {s}" https://api.internal/v1/jobs',),
    "cli-password": ("curl -u deploy:{s} https://ci.internal/api", "mysqldump --password={s} prod"),
    "generic-password": (
        "DB_PASSWORD={s}\n",
        '{{"user": "svc", "password": "{s}"}}',
        "spring.datasource.password={s}\n",
        "password: {s}\n",
    ),
    "generic-secret": (
        "SECRET_KEY={s}\n",
        '{{"client_secret": "{s}"}}',
        "API_TOKEN={s}\n",
        'api_key = "{s}"',
        "x-api-key: {s}",
    ),
}


# ---------------------------------------------------------------------------
# Transcript line shapes.  Each takes a text and returns (line, occurrences).


class _Ctx:
    """Session-wide ids so consecutive lines look like one session."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.session = _uuid(rng)
        self.parent = _uuid(rng)
        self.cwd = "/home/dev/projects/acme-api"
        self.clock = 1_760_000_000

    def stamp(self) -> str:
        self.clock += self.rng.randint(1, 30)
        ms = self.rng.randint(0, 999)
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.clock)) + f".{ms:03d}Z"

    def claude(self, kind: str, message: Mapping[str, object], **extra: object) -> dict[str, object]:
        uid = _uuid(self.rng)
        record: dict[str, object] = {
            "parentUuid": self.parent,
            "isSidechain": False,
            "userType": "external",
            "cwd": self.cwd,
            "sessionId": self.session,
            "version": "2.1.38",
            "gitBranch": "main",
            "type": kind,
            "message": message,
            "uuid": uid,
            "timestamp": self.stamp(),
        }
        record.update(extra)
        self.parent = uid
        return record

    def codex(self, payload: Mapping[str, object]) -> dict[str, object]:
        return {"timestamp": self.stamp(), "type": "response_item", "payload": payload}


def _dump(record: object) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def _claude_tool_result(ctx: _Ctx, text: str) -> tuple[bytes, int]:
    tool_id = "toolu_01" + _s(ctx.rng, 22)
    message = {"role": "user", "content": [{"tool_use_id": tool_id, "type": "tool_result", "content": text}]}
    extra = {"toolUseResult": {"stdout": text, "stderr": "", "interrupted": False, "isImage": False}}
    return _dump(ctx.claude("user", message, **extra)), 2


def _claude_assistant(ctx: _Ctx, text: str) -> tuple[bytes, int]:
    message = {
        "id": "msg_01" + _s(ctx.rng, 22),
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": f"I found this in the output:\n\n```\n{text}\n```\nRotate it."}],
        "stop_reason": None,
        "usage": {"input_tokens": ctx.rng.randint(3, 9000), "output_tokens": ctx.rng.randint(1, 900)},
    }
    return _dump(ctx.claude("assistant", message, requestId="req_011C" + _s(ctx.rng, 20))), 1


def _claude_prompt(ctx: _Ctx, text: str) -> tuple[bytes, int]:
    message = {"role": "user", "content": f"use this to configure the deploy: {text} thanks"}
    return _dump(ctx.claude("user", message)), 1


def _codex_call(ctx: _Ctx, text: str) -> tuple[bytes, int]:
    args = json.dumps({"command": ["bash", "-lc", text], "workdir": ctx.cwd, "timeout_ms": 120000})
    payload = {"type": "function_call", "name": "shell", "arguments": args, "call_id": "call_" + _s(ctx.rng, 24)}
    return _dump(ctx.codex(payload)), 1


def _codex_output(ctx: _Ctx, text: str) -> tuple[bytes, int]:
    output = json.dumps({"output": text, "metadata": {"exit_code": 0, "duration_seconds": 0.2}})
    payload = {"type": "function_call_output", "call_id": "call_" + _s(ctx.rng, 24), "output": output}
    return _dump(ctx.codex(payload)), 1


def _plain(ctx: _Ctx, text: str) -> tuple[bytes, int]:
    return text.rstrip("\n").encode() + b"\n", 1


SHAPES: tuple[Callable[[_Ctx, str], tuple[bytes, int]], ...] = (
    _claude_tool_result,
    _claude_assistant,
    _claude_prompt,
    _codex_call,
    _codex_output,
    _plain,
)


def secret_lines(ctx: _Ctx, kind: str) -> list[tuple[bytes, Planted]]:
    """One fresh secret of ``kind`` in every line shape, cycling through the kind's snippets."""
    rng = ctx.rng
    out: list[tuple[bytes, Planted]] = []
    for i, shape in enumerate(SHAPES):
        snippet = SNIPPETS[kind][i % len(SNIPPETS[kind])]
        secret = MAKERS[kind](rng)
        line, count = shape(ctx, snippet.format(s=secret))
        out.append((line, Planted(kind, secret, -1, count * snippet.count("{s}"))))
    return out


# ---------------------------------------------------------------------------
# Innocent lines: the shapes that a careless rule would redact.

CODE = (
    'import os\n\nDB_PASSWORD = os.environ["DB_PASSWORD"]\npassword = os.environ.get("PGPASSWORD")\n'
    "token = request.headers.get('Authorization')\napi_key: str | None = None\n"
    "secret_name = 'prod-db-credentials'\n",
    "const token = process.env.GITHUB_TOKEN;\nconst apiKey = config.get('apiKey');\n"
    "export function getAccessToken(): Promise<string> {\n  return auth.refreshToken();\n}\n",
    "jobs:\n  release:\n    env:\n      GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}\n"
    "      NPM_TOKEN: ${{ secrets.NPM_TOKEN }}\n      password: ${DB_PASSWORD}\n",
    "def rotate_secret(secret_id: str, *, dry_run: bool = False) -> None:\n"
    '    """Rotate the secret: the old token stays valid for 24 hours."""\n'
    "    password_hash = hasher.hash(password)\n    token_type = 'bearer'\n",
    "class Settings(BaseSettings):\n    secret_key: SecretStr\n    access_token_expire_minutes: int = 30\n"
    "    api_key_header: str = 'X-API-Key'\n    private_key_path: Path = Path('~/.ssh/id_ed25519')\n",
)


def _png_base64(rng: random.Random, size: int) -> str:
    return "iVBORw0KGgoAAAANSUhEUgAA" + _b64(rng, size)


def innocent_texts(rng: random.Random) -> list[str]:
    """Tool outputs full of hashes, ids, base64 and paths, but no secret."""
    sha = [_hex(rng, 40) for _ in range(6)]
    texts = [
        "$ git log --oneline -5\n" + "\n".join(f"{s[:7]} fix: handle empty transcript ({s[:12]})" for s in sha[:5]),
        f"$ git rev-parse HEAD\n{sha[0]}\n$ git log -1\ncommit {sha[1]}\nAuthor: Dev <dev@example.com>\n",
        "$ sha256sum dist/*\n" + "\n".join(f"{_hex(rng, 64)}  dist/acme-{i}.tar.gz" for i in range(4)),
        f"docker pull ghcr.io/acme/api@sha256:{_hex(rng, 64)}\nDigest: sha256:{_hex(rng, 64)}",
        f'"integrity": "sha512-{_b64(rng, 64)}",\n"resolved": "https://registry.npmjs.org/left-pad/-/left-pad-1.3.0.tgz"',
        "ids: " + ", ".join(_uuid(rng) for _ in range(8)),
        "/home/dev/projects/acme-api/src/acme_api/services/billing/invoices/pdf_renderer_v2.py:118:4: E501\n"
        "/home/dev/projects/acme-api/node_modules/.pnpm/@types+node@20.11.5/node_modules/@types/node/fs.d.ts",
        f"![screenshot](data:image/png;base64,{_png_base64(rng, rng.randint(2000, 6000))})",
        "$ git remote -v\norigin\tgit@github.com:acme/api.git (fetch)\n"
        "upstream\thttps://github.com/acme/api.git (push)",
        "postgres://localhost:5432/acme_dev and ssh://git@gitlab.com/acme/infra.git and "
        "https://registry.npmjs.org:443/@acme%2fui and http://[::1]:8080/health",
        "$ docker run -u 1000:1000 -p 8080:80 acme/api:latest\nlistening on :80",
        'curl -H "Authorization: Bearer $GITHUB_TOKEN" https://api.github.com/user',
        "from huggingface_hub import hf_hub_download\n"
        'path = hf_hub_download(repo_id="acme/model", filename="config.json", token=True)\n'
        "model = AutoModel.from_pretrained(path)  # sk-learn style API, not a key",
        "The user wants to reset the password: I should check the token: it expires after 3600 seconds. "
        "The secret: keep the key in the vault, never in the repo.",
        f"Request ID: req_{_s(rng, 24)}; trace: {_hex(rng, 32)}; call_{_s(rng, 24)}",
        "$ env | sort\nHOME=/home/dev\nLANG=en_US.UTF-8\nOLDPWD=/home/dev\nPATH=/usr/local/bin:/usr/bin:/bin\n"
        "PWD=/home/dev/projects/acme-api\nSHELL=/bin/bash\nSSH_AUTH_SOCK=/tmp/ssh-XXXX/agent.1234\nUSER=dev\n",
        "-----BEGIN CERTIFICATE-----\n" + "\n".join(_s(rng, 64, B64) for _ in range(4)) + "\n-----END CERTIFICATE-----",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI" + _s(rng, 43, B64) + " dev@laptop",
        *CODE,
    ]
    return texts


def innocent_lines(ctx: _Ctx) -> list[bytes]:
    rng = ctx.rng
    lines: list[bytes] = []
    for i, text in enumerate(innocent_texts(rng)):
        lines.append(SHAPES[i % len(SHAPES)](ctx, text)[0])
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": _png_base64(rng, 4000)}}
    msg = {"role": "user", "content": [{"type": "text", "text": "see screenshot"}, image]}
    lines.append(_dump(ctx.claude("user", msg)))
    thinking = {"type": "thinking", "thinking": "Plan: read the config, then run tests.", "signature": _b64(rng, 300)}
    lines.append(_dump(ctx.claude("assistant", {"role": "assistant", "content": [thinking]})))
    reasoning = {"type": "reasoning", "summary": [], "encrypted_content": "gAAAAAB" + _s(rng, 1500, B64URL)}
    lines.append(_dump(ctx.codex(reasoning)))
    usage = {
        "input_tokens": rng.randint(10**6, 10**9),
        "cached_input_tokens": rng.randint(10**6, 10**9),
        "output_tokens": rng.randint(10**3, 10**6),
        "reasoning_output_tokens": 1234567890,
        "total_tokens": 98765432101234,
    }
    info = {"total_token_usage": usage, "last_token_usage": usage, "model_context_window": 272000}
    lines.append(
        _dump({"timestamp": ctx.stamp(), "type": "event_msg", "payload": {"type": "token_count", "info": info}})
    )
    return lines


def corpus(seed: int = 20240601, rounds: int = 2) -> Corpus:
    """Interleave every kind in every line shape with innocent lines; record the ground truth."""
    ctx = _Ctx(random.Random(seed))
    result = Corpus()
    for _ in range(rounds):
        for kind in KINDS:
            for entry, planted in secret_lines(ctx, kind):
                parts = entry.splitlines(keepends=True)
                first = len(result.lines)
                result.lines.extend(parts)
                result.planted.append(Planted(kind, planted.secret, first, planted.count, len(parts)))
        for entry in innocent_lines(ctx):
            for part in entry.splitlines(keepends=True):
                result.innocent.append(len(result.lines))
                result.lines.append(part)
    return result


def write_transcript(path: Path, size: int, seed: int = 7, secret_every: int = 40) -> tuple[int, int]:
    """Write about ``size`` bytes of transcript, one secret line per ``secret_every`` lines.

    Lines come from a pool drawn once and then sampled, so a 50 MB file takes
    seconds to write; returns (lines, secret lines).
    """
    rng = random.Random(seed)
    ctx = _Ctx(rng)
    innocent = [line for _ in range(8) for line in innocent_lines(ctx)]
    secret = [line for kind in KINDS for line, _ in secret_lines(ctx, kind)]
    written = lines = secrets = 0
    with path.open("wb") as fh:
        while written < size:
            if lines % secret_every == secret_every - 1:
                line = rng.choice(secret)
                secrets += 1
            else:
                line = rng.choice(innocent)
            fh.write(line)
            written += len(line)
            lines += 1
    return lines, secrets
