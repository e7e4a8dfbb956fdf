"""wrk (the Debian package) as the benchmarks' HTTP load: run it, read its figures and statuses."""

import asyncio
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Counts every response by status in each wrk thread and prints the sums when the run ends,
# so a run can prove it got nothing but 2xx (wrk itself lumps 2xx and 3xx together).
_STATUS_SCRIPT = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function response(status, headers, body)
  local key = "status_" .. status
  _G[key] = (_G[key] or 0) + 1
end
function done(summary, latency, requests)
  for code = 100, 599 do
    local total = 0
    for _, thread in ipairs(threads) do total = total + (thread:get("status_" .. code) or 0) end
    if total > 0 then io.write(string.format("status %d %d\\n", code, total)) end
  end
end
"""
# Sends each request with the next of several bearer tokens, so that the load is many users.
_TOKENS_SCRIPT = """
local tokens = {%s}
local index = 0
function request()
  index = index %% #tokens + 1
  return wrk.format(nil, nil, {["Authorization"] = "Bearer " .. tokens[index]})
end
"""
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass
class WrkResult:
    """What one wrk run measured, in its own words and as numbers."""

    requests: int
    seconds: float
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    # connect, read, write, timeout: wrk's "Socket errors" line (zeros when it printed none).
    socket_errors: dict[str, int]
    # Responses outside 2xx and 3xx (wrk's own count).
    non_2xx_3xx: int
    # Responses by status code, when the run counted them (count_statuses=True).
    statuses: dict[int, int] = field(default_factory=dict)
    output: str = ""

    @property
    def errors(self) -> int:
        """Socket errors of every kind."""
        return sum(self.socket_errors.values())

    @property
    def non_2xx(self) -> int:
        """Responses whose status was not 2xx (needs count_statuses=True to see 3xx)."""
        if self.statuses:
            return sum(n for code, n in self.statuses.items() if not 200 <= code < 300)
        return self.non_2xx_3xx


def wrk_path() -> str:
    """The wrk binary; a clear error when the Debian package is missing."""
    path = shutil.which("wrk")
    if path is None:
        raise RuntimeError("wrk is missing: install the Debian package (apt-get install wrk)")
    return path


async def run_wrk(
    url: str,
    *,
    connections: int,
    seconds: float,
    threads: int = 2,
    headers: dict[str, str] | None = None,
    timeout_seconds: float = 2.0,
    count_statuses: bool = False,
    bearer_tokens: Sequence[str] = (),
) -> WrkResult:
    """Run wrk against `url` and parse what it printed.

    With `bearer_tokens`, each request carries the next of them (round robin per thread).
    """
    command = [
        wrk_path(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={timeout_seconds:g}s",
        "--latency",
    ]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    lua = ""
    if count_statuses:
        lua += _STATUS_SCRIPT
    if bearer_tokens:
        lua += _TOKENS_SCRIPT % ", ".join(f'"{token}"' for token in bearer_tokens)
    with tempfile.TemporaryDirectory(prefix="userbus-wrk-") as scratch:
        if lua:
            script = Path(scratch) / "load.lua"
            script.write_text(lua)
            command += ["-s", str(script)]
        process = await asyncio.create_subprocess_exec(
            *command, url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        out, _ = await process.communicate()
    output = out.decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"wrk exited with {process.returncode}:\n{output}")
    return parse_wrk(output)


def _milliseconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def parse_wrk(output: str) -> WrkResult:
    """The figures of wrk's `--latency` report (and of the status script, if it ran)."""
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", output)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    latency = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", output)
    if not (total and rate and p50 and p99 and latency):
        raise RuntimeError(f"could not read wrk's report:\n{output}")
    errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    found = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if found:
        errors = dict(zip(errors, map(int, found.groups()), strict=True))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    statuses = {int(c): int(n) for c, n in re.findall(r"^status (\d+) (\d+)$", output, re.M)}
    return WrkResult(
        requests=int(total[1]),
        seconds=_milliseconds(total[2] + total[3]) / 1000,
        requests_per_second=float(rate[1]),
        p50_ms=_milliseconds(p50[1]),
        p99_ms=_milliseconds(p99[1]),
        max_ms=_milliseconds(latency[1]),
        socket_errors=errors,
        non_2xx_3xx=int(non_2xx[1]) if non_2xx else 0,
        statuses=statuses,
        output=output,
    )
