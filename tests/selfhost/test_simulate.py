"""`selfhost simulate`: the built-in day, the trace file, the figures and the errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selfhost import simulate as command
from selfhost.cli import main
from selfhost.plan.runner import stack_config

FIGURES = {
    "gpu_node_hours",
    "cost_usd",
    "fixed_replicas_cost_usd",
    "cold_starts",
    "replica_starts",
    "wait_seconds_p50",
    "wait_seconds_p95",
    "wait_seconds_max",
    "requests",
    "requests_over_hold",
    "hours",
}


def test_the_office_day_is_the_documented_shape():
    day = command.office_day()
    assert len(day) == 24 * 60
    # Nothing before 08:00 or from 18:00; the ramp 1, 2, 3, 4 a minute for half an hour each; the peak 5 a
    # minute 10:00-12:00; the lunch dip 1; the afternoon 4 until 17:00; then 2 until 18:00.
    assert set(day[: 8 * 60]) == set(day[18 * 60 :]) == {0}
    assert [day[8 * 60 + 30 * step] for step in range(4)] == [1, 2, 3, 4]
    assert (day[11 * 60], day[12 * 60 + 30], day[15 * 60], day[17 * 60 + 30]) == (5, 1, 4, 2)
    # 30 x (1 + 2 + 3 + 4) + 120 x 5 + 60 x 1 + 240 x 4 + 60 x 2 = 300 + 600 + 60 + 960 + 120.
    assert sum(day) == 2040


def test_help_describes_the_built_in_day_and_the_trace_format(capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    out = capsys.readouterr().out
    for period in (
        "08:00-08:30",
        "10:00-12:00  5 request(s) a minute (the peak)",
        "12:00-13:00",
        "17:00-18:00",
    ):
        assert period in out
    assert "header minute,requests" in out


def test_the_built_in_day_prints_the_figures(capsys):
    assert main(["simulate"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Simulation of stack dev on the built-in office day: 2,040 requests over 24.0 h")
    for label in (
        "GPU nodes",
        "node-hours",
        "Cost",
        "running throughout",
        "cold starts",
        "p50",
        "p95",
        "longest",
    ):
        assert label in out


def test_json_has_exactly_the_documented_keys(capsys):
    assert main(["simulate", "dev", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert set(figures) == FIGURES | {"settings"}
    assert figures["requests"] == 2040 and figures["hours"] == 24
    assert figures["settings"]["trace"] == "the built-in office day"
    assert figures["settings"]["policy"]["max_replicas"] == 2


def test_a_trace_file_with_gaps(tmp_path, capsys):
    trace = tmp_path / "trace.csv"
    trace.write_text("minute,requests\n0,1\n600,1\n1439,0\n")
    assert main(["simulate", "--trace", str(trace), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    # Two requests 10 hours apart: the stack is idle before each (back to no node 30 + 10 minutes after the
    # first), so each waits a cold start of 375 s.
    assert (figures["requests"], figures["cold_starts"], figures["wait_seconds_max"]) == (2, 2, 375)
    assert figures["settings"]["trace"] == str(trace)


def test_parse_trace_fills_the_gaps_with_no_request():
    assert command.parse_trace("minute,requests\n0,1\n3, 2\n\n", "t.csv") == [1, 0, 0, 2]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("minute,requests\n0,5\n1,-3\n", "line 3: requests '-3' is not a whole number 0 or more"),
        ("minute,requests\n0,5\n1,2.5\n", "line 3: requests '2.5' is not a whole number 0 or more"),
        ("minute,requests\nfirst,5\n", "line 2: minute 'first' is not a whole number 0 or more"),
        ("minute,requests\n0,5,7\n", "line 2: expected 2 values (minute,requests), found 3"),
        ("minute,requests\n4,5\n2,1\n", "line 3: minute 2 comes after minute 4; minutes must increase"),
        ("time,count\n0,5\n", "line 1: expected the header minute,requests, found 'time,count'"),
        ("minute,requests\n20160,1\n", "line 2: minute 20160 is past the longest trace replayed"),
    ],
)
def test_a_bad_trace_names_the_file_and_line(tmp_path: Path, capsys, text, message):
    trace = tmp_path / "trace.csv"
    trace.write_text(text)
    assert main(["simulate", "dev", "--trace", str(trace)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"selfhost simulate dev: {trace} {message}")
    assert captured.err.count("\n") == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "{trace} is empty; expected the header minute,requests on line 1."),
        ("minute,requests\n", "{trace}: no minute after the header."),
    ],
)
def test_a_trace_without_minutes_is_refused(tmp_path: Path, capsys, text, message):
    trace = tmp_path / "trace.csv"
    trace.write_text(text)
    assert main(["simulate", "--trace", str(trace)]) == 2
    assert capsys.readouterr().err == f"selfhost simulate dev: {message.format(trace=trace)}\n"


def test_a_missing_trace_file(tmp_path: Path, capsys):
    missing = tmp_path / "missing.csv"
    assert main(["simulate", "--trace", str(missing)]) == 2
    assert capsys.readouterr().err == f"selfhost simulate dev: no trace file {missing}.\n"


def test_an_unknown_stack(capsys):
    assert main(["simulate", "nosuchstack"]) == 2
    assert capsys.readouterr().err.startswith(
        "selfhost simulate nosuchstack: there is no Pulumi.nosuchstack.yaml in "
    )


def with_config(monkeypatch: pytest.MonkeyPatch, **overrides: str) -> None:
    """The dev stack's file with some keys overridden, as `selfhost simulate dev` reads it."""
    raw, secret_keys = stack_config("dev")
    monkeypatch.setattr(command, "stack_config", lambda stack: ({**raw, **overrides}, secret_keys))


def test_a_bad_config_prints_every_error(monkeypatch, capsys):
    with_config(monkeypatch, **{"autoscaling:minReplicas": "3", "network:azCount": "9"})
    assert main(["simulate"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("selfhost simulate dev: the stack's config has 2 error(s):\n")
    assert "autoscaling:minReplicas" in err and "network:azCount" in err


def test_without_autoscaling_only_fixed_replicas_are_simulated(monkeypatch, capsys):
    with_config(monkeypatch, **{"autoscaling:enabled": "false", "llm:replicas": "1"})
    assert main(["simulate"]) == 0
    out = capsys.readouterr().out
    assert "autoscaling is off: llm:replicas = 1 replica(s) run throughout (fixed replicas only)" in out
    assert "Held" not in out
    assert main(["simulate", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    # One replica runs all day: 24 node-hours, no start, and the cost is the fixed replicas' cost.
    assert (figures["gpu_node_hours"], figures["cold_starts"], figures["requests_over_hold"]) == (24, 0, None)
    assert figures["cost_usd"] == figures["fixed_replicas_cost_usd"]


def test_a_parked_model_without_autoscaling_has_nothing_to_simulate(monkeypatch, capsys):
    with_config(monkeypatch, **{"autoscaling:enabled": "false", "llm:replicas": "0"})
    assert main(["simulate"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("selfhost simulate dev: autoscaling is off and llm:replicas is 0")
    assert err.count("\n") == 1
