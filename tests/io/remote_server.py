"""A small HTTP server on 127.0.0.1 with byte-range support, counting what each client read.

`serve(folder)` is a context manager yielding (base URL, `Counts`); it serves the files of `folder`, answers
`Range: bytes=a-b` with 206 and the slice, and records per User-Agent the requests and bytes sent, so that a
test can tell how much of a remote raster each process read (each sets its own GDAL_HTTP_USERAGENT). It
stops when the block ends.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections import defaultdict
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bytes: dict[str, int] = defaultdict(int)
        self.requests: dict[str, list[str]] = defaultdict(list)

    def add(self, agent: str, request: str, sent: int) -> None:
        with self.lock:
            self.bytes[agent] += sent
            self.requests[agent].append(request)


def _handler(folder: Path, counts: Counts) -> type[BaseHTTPRequestHandler]:
    class RangeHandler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def _body(self) -> tuple[int, bytes] | None:
            path = folder / self.path.lstrip("/").split("?", 1)[0]
            if not path.is_file():
                self.send_error(404)
                return None
            data = path.read_bytes()
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
            if match is None:
                return 200, data
            first = int(match.group(1))
            last = min(int(match.group(2)) if match.group(2) else len(data) - 1, len(data) - 1)
            if first >= len(data):
                self.send_error(416)
                return None
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {first}-{last}/{len(data)}")
            return 206, data[first : last + 1]

        def _answer(self, with_body: bool) -> None:
            answer = self._body()
            if answer is None:
                return
            status, body = answer
            if status == 200:
                self.send_response(200)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if with_body:
                self.wfile.write(body)
            agent = self.headers.get("User-Agent", "")
            counts.add(
                agent, f"{self.command} {self.headers.get('Range', 'all')}", len(body) if with_body else 0
            )

        def do_GET(self) -> None:
            self._answer(True)

        def do_HEAD(self) -> None:
            self._answer(False)

    return RangeHandler


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[tuple[str, Counts]]:
    counts = Counts()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(Path(folder), counts))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", counts
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
