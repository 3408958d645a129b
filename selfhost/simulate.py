"""`selfhost simulate`: replay a request trace through a stack's scaling policy, offline.

The stack's config is read as `selfhost plan` reads it (no cloud, secrets never decrypted), and the trace goes
through the model in stacks/simulation.py. The command prints, for the trace: GPU node-hours, the cost and the
cost of the same trace at fixed replicas (the cost report's figure), cold starts, the p50, p95 and longest
wait for a replica, and the requests the interceptor would have answered 503 after holding them too long.
`--json` prints them as one JSON object under stable keys: gpu_node_hours, cost_usd, fixed_replicas_cost_usd,
cold_starts, replica_starts, wait_seconds_p50, wait_seconds_p95, wait_seconds_max (null without a request),
requests, requests_over_hold (null with autoscaling off), hours (the trace and the wind-down after it), and
settings (the stack, the trace and every input of the model).

A trace is a CSV file whose header is `minute,requests`: the requests that arrive in each minute, minutes
counted from 0 in increasing order; a minute left out has no request. Without `--trace` the command replays
the built-in office day (OFFICE_DAY), 24 hours and 2,040 requests:

    00:00-08:00  nothing
    08:00-10:00  the morning ramp: 1, 2, 3, then 4 requests a minute, each for half an hour
    10:00-12:00  the peak: 5 a minute
    12:00-13:00  the lunch dip: 1 a minute
    13:00-17:00  the afternoon: 4 a minute
    17:00-18:00  the end of the day: 2 a minute
    18:00-24:00  nothing
"""

from __future__ import annotations

import argparse
import csv
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from selfhost.prerequisites import config_errors, report
from selfhost.stack_file import stack_config
from stacks.config import ConfigError, load_config
from stacks.simulation import SimulationError, SimulationInputs, SimulationResult, simulate, simulation_inputs

MINUTES_PER_DAY = 24 * 60
# Each period of the built-in day: (first minute, minute after the last, requests a minute, what it is).
OFFICE_DAY: tuple[tuple[int, int, int, str], ...] = (
    (8 * 60, 8 * 60 + 30, 1, "the morning ramp"),
    (8 * 60 + 30, 9 * 60, 2, "the morning ramp"),
    (9 * 60, 9 * 60 + 30, 3, "the morning ramp"),
    (9 * 60 + 30, 10 * 60, 4, "the morning ramp"),
    (10 * 60, 12 * 60, 5, "the peak"),
    (12 * 60, 13 * 60, 1, "the lunch dip"),
    (13 * 60, 17 * 60, 4, "the afternoon"),
    (17 * 60, 18 * 60, 2, "the end of the day"),
)
# A week of minutes replays in a few seconds; longer traces are better cut into weeks.
MAX_TRACE_MINUTES = 7 * MINUTES_PER_DAY
TRACE_HEADER = ["minute", "requests"]


class TraceError(Exception):
    """A trace file that cannot be replayed: names the file and, when it is one, the line."""


def office_day() -> list[int]:
    """The built-in trace: requests arriving in each minute of the office day."""
    day = [0] * MINUTES_PER_DAY
    for start, end, rate, _ in OFFICE_DAY:
        day[start:end] = [rate] * (end - start)
    return day


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def office_day_help() -> str:
    periods = "\n".join(
        f"  {_clock(start)}-{_clock(end)}  {rate} request(s) a minute ({what})"
        for start, end, rate, what in OFFICE_DAY
    )
    return (
        "Without --trace, the built-in office day (24 h): nothing before 08:00 or after 18:00, and\n"
        f"{periods}\n"
        "A trace file is a CSV with the header minute,requests: the requests arriving in each minute,\n"
        "minutes from 0 in increasing order; a minute left out has no request."
    )


def read_trace(path: Path) -> list[int]:
    """The requests of each minute in a trace file, gaps filled with 0."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise TraceError(f"no trace file {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise TraceError(f"cannot read the trace file {path}: {error}") from None
    return parse_trace(text, str(path))


def parse_trace(text: str, name: str) -> list[int]:
    rows = csv.reader(text.splitlines())
    header = [field.strip() for field in next(rows, [])]
    if not header:
        raise TraceError(f"{name} is empty; expected the header minute,requests on line 1")
    if header != TRACE_HEADER:
        raise TraceError(f"{name} line 1: expected the header minute,requests, found {','.join(header)!r}")
    counts: dict[int, int] = {}
    last = -1
    for row in rows:
        if not row:
            continue
        where = f"{name} line {rows.line_num}"
        if len(row) != 2:
            raise TraceError(f"{where}: expected 2 values (minute,requests), found {len(row)}")
        minute = _whole_number(row[0], "minute", where)
        requests = _whole_number(row[1], "requests", where)
        if minute <= last:
            raise TraceError(f"{where}: minute {minute} comes after minute {last}; minutes must increase")
        if minute >= MAX_TRACE_MINUTES:
            raise TraceError(
                f"{where}: minute {minute} is past the longest trace replayed, {MAX_TRACE_MINUTES:,} minutes "
                "(a week); cut the trace into weeks"
            )
        counts[minute] = requests
        last = minute
    if last < 0:
        raise TraceError(f"{name}: no minute after the header")
    return [counts.get(minute, 0) for minute in range(last + 1)]


def _whole_number(text: str, what: str, where: str) -> int:
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit()):
        raise TraceError(f"{where}: {what} {digits!r} is not a whole number 0 or more")
    return int(digits)


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = office_day_help()
    parser.add_argument("stack", nargs="?", default="dev", help="stack name (Pulumi.STACK.yaml), default dev")
    parser.add_argument(
        "--trace",
        type=Path,
        metavar="FILE.csv",
        help="requests per minute (header minute,requests); default the built-in office day",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    stack: str = args.stack
    try:
        trace = read_trace(args.trace) if args.trace is not None else office_day()
    except TraceError as error:
        return report("simulate", stack, f"{error}.")
    try:
        raw, secret_keys = stack_config(stack)
        config = load_config(raw, stack, secret_keys=secret_keys, secrets_readable=False)
    except FileNotFoundError as error:
        return report("simulate", stack, str(error))
    except ConfigError as error:
        return report("simulate", stack, config_errors(error.errors))
    try:
        inputs = simulation_inputs(config)
        result = simulate(trace, inputs)
    except SimulationError as error:
        return report("simulate", stack, f"{error}.")
    trace_name = str(args.trace) if args.trace is not None else "the built-in office day"
    if args.json:
        print(json.dumps({**figures(result), "settings": settings(stack, trace_name, inputs)}, indent=2))
    else:
        print(summary(stack, trace_name, inputs, result))
    return 0


def figures(result: SimulationResult) -> dict[str, Any]:
    return {
        "gpu_node_hours": round(result.gpu_node_hours, 4),
        "cost_usd": round(result.cost_usd, 2),
        "fixed_replicas_cost_usd": round(result.fixed_replicas_cost_usd, 2),
        "cold_starts": result.cold_starts,
        "replica_starts": result.replica_starts,
        "wait_seconds_p50": result.wait_seconds(50),
        "wait_seconds_p95": result.wait_seconds(95),
        "wait_seconds_max": result.wait_seconds_max,
        "requests": result.requests,
        "requests_over_hold": result.requests_over_hold,
        "hours": round(result.hours, 4),
    }


def settings(stack: str, trace: str, inputs: SimulationInputs) -> dict[str, Any]:
    return {"stack": stack, "trace": trace, **asdict(inputs)}


def _seconds(value: int | None) -> str:
    return "-" if value is None else f"{value:,} s"


def summary(stack: str, trace: str, inputs: SimulationInputs, result: SimulationResult) -> str:
    policy = inputs.policy
    fixed = policy.max_replicas if policy is not None else inputs.replicas
    if policy is None:
        scaling = f"autoscaling is off: llm:replicas = {inputs.replicas} replica(s) run throughout (fixed replicas only)"
    else:
        scaling = f"{policy.min_replicas} to {policy.max_replicas} replicas"
        if policy.scale_to_zero:
            scaling += f", to zero after {policy.idle_seconds // 60} idle minutes"
    fewest, most = min(result.ready_replicas_by_minute), max(result.ready_replicas_by_minute)
    ready = f"{most} ready throughout" if fewest == most else f"{fewest} to {most} ready"
    lines = [
        f"Simulation of stack {stack} on {trace}: {result.requests:,} requests over {result.hours:.1f} h",
        f"  Policy     {scaling}",
        f"  Replica    {inputs.capacity_per_replica} request(s) at once, {inputs.service_seconds} s each; ready "
        f"{inputs.new_node_start_seconds} s after its start on a new node, {inputs.warm_start_seconds} s on a "
        "running one",
        f"  Replicas   {ready}; {result.replica_starts} started, "
        f"{result.cold_starts} of them on a new node (cold starts)",
        f"  GPU nodes  {result.gpu_node_hours:.2f} node-hours",
        f"  Cost       ${result.cost_usd:,.2f}; ${result.fixed_replicas_cost_usd:,.2f} with {fixed} replica(s) "
        f"running throughout (${inputs.fixed_usd_per_hour:.2f}/h, the cost report's figure)",
        f"  Waits      p50 {_seconds(result.wait_seconds(50))}, p95 {_seconds(result.wait_seconds(95))}, "
        f"longest {_seconds(result.wait_seconds_max)}",
    ]
    if policy is not None:
        lines.append(
            f"  Held       {result.requests_over_hold:,} request(s) held over {policy.hold_seconds} s with no "
            "replica ready (answered 503)"
        )
    return "\n".join(lines)
