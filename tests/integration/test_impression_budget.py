"""The impression log's budget on the request path (docs/attribution.md): a Firehose endpoint that fails
or hangs gets one request per answer, never the shared client's retries, and the answer goes on.

Real HTTP: a local server stands in for the Firehose endpoint (boto3 reads AWS_ENDPOINT_URL_FIREHOSE),
counting the PutRecordBatch requests it receives."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from nextpick.adapters.firehose_impressions import FirehoseImpressionLog
from nextpick.adapters.firehose_log import FirehoseEventLog
from nextpick.domain.impressions import Impression, Surface, new_recommendation_id
from nextpick.errors import StorageUnavailable


class BrokenFirehose(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.requests = 0
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: BrokenFirehose

    def do_POST(self) -> None:
        self.server.requests += 1
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.server.mode == "hang":
            time.sleep(3)  # longer than the request path's 1 s read timeout
        body = b'{"__type":"ServiceUnavailableException","message":"down"}'
        self.send_response(503)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def firehose(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[BrokenFirehose]:
    server = BrokenFirehose(request.param)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_FIREHOSE", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    yield server
    server.shutdown()
    server.server_close()


def impression() -> Impression:
    return Impression(
        recommendation_id=new_recommendation_id(),
        surface=Surface.USER,
        user_id="alice",
        model_version="v1",
        variant="control",
        items=["a", "b"],
        served_at=datetime.now(UTC),
    )


@pytest.mark.parametrize("firehose", ["fail", "hang"], indirect=True)
def test_a_broken_stream_gets_one_request_per_answer_and_the_answer_goes_on(
    firehose: BrokenFirehose,
) -> None:
    FirehoseImpressionLog("events").record([impression()])  # never raises
    assert firehose.requests == 1


# Not "hang": the shared client would wait 5 s per read, four times, to prove nothing more.
@pytest.mark.parametrize("firehose", ["fail"], indirect=True)
def test_the_event_log_writer_off_the_request_path_keeps_its_retries(firehose: BrokenFirehose) -> None:
    with pytest.raises(StorageUnavailable):
        FirehoseEventLog("events", sleep=lambda _: None).append(['{"user_id":"alice"}'])
    # The shared client (adapters.CLIENT_CONFIG, standard mode, max_attempts 3 retries): 4 requests for
    # the one call (a 503 is retried); no FailedPutCount answer came back for the writer's own re-sends.
    assert firehose.requests == 4
