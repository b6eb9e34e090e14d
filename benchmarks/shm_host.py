"""Host-clocked check of the shared-memory output, end to end, for CI.

A real daemon (`segue run --output shm:NAME --no-model --seed S`) streams into the ring; the C
consumer tests/c/ring_consumer.c, compiled here with cc, plays the host mixer: it wakes on a
steady 48 kHz block clock (SCHED_FIFO when the machine allows it, as a host's audio thread
runs) and copies one 256-frame block per wake-up. Then:

1. steady: the consumer reads --seconds; 0 underruns, 0 gaps, and its samples equal an
   offline render with the same graph and seed and no events (engine.tools.render.render), from
   the frame the ring's read index says it started at;
2. consumer restart: a consumer is killed (SIGKILL) mid-read and another one started; it
   continues at the read index the first left (at most one block it read but never wrote),
   and the daemon counts the reader going and coming back;
3. daemon restarts, while one consumer keeps reading: the daemon is stopped (SIGTERM) and
   started again, then killed outright (SIGKILL) and started again. Each new daemon
   re-attaches to the segment and continues its frame count; the consumer never reopens.
   Its audio is the same render again from frame 0, placed at the write index the previous
   daemon left. The consumer counts silence while no daemon runs: `stopped_reads` after a
   clean stop, `underruns` after a kill (the segment still says "running" until the next
   daemon attaches), and nothing else.

The daemon runs as a host-clocked deployment should: its ring writer SCHED_FIFO below the
host's thread (`shm:NAME?rt=10`, --producer-rt) and 4096 frames (85 ms, FMOD's default
buffer) ahead of the reader (--fill). On two shared cores at load 3-5, 2048 frames held in
most runs but not all: a normal-priority thread of the daemon can hold the GIL while the
kernel gives its core to other work.

Prints a table, writes benchmarks/results/shm_host.json, exits 1 on any failed check.
About two minutes with --seconds 60 (three daemon start-ups of 6-15 s each on this machine).

    python benchmarks/shm_host.py [--seconds 60] [--seed 5] [--graph statemachines/game.yaml]
                                  [--fill 4096] [--producer-rt 10]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python benchmarks/shm_host.py` from anywhere finds the engine
    sys.path.insert(0, str(REPO))

from engine.audio import ring  # noqa: E402
from engine.audio.ring import RingError  # noqa: E402
from engine.audio.ring_reader import RingReader  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "shm_host.json"
SAMPLE_RATE = 48000
BLOCK_FRAMES = 256
CHANNELS = 2
START_TIMEOUT_S = 90.0
PRODUCER_RT_PRIORITY = 10  # Segue's ring writer, below the host (shm:NAME?rt=)
CONSUMER_RT_PRIORITY = 20  # SCHED_FIFO, like a host's audio thread (chrt; skipped if refused)
TOLERANCE = 1e-6  # float rounding; the same code on the same blocks is expected to be exact
KILL_AFTER_S = 2.0  # consumer B is killed this long after it starts
GONE_PAUSE_S = 0.6  # longer than the sink's 250 ms reader timeout: the daemon sees it go
RUN_BETWEEN_S = 3.0  # each daemon plays this long to the long-running consumer C


class CheckFailed(AssertionError):
    pass


@dataclass
class Report:
    checks: list[dict] = field(default_factory=list)

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append({"check": name, "ok": bool(ok), "detail": detail})
        return bool(ok)

    @property
    def ok(self) -> bool:
        return all(c["ok"] for c in self.checks)


# -- processes --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def compile_consumer(workdir: Path) -> Path:
    if shutil.which("cc") is None:
        raise SystemExit("shm_host: no C compiler (cc) on PATH; install gcc or clang")
    out = workdir / "ring_consumer"
    subprocess.run(
        ["cc", "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{REPO / 'engine' / 'data'}",
         str(REPO / "tests" / "c" / "ring_consumer.c"), "-o", str(out)],
        check=True,
    )  # fmt: skip
    return out


def realtime_prefix() -> list[str]:
    """`chrt -f PRIO` if this machine lets us run SCHED_FIFO, else nothing."""
    chrt = shutil.which("chrt")
    if chrt is None:
        return []
    probe = subprocess.run([chrt, "-f", str(CONSUMER_RT_PRIORITY), "true"], capture_output=True)
    return [chrt, "-f", str(CONSUMER_RT_PRIORITY)] if probe.returncode == 0 else []


class Consumer:
    """The C consumer as a child process; `started` is its first JSON line."""

    def __init__(self, binary: Path, prefix: list[str], segment: str, seconds: float,
                 out: Path) -> None:  # fmt: skip
        self.out = out
        self.seconds = seconds
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen([*prefix, str(binary), segment, f"{seconds:.3f}", str(out)],
                                     stdout=subprocess.PIPE, text=True)  # fmt: skip
        line = self.proc.stdout.readline()
        self.started = json.loads(line) if line else {"error": "no output"}
        if self.started.get("event") != "started":
            raise CheckFailed(f"consumer did not start: {self.started}")

    def finish(self, timeout_s: float) -> dict:
        tail = self.proc.communicate(timeout=timeout_s)[0].strip().splitlines()
        if self.proc.returncode != 0 or not tail:
            raise CheckFailed(f"consumer exited with {self.proc.returncode}: {tail}")
        return json.loads(tail[-1])

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.communicate(timeout=5)

    def samples(self) -> np.ndarray:
        data = np.fromfile(self.out, dtype=np.float32)
        whole = data.size - data.size % (CHANNELS * BLOCK_FRAMES)  # a kill leaves whole blocks
        return data[:whole].reshape(-1, CHANNELS)


class Daemon:
    """`segue run --output shm:NAME` as a user starts it."""

    def __init__(self, graph: Path, segment: str, seed: int, options: str, log: Path,
                 stats: Path) -> None:  # fmt: skip
        self.stats_path = stats
        self.port = free_port()
        command = [
            sys.executable,
            "-m",
            "engine",
            "run",
            "--graph",
            str(graph),
            "--output",
            f"shm:{segment}?{options}",
            "--no-model",
            "--seed",
            str(seed),
            "--port",
            str(self.port),
            "--stats-out",
            str(stats),
        ]
        self.log = log
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(command, cwd=REPO, stdout=log.open("w"),
                                     stderr=subprocess.STDOUT)  # fmt: skip
        self.children: list[int] = []

    def wait_running(self, segment: str, generation: int) -> float:
        """Block until this daemon's producer is attached (generation) and running."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CheckFailed(f"daemon exited with {self.proc.returncode}: "
                                  f"{self.log.read_text(errors='replace')[-2000:]}")  # fmt: skip
            status = ring_status(segment)
            if status and status.generation == generation and status.producer_alive:
                self.children = child_pids(self.proc.pid)
                return time.monotonic() - self.t0
            time.sleep(0.01)
        raise CheckFailed(f"daemon not streaming after {START_TIMEOUT_S:.0f} s")

    def stop(self, sig: int) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise CheckFailed("daemon did not stop within 30 s of SIGTERM") from None

    def stats(self) -> dict | None:
        try:
            return json.loads(self.stats_path.read_text())
        except (OSError, ValueError):
            return None


def child_pids(pid: int) -> list[int]:
    """Processes whose parent is `pid` (the daemon's worker)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_attach(segment: str, generation: int, daemon: Daemon, since: float):
    """(seconds from `since`, ring status) when producer number `generation` attaches."""
    while time.monotonic() - since < START_TIMEOUT_S:
        status = ring_status(segment)
        if status is not None and status.generation >= generation:
            return time.monotonic() - since, status
        if daemon.proc.poll() is not None:
            break
        time.sleep(0.002)
    raise CheckFailed(f"daemon {generation} never attached to the ring")


def delta(before, after) -> dict:
    """Consumer counters (from the ring header) between two snapshots."""
    fields = ("underruns", "stopped_reads", "silence_frames")
    return {f: getattr(after, f) - (getattr(before, f) if before else 0) for f in fields}


def ring_status(segment: str):
    try:
        with RingReader(segment) as reader:  # status only: never reads, so never moves read_index
            return reader.status()
    except RingError:
        return None


# -- comparison -------------------------------------------------------------------------------


def compare(got: np.ndarray, want: np.ndarray) -> dict:
    """Sample-by-sample comparison; `equal` allows TOLERANCE of float rounding."""
    if got.shape != want.shape:
        return {"equal": False, "frames": int(got.shape[0]), "expected_frames": int(want.shape[0]),
                "max_abs_diff": None, "bit_exact": False}  # fmt: skip
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    worst = float(diff.max()) if diff.size else 0.0
    first_bad = int(np.argmax(diff.max(axis=1) > TOLERANCE)) if worst > TOLERANCE else None
    return {"equal": worst <= TOLERANCE, "frames": int(got.shape[0]), "max_abs_diff": worst,
            "bit_exact": bool(np.array_equal(got, want)), "first_bad_frame": first_bad}  # fmt: skip


def compare_played(played: np.ndarray, ring_frames: np.ndarray, inserted_silence: int) -> dict:
    """Compare what a consumer wrote with the ring frames it read. The reader fills a short
    read with exact zeros, so both sides are compared without all-zero frames; the zeros must
    add up: those the reader inserted plus any the music itself has."""
    result = compare(without_silence(played), without_silence(ring_frames))
    silent = int((played == 0).all(axis=1).sum())
    in_music = int((ring_frames == 0).all(axis=1).sum())
    result |= {"silent_frames": silent, "silent_in_music": in_music}
    result["equal"] = result["equal"] and silent == inserted_silence + in_music
    return result


def without_silence(frames: np.ndarray) -> np.ndarray:
    """Drop frames that are exactly 0 in every channel (what the reader inserts for a gap)."""
    return frames[~(frames == 0).all(axis=1)]


def ring_content(offline: np.ndarray, origins: list[int], start: int, frames: int) -> np.ndarray:
    """What the ring holds at [start, start + frames): each daemon plays `offline` from frame 0,
    beginning at its origin (the write index it attached at)."""
    out = np.empty((frames, CHANNELS), np.float32)
    edges = sorted(set(origins))
    position = start
    while position < start + frames:
        origin = max(o for o in edges if o <= position)
        later = [o for o in edges if o > position]
        stop = min([start + frames, *later])
        offset = position - origin
        chunk = offline[offset : offset + stop - position]
        if chunk.shape[0] != stop - position:
            raise CheckFailed(f"offline render too short for ring frames {position}..{stop}")
        out[position - start : stop - start] = chunk
        position = stop
    return out


def loop_at(offline_loops: list[dict], frame: int | None) -> str | None:
    """The offline loop playing at `frame` (for a failure message)."""
    if frame is None:
        return None
    playing = [
        row for row in offline_loops if row.get("frame") is not None and row["frame"] <= frame
    ]
    return playing[-1]["loop"] if playing else None


# -- the run ----------------------------------------------------------------------------------


def run(args, workdir: Path, report: Report) -> dict:
    graph_dir = workdir / "graph"
    # A private copy: an edit of the shipped graph mid-run would make the daemon reload it.
    shutil.copytree(Path(args.graph).resolve().parent, graph_dir)
    graph = graph_dir / Path(args.graph).name
    binary = compile_consumer(workdir)
    prefix = realtime_prefix()
    segment = args.segment
    info: dict = {"consumer_sched_fifo": bool(prefix), "segment": segment}
    daemons: list[Daemon] = []
    consumers: list[Consumer] = []
    try:
        return _run(args, workdir, graph, binary, prefix, segment, report, info, daemons,
                    consumers)  # fmt: skip
    finally:
        for consumer in consumers:
            if consumer.proc.poll() is None:
                consumer.kill()
        for daemon in daemons:
            if daemon.proc.poll() is None:
                daemon.proc.kill()
                daemon.proc.wait(5)


def _run(args, workdir, graph, binary, prefix, segment, report, info, daemons, consumers):
    seconds = args.seconds

    def daemon(number: int) -> Daemon:
        options = f"fill={args.fill}" + (f"&rt={args.producer_rt}" if args.producer_rt else "")
        d = Daemon(graph, segment, args.seed, options, workdir / f"daemon{number}.log",
                   workdir / f"daemon{number}.json")  # fmt: skip
        daemons.append(d)
        return d

    def consumer(name: str, seconds_to_read: float) -> Consumer:
        c = Consumer(binary, prefix, segment, seconds_to_read, workdir / f"{name}.raw")
        consumers.append(c)
        return c

    # 1. steady: one consumer, --seconds at the host's pace.
    d1 = daemon(1)
    info["startup_s"] = [round(d1.wait_running(segment, 1), 2)]
    a = consumer("a", seconds)
    res_a = a.finish(seconds + 60)
    info["load_average_steady"] = [round(x, 2) for x in os.getloadavg()]
    report.check("steady: 0 underruns, 0 gaps, 0 silence",
                 (res_a["underruns"], res_a["gaps"], res_a["silence_frames"]) == (0, 0, 0),
                 f"underruns {res_a['underruns']}, gaps {res_a['gaps']}, silence "
                 f"{res_a['silence_frames']} frames, late wake-ups {res_a['late_wakeups']}, "
                 f"max late {res_a['max_late_us']:.0f} us")  # fmt: skip
    report.check("steady: read every frame asked for",
                 res_a["frames_read"] == res_a["frames_requested"],
                 f"{res_a['frames_read']} of {res_a['frames_requested']} frames")  # fmt: skip

    # 2. consumer killed mid-read, another one started.
    time.sleep(GONE_PAUSE_S)
    b = consumer("b", 30.0)
    time.sleep(KILL_AFTER_S)
    b.kill()
    time.sleep(GONE_PAUSE_S)

    # 3. one consumer across a clean daemon restart and a crash.
    startup_guess = info["startup_s"][0]
    c_seconds = 3 * RUN_BETWEEN_S + 2 * max(2 * startup_guess, startup_guess + 10.0)
    c = consumer("c", c_seconds)
    time.sleep(RUN_BETWEEN_S)
    rc1 = d1.stop(signal.SIGTERM)
    stats1 = d1.stats()
    at_stop1 = ring_status(segment)
    d2 = daemon(2)
    _, at_attach2 = wait_attach(segment, 2, d2, time.monotonic())
    info["startup_s"].append(round(d2.wait_running(segment, 2), 2))
    time.sleep(RUN_BETWEEN_S)
    workers2 = d2.children
    at_kill2 = ring_status(segment)
    d2.proc.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    rc2 = d2.proc.wait(10)
    w2 = ring_status(segment).write_index
    d3 = daemon(3)
    attach_s, at_attach3 = wait_attach(segment, 3, d3, killed_at)
    info["startup_s"].append(round(d3.wait_running(segment, 3), 2))
    workers_left = [pid for pid in workers2 if alive(pid)]
    c_left_s = c.t0 + c_seconds - time.monotonic()
    res_c = c.finish(c_seconds + 60)
    rc3 = d3.stop(signal.SIGTERM)
    stats3 = d3.stats()
    final = ring_status(segment)
    w1 = at_stop1.write_index
    # The consumer's header counters at each step say what it saw in each window.
    windows = {
        "daemon1_running": delta(None, at_stop1),
        "clean_stop_to_attach": delta(at_stop1, at_attach2),
        "daemon2_running": delta(at_attach2, at_kill2),
        "kill_to_attach": delta(at_kill2, at_attach3),
        "daemon3_running": delta(at_attach3, final),
    }
    info |= {"consumer_c_seconds": round(c_seconds, 2), "ring_origins": [0, w1, w2],
             "kill_to_attach_s": round(attach_s, 3), "daemon3_played_to_c_s": round(c_left_s, 2),
             "consumer_counters_by_window": windows}  # fmt: skip

    report.check(
        "daemon restarts: each exit as expected (0, SIGKILL, 0)",
        (rc1, rc2, rc3) == (0, -signal.SIGKILL, 0),
        f"exit codes {rc1}, {rc2}, {rc3}",
    )
    report.check(
        "killed daemon's worker exits with it",
        not workers_left,
        f"workers {workers2}, still alive after restart: {workers_left}",
    )
    report.check("consumer C heard the third daemon", c_left_s > 1.0,
                 f"{c_left_s:.1f} s of daemon 3 before C ended")  # fmt: skip

    # 4. the offline render the live audio must equal.
    from engine.making.soundfont import find_soundfont
    from engine.making.workshop import Workshop
    from engine.tools.render import render

    end_c = res_c["end_read_index"]
    need = max(w1, w2 - w1, end_c - w2) + BLOCK_FRAMES
    t0 = time.monotonic()
    workshop = Workshop(find_soundfont(None), use_model=False)
    offline = render(graph, [], seconds=need / SAMPLE_RATE + 0.05, seed=args.seed,
                     workshop=workshop, block_frames=BLOCK_FRAMES)  # fmt: skip
    info["offline_render_s"] = round(time.monotonic() - t0, 2)
    loops = offline.timeline.to_json()["loops"]
    origins = [0, w1, w2]

    samples_a = a.samples()
    start_a = a.started["start_read_index"]
    want_a = ring_content(offline.audio, origins, start_a, res_a["frames_read"])
    cmp_a = compare_played(samples_a, want_a, res_a["silence_frames"])
    cmp_a["start_read_index"] = start_a
    bad = cmp_a.get("first_bad_frame")
    cmp_a["loop_at_first_bad_frame"] = loop_at(loops, None if bad is None else start_a + bad)
    report.check("steady: samples equal the offline render (same seed, no events)",
                 cmp_a["equal"],
                 f"{cmp_a['frames']} frames from ring index {start_a}, max |diff| "
                 f"{cmp_a['max_abs_diff']}, bit-exact {cmp_a['bit_exact']}")  # fmt: skip

    samples_b = b.samples()
    start_b = b.started["start_read_index"]
    cmp_b = compare(samples_b, ring_content(offline.audio, origins, start_b, len(samples_b)))
    report.check("consumer restart: the killed consumer's audio is the render too",
                 cmp_b["equal"] and start_b == res_a["end_read_index"] and len(samples_b) > 0,
                 f"started at {start_b} (A ended at {res_a['end_read_index']}), "
                 f"{len(samples_b)} frames, max |diff| {cmp_b['max_abs_diff']}")  # fmt: skip
    start_c = c.started["start_read_index"]
    b_end = start_b + len(samples_b)
    report.check("consumer restart: the next consumer continues where it stopped",
                 b_end <= start_c <= b_end + BLOCK_FRAMES,
                 f"B wrote up to {b_end}, C started at {start_c}")  # fmt: skip

    samples_c = c.samples()
    want_c = ring_content(offline.audio, origins, start_c, res_c["frames_read"])
    cmp_c = compare_played(samples_c, want_c, res_c["silence_frames"])
    report.check("daemon restarts: each daemon's audio equals the render from its frame 0",
                 cmp_c["equal"],
                 f"{res_c['frames_read']} frames across origins {origins}, max |diff| "
                 f"{cmp_c['max_abs_diff']}; silent frames {cmp_c['silent_frames']} = inserted "
                 f"{res_c['silence_frames']} + in the music "
                 f"{cmp_c['silent_in_music']}")  # fmt: skip
    crash = windows["kill_to_attach"]
    clean = windows["clean_stop_to_attach"]
    max_crash_blocks = math.ceil(attach_s * SAMPLE_RATE / BLOCK_FRAMES) + 2
    report.check("clean stop: the consumer counted stopped reads, no underruns, no reopen",
                 clean["stopped_reads"] > 0 and clean["underruns"] == 0
                 and res_c["reopens"] == 0 and res_c["generation"] == 3,
                 f"stopped reads {clean['stopped_reads']}, underruns {clean['underruns']} until "
                 f"daemon 2 attached; reopens {res_c['reopens']}, generation "
                 f"{res_c['generation']}")  # fmt: skip
    # After SIGKILL the segment still says "running" until the next daemon attaches, and the
    # reader's real-time path reads no clock: those short reads are underruns, by design.
    report.check("crash: underruns only until the next daemon attached",
                 0 < crash["underruns"] <= max_crash_blocks and crash["stopped_reads"] <= 2,
                 f"underruns {crash['underruns']} in the {attach_s:.2f} s from SIGKILL to "
                 f"attach (at most {max_crash_blocks}), stopped reads "
                 f"{crash['stopped_reads']}")  # fmt: skip
    running = {k: v["underruns"] for k, v in windows.items() if k.endswith("_running")}
    report.check("no underruns while a daemon was running",
                 not any(running.values()),
                 ", ".join(f"{k.removesuffix('_running')} {v}" for k, v in running.items())
                 + f" (consumer late wake-ups {res_c['late_wakeups']})")  # fmt: skip
    sink1 = (stats1 or {}).get("sink", {})
    counters1 = (stats1 or {}).get("counters", {})
    report.check("daemon 1 counters: readers came and went, never starved",
                 sink1.get("consumer_underruns") == 0 and sink1.get("reader_gone_events") == 2
                 and sink1.get("reader_returns") == 2 and sink1.get("ring_empty_seen") == 0
                 and sink1.get("pull_errors") == 0 and sink1.get("restarts") == 0,
                 f"underruns {sink1.get('consumer_underruns')}, reader gone/returns "
                 f"{sink1.get('reader_gone_events')}/{sink1.get('reader_returns')}, ring empty "
                 f"seen {sink1.get('ring_empty_seen')}, min fill {sink1.get('min_fill_frames')}, "
                 f"restarts {sink1.get('restarts')}")  # fmt: skip
    report.check("daemon 1 played fresh loops on time (no repeat for a late loop)",
                 counters1.get("loop_repeats_no_fresh") == 0 and counters1.get("mixer_errors") == 0,
                 f"loops played {counters1.get('loops_played')}, repeats for want of a loop "
                 f"{counters1.get('loop_repeats_no_fresh')}")  # fmt: skip
    sink3 = (stats3 or {}).get("sink", {})
    report.check(
        "daemon 3 counters: the third producer on the segment, saw what C saw",
        sink3.get("restarts") == 2
        and sink3.get("consumer_underruns") == windows["daemon3_running"]["underruns"],
        f"restarts {sink3.get('restarts')}, underruns {sink3.get('consumer_underruns')}, "
        f"stopped reads while it started {sink3.get('consumer_stopped_reads')}",
    )
    report.check("ring left stopped, readable", final is not None
                 and final.producer_state == "stopped", f"{final}")  # fmt: skip

    keep = ("underruns", "gaps", "silence_frames", "stopped_reads", "late_wakeups",
            "max_late_us", "frames_read", "frames_requested", "reopens", "generation",
            "end_read_index")  # fmt: skip
    return info | {
        "consumers": {
            "a": {"start_read_index": start_a} | {k: res_a[k] for k in keep},
            "b": {"start_read_index": start_b, "frames_written": len(samples_b), "killed": True},
            "c": {"start_read_index": start_c} | {k: res_c[k] for k in keep},
        },
        "compare": {"a": cmp_a, "b": cmp_b, "c": cmp_c},
        "daemon1_sink": sink1,
        "daemon1_counters": counters1,
        "daemon3_sink": sink3,
    }


def print_table(report: Report, result: dict, wall_s: float) -> None:
    width = max(len(c["check"]) for c in report.checks)
    print(
        f"\nshm host check: {result.get('seconds')} s steady, consumer SCHED_FIFO "
        f"{result.get('consumer_sched_fifo')}, load {result.get('load_average')}"
    )
    print(f"{'check':<{width}}  result  detail")
    for c in report.checks:
        print(f"{c['check']:<{width}}  {'ok' if c['ok'] else 'FAIL':<6}  {c['detail']}")
    print(
        f"daemon start-ups {result.get('startup_s')} s, offline render "
        f"{result.get('offline_render_s')} s, total {wall_s:.0f} s -> "
        f"{'PASS' if report.ok else 'FAIL'}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="steady read length")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--graph", default=str(REPO / "statemachines" / "game.yaml"))
    parser.add_argument("--fill", type=int, default=4096,
                        help="the sink's target fill in frames (shm:NAME?fill=)")  # fmt: skip
    parser.add_argument("--producer-rt", type=int, default=PRODUCER_RT_PRIORITY,
                        help="SCHED_FIFO priority of Segue's ring writer (shm:NAME?rt=); 0: "
                        "normal")  # fmt: skip
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.segment = f"segue-shm-host-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    t0 = time.monotonic()
    load_before = [round(x, 2) for x in os.getloadavg()]
    report = Report()
    result: dict = {
        "seconds": args.seconds,
        "seed": args.seed,
        "graph": args.graph,
        "fill_frames": args.fill,
        "producer_rt": args.producer_rt,
        "block_frames": BLOCK_FRAMES,
    }
    workdir = Path(tempfile.mkdtemp(prefix="segue-shm-host-"))
    try:
        result |= run(args, workdir, report)
    except (CheckFailed, subprocess.SubprocessError, OSError) as exc:
        report.check("ran to the end", False, str(exc).splitlines()[0][:300])
    finally:
        (Path(ring.SHM_DIR) / args.segment).unlink(missing_ok=True)
        if report.ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            result["kept_for_inspection"] = str(workdir)
    wall_s = time.monotonic() - t0
    result |= {
        "load_average": {"before": load_before,
                         "after": [round(x, 2) for x in os.getloadavg()]},
        "machine": {"cores": os.cpu_count(), "kernel": platform.release(),
                    "python": platform.python_version()},
        "wall_s": round(wall_s, 1),
        "checks": report.checks,
        "ok": report.ok,
    }  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print_table(report, result, wall_s)
    print(f"wrote {args.json}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
