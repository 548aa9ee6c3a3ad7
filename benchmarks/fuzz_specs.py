"""The long spec fuzz: the CI fuzz's generators (``tests/test_hostile_input.py``), run for many
more examples, with every outcome counted instead of the first failure reported.

Usage (from the repo root)::

    python benchmarks/fuzz_specs.py [--examples 20000] [--seed 1]

Each example is a spec file (a shipped spec with random structured edits, or its text with a
slice replaced by random text or bytes) run through the CLI's ``tuner validate`` in this process.
Outcomes:

- ``valid``: exit 0 and ``ok: ...``
- ``clean error``: exit 2 and one line ``error: ...`` of at most 200 characters
- ``long error``, ``multi-line error``: exit 2, but the line rule is broken
- ``traceback``: any other exception, or another exit code
- ``slow``: took over 2 s (counted besides its outcome)
- ``validate OK, submit spec error``: a valid example whose spec, taken through the path
  ``submit`` takes (``load_spec`` -> ``check_study`` -> ``check_resources``, then the JSON
  round trip the coordinator parses) raises a spec error

Writes ``benchmarks/results/fuzz_specs.md`` and ``fuzz_specs.json``.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

SLOW_S = 2.0


def _classify(path: Path) -> tuple[str, str]:
    from typer.testing import CliRunner

    from tuner._text import MAX_LINE
    from tuner.cli import app

    result = CliRunner().invoke(app, ["validate", str(path)])  # the command is built once: main()
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return "traceback", f"{type(result.exception).__name__}: {str(result.exception)[:120]}"
    out = result.output.strip()
    if result.exit_code == 0 and out.startswith("ok: "):
        return _submit_agrees(path), ""
    if result.exit_code != 2:
        return "traceback", f"exit {result.exit_code}: {out[:120]}"
    lines = out.splitlines()
    if len(lines) != 1:
        return "multi-line error", out[:160]
    if len(lines[0]) > MAX_LINE or not lines[0].startswith("error: "):
        return "long error", lines[0][:160]
    return "clean error", ""


def _submit_agrees(path: Path) -> str:
    """What ``tuner submit`` runs before Ray, and the coordinator's own parse of the stored spec."""
    from tuner._errors import TunerError
    from tuner.spec import check_resources, load_spec, parse_spec
    from tuner.training import check_study

    try:
        spec = load_spec(path)
        check_study(spec)
        check_resources(spec, None)
        parse_spec(json.loads(json.dumps(spec.to_json_dict())))
    except TunerError:
        return "validate OK, submit spec error"
    return "valid"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    import yaml
    from hypothesis import HealthCheck, given, seed, settings
    from hypothesis import strategies as st

    import typer.main
    import typer.testing

    from tests import test_hostile_input as fz
    from tuner.cli import app

    # Typer's runner rebuilds the click command on every call: half an example's time, none of
    # what is under test
    command = typer.main.get_command(app)
    typer.testing._get_command = lambda given: command if given is app else typer.main.get_command(given)  # type: ignore[attr-defined]

    counts: collections.Counter[str] = collections.Counter()
    by_kind: dict[str, collections.Counter[str]] = {"structured": collections.Counter(),
                                                     "raw": collections.Counter()}
    samples: dict[str, list[str]] = collections.defaultdict(list)
    slow: list[float] = []
    work = Path(tempfile.mkdtemp(prefix="fuzz-specs-"))
    path = work / "fuzz.yaml"

    def record(kind: str, payload: bytes) -> None:
        path.write_bytes(payload)
        start = time.perf_counter()
        outcome, detail = _classify(path)
        took = time.perf_counter() - start
        if took > SLOW_S:
            slow.append(took)
        counts[outcome] += 1
        by_kind[kind][outcome] += 1
        if detail and len(samples[outcome]) < 5:
            samples[outcome].append(detail)

    half = args.examples // 2
    run = settings(max_examples=half, deadline=None, database=None, derandomize=False,
                   suppress_health_check=list(HealthCheck))

    @seed(args.seed)
    @run
    @given(data=st.data())
    def structured(data: st.DataObject) -> None:
        base = yaml.safe_load(yaml.safe_dump(data.draw(st.sampled_from(fz.BASES))))
        spec = fz._mutate(data, base)
        try:
            text = yaml.safe_dump(spec, allow_unicode=data.draw(st.booleans()))
        except yaml.YAMLError:
            return
        record("structured", text.encode("utf-8", "surrogatepass"))

    @seed(args.seed + 1)
    @run
    @given(data=st.data())
    def raw(data: st.DataObject) -> None:
        text = yaml.safe_dump(data.draw(st.sampled_from(fz.BASES))).encode()
        start = data.draw(st.integers(0, len(text)))
        end = data.draw(st.integers(start, min(len(text), start + 40)))
        insert = data.draw(st.one_of(
            st.binary(max_size=40), st.text(max_size=40).map(lambda s: s.encode("utf-8", "surrogatepass")),
            st.sampled_from([b"&a [1]", b"*a", b"[" * 40, b"\t", b"9" * 5000, b"!!binary AAAA",
                             b"<<: {x: 1}", b"---\n", b"!!python/object:os.system"])))
        record("raw", text[:start] + insert + text[end:])

    for base in fz.BASES:  # first dataset loads and imports are not the fuzz's to time
        path.write_text(yaml.safe_dump(base))
        assert _classify(path)[0] == "valid", base
    t0 = time.perf_counter()
    structured()
    raw()
    wall = time.perf_counter() - t0
    total = sum(counts.values())
    order = ["valid", "clean error", "traceback", "long error", "multi-line error",
             "validate OK, submit spec error"]
    rows = [(k, counts.get(k, 0), by_kind["structured"].get(k, 0), by_kind["raw"].get(k, 0))
            for k in order]
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Spec fuzz (`benchmarks/fuzz_specs.py`)", "",
        f"{when}; {total:,} examples ({by_kind['structured'].total():,} structured edits of "
        f"shipped specs, {by_kind['raw'].total():,} raw text/byte splices) through `tuner "
        f"validate` in process; {wall:.0f} s wall, load average {os.getloadavg()[0]:.1f} at the "
        "end.", "",
        "| outcome | all | structured | raw |", "|---|---|---|---|",
        *[f"| {k} | {n:,} | {s:,} | {r:,} |" for k, n, s, r in rows],
        f"| over {SLOW_S:g} s (any outcome) | {len(slow):,} | | |", "",
    ]
    if slow:
        lines.append(f"Slowest: {max(slow):.2f} s.")
    for outcome, found in samples.items():
        lines += [f"- {outcome}: " + "; ".join(f"`{s}`" for s in found)]
    out = ROOT / "benchmarks" / "results"
    (out / "fuzz_specs.md").write_text("\n".join(lines) + "\n")
    (out / "fuzz_specs.json").write_text(json.dumps(
        {"when": when, "examples": total, "wall_s": wall, "counts": dict(counts),
         "by_kind": {k: dict(v) for k, v in by_kind.items()}, "slow": slow,
         "samples": dict(samples)}, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
