"""The command line's progress, summaries and logging, as a user sees them: real processes,
in a pseudo-terminal when it matters, against a loopback server."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pexpect
import pyte

import helpers
from pulp_aio_download.cli.progress import ProgressBar, plain_line
from pulp_aio_download.models import ActiveTransfer, ProgressReport
from pulp_aio_download.testing import Fault, FaultServer

ESC = "\x1b"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULP_AIO_DOWNLOAD")}
    env.pop("NO_COLOR", None)
    env["TERM"] = "xterm-256color"
    return env


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return helpers.run_cli(*args, base_env=_env())


def run_in_pty(*args: str, columns: int = 140) -> tuple[int, str]:
    """Run the CLI with stdin/stdout/stderr on a pseudo-terminal; (exit code, output)."""
    child = pexpect.spawn(
        sys.executable,
        ["-m", "pulp_aio_download", *args],
        env=_env(),
        dimensions=(40, columns),
        timeout=120,
        encoding="utf-8",
    )
    try:
        output = child.read()
    finally:
        child.close()
    assert child.exitstatus is not None, "the CLI was killed"
    return child.exitstatus, output


def _manifest(server: FaultServer, tmp_path: Path, count: int = 40) -> tuple[Path, list[dict]]:
    entries = []
    for i in range(count):
        data = os.urandom(1000 + 37 * i)
        url = server.add(f"/repo/{i}.bin", data)
        entries.append({"url": url, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)})
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    return path, entries


def test_json_progress_lines_parse_and_add_up(threaded_server: FaultServer, tmp_path: Path) -> None:
    manifest, entries = _manifest(threaded_server, tmp_path, 60)
    bad = threaded_server.add("/repo/bad", b"", faults=Fault(status=404))
    with manifest.open("a") as f:
        f.write(json.dumps({"url": bad}) + "\n")
    proc = run_cli("sync", str(manifest), "--progress", "json", "--data-dir", str(tmp_path / "d"))
    assert proc.returncode == 1, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines, "no progress line"
    keys = {
        "message", "code", "total", "done", "failed", "cached", "retried",
        "bytes_total", "bytes_done", "bytes_transferred", "state", "elapsed", "rate",
    }  # fmt: skip
    assert all(set(line) == keys for line in lines)
    assert all(line["code"] == "download" and line["total"] == 61 for line in lines)
    assert [line["state"] for line in lines[:-1]] == ["running"] * (len(lines) - 1)
    final = lines[-1]
    good_bytes = sum(e["size"] for e in entries)
    assert final["state"] == "failed"
    assert final["done"] + final["failed"] == final["total"] == 61
    assert (final["done"], final["failed"]) == (60, 1)
    assert final["bytes_done"] == final["bytes_total"] == final["bytes_transferred"] == good_bytes
    done = [line["done"] for line in lines]
    assert done == sorted(done)
    # The human summary goes to stderr, so stdout stays machine-readable.
    assert "60 done" in proc.stderr and f"FAILED {bad}" in proc.stderr
    assert ESC not in proc.stdout + proc.stderr


def test_bar_renders_in_a_terminal(threaded_server: FaultServer, tmp_path: Path) -> None:
    manifest, _ = _manifest(threaded_server, tmp_path)
    code, output = run_in_pty("sync", str(manifest), "--data-dir", str(tmp_path / "d"))
    assert code == 0, output
    assert ESC in output  # the live display drew
    assert "40/40 files" in output
    assert "Traceback" not in output
    assert "40 files: 40 done" in output


def test_progress_none_in_a_terminal_draws_nothing(
    threaded_server: FaultServer, tmp_path: Path
) -> None:
    manifest, _ = _manifest(threaded_server, tmp_path)
    code, output = run_in_pty(
        "sync", str(manifest), "--progress", "none", "--data-dir", str(tmp_path / "d")
    )
    assert code == 0, output
    assert ESC not in output
    assert output.strip().startswith("40 files: 40 done")


def test_bar_off_a_terminal_is_plain_lines(threaded_server: FaultServer, tmp_path: Path) -> None:
    manifest, _ = _manifest(threaded_server, tmp_path)
    proc = run_cli("sync", str(manifest), "--progress", "bar", "--data-dir", str(tmp_path / "d"))
    assert proc.returncode == 0, proc.stderr
    assert ESC not in proc.stdout + proc.stderr
    assert "Downloading 40 files: 40/40 files" in proc.stderr
    assert "completed in" in proc.stderr.splitlines()[-1]
    # Not on a terminal and nothing asked: no progress at all.
    proc = run_cli("sync", str(manifest), "--data-dir", str(tmp_path / "d"))
    assert proc.returncode == 0 and proc.stderr == ""


def test_summary_lists_each_failure_on_one_line(
    threaded_server: FaultServer, tmp_path: Path
) -> None:
    manifest, _ = _manifest(threaded_server, tmp_path, 3)
    data = b"served corrupt" * 100
    corrupt = threaded_server.add("/c.bin", data, faults=Fault(flip_byte=5))
    missing = threaded_server.add("/m.bin", b"", faults=Fault(status=404))
    sha = hashlib.sha256(data).hexdigest()
    with manifest.open("a") as f:
        f.write(json.dumps({"url": corrupt, "sha256": sha, "size": len(data)}) + "\n")
        f.write(json.dumps({"url": missing}) + "\n")
    d = str(tmp_path / "d")
    proc = run_cli("sync", str(manifest), "--progress", "none", "--data-dir", d)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    # The corrupt file was tried 3 times (the default policy): it counts as retried.
    assert lines[0].startswith("5 files: 3 done (0 already stored), 2 failed, 1 retried;")
    assert " transferred in " in lines[0] and "/s)" in lines[0]
    got = lines[1].removesuffix("; gave up after 3 attempts")[-64:]
    assert lines[1] == (
        f"FAILED {corrupt}: sha256 mismatch: expected {sha}, got {got}; gave up after 3 attempts"
    )
    assert lines[2].startswith(f"FAILED {missing}: ") and "404" in lines[2]
    assert len(lines) == 3

    proc = run_cli("sync", str(manifest), "--progress", "none", "--json", "--data-dir", d)
    assert proc.returncode == 1
    summary = json.loads(proc.stdout)
    assert summary["files"] == 5 and summary["done"] == 3 and summary["failed"] == 2
    assert summary["cached"] == 3 and summary["bytes"] == 0  # stored by the first run
    assert summary["elapsed"] > 0 and summary["rate"] == 0
    assert [f["url"] for f in summary["failures"]] == [corrupt, missing]
    assert [f["error"] for f in summary["failures"]] == ["DigestMismatch", "HTTPStatusError"]
    assert [f["attempts"] for f in summary["failures"]] == [3, 1]
    assert all("\n" not in f["reason"] for f in summary["failures"])


def test_verbose_logging_never_shows_credentials(
    threaded_server: FaultServer, tmp_path: Path
) -> None:
    data = b"secret content" * 10
    url = threaded_server.add("/private.bin", data, auth=("alice", "s3cr3t-pw"))
    bad = threaded_server.add("/private-missing", b"", faults=Fault(status=404))
    with_creds = url.replace("http://", "http://alice:s3cr3t-pw@")
    bad_creds = bad.replace("http://", "http://alice:s3cr3t-pw@")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        json.dumps({"url": with_creds, "sha256": hashlib.sha256(data).hexdigest()})
        + "\n"
        + json.dumps({"url": bad_creds})
        + "\n"
    )
    for progress in ("json", "bar"):
        proc = run_cli(
            "sync", str(manifest), "-vv", "--progress", progress,
            "--data-dir", str(tmp_path / progress),
        )  # fmt: skip
        assert proc.returncode == 1, proc.stderr
        assert "DEBUG" in proc.stderr or "INFO" in proc.stderr  # -vv logs something
        assert "s3cr3t-pw" not in proc.stdout + proc.stderr
        assert f"FAILED {bad}" in proc.stdout + proc.stderr
    code, output = run_in_pty("sync", str(manifest), "-vv", "--data-dir", str(tmp_path / "pty"))
    assert code == 1
    assert "s3cr3t-pw" not in output and "alice:" not in output


def _report(**kw: object) -> ProgressReport:
    values: dict[str, object] = dict(
        message="Downloading 10 files", code="download", total=10, done=4, failed=1,
        bytes_total=10 * 1024 * 1024, bytes_done=4 * 1024 * 1024, state="running",
        elapsed=2.0,
    )  # fmt: skip
    values.update(kw)
    values.setdefault("bytes_transferred", values["bytes_done"])
    return ProgressReport(**values)  # type: ignore[arg-type]


def test_plain_bar_lines_are_rate_limited_and_final() -> None:
    out = io.StringIO()
    bar = ProgressBar(out, plain_interval=3600)
    assert not bar.rich  # a StringIO is no terminal
    bar.update(_report())
    bar.update(_report(done=5))  # within the interval: not written
    bar.update(_report(done=9, failed=1, state="failed", bytes_done=9 * 1024 * 1024))
    bar.close()
    bar.update(_report(done=10))  # after close: ignored
    lines = out.getvalue().splitlines()
    assert lines == [
        "Downloading 10 files: 5/10 files (1 failed), 4.0 MiB of 10.0 MiB, 2.0 MiB/s, ETA 3s",
        "Downloading 10 files: 10/10 files (1 failed), 9.0 MiB of 10.0 MiB, 4.5 MiB/s, "
        "failed in 2s",
    ]


def test_plain_line_without_sizes() -> None:
    line = plain_line(_report(bytes_total=0, bytes_done=0, cached=2))
    assert line == (
        "Downloading 10 files: 5/10 files (2 already stored, 1 failed), 0 B, 0 B/s, ETA 2s"
    )


def test_rich_bar_shows_active_transfers(tmp_path: Path) -> None:
    # Draw into a file that claims to be a terminal: the bar's own output, no process.
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    bar = ProgressBar(out)
    assert bar.rich
    active = (ActiveTransfer("http://h/repo/big.iso", 1024, 4096),)
    bar.update(_report(active=active))
    bar.update(_report(done=10, failed=0, state="completed", bytes_done=10 * 1024 * 1024))
    bar.close()
    text = out.getvalue()
    assert "big.iso" in text and "10/10 files" in text


def test_status_line_on_a_terminal_without_rich() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    bar = ProgressBar(out, use_rich=False)
    assert not bar.rich
    bar.update(_report(message="A much longer message than the next one"))
    bar.update(_report())
    bar.update(_report(done=9, state="failed"))
    bar.close()
    text = out.getvalue()
    assert ESC not in text
    assert text.count("\r") == 3 and text.endswith("failed in 2s\n")
    second = text.split("\r")[2]
    assert second.startswith("Downloading 10 files: 5/10") and second.endswith(" ")


# -- issue 11 item 8: reports that agree ----------------------------------------------------

FAST_REMOTES = "[remotes.default.retry]\nattempts = 3\nbackoff = 0.01\nmax_backoff = 0.05\n"


def _fast_remotes(tmp_path: Path) -> str:
    path = tmp_path / "remotes.toml"
    path.write_text(FAST_REMOTES)
    return str(path)


def _summary_counts(line: str) -> dict[str, str]:
    """``'5 files: 3 done (1 already stored), 2 failed, 1 retried; ...'`` → the numbers."""
    words = line.replace(",", " ").replace("(", " ").replace(")", " ").replace(";", " ").split()
    return {
        word: words[i - 1] for i, word in enumerate(words) if word in ("done", "failed", "retried")
    }


def test_summary_and_progress_agree_on_retried_and_rate(
    threaded_server: FaultServer, tmp_path: Path
) -> None:
    manifest, entries = _manifest(threaded_server, tmp_path, 4)
    flaky_data = b"flaky" * 1000
    flaky = threaded_server.add("/flaky", flaky_data, faults=[Fault(status=503)])
    down = threaded_server.add("/down", b"never", faults=Fault(status=503))
    with manifest.open("a") as f:
        sha = hashlib.sha256(flaky_data).hexdigest()
        f.write(json.dumps({"url": flaky, "sha256": sha, "size": len(flaky_data)}) + "\n")
        f.write(json.dumps({"url": down}) + "\n")
    d = str(tmp_path / "d")
    remotes = _fast_remotes(tmp_path)
    args = ("sync", str(manifest), "--progress", "json", "--data-dir", d, "--remotes", remotes)
    proc = run_cli(*args)
    assert proc.returncode == 1, proc.stderr
    final = json.loads(proc.stdout.splitlines()[-1])
    summary, failure = proc.stderr.splitlines()[-2:]
    # Retried: files whose source needed more than one attempt, done (flaky) or failed (down).
    assert final["retried"] == 2
    assert _summary_counts(summary) == {"done": "5", "failed": "1", "retried": "2"}
    assert failure == f"FAILED {down}: HTTP 503 Service Unavailable; gave up after 3 attempts"
    assert threaded_server.stats("/down").requests == 3
    transferred = sum(e["size"] for e in entries) + len(flaky_data)
    assert final["bytes_transferred"] == final["bytes_done"] == transferred

    # Everything is stored now: a re-run transfers nothing, so its rate is 0, not the speed
    # of reading the store.
    proc = run_cli(*args)
    assert proc.returncode == 1, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    final = lines[-1]
    assert final["cached"] == 5 and final["bytes_done"] == transferred
    assert all(line["rate"] == 0 and line["bytes_transferred"] == 0 for line in lines)
    summary = proc.stderr.splitlines()[-2]
    assert _summary_counts(summary) == {"done": "5", "failed": "1", "retried": "1"}
    assert "; 0 B transferred in " in summary and summary.endswith(" s (0 B/s)")


def test_one_file_is_one_file(threaded_server: FaultServer, tmp_path: Path) -> None:
    manifest, _ = _manifest(threaded_server, tmp_path, 1)
    d = str(tmp_path / "d")
    proc = run_cli("sync", str(manifest), "--progress", "json", "--data-dir", d)
    assert proc.returncode == 0, proc.stderr
    assert {json.loads(line)["message"] for line in proc.stdout.splitlines()} == {
        "Downloading 1 file"
    }
    assert proc.stderr.startswith("1 file: 1 done (0 already stored), 0 failed, 0 retried;")
    proc = run_cli("sync", str(manifest), "--progress", "bar", "--data-dir", d)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith("Downloading 1 file: 1/1 file (1 already stored), ")
    assert "files" not in proc.stderr + proc.stdout


def _screen_rows(output: str, columns: int) -> list[str]:
    """What a terminal of ``columns`` columns shows after ``output``, row by row."""
    screen = pyte.Screen(columns, 40)
    pyte.Stream(screen).feed(output)
    return [row.rstrip() for row in screen.display if row.strip()]


def test_bar_fits_80_columns_with_failures_in_binary_units(
    threaded_server: FaultServer, tmp_path: Path
) -> None:
    # Wide counts (300 files, 1 failed) and some slow files, so frames are drawn mid-run.
    manifest, entries = _manifest(threaded_server, tmp_path, 300)
    for entry in entries[:6]:
        threaded_server.set_faults(urlsplit(entry["url"]).path, Fault(trickle=4000))
    bad = threaded_server.add("/repo/bad", b"", faults=Fault(status=404))
    with manifest.open("a") as f:
        f.write(json.dumps({"url": bad}) + "\n")
    code, output = run_in_pty(
        "sync", str(manifest), "--data-dir", str(tmp_path / "d"), "--concurrency", "4",
        columns=80,
    )  # fmt: skip
    assert code == 1, output
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output)
    frames = [line for line in re.split(r"\r\n|\r|\n", plain) if "Downloading" in line]
    assert len(frames) > 2, plain  # the live display drew while running, then the end
    for line in frames:
        # The whole overall row on one line of at most 80 columns: counts, bytes, rate.
        assert len(line) <= 80 and "/301 files" in line and "/s" in line, line
    assert any("1 failed" in line and "MiB" in line for line in frames)
    rows = _screen_rows(output, 80)
    overall = [row for row in rows if "Downloading" in row]
    assert len(overall) == 1, rows
    assert re.search(r" 301/301 files 1 failed \d+\.\d/1\.9 MiB \d+\.\d [KM]iB/s$", overall[0])
    # One unit system: binary, as the summary.
    assert not re.search(r"\d ?(kB|MB|GB)\b", plain), plain
    assert "; 1.9 MiB transferred in " in plain


def test_verbose_shows_each_retry_and_resume(threaded_server: FaultServer, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    url = threaded_server.add(
        "/cut.bin", data, faults=[Fault(truncate_at=100_000)], auth=("alice", "s3cr3t-pw")
    )
    flaky = threaded_server.add("/flaky.bin", b"flaky" * 10, faults=[Fault(status=503)])
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        json.dumps({"url": url.replace("http://", "http://alice:s3cr3t-pw@"), "size": len(data)})
        + "\n"
        + json.dumps({"url": flaky})
        + "\n"
    )
    proc = run_cli(
        "sync", str(manifest), "-v", "--progress", "none", "--data-dir", str(tmp_path / "d"),
        "--remotes", _fast_remotes(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "s3cr3t-pw" not in proc.stdout + proc.stderr
    info = [line for line in proc.stderr.splitlines() if " INFO " in line]
    retries = [line for line in info if "retrying in" in line]
    resumes = [line for line in info if "resumes at byte" in line]
    assert len(retries) == 2 and len(resumes) == 1, info
    cut = next(line for line in retries if url in line)
    assert f"{url}: attempt 1 of 3 failed (ConnectionFailed: " in cut
    assert f"{flaky}: attempt 1 of 3 failed (HTTPStatusError: HTTP 503" in "".join(retries)
    assert f"{url}: attempt 2 of 3 resumes at byte 100000 (after ConnectionFailed: " in resumes[0]


def test_get_shows_progress(threaded_server: FaultServer, tmp_path: Path) -> None:
    data = os.urandom(200_000)
    url = threaded_server.add("/one.bin", data, faults=[Fault(trickle=400_000), None])
    sha = hashlib.sha256(data).hexdigest()
    d = str(tmp_path / "d")
    proc = run_cli("get", url, "--sha256", sha, "--progress", "json", "--data-dir", d)
    assert proc.returncode == 0, proc.stderr
    reports = [json.loads(line) for line in proc.stdout.splitlines()]
    assert reports and reports[-1]["state"] == "completed"
    assert (reports[-1]["done"], reports[-1]["total"]) == (1, 1)
    assert reports[-1]["bytes_done"] == reports[-1]["bytes_transferred"] == len(data)
    assert any(r["state"] == "running" and 0 < r["bytes_done"] < len(data) for r in reports)
    # stdout carries only the JSON lines; the stored location goes to stderr.
    stored = Path(proc.stderr.strip())
    assert stored.read_bytes() == data
    code, output = run_in_pty("get", url, "--sha256", sha, "--data-dir", str(tmp_path / "e"))
    assert code == 0, output
    assert ESC in output and "1/1 file" in output
    assert output.rstrip().splitlines()[-1].endswith(sha[2:])  # the location, last
    proc = run_cli("get", url, "--sha256", sha, "--progress", "none", "--data-dir", d)
    assert proc.returncode == 0 and proc.stderr == ""
    assert Path(proc.stdout.strip()) == stored
