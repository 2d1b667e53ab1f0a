"""The Server-Timing header of a request's stage seconds, and bench_behind's reading of it."""

from benchmarks.bench_behind import parse_server_timing
from serve.ingress import server_timing


def test_stage_seconds_become_milliseconds_and_back():
    seconds = {"decode": 0.0689, "first_chunk": 0.1359, "chunk_decode": 0.3812, "total": 0.5226}
    header = server_timing(seconds)
    assert header == "decode;dur=68.9, first_chunk;dur=135.9, chunk_decode;dur=381.2, total;dur=522.6"
    assert {k: round(v, 4) for k, v in parse_server_timing(header).items()} == seconds
    assert server_timing({}) == "" and parse_server_timing("") == {}
