"""`selfhost bench` against the fake server, whose delays make every metric predictable."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from benchmarks.bench_client import STREAMS_64, measure_client
from chat.bench import BenchSettings, LevelResult, percentile, run_benchmark
from selfhost.cli import main
from tests.chat.fake_server_process import API_KEY, FakeServer, run_queue_seconds, server_pace


def bench(server: FakeServer, settings: BenchSettings) -> list[LevelResult]:
    return asyncio.run(run_benchmark(server.endpoint(), settings, progress=lambda _line: None))


def test_metrics_match_the_servers_delays(start_fake_server: Callable[..., FakeServer]) -> None:
    server = start_fake_server(ttft=0.2, token_delay=0.01)
    settings = BenchSettings(
        model="fake-model", concurrency_levels=(1, 4), prompt_tokens=64, output_tokens=20, requests=8
    )

    waited_before = run_queue_seconds()
    single, four = bench(server, settings)
    # The time other processes held the CPUs while the client had work to do: machine load makes the
    # client read that much later, at most, than it does alone.
    starved = run_queue_seconds() - waited_before
    streams = server.stream_records()[1:]  # the warm-up request first, then 8 per level

    for level, pace in ((single, server_pace(streams[:8])), (four, server_pace(streams[8:]))):
        assert (level.completed, level.failed) == (8, 0)
        assert level.mean_output_tokens == 20
        assert level.ttft_ms and level.itl_ms and level.tpot_ms and level.e2el_ms
        # The server sends the first token 200 ms after the request arrives, then one every 10 ms: no
        # figure can be below that schedule. Above what the server really did, a figure may only carry
        # how late the client read: 60 ms of its own at most, plus the time load kept it waiting.
        late_ms = 60 + 1000 * starved
        assert 200 <= level.ttft_ms.p50 <= pace.ttft_ms + late_ms
        # End to end: 200 ms + 19 gaps of 10 ms = 390 ms.
        assert 390 <= level.e2el_ms.p50 <= pace.e2e_ms + late_ms
        # A token spacing is (last - first token read) / 19 gaps: a late read moves it by a 19th of the
        # delay. (Not the ITL median: chunks that piled up during a delay are read at once, 0 ms apart.)
        assert abs(level.tpot_ms.p50 - pace.tpot_ms) <= late_ms / 19
        assert abs(level.itl_ms.mean - pace.itl_ms) <= late_ms / 19
    # No client measures more than the schedule allows. Sequential requests of 0.39 s each: 1 / 0.39 =
    # 2.56 requests/s, x 20 tokens = 51.3 tokens/s.
    assert single.request_throughput <= 2.56 * 1.01
    assert single.output_token_throughput <= 51.3 * 1.01
    # Four at a time, two rounds of 0.39 s for 8 requests: 8 / 0.78 = 10.3 requests/s, 205 tokens/s.
    assert four.request_throughput <= 10.3 * 1.01
    assert four.output_token_throughput <= 205 * 1.01

    requests = server.completion_requests()
    assert len(requests) == 1 + 16  # the warm-up request, then 8 per level
    for body in requests:
        assert body["stream"] is True
        assert body["stream_options"] == {"include_usage": True}
        assert body["ignore_eos"] is True
        assert body["max_tokens"] == 20
    prompts = [body["messages"][0]["content"] for body in requests]
    # Every prompt differs from its first words on, so a prefix cache has nothing to reuse...
    assert len({prompt[:24] for prompt in prompts}) == len(prompts)
    # ...and is about 64 tokens long at 4 characters per token.
    assert all(64 * 4 <= len(prompt) <= 64 * 4 + 120 for prompt in prompts)


def test_64_concurrent_streams_complete_over_64_connections(
    start_fake_server: Callable[..., FakeServer],
) -> None:
    # Whether the client keeps up with them (its CPU share, how far it stretches the server's pace) is a
    # performance figure: benchmarks/bench_client.py measures it.
    figures = measure_client(start_fake_server(**STREAMS_64.server), STREAMS_64.settings)
    assert (figures["completed"], figures["failed"]) == (128, 0)
    assert (figures["streams"], figures["connections"]) == (128, 64)
    assert figures["ttft_ms_p50"] > 0 and figures["tpot_ms_p50"] > 0 and figures["itl_ms_mean"] > 0


def test_failed_requests_are_counted_with_their_reason(start_fake_server: Callable[..., FakeServer]) -> None:
    server = start_fake_server(fail_every=3)
    settings = BenchSettings(
        model="fake-model",
        concurrency_levels=(2,),
        prompt_tokens=16,
        output_tokens=4,
        requests=9,
        warmup_requests=0,
    )

    (level,) = bench(server, settings)

    assert (level.completed, level.failed) == (6, 3)
    assert level.errors == {
        "The model server failed on this request (500 Internal Server Error): Injected failure.": 3
    }


def test_duration_bounds_each_level(start_fake_server: Callable[..., FakeServer]) -> None:
    server = start_fake_server(ttft=0.05, token_delay=0.01)
    settings = BenchSettings(
        model="fake-model", concurrency_levels=(2,), prompt_tokens=16, output_tokens=5, duration=0.6
    )

    (level,) = bench(server, settings)

    # Each request takes 0.05 + 4 x 0.01 = 0.09 s: two workers fit about 2 x 0.6 / 0.09 = 13 in 0.6 s.
    assert 8 <= level.completed <= 14
    assert 0.6 <= level.duration_s <= 0.6 + 0.2


def test_completions_api_is_benchmarked_too(start_fake_server: Callable[..., FakeServer]) -> None:
    server = start_fake_server(ttft=0.05)
    settings = BenchSettings(
        model="fake-model",
        concurrency_levels=(2,),
        prompt_tokens=16,
        output_tokens=3,
        requests=4,
        api="completions",
    )

    (level,) = bench(server, settings)

    assert (level.completed, level.mean_output_tokens) == (4, 3)
    assert all("prompt" in body and "messages" not in body for body in server.completion_requests())


def test_percentile_interpolates_like_numpy() -> None:
    values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
    # numpy.percentile(values, [50, 95, 99]) == [5.5, 9.55, 9.91]
    assert [round(percentile(values, p), 2) for p in (50, 95, 99)] == [5.5, 9.55, 9.91]
    assert percentile([4.0], 99) == 4.0


def test_cli_prints_a_table_and_writes_json(
    fake_server: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report_file = tmp_path / "bench.json"

    code = main(
        [
            "bench",
            "--base-url",
            fake_server.base_url,
            "--api-key",
            API_KEY,
            "--concurrency",
            "1,2",
            "--requests",
            "4",
            "--prompt-tokens",
            "32",
            "--output-tokens",
            "8",
            "--json",
            str(report_file),
        ]
    )

    assert code == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == [
        "concurrency",
        "ok",
        "errors",
        "req/s",
        "out",
        "tok/s",
        "TTFT",
        "ms",
        "p50/p95/p99",
        "ITL",
        "ms",
        "p50/p95/p99",
        "TPOT",
        "ms",
        "p50",
        "E2E",
        "s",
        "p50/p95/p99",
    ]
    assert [row.split()[:3] for row in table[2:4]] == [["1", "4", "0"], ["2", "4", "0"]]
    report = json.loads(report_file.read_text())
    assert report["endpoint"] == fake_server.base_url
    assert report["settings"]["model"] == "fake-model"
    assert [level["concurrency"] for level in report["levels"]] == [1, 2]
    assert set(report["levels"][0]["ttft_ms"]) == {"mean", "p50", "p95", "p99"}
    assert API_KEY not in report_file.read_text()


def test_cli_fails_on_a_wrong_key(fake_server: FakeServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--base-url", fake_server.base_url, "--api-key", "wrong", "--requests", "1"]) == 1

    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(
            "The endpoint refused the API key (401 Unauthorized); check --api-key or the stack's api_key output."
        )
    )


def test_cli_fails_when_the_endpoint_is_down(
    fake_server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_server.stop()

    assert main(["bench", "--base-url", fake_server.base_url, "--requests", "1"]) == 1

    err = capsys.readouterr().err
    assert f"Nothing answers at {fake_server.base_url}" in err
    assert "Traceback" not in err


def test_cli_stops_when_the_server_fails_every_request(
    start_fake_server: Callable[..., FakeServer], capsys: pytest.CaptureFixture[str]
) -> None:
    server = start_fake_server(completion_status=500)

    assert main(["bench", "--base-url", server.base_url, "--api-key", API_KEY, "--requests", "2"]) == 1

    assert (
        "The warm-up request failed: The model server failed on this request (500" in capsys.readouterr().err
    )


def test_a_running_level_reports_its_progress(
    fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every PROGRESS_SECONDS a level says how far it is; shortened here so a short level reports a few times.
    monkeypatch.setattr("chat.bench.PROGRESS_SECONDS", 0.05)
    lines: list[str] = []
    # A level of 0.5 s: it runs for ten progress periods whatever the fake server's pace.
    settings = BenchSettings(
        model="fake-model", concurrency_levels=(2,), prompt_tokens=64, output_tokens=20, duration=0.5
    )
    asyncio.run(run_benchmark(fake_server.endpoint(), settings, progress=lines.append))
    assert lines[0] == "concurrency 2: 0.5 s"
    within = [line for line in lines[1:] if line.startswith("  concurrency 2: ")]
    assert len(within) >= 3, lines
    assert all(
        " of 0.5 s, " in line and " answered, " in line and line.endswith(" failed") for line in within
    )
