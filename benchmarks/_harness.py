"""What every Segue benchmark shares: a JACK dummy server, a real daemon, a game's OSC
socket, machine facts and the JSON/table output.

Benchmarks run the daemon exactly as a user does (`python -m engine run`), on a private
JACK dummy server (a real, paced PortAudio stream with no sound card), and talk to it over
real UDP on 127.0.0.1. Nothing here imports from tests/.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pythonosc.osc_packet import OscPacket

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python benchmarks/x.py` from anywhere finds the engine
    sys.path.insert(0, str(REPO))

from engine.control.osc import encode  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SAMPLE_RATE = 48000
START_TIMEOUT_S = 120.0
POOL_DEPTH = 2  # engine.control.daemon.DaemonConfig.pool_depth: loops kept ready per state


class BenchError(RuntimeError):
    """A benchmark could not run (not a budget breach): one line for the user."""


# -- machine and versions -------------------------------------------------------------------


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict:
    """CPU model, cores, memory and the load average right now."""
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        mem_gib = round(kb / 2**20, 1)
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem_gib,
            "load_average": load_average(), "kernel": platform.release()}  # fmt: skip


def versions() -> dict:
    out = {"python": platform.python_version(), "numpy": np.__version__}
    try:
        import onnxruntime

        out["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        out["onnxruntime"] = None
    try:
        import sounddevice

        out["sounddevice"] = sounddevice.__version__
        out["portaudio"] = sounddevice.get_portaudio_version()[1]
    except (ImportError, OSError):
        out["sounddevice"] = out["portaudio"] = None
    out["jackd"] = _jackd_version()
    out["segue_commit"] = _git_commit()
    return out


def _jackd_version() -> str | None:
    if shutil.which("jackd") is None:
        return None
    result = subprocess.run(["jackd", "--version"], capture_output=True, text=True, timeout=10)
    match = re.search(r"version (\S+)", result.stdout + result.stderr)
    return match.group(1) if match else None


def _git_commit() -> str | None:
    try:
        git = {"cwd": REPO, "capture_output": True, "text": True, "timeout": 10}
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], **git).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], **git)
        dirty = dirty.stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}{'+dirty' if dirty.strip() else ''}" if head else None


# -- figures and output ------------------------------------------------------------------------


def summary(values, percentiles=(50, 95, 99)) -> dict:
    """n, mean, the given percentiles and max of a list of numbers (ms or s)."""
    a = np.asarray([v for v in values if v is not None], dtype=float)
    if a.size == 0:
        return {"n": 0}
    out = {"n": int(a.size), "mean": round(float(a.mean()), 3)}
    for p in percentiles:
        out[f"p{str(p).replace('.', '_')}"] = round(float(np.percentile(a, p)), 3)
    out["max"] = round(float(a.max()), 3)
    return out


def table(rows: list[list], headers: list[str]) -> str:
    cells = [[str(h) for h in headers]] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                       enumerate(zip(row, widths, strict=True))) for row in cells]  # fmt: skip
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return "-" if value is None else str(value)


def write_result(name: str, payload: dict, out: Path | None = None) -> Path:
    path = out or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    return path


def header(name: str, settings: dict) -> dict:
    """The common head of every result file."""
    return {"benchmark": name, "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": machine(), "versions": versions(), "settings": settings}  # fmt: skip


def breach(message: str) -> str:
    """A budget breach, printed with the load it happened under."""
    line = f"BREACH: {message} (load average now {', '.join(map(str, load_average()))})"
    print(line, file=sys.stderr)
    return message


def generator_breaches(status: dict | None, use_model: bool) -> list[str]:
    """The model must have written every loop when it was asked for: a daemon that fell back
    to rules (the model did not load, or failed on a loop) measures something else."""
    if not use_model or status is None:
        return []
    out = []
    if status.get("generator_default") != "model":
        out.append(breach(f"the daemon runs the {status.get('generator_default')} generator, "
                          "not the model (it fell back at start-up)"))  # fmt: skip
    fallbacks = status.get("counters", {}).get("pool_fallbacks", 0)
    if fallbacks:
        out.append(breach(f"{fallbacks} loop(s) fell back to the rule-based generator"))
    return out


def blocks(sink: dict) -> int:
    """Blocks the sink produced (the ring's writer; `callbacks` in older daemons)."""
    return sink.get("blocks_written", sink.get("callbacks", 0))


def late_polls(sink: dict) -> int | None:
    """Times the sink found the device's ring empty: it was late (reported, not gated: the
    device's short reads are the underrun count itself)."""
    return sink.get("ring_empty_seen", sink.get("missed_blocks"))


# -- the host's own stalls -------------------------------------------------------------------
#
# On a virtual machine the host itself pauses now and then: both virtual CPUs stop for 4-25 ms
# (measured here: every 2-60 s, more under load). A real-time thread can't run through that, so
# a JACK dummy server and every client on it miss periods - an empty C client
# (jack_simple_client) as much as Segue's device process. benchmarks/_stallwatch.py measures
# those pauses with a sleeper at a priority above anything of Segue's on each CPU. An underrun
# inside such a window is the host's and is reported; any other underrun is Segue's and fails.

STALL_MIN_MS = 5.0  # one JACK period at 256 frames / 48 kHz is 5.3 ms: shorter ones are absorbed
STALL_BEFORE_S = 0.05  # an underrun counted just before the watch's line (clocks, polling)
STALL_AFTER_S = 0.15  # the device catching up after the pause drains the ring: its underruns


@dataclass
class StallWatch:
    """benchmarks/_stallwatch.py for the life of a benchmark: the host's own stalls."""

    path: Path
    proc: subprocess.Popen | None = None
    kept: list[str] | None = None  # the lines, read when it stopped (its folder may go)

    def start(self) -> StallWatch:
        self.path.write_text("")
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("_stallwatch.py")), str(self.path)],
            stdin=subprocess.DEVNULL, preexec_fn=_all_cores,
        )  # fmt: skip
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        self.kept = self.lines()

    def lines(self) -> list[str]:
        if self.kept is not None:
            return self.kept
        try:
            return self.path.read_text().splitlines()
        except OSError:
            return []

    def windows(self, min_ms: float = STALL_MIN_MS) -> list[tuple[float, float]]:
        """(start, end) on CLOCK_MONOTONIC of every stall of at least `min_ms` on any CPU."""
        out = []
        for line in self.lines():
            with contextlib.suppress(ValueError):
                item = json.loads(line)
                if "at" in item and item["late_ms"] >= min_ms:
                    out.append((item["at"], item["at"] + item["late_ms"] / 1000))
        return sorted(out)

    def realtime(self) -> bool | None:
        """Whether the sleepers had real-time priority (without it they also see contention)."""
        with contextlib.suppress(ValueError, IndexError, KeyError):
            return bool(json.loads(self.lines()[0])["realtime"])
        return None


def in_stall(lo: float, hi: float, windows: list[tuple[float, float]]) -> bool:
    """Whether [lo, hi] (an underrun's time, or its uncertainty) meets a host stall's window."""
    return any(lo <= end + STALL_AFTER_S and hi >= start - STALL_BEFORE_S
               for start, end in windows)  # fmt: skip


def host_stall_figures(watch: StallWatch | None, since: float, until: float) -> dict:
    if watch is None:
        return {"watched": False}
    windows = [w for w in watch.windows() if since - 1 <= w[0] <= until]
    every = [w for w in watch.windows(min_ms=0) if since - 1 <= w[0] <= until]
    return {
        "watched": True, "realtime": watch.realtime(),
        f"stalls_from_{STALL_MIN_MS:g}_ms": len(windows),
        "stalls_from_3_ms": len(every),
        "max_ms": round(max(((e - s) * 1000 for s, e in every), default=0.0), 1),
    }  # fmt: skip


def unexplained(count: int, times: list[float], since: float, windows: list) -> dict:
    """Of `count` underruns counted since `since` (CLOCK_MONOTONIC), those outside every host
    stall. `times` are the sink's last 64 underrun times: underruns it has no time for are
    taken as unexplained."""
    timed = [t for t in times if t >= since][-count:] if count > 0 else []
    host = sum(1 for t in timed if in_stall(t, t, windows))
    return {"count": count, "in_host_stalls": host, "unexplained": count - host}


def underrun_figures(ready: dict, final: dict, played: dict | None,
                     watch: StallWatch | None = None, since: float | None = None,
                     capture: Capture | None = None) -> dict:  # fmt: skip
    """Underruns in the measured window, counted twice: by the daemon (its sink's count from
    the device clock against the frames handed over) and from the capture of what played;
    each split into the host's (inside a stall the stall watch saw) and Segue's."""
    since = since if since is not None else 0.0
    until = time.monotonic()
    windows = watch.windows() if watch is not None else []
    count = final.get("underruns", 0) - ready.get("underruns", 0)
    status = unexplained(count, final.get("sink", {}).get("underrun_times", []), since, windows)
    capture_unexplained = None
    if played is not None:
        capture_unexplained = played["gaps"]
        if capture is not None:
            capture_unexplained = sum(
                1 for at in played["gap_times_s"]
                if not in_stall(capture.t0 + at, capture.t0 + at + capture.t0_slack, windows)
            )  # fmt: skip
    return {
        "status_at_ready": ready.get("underruns", 0),
        "status": count,
        "status_in_host_stalls": status["in_host_stalls"],
        "status_unexplained": status["unexplained"],
        "capture_gaps": None if played is None else played["gaps"],
        "capture_gap_frames": None if played is None else played["gap_frames"],
        "capture_first_gaps": None if played is None else played["first_gaps"],
        "capture_unexplained": capture_unexplained,
        "ring_empty_seen": late_polls(final.get("sink", {})),
        "host_stalls": host_stall_figures(watch, since, until),
    }


def host_note(label: str, figures: dict) -> None:
    """One line on stderr when the host's stalls took some underruns (reported, not gated)."""
    host = figures["status"] - figures["status_unexplained"]
    cap = (figures["capture_gaps"] or 0) - (figures["capture_unexplained"] or 0)
    if host or cap:
        stalls = figures["host_stalls"]
        print(f"HOST STALLS: {label}: {host} underrun(s) by status, {cap} capture gap(s) inside "
              f"{stalls.get(f'stalls_from_{STALL_MIN_MS:g}_ms')} stall(s) of the host itself "
              f"(longest {stalls.get('max_ms')} ms) - not Segue's, reported",
              file=sys.stderr)  # fmt: skip


def underrun_breaches(label: str, figures: dict) -> list[str]:
    host_note(label, figures)
    out = []
    if figures["status_unexplained"]:
        out.append(breach(f"{label}: {figures['status_unexplained']} underrun(s) counted by the "
                          "daemon outside any stall of the host"))  # fmt: skip
    if figures["capture_unexplained"]:
        out.append(breach(f"{label}: {figures['capture_unexplained']} gap(s) in what the device "
                          f"played outside any stall of the host ({figures['capture_gaps']} in "
                          f"all, {figures['capture_gap_frames']} frames), "
                          f"first {figures['capture_first_gaps'][:3]}"))  # fmt: skip
    return out


# -- processes ---------------------------------------------------------------------------------


def rss_kb(pid: int) -> int | None:
    """VmRSS of one process, in KiB (None once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return 0


def children(pid: int) -> list[int]:
    """Direct children of a process (every thread's list)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError):
                found += [int(p) for p in (task / "children").read_text().split()]
    return sorted(set(found))


def tree_rss_kb(pid: int) -> dict:
    """RSS of a process and every descendant (the daemon and its loop worker)."""
    out = {}
    stack = [pid]
    while stack:
        p = stack.pop()
        kb = rss_kb(p)
        if kb is not None:
            out[p] = kb
        stack += children(p)
    return {"pids": out, "total_kb": sum(out.values())}


def process_memory(pid: int) -> dict | None:
    """One process's memory in KiB: RSS, PSS (shared pages split among their users), the
    private heap (RssAnon), and the clips it holds mapped from /dev/shm (mapped size, touched
    or not: a clip's pages count in RSS only once played)."""
    rss = rss_kb(pid)
    if rss is None:
        return None
    out = {"rss_kb": rss, "pss_kb": None, "clips_mapped_kb": 0, "clips_mapped": 0,
           "audio_server_shm_kb": 0}  # fmt: skip
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                out["pss_kb"] = int(line.split()[1])
    # JACK's own shared memory, mapped by every JACK client (the dummy server stands in for a
    # sound card here): in the client's RSS, but the server's memory.
    with contextlib.suppress(OSError, ValueError):
        name = ""
        for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
            fields = line.split()
            if fields and "-" in fields[0] and len(fields) >= 5:
                name = fields[5] if len(fields) > 5 else ""
            elif line.startswith("Rss:") and name.startswith("/dev/shm/jack"):
                out["audio_server_shm_kb"] += int(fields[1])
    out["rss_own_kb"] = rss - out["audio_server_shm_kb"]
    # The private heap (Python's objects, numpy's arrays, the libraries' own allocations):
    # where a leak shows. Not the clips mapped from /dev/shm, whose pages count in RSS as they
    # are played and leave with their pool's loop, nor JACK's segment.
    out["heap_kb"] = None
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                out["heap_kb"] = int(line.split()[1])
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
            if "segue-clip-" in line:
                start, end = (int(x, 16) for x in line.split()[0].split("-"))
                out["clips_mapped_kb"] += (end - start) // 1024
                out["clips_mapped"] += 1
    with contextlib.suppress(OSError):
        out["command"] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:120]
        out["command"] = out["command"].decode(errors="replace").strip()
    return out


def tree_memory(pid: int) -> dict:
    """Memory of a process and each descendant, by role (daemon, worker, ...), with totals."""
    procs = {}
    stack = [(pid, "daemon")]
    while stack:
        p, role = stack.pop()
        memory = process_memory(p)
        if memory is not None:
            name = role if role not in procs else f"{role}-{p}"
            procs[name] = {"pid": p} | memory
        # The daemon's children: its loop worker (multiprocessing's spawn also starts a
        # resource tracker); their own children are counted too.
        stack += [(c, _role(_cmdline(c)) if role == "daemon" else "child")
                  for c in children(p)]  # fmt: skip
    return {"processes": procs,
            "total_rss_kb": sum(m["rss_kb"] for m in procs.values()),
            "total_rss_own_kb": sum(m["rss_own_kb"] for m in procs.values()),
            "total_heap_kb": sum(m["heap_kb"] or 0 for m in procs.values()),
            "total_pss_kb": sum(m["pss_kb"] or 0 for m in procs.values())}  # fmt: skip


def _role(command: str) -> str:
    if "resource_tracker" in command:
        return "resource_tracker"  # multiprocessing's, started with the spawned worker
    return "worker" if "spawn_main" in command else "child"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def stop_process(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL if it has not gone within `grace_s`."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _all_cores() -> None:
    """In a child before exec: undo a benchmark's own CPU pinning (children inherit it)."""
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, range(os.cpu_count() or 1))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    """The game's side: sends OSC to Segue over UDP and reads its replies."""

    def __init__(self, port: int) -> None:
        self.segue = ("127.0.0.1", port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def send(self, address: str, *args) -> None:
        self.sock.sendto(encode(address, *args), self.segue)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendto(data, self.segue)

    def drain(self) -> None:
        self.sock.setblocking(False)
        with contextlib.suppress(OSError):
            while True:
                self.sock.recvfrom(1 << 16)
        self.sock.setblocking(True)

    def receive(self, address: str, timeout: float = 2.0) -> list | None:
        """Params of the next message at `address` (others are skipped)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data, _ = self.sock.recvfrom(1 << 16)
            except OSError:
                return None
            with contextlib.suppress(Exception):
                for item in OscPacket(data).messages:
                    if item.message.address == address:
                        return list(item.message.params)
        return None

    def status(self, timeout: float = 2.0) -> dict | None:
        """A fresh status. Asked from a socket of its own: /segue/status carries no id, and
        a late reply to an earlier request would otherwise be read as this one."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.sendto(encode("/segue/status"), self.segue)
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                try:
                    data, _ = sock.recvfrom(1 << 16)
                except OSError:
                    return None
                with contextlib.suppress(Exception):
                    for item in OscPacket(data).messages:
                        if item.message.address == "/segue/status":
                            return json.loads(item.message.params[0])
        return None

    def close(self) -> None:
        self.sock.close()


@dataclass
class Jack:
    """A private JACK dummy server: a paced audio clock with no sound card."""

    period_frames: int = 256
    rate: int = SAMPLE_RATE
    # SCHED_FIFO for JACK's threads where allowed: a sound card's clock is not starved by a
    # busy CPU, but a normal-priority dummy server's is, and its lateness reads as underruns.
    realtime: bool = os.geteuid() == 0
    name: str = ""
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="segue-jack-")))
    proc: subprocess.Popen | None = None
    watch: StallWatch | None = None  # the host's own stalls, for as long as the server runs

    @property
    def env(self) -> dict:
        return os.environ | {"JACK_DEFAULT_SERVER": self.name}

    def start(self) -> Jack:
        if shutil.which("jackd") is None:
            raise BenchError("jackd is not installed (Debian package jackd2; `make setup`)")
        self.name = self.name or f"segue-bench-{os.getpid()}-{self.period_frames}"
        if self.watch is None:  # one watch across restarts of the server (chaos kills it)
            self.watch = StallWatch(self.folder / "stalls.jsonl").start()
        log = (self.folder / "jackd.log").open("w")
        # Output to a file: an unread pipe would fill up and stall the server.
        self.proc = subprocess.Popen(
            ["jackd", "-n", self.name, *(("-R", "-P", "70") if self.realtime else ("-r",)),
             "-d", "dummy", "-r", str(self.rate),
             "-p", str(self.period_frames)],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=_all_cores,
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"jackd exited: {(self.folder / 'jackd.log').read_text()[-400:]}")
            probe = subprocess.run(["jack_lsp"], env=self.env, capture_output=True, timeout=10)
            if probe.returncode == 0:
                return self
            time.sleep(0.2)
        self.stop()
        raise BenchError("the JACK dummy server did not start within 15 s")

    def playback_latency_frames(self) -> int | None:
        """What JACK reports for system:playback_1 (its own buffering before the 'DAC')."""
        result = subprocess.run(["jack_lsp", "-l", "system:playback_1"], env=self.env,
                                capture_output=True, text=True, timeout=10)  # fmt: skip
        match = re.search(r"playback latency = \[ (\d+) (\d+) \]", result.stdout)
        return int(match.group(2)) if match else None

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        if self.watch is not None:
            self.watch.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Jack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def output_ports(env: dict, exclude: tuple[str, ...] = ("system:", "segue-capture:")) -> list[str]:
    """Audio output ports of the clients on a JACK server (the daemon's PortAudio stream)."""
    listing = subprocess.run(["jack_lsp", "-p"], env=env, capture_output=True, text=True,
                             timeout=10).stdout.splitlines()  # fmt: skip
    ports = []
    for name, props in zip(listing, listing[1:], strict=False):
        if props.strip().startswith("properties:") and "output" in props:
            if not name.startswith(exclude):
                ports.append(name.strip())
    return ports


@dataclass
class Capture:
    """What the device actually plays: `jack_rec` (jackd2's recorder, a C JACK client)
    connected to the daemon's output ports on the private server, into a 32-bit WAV.

    PortAudio's JACK layer fills a starved stream with silence and raises no flag; in the
    recording every such fill is a run of exact digital zeros right after audible music, which
    `gaps()` counts. The count depends on nothing the daemon reports about itself."""

    jack: Jack
    path: Path
    max_seconds: float = 3600.0
    proc: subprocess.Popen | None = None
    ports: list[str] = field(default_factory=list)
    t0: float = 0.0  # CLOCK_MONOTONIC: the capture's frame 0 is this or up to t0_slack later
    t0_slack: float = 0.6

    def start(self) -> Capture:
        if shutil.which("jack_rec") is None:
            raise BenchError("jack_rec is not installed (Debian package jackd2; `make setup`)")
        self.ports = output_ports(self.jack.env)
        if not self.ports:
            raise BenchError("no audio output port on the JACK server to capture")
        log = self.path.with_suffix(".log").open("w")
        self.proc = subprocess.Popen(
            ["jack_rec", "-f", str(self.path), "-d", str(int(self.max_seconds)), "-b", "32",
             *self.ports[:2]],
            env=self.jack.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=_all_cores,
        )  # fmt: skip
        # jack_rec records from the first cycle after it connected its ports: frame 0 falls
        # between the last probe that saw no connection and the first that saw one.
        self.t0 = time.monotonic()
        deadline = self.t0 + 10
        while not self._connected():
            self.t0 = time.monotonic()
            if self.proc.poll() is not None or self.t0 > deadline:
                self.proc.kill()
                raise BenchError(f"jack_rec did not connect: "
                                 f"{self.path.with_suffix('.log').read_text()}")  # fmt: skip
            time.sleep(0.005)
        self.t0_slack = time.monotonic() - self.t0 + 0.02  # and a JACK cycle or two
        return self

    def _connected(self) -> bool:
        """Whether jack_rec's ports are connected (`jack_lsp -c` indents a port's peers)."""
        listing = subprocess.run(["jack_lsp", "-c"], env=self.jack.env, capture_output=True,
                                 text=True, timeout=10).stdout.splitlines()  # fmt: skip
        return any(port.startswith(("jackrec:", "jack_rec:")) and peer[:1].isspace()
                   for port, peer in zip(listing, listing[1:], strict=False))  # fmt: skip

    def stop(self) -> dict:
        """Stop recording (SIGINT: jack_rec closes the file) and count the gaps."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        try:
            found = gaps(self.path)
        except (OSError, RuntimeError) as exc:
            raise BenchError(f"the capture could not be read: {exc}") from None
        self.path.unlink(missing_ok=True)
        return found | {"ports": self.ports}


GAP_MIN_FRAMES = 64  # a run of exact zeros this long inside music is inserted silence
AUDIBLE_RMS = 1e-4  # -80 dBFS: the 256 frames before a gap held music, not a fade's end
LEVEL_FRAMES = 256


def gaps(path: Path, rate: int = SAMPLE_RATE) -> dict:
    """Inserted silences in a recording: runs of at least GAP_MIN_FRAMES frames of exact
    digital zero on every channel, right after audible audio (a synthesizer's release or a
    fade decays; it never drops from music to exact zero in one sample and stays there)."""
    import soundfile as sf

    zero_parts, level_parts = [], []
    with sf.SoundFile(str(path)) as f:
        for block in f.blocks(blocksize=LEVEL_FRAMES * 4096, dtype="float32", always_2d=True):
            zero_parts.append(~np.any(block != 0, axis=1))
            whole = len(block) // LEVEL_FRAMES * LEVEL_FRAMES
            frames = block[:whole].reshape(-1, LEVEL_FRAMES, block.shape[1]).astype(np.float64)
            level_parts.append(np.sqrt(np.mean(frames**2, axis=(1, 2))))
            if whole < len(block):  # only the file's last block is short
                level_parts.append(np.sqrt([np.mean(block[whole:].astype(np.float64) ** 2)]))
    zero = np.concatenate(zero_parts) if zero_parts else np.zeros(0, bool)
    level = np.concatenate(level_parts) if level_parts else np.zeros(0)
    edges = np.diff(np.concatenate(([0], zero.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    found = []
    for start, end in zip(starts, ends, strict=True):
        if end - start < GAP_MIN_FRAMES or start < LEVEL_FRAMES:
            continue
        before = level[(start - LEVEL_FRAMES) // LEVEL_FRAMES]
        if before >= AUDIBLE_RMS:
            found.append((int(start), int(end - start)))
    return {
        "seconds": round(len(zero) / rate, 2),
        "gaps": len(found),
        "gap_frames": sum(n for _, n in found),
        "first_gaps": [{"at_s": round(s / rate, 3), "frames": n} for s, n in found[:10]],
        "gap_times_s": [round(s / rate, 4) for s, _ in found],
    }


@dataclass
class Daemon:
    """`segue run --device jack` in its own process, ready once audio frames advance."""

    jack: Jack
    graph: Path
    block_frames: int = 256
    use_model: bool = True
    extra: tuple[str, ...] = ()
    launcher: tuple[str, ...] = ("-m", "engine")  # what `python` runs (diagnostics may wrap it)
    env: dict = field(default_factory=dict)  # added to the daemon's environment
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="segue-daemon-")))
    proc: subprocess.Popen | None = None
    client: Client | None = None
    port: int = 0
    start_seconds: float = 0.0
    ready_status: dict | None = None
    ready_at: float = 0.0  # CLOCK_MONOTONIC of ready_status
    stream_seconds: float = 0.0  # start → the first status reply (the stream is open)

    @property
    def log_path(self) -> Path:
        return self.folder / "daemon.log"

    @property
    def stats_path(self) -> Path:
        return self.folder / "stats.json"

    def start(self) -> Daemon:
        self.port = free_port()
        graph = str(Path(self.graph).resolve())
        command = [sys.executable, *self.launcher, "run", "--graph", graph,
                   "--port", str(self.port), "--device", "jack", "--output", "device",
                   "--blocksize", str(self.block_frames), "--stats-out", str(self.stats_path),
                   *(() if self.use_model else ("--no-model",)), *self.extra]  # fmt: skip
        env = self.jack.env | {"PYTHONPATH": str(REPO)} | self.env
        t0 = time.monotonic()
        self.proc = subprocess.Popen(command, env=env, cwd=self.folder, stdin=subprocess.DEVNULL,
                                     stdout=self.log_path.open("w"), stderr=subprocess.STDOUT,
                                     preexec_fn=_all_cores)  # fmt: skip
        self.client = Client(self.port)
        first = None
        deadline = t0 + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"the daemon exited at start:\n{self.log_tail()}")
            status = self.client.status(timeout=0.5)
            if status is None:
                continue
            now = time.monotonic()
            # Ready when every pool is full (start-up generation is over) and audio flows at
            # the real-time rate for half a second: right after it joins, JACK may hold a new
            # client, and the start-up fill competes with the stream.
            pools_full = all(n >= POOL_DEPTH for n in status.get("pools", {}).values())
            if first is not None and now - first[1] >= 0.5:
                rate = (status["frame"] - first[0]) / (now - first[1])
                if pools_full and rate >= 0.9 * SAMPLE_RATE:
                    self.start_seconds = now - t0
                    self.ready_at = time.monotonic()
                    self.ready_status = status
                    return self
                first = None
            if first is None:
                first = (status["frame"], now)
                self.stream_seconds = self.stream_seconds or now - t0
            time.sleep(0.1)
        self.stop()
        raise BenchError(f"the daemon did not stream within {START_TIMEOUT_S:.0f} s:\n"
                         f"{self.log_tail()}")  # fmt: skip

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def log_problems(self) -> list[str]:
        """Lines that mean an exception happened inside the daemon."""
        return [line for line in self.log_text().splitlines()
                if "Traceback" in line or "error (recovered)" in line]  # fmt: skip

    def rss(self) -> dict:
        return tree_rss_kb(self.proc.pid) if self.proc else {"pids": {}, "total_kb": 0}

    def memory(self) -> dict:
        """Per process (daemon, worker, ...): RSS, PSS, clips mapped; totals."""
        if self.proc is None:
            return {"processes": {}, "total_rss_kb": 0, "total_pss_kb": 0}
        return tree_memory(self.proc.pid)

    def stop(self) -> dict | None:
        """SIGTERM (a clean stop); returns the final status written by --stats-out."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.client is not None:
            self.client.close()
            self.client = None
        try:
            return json.loads(self.stats_path.read_text())
        except (OSError, ValueError):
            return None

    def cleanup(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def single_thread_env() -> None:
    """One core for numeric libraries (set before numpy/onnxruntime start their pools)."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
