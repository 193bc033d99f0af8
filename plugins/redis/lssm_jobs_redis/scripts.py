"""The Lua scripts that make every state change atomic, and how they are called.

The same Lua sources (``lua/``: a shared prelude of key names and helpers, one file per operation) are
served in two forms:

* a **function library** (Redis 7+ and Valkey: ``FUNCTION LOAD`` once, then ``FCALL``): the prelude's
  helpers are created once when the library loads, so a call runs only its operation. This is the fast
  form: a script re-runs its whole text on every call, and each ``local function`` in it costs a closure;
* **scripts** (``EVALSHA``, for Redis 6.2 or users without the ``FUNCTION`` permission): each script is the
  part of the prelude it uses (only the helpers it references) followed by its body.

Either way a server that does not know the code yet (first use, restart without persistence, failover to a
replica that never saw it) gets it loaded once and the call is repeated; there is no per-call existence
check (unlike redis-py's ``Script`` objects inside pipelines).

**A full Redis** (``maxmemory`` reached, ``maxmemory-policy noeviction``) refuses commands that may grow
memory. The operations that only move jobs or free memory (lease, settle, retire, replay, purge) must keep
working then, or workers could not finish what they hold and nothing would ever free memory; pushes are
refused, so producers get one clear error and nothing is stored. Functions declare it: ``allow-oom`` for
those, ``no-writes`` for the read-only ones (dead letters, counts; Redis refuses even reads from a function
without flags when full). Scripts cannot declare flags on Redis 6.2, where Redis refuses a memory-growing
command in a script only while the script has written nothing yet; the scripts of those operations
therefore start with a write that cannot grow memory (``DEL`` of a key that never exists), after which
Redis lets them finish. Redis 7 treats scripts without flags the same way.
"""

from __future__ import annotations

import hashlib
import re
from importlib import resources
from typing import Any

import attrs
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, OutOfMemoryError, ResponseError

from lssm_jobs_redis.connection import torn_connection

NAMES = (
    "push",
    "lease",
    "settle",
    "replay",
    "purge",
    "dead",
    "counts",
    "retire",
    "scheduler",
    "cancel",
    "progress",
)

#: Function flags (see the module docstring): what runs on a full Redis, what only reads.
FLAGS: dict[str, tuple[str, ...]] = {
    "lease": ("allow-oom",),
    "settle": ("allow-oom",),
    "retire": ("allow-oom",),
    "replay": ("allow-oom",),
    "purge": ("allow-oom",),
    "cancel": ("allow-oom",),  # cancelling moves jobs and frees their dedupe keys, as settling does
    "dead": ("no-writes",),
    "counts": ("no-writes",),
}

# The first write of a script that must run on a full Redis (see the module docstring).
_OOM_GUARD = "redis.call('DEL', P .. 'oom-guard') -- lets the script run on a full Redis (scripts.py)\n"

# Library-level state that must start fresh on every call of a function (a script gets it for free).
_RESET = "  clock = nil\n  seqbox.value = nil\n  seqbox.start = nil\n  if notes[1] then notes = {} end\n"


def _read(name: str) -> str:
    return (resources.files("lssm_jobs_redis") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


_TAG = hashlib.sha1("".join(_read(name) for name in ("prelude", *NAMES)).encode()).hexdigest()[:12]

#: The function library's name; it changes with the code, so workers of different versions never call
#: each other's functions.
LIBRARY = f"lssm_jobs_{_TAG}"


@attrs.frozen(kw_only=True)
class LuaScript:
    """One operation: its name (the file under ``lua/``), its script form and SHA1, and its function name."""

    name: str
    source: str
    sha: str
    function: str

    @classmethod
    def load(cls, name: str) -> LuaScript:
        prelude, body = _read("prelude"), _read(name)
        guard = _OOM_GUARD if "allow-oom" in FLAGS.get(name, ()) else ""
        source = f"{_needed_prelude(prelude, body)}\n-- {name}.lua\n{guard}{body}"
        return cls(
            name=name,
            source=source,
            sha=hashlib.sha1(source.encode()).hexdigest(),
            function=f"{LIBRARY}_{name}",
        )


_HEAD_LINE = re.compile(r"^local (\w+) = (.+)$", re.MULTILINE)


def library_source() -> str:
    """The function library: the whole prelude once, then one function per operation."""
    prelude = _read("prelude")
    head_end = _BLOCK.search(prelude)
    head = prelude[: head_end.start()] if head_end else prelude
    blocks = prelude[head_end.start() :] if head_end else ""
    constants = _HEAD_LINE.findall(head)
    lines = [f"#!lua name={LIBRARY}", "-- lssm-jobs Redis backend (generated from lua/*.lua by scripts.py)"]
    lines.append("local " + ", ".join(name for name, _ in constants))
    lines.append(blocks)
    # The constants derive from the key prefix (ARGV[1]) alone, so they are computed again only when a call
    # brings another prefix than the previous call.
    setup = "".join(f"    {name} = {expression.replace('ARGV', 'argv')}\n" for name, expression in constants)
    lines.append(
        "local setup_prefix = nil\n"
        f"local function setup(argv)\n  if argv[1] ~= setup_prefix then\n{setup}"
        f"    setup_prefix = argv[1]\n  end\n{_RESET}end"
    )
    for name in NAMES:
        flags = ", ".join(f"'{flag}'" for flag in FLAGS.get(name, ()))
        lines.append(
            f"redis.register_function{{function_name = '{LIBRARY}_{name}', flags = {{{flags}}},\n"
            f"callback = function(KEYS, ARGV)\n  setup(ARGV)\n-- {name}.lua\n{_read(name)}\nend}}"
        )
    return "\n".join(lines) + "\n"


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

    library: str = attrs.field(factory=library_source)
    push: LuaScript = attrs.field(factory=lambda: LuaScript.load("push"))
    lease: LuaScript = attrs.field(factory=lambda: LuaScript.load("lease"))
    settle: LuaScript = attrs.field(factory=lambda: LuaScript.load("settle"))
    replay: LuaScript = attrs.field(factory=lambda: LuaScript.load("replay"))
    purge: LuaScript = attrs.field(factory=lambda: LuaScript.load("purge"))
    dead: LuaScript = attrs.field(factory=lambda: LuaScript.load("dead"))
    counts: LuaScript = attrs.field(factory=lambda: LuaScript.load("counts"))
    retire: LuaScript = attrs.field(factory=lambda: LuaScript.load("retire"))
    scheduler: LuaScript = attrs.field(factory=lambda: LuaScript.load("scheduler"))
    cancel: LuaScript = attrs.field(factory=lambda: LuaScript.load("cancel"))
    progress: LuaScript = attrs.field(factory=lambda: LuaScript.load("progress"))

    def all(self) -> list[LuaScript]:
        return [getattr(self, name) for name in NAMES]


_scripts: Scripts | None = None


def scripts() -> Scripts:
    """The scripts, read from the package once per process."""
    global _scripts
    if _scripts is None:
        _scripts = Scripts()
    return _scripts


def function_missing(error: BaseException) -> bool:
    """Whether ``error`` says the server does not have our function library (loaded again, then)."""
    return isinstance(error, ResponseError) and "function not found" in str(error).lower()


async def evalsha(
    client: Any, script: LuaScript, key: str, args: list[Any], *, functions: bool = False
) -> Any:
    """Run ``script`` with one routing ``key`` (every script touches the slot of that key's hash tag), as a
    function (``FCALL``) or a script (``EVALSHA``), loading the code once when the server lacks it.

    :raises redis.exceptions.RedisError: as the client raises it (connection errors included; a connection
        torn down under the call, see :func:`~lssm_jobs_redis.connection.torn_connection`, as a
        ``ConnectionError``).
    """
    try:
        return await _evalsha(client, script, key, args, functions=functions)
    except AttributeError as error:
        if torn_connection(error):
            raise RedisConnectionError(f"connection torn down during the call: {error}") from error
        raise


async def _evalsha(client: Any, script: LuaScript, key: str, args: list[Any], *, functions: bool) -> Any:
    if functions:
        try:
            return await client.execute_command("FCALL", script.function, 1, key, *args)
        except ResponseError as error:
            if not function_missing(error):
                raise
            try:
                await client.execute_command("FUNCTION", "LOAD", "REPLACE", scripts().library)
            except OutOfMemoryError:  # a full Redis refuses FUNCTION LOAD, not SCRIPT LOAD: run the script
                await client.script_load(script.source)
                return await client.evalsha(script.sha, 1, key, *args)
            return await client.execute_command("FCALL", script.function, 1, key, *args)
    try:
        return await client.evalsha(script.sha, 1, key, *args)
    except NoScriptError:
        await client.script_load(script.source)
        return await client.evalsha(script.sha, 1, key, *args)


async def load_all(client: Any, *, functions: bool) -> bool:
    """Load the code (on every primary of a cluster), so the first calls need no retry.

    :param functions: try the function library first.
    :returns: whether functions are in use: False when the server has no ``FUNCTION`` command (Redis
        before 7) or the user may not load functions, and scripts were loaded instead.
    """
    if functions:
        try:
            await client.function_load(scripts().library, replace=True)
            return True
        except OutOfMemoryError:
            # A full Redis refuses FUNCTION LOAD: use the library when it is there already, else scripts
            # (SCRIPT LOAD is allowed), so a worker can start and drain the queue.
            if await client.function_list(library=LIBRARY):
                return True
        except ResponseError as error:
            text = str(error).lower()
            if "unknown command" not in text and "noperm" not in text and "no permissions" not in text:
                raise
    for script in scripts().all():
        await client.script_load(script.source)
    return False
