"""The Lua scripts that make every state change atomic, and how they are called.

Each script is the part of the shared prelude it uses (key names, helpers) followed by its own body, read
from ``lua/``. Only the helpers a script references (directly or through other helpers) are included:
Redis runs the whole script text on every call, and each ``local function`` costs a closure per call.
Scripts are called by SHA (``EVALSHA``); the SHA is computed here once, and a server that does not know the
script yet (first use, restart, failover to a replica that never saw it) gets it loaded once with
``SCRIPT LOAD`` and the call is repeated. No per-call ``SCRIPT EXISTS`` round trip, unlike redis-py's
``Script`` objects inside pipelines.
"""

from __future__ import annotations

import hashlib
import re
from importlib import resources
from typing import Any

import attrs
from redis.exceptions import NoScriptError


@attrs.frozen(kw_only=True)
class LuaScript:
    """One script: its name (the file under ``lua/``), full source and SHA1."""

    name: str
    source: str
    sha: str

    @classmethod
    def load(cls, name: str) -> LuaScript:
        folder = resources.files("lssm_jobs_redis") / "lua"
        prelude = (folder / "prelude.lua").read_text(encoding="utf-8")
        body = (folder / f"{name}.lua").read_text(encoding="utf-8")
        source = f"{_needed_prelude(prelude, body)}\n-- {name}.lua\n{body}"
        return cls(name=name, source=source, sha=hashlib.sha1(source.encode()).hexdigest())


_BLOCK = re.compile(r"^-- @ (.+)$", re.MULTILINE)


def _needed_prelude(prelude: str, body: str) -> str:
    """The prelude's head (constants) plus the blocks (``-- @ name...`` sections) that ``body`` needs."""
    markers = list(_BLOCK.finditer(prelude))
    head = prelude[: markers[0].start()] if markers else prelude
    blocks: list[tuple[list[str], str]] = []
    for index, marker in enumerate(markers):
        end = markers[index + 1].start() if index + 1 < len(markers) else len(prelude)
        blocks.append((marker.group(1).split(), prelude[marker.end() : end]))
    needed: set[int] = set()
    texts = [body]
    while texts:
        text = texts.pop()
        for index, (names, block) in enumerate(blocks):
            if index not in needed and any(re.search(rf"\b{re.escape(name)}\b", text) for name in names):
                needed.add(index)
                texts.append(block)
    return head + "".join(blocks[index][1] for index in sorted(needed))


@attrs.frozen(kw_only=True)
class Scripts:
    """Every script of the backend."""

    push: LuaScript = attrs.field(factory=lambda: LuaScript.load("push"))
    lease: LuaScript = attrs.field(factory=lambda: LuaScript.load("lease"))
    settle: LuaScript = attrs.field(factory=lambda: LuaScript.load("settle"))
    replay: LuaScript = attrs.field(factory=lambda: LuaScript.load("replay"))
    purge: LuaScript = attrs.field(factory=lambda: LuaScript.load("purge"))
    dead: LuaScript = attrs.field(factory=lambda: LuaScript.load("dead"))
    counts: LuaScript = attrs.field(factory=lambda: LuaScript.load("counts"))
    retire: LuaScript = attrs.field(factory=lambda: LuaScript.load("retire"))
    scheduler: LuaScript = attrs.field(factory=lambda: LuaScript.load("scheduler"))

    def all(self) -> list[LuaScript]:
        return [getattr(self, field.name) for field in attrs.fields(Scripts)]


_scripts: Scripts | None = None


def scripts() -> Scripts:
    """The scripts, read from the package once per process."""
    global _scripts
    if _scripts is None:
        _scripts = Scripts()
    return _scripts


async def evalsha(client: Any, script: LuaScript, key: str, args: list[Any]) -> Any:
    """Run ``script`` with one routing ``key`` (every script touches the slot of that key's hash tag).

    :raises redis.exceptions.RedisError: as the client raises it (connection errors included).
    """
    try:
        return await client.evalsha(script.sha, 1, key, *args)
    except NoScriptError:
        await client.script_load(script.source)
        return await client.evalsha(script.sha, 1, key, *args)


async def load_all(client: Any) -> None:
    """Load every script (on every primary of a cluster), so the first calls need no retry."""
    for script in scripts().all():
        await client.script_load(script.source)
