"""What every benchmark script shares: percentiles and writing the report (kept with the
`python -m semcache.bench` command, and re-exported here for the scripts)."""

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from semcache.bench.common import percentiles, write_report

__all__ = ["free_port", "percentiles", "start_app", "write_report"]

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(env: dict, log: Path) -> tuple[subprocess.Popen, str]:
    """`streamlit run app.py` on a free loopback port with ``env``, its output in ``log``;
    returns the process and its address once its health check answers."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.address",
         "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return process, url
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise SystemExit("The app did not start:\n" + log.read_text()[-2000:])
