"""`make demo`: serve examples/site on 127.0.0.1 and fetch examples/urls.txt with fetcher.

Offline by design: the server is local, and the list includes deliberate failures (404s, a
refused connection, an unsupported scheme) so the summary and the exit status have something to
show. Paths under /slow/ are delayed so that the progress display is visible for a moment.
"""

from __future__ import annotations

import functools
import subprocess
import sys
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
SLOW_SECONDS = 0.6


class DemoHandler(SimpleHTTPRequestHandler):
    def translate_path(self, path: str) -> str:
        if path.startswith("/slow/"):
            time.sleep(SLOW_SECONDS)
            path = path[len("/slow") :]
        return super().translate_path(path)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> int:
    handler = functools.partial(DemoHandler, directory=str(HERE / "site"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host = f"127.0.0.1:{server.server_address[1]}"
    template = (HERE / "urls.txt").read_text()
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as urls:
        urls.write(template.replace("{base}", f"http://{host}").replace("{host}", host))
    command = [sys.executable, "-m", "fetcher", "-i", urls.name, "-j", "4"]
    print(f"$ fetcher -i urls.txt -j 4      (server: http://{host}/)", file=sys.stderr)
    status = subprocess.call(command)
    server.shutdown()
    Path(urls.name).unlink()
    meaning = {0: "every URL ok", 1: "some URLs failed", 3: "every URL failed"}
    print(
        f"\nexit status {status}: {meaning.get(status, 'see README')}"
        " (the list has four deliberate failures, so 1 is the expected status)",
        file=sys.stderr,
    )
    return 0 if status == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
