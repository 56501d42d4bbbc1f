"""Two soaks side by side: A and B each get the same steady traffic at the same time.

This machine's speed drifts by 10-15 % within minutes, and a serve at a steady 200 MO/s
spends most of its CPU on work that the machine runs slowly just after waking, so
two 2-minute soaks run one after the other differ by as much as any change we try.
Run at the same time, two soaks see the same machine: two identical ones
(2026-12-08) differed by 0.2-0.3 % in CPU per MO, minute by minute, while
successive runs that hour ranged over 0.71-1.04 ms. Each side is a whole `bench/soak.py`
(its own serve, SMSC peer and database); what they share is the machine, so the two
serves' CPU is a little higher than one alone would use.

A runs this checkout's bench/soak.py. B runs the one in --b-root (default: this
checkout too), with the environment given after the options added: serve's settings
as SMS_GATEWAY__SECTION__KEY=VALUE, or soak.py's own knobs (SOAK_LINGER_MS=30).

Printed: each side's output, then per minute A's and B's CPU per MO and p99, with
B / A, and the median ratio.

Usage:
    .venv/bin/python bench/soak_pair.py [--minutes 2] [--rate 200] [--b-root DIR] [KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


async def soak(root: Path, env: dict[str, str], args: argparse.Namespace) -> list[str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(root / "bench" / "soak.py"),
        "--minutes",
        str(args.minutes),
        "--rate",
        str(args.rate),
        cwd=root,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    return out.decode("utf-8", "replace").splitlines()


def minutes(lines: list[str]) -> dict[int, tuple[float, float]]:
    """(CPU ms per MO, p99 ms) by minute, from soak.py's minute lines."""
    found = {}
    for line in lines:
        fields = line.split()
        if len(fields) >= 8 and fields[0].isdigit() and "/" in fields[1]:
            found[int(fields[0])] = (float(fields[7]), float(fields[3]))
    return found


def overrides(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"expected KEY=VALUE, got {pair!r}")
        env[key] = value
    return env


async def run(args: argparse.Namespace) -> int:
    b_env = overrides(args.b_env)
    a_lines, b_lines = await asyncio.gather(
        soak(ROOT, {}, args), soak(Path(args.b_root).resolve(), b_env, args)
    )
    for name, lines in (("A", a_lines), ("B", b_lines)):
        print(f"==== {name}")
        print("\n".join(lines))
    a, b = minutes(a_lines), minutes(b_lines)
    described = " ".join(args.b_env) or "no overrides"
    print(f"==== side by side (B: {args.b_root}, {described})")
    print(" min  CPU A   CPU B    B/A   p99 A  p99 B   ms")
    ratios = []
    for number in sorted(a.keys() & b.keys()):
        (cpu_a, p99_a), (cpu_b, p99_b) = a[number], b[number]
        ratio = cpu_b / cpu_a if cpu_a else float("nan")
        ratios.append(ratio)
        print(f"{number:>4} {cpu_a:6.3f} {cpu_b:7.3f} {ratio:6.3f} {p99_a:7.1f} {p99_b:6.1f}")
    if not ratios:
        print("no minute finished on both sides")
        return 1
    print(f"median B/A of CPU per MO: {statistics.median(ratios):.3f}")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=int, default=2)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--b-root", default=str(ROOT), help="checkout whose soak is B")
    parser.add_argument("b_env", nargs="*", metavar="KEY=VALUE", help="B's environment")
    raise SystemExit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
