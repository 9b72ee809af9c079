"""``jointspace serve`` as a user runs it: a busy port is one error line; JSON access logs."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

import jointspace


def serve_command(app, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "jointspace.cli",
        "serve",
        str(app.state.model_dir),
        "--index",
        app.state.index_uri,
        "--port",
        str(port),
    ]


def environment() -> dict[str, str]:
    # The checkout under test, whatever the working directory.
    src = str(Path(jointspace.__file__).parents[1])
    return {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1", "COLUMNS": "80"}


def test_a_busy_port_is_one_error_line_before_anything_is_announced(served_app):
    app, _ = served_app
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = subprocess.run(
            serve_command(app, port), capture_output=True, text=True, env=environment(), timeout=120
        )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert f"error: port {port} on 127.0.0.1 is already in use" in output
    assert "serving" not in output and "Traceback" not in output
    assert len(output.strip().splitlines()) == 1


def test_each_request_is_one_json_line_on_stderr(served_app, tmp_path):
    app, _ = served_app
    log = (tmp_path / "stderr.log").open("w+")
    server = subprocess.Popen(
        serve_command(app, 0), stdout=subprocess.DEVNULL, stderr=log, env=environment()
    )
    try:
        url = None
        deadline = time.monotonic() + 120
        while url is None and time.monotonic() < deadline and server.poll() is None:
            log.seek(0)
            for line in log.read().splitlines():
                if line.startswith("serving ") and " on http://" in line:
                    url = line.rsplit(" on ", 1)[1]
            time.sleep(0.2)
        assert url is not None, (tmp_path / "stderr.log").read_text()
        assert httpx.get(f"{url}/health", timeout=30).status_code == 200
        assert httpx.post(f"{url}/search", data={"k": "0"}, timeout=30).status_code == 422
        time.sleep(0.3)
    finally:
        server.terminate()
        server.wait(30)
    lines = (tmp_path / "stderr.log").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert [(r["method"], r["path"], r["status"]) for r in records] == [
        ("GET", "/health", 200),
        ("POST", "/search", 422),
    ]
    assert all(r["ms"] >= 0 and r["client"].startswith("127.0.0.1:") for r in records)
    assert "Traceback" not in "\n".join(lines)
