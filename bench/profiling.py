"""Summaries of py-spy's raw (collapsed) stacks: where the gateway's CPU goes.

A sample is attributed to the innermost frame that is not generic plumbing (asyncio, uvloop,
contextlib, ...), so time in ``asyncio.StreamWriter.write`` called by redis-py counts as Redis
client time. C code (orjson, hashlib, the aiohttp HTTP parser, uvloop) has no Python frame: it
is attributed to the Python line that called it, or to the event loop when there is none.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

# Where a sample's time goes: the innermost frame that is not generic plumbing decides.
# py-spy names files relative to their sys.path entry ("redis/asyncio/connection.py"), so
# every rule is a path prefix.
CATEGORIES = [
    ("Redis client (redis-py)", ("redis/",)),
    ("logging (structlog)", ("structlog/", "logging/", "gateway/observability/logs.py")),
    ("metrics (prometheus_client)", ("prometheus_client/", "gateway/observability/metrics.py")),
    ("JSON (json module / gateway helpers)", ("json/", "gateway/common/jsonutil.py")),
    (
        "aiohttp client (upstream calls)",
        ("aiohttp/client", "aiohttp/connector", "aiohttp/tracing", "aiohappyeyeballs/"),
    ),
    ("aiohttp server (protocol, routing, request, response)", ("aiohttp/", "multidict/", "yarl/")),
    ("gateway middlewares", ("gateway/web/middlewares/",)),
    ("gateway poller", ("gateway/jobs/poller.py",)),
    ("gateway handlers + logic", ("gateway/",)),
    ("stdlib uuid (uuid4)", ("uuid.py",)),
    ("stdlib hashlib/hmac/re", ("hashlib.py", "hmac.py", "re/")),
]
PLUMBING = (
    "asyncio/",
    "uvloop/",
    "contextlib.py",
    "functools.py",
    "typing.py",
    "<frozen",
    "enum.py",
    "abc.py",
)
LOOP_ROOTS = ("run_app (aiohttp/web.py", "run (asyncio/runners.py", "Runner.run (asyncio/runners")
LOOP = "event loop + socket I/O (uvloop C code, no Python frame)"
ON_STACK = {
    "poller (gateway/jobs/poller.py) on the stack": "gateway/jobs/poller.py",
    "request handling (middlewares) on the stack": "gateway/web/middlewares/request_context.py",
    "Redis client on the stack": "redis/",
    "upstream client (gateway/upstream/client.py) on the stack": "gateway/upstream/client.py",
    "structlog on the stack": "structlog/",
    "prometheus_client on the stack": "prometheus_client/",
}


def _frame_file(frame: str) -> str:
    m = re.search(r"\(([^()]*):\d+\)\s*$", frame)
    return m[1] if m else frame


def _categorise(frames: list[str]) -> str:
    """The category of a sample, from its innermost non-plumbing frame."""
    for frame in reversed(frames):
        if frame.startswith(LOOP_ROOTS):
            return LOOP
        f = _frame_file(frame)
        if f.startswith(PLUMBING):
            continue
        for name, prefixes in CATEGORIES:
            if f.startswith(prefixes):
                return name
        return "other: " + (f.split("/", 1)[0] if "/" in f else f)
    return LOOP


def summarise_profile(raw: str) -> dict[str, Any]:
    """Self time per function, per category, and on-stack shares, from py-spy's raw stacks."""
    self_t: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    cats: Counter[str] = Counter()
    on_stack: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        self_t[frames[-1]] += n
        cats[_categorise(frames)] += n
        for f in set(frames):
            incl[f] += n
        for label, needle in ON_STACK.items():
            if any(_frame_file(f).startswith(needle) for f in frames):
                on_stack[label] += n
    if not total:
        return {"samples": 0, "categories_pct": {}, "top_self": [], "top_inclusive": []}
    return {
        "samples": total,
        "categories_pct": {k: round(100 * v / total, 1) for k, v in cats.most_common()},
        "on_stack_pct": {k: round(100 * on_stack[k] / total, 1) for k in ON_STACK},
        "top_self": [[f, round(100 * v / total, 1)] for f, v in self_t.most_common(25)],
        "top_inclusive": [
            [f, round(100 * v / total, 1)]
            for f, v in incl.most_common(80)
            if _frame_file(f).startswith("gateway/")
            and not f.startswith(("serve (", "_run (", "<module>"))
        ][:30],
        "gateway_self": [
            [f, round(100 * v / total, 1)]
            for f, v in self_t.most_common()
            if _frame_file(f).startswith("gateway/")
        ][:20],
        "redis_inclusive": [
            [f, round(100 * v / total, 1)]
            for f, v in incl.most_common(200)
            if _frame_file(f).startswith("redis/")
        ][:15],
    }


def render_profile_text(path: str, s: dict[str, Any]) -> str:
    lines = [
        f"# py-spy profile of the gateway, {path} path ({s['samples']} samples, 200 Hz, 10 s)",
        "",
        "## where the CPU goes (innermost non-plumbing frame of each sample)",
    ]
    lines += [f"{v:6.1f}%  {k}" for k, v in s.get("categories_pct", {}).items()]
    lines += ["", "## share of samples with ... on the stack"]
    lines += [f"{v:6.1f}%  {k}" for k, v in s.get("on_stack_pct", {}).items()]
    lines += ["", "## top functions by self time"]
    lines += [f"{v:6.1f}%  {f}" for f, v in s.get("top_self", [])]
    lines += ["", "## gateway functions by inclusive time"]
    lines += [f"{v:6.1f}%  {f}" for f, v in s.get("top_inclusive", [])]
    lines += ["", "## gateway lines by self time (includes C calls made there: orjson, hashlib)"]
    lines += [f"{v:6.1f}%  {f}" for f, v in s.get("gateway_self", [])]
    lines += ["", "## redis-py functions by inclusive time"]
    lines += [f"{v:6.1f}%  {f}" for f, v in s.get("redis_inclusive", [])]
    return "\n".join(lines)
