"""A Git smart-HTTP server for the tests and the demo: ``git http-backend`` (CGI) behind aiohttp over TLS,
with a basic-auth check that accepts only tokens the protocol fakes issued and that are still live."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from tests.support.serving import serving
from tests.support.tls import TLSFiles

# (username, password, "owner/repo") -> allowed?
Authorizer = Callable[[str, str, str], bool]


GIT_ENV = {
    "GIT_AUTHOR_NAME": "Demo",
    "GIT_AUTHOR_EMAIL": "demo@example.com",
    "GIT_COMMITTER_NAME": "Demo",
    "GIT_COMMITTER_EMAIL": "demo@example.com",
}


def _run_git(*args: str, cwd: Path) -> str:
    out = subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}, check=True, capture_output=True)
    return out.stdout.decode().strip()


def make_repository(root: Path, owner: str, name: str, files: dict[str, str] | None = None) -> Path:
    """A bare repository ``root/owner/name.git`` with one commit."""
    work = root / ".work" / owner / name
    work.mkdir(parents=True, exist_ok=True)

    def git(*args: str, cwd: Path = work) -> None:
        _run_git(*args, cwd=cwd)

    git("init", "-q", "-b", "main")
    for path, text in (files or {"README.md": f"# {owner}/{name}\n"}).items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(text)
    git("add", "-A")
    git("commit", "-q", "-m", "initial commit")
    bare = root / owner / f"{name}.git"
    bare.parent.mkdir(parents=True, exist_ok=True)
    git("clone", "-q", "--bare", str(work), str(bare), cwd=root)
    return bare


def push_commit(root: Path, owner: str, name: str, files: dict[str, str]) -> str:
    """A new commit on ``main`` of ``root/owner/name.git`` (made by ``make_repository``); its SHA."""
    work = root / ".work" / owner / name
    for path, text in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(text)
    _run_git("add", "-A", cwd=work)
    _run_git("commit", "-q", "-m", "a new commit", cwd=work)
    _run_git("push", "-q", str(root / owner / f"{name}.git"), "main", cwd=work)
    return _run_git("rev-parse", "HEAD", cwd=work)


@dataclass
class GitServer:
    root: Path
    authorize: Authorizer
    url: str = ""
    denied: int = 0
    served: list[tuple[str, str]] = field(default_factory=list)  # (username, repo)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        repo = path.split(".git", 1)[0].strip("/") if ".git" in path else ""
        user, password = _basic(request.headers.get("Authorization", ""))
        if not repo or not self.authorize(user, password, repo):
            self.denied += 1
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="git"'}, text="Unauthorized\n")
        self.served.append((user, repo))
        body = await request.read()
        env = {
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": "/" + path,
            "REQUEST_METHOD": request.method,
            "QUERY_STRING": request.query_string,
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": user,
            "REMOTE_ADDR": "127.0.0.1",
            "GIT_PROTOCOL": request.headers.get("Git-Protocol", ""),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        }
        proc = await asyncio.create_subprocess_exec(
            "git", "http-backend", stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
        )
        out, _ = await proc.communicate(body)
        head, _, payload = out.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = out.partition(b"\n\n")
        status, headers = 200, {}
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers[name.strip()] = value.strip()
        return web.Response(status=status, body=payload, headers=headers)


def _basic(header: str) -> tuple[str, str]:
    if not header.startswith("Basic "):
        return "", ""
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except ValueError:
        return "", ""
    return user, password


@asynccontextmanager
async def running_git_server(root: Path, authorize: Authorizer, tls: TLSFiles) -> AsyncIterator[GitServer]:
    server = GitServer(root, authorize)
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{path:.*}", server.handle)
    async with serving(app, tls.server_context(), tls.host) as url:
        server.url = url
        yield server


def _git_env(ca_file: Path) -> dict[str, str]:
    # GIT_SSL_CAINFO, not `-c http.sslCAInfo`: Debian's git honours only the former for a private CA.
    return {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_SSL_CAINFO": str(ca_file)}


def _git(
    args: list[str], username: str, password: str, ca_file: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    """git with basic auth, as source-controller does it with a basic-auth Secret."""
    header = "Authorization: Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
    return subprocess.run(
        ["git", "-c", f"http.extraHeader={header}", "-c", "credential.helper=", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_git_env(ca_file),
    )


def git_ls_remote(url: str, username: str, password: str, ca_file: Path) -> subprocess.CompletedProcess[str]:
    return _git(["ls-remote", url], username, password, ca_file, 30)


def git_clone(url: str, username: str, password: str, ca_file: Path, dest: Path) -> subprocess.CompletedProcess[str]:
    return _git(["clone", "-q", url, str(dest)], username, password, ca_file, 60)
