"""The live daemon: OSC thread → control thread → mixer, pulled by a sink.

Threads:
- `segue-osc` receives datagrams and queues commands (answers pings itself);
- `segue-control` applies commands, ticks the conductor, watches the graph file,
  sends replies and notifications;
- the sink's thread (PortAudio's callback, or a paced writer) pulls the mixer;
- a worker process writes and renders loops (see engine/making/worker.py).
"""

from __future__ import annotations

import gc
import heapq
import json
import logging
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from engine.control import addresses, priority
from engine.control import commands as cmd
from engine.control.engine import Engine
from engine.control.osc import DEFAULT_HOST, DEFAULT_PORT, OscServer
from engine.making.supervisor import WorkerMaker
from engine.score.graph import Graph
from engine.score.music import SAMPLE_RATE

log = logging.getLogger("segue.daemon")

TICK_SECONDS = 0.005
WATCH_SECONDS = 0.15  # a change is read after it has held still this long
# ... or this long for an empty file: an editor that writes in place truncates the file first,
# and a writer the machine pauses there shows an empty graph for longer than a watch period.
EMPTY_SECONDS = 1.0
YOUNG_SECONDS = 0.25  # the youngest objects are collected this often (engine.daemon.Collector)
FREEZE_SECONDS = 1.0  # ... and what survived them this often, then frozen


@dataclass
class DaemonConfig:
    graph_path: Path
    soundfont: Path
    model: Path | None = None
    use_model: bool = True
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    block_frames: int = 256
    seed: int = 0
    pool_depth: int = 2
    watch: bool = True
    allow: tuple = ()  # networks answered besides loopback
    max_subscribers: int = 32
    subscribe_any_host: bool = False
    ui_host: str = "127.0.0.1"
    ui_port: int | None = 8765  # the live view's page; None: no page
    control_priority: int = 1  # SCHED_FIFO for the daemon's other threads; 0: normal


class Collector:
    """Python's cyclic garbage collector in small steps, run by the control thread.

    A collection holds the GIL until it has scanned its generation, and the audio thread
    needs the GIL for every block (the ring holds 10 ms). Left to itself the collector ran
    a full scan of every object since start-up (modules, numpy, the graph, the timeline's
    entries) every 30 s or so under OSC traffic, holding the GIL 45-85 ms: the device's
    periodic underrun. So: one full collection at start, before the audio, then what
    survived is frozen (never scanned again) and the automatic collector is off. The control
    thread collects the youngest objects every YOUNG_SECONDS (what that much traffic left: a
    millisecond or less) and, every FREEZE_SECONDS, the next generation too, then freezes the
    survivors (at 1000 OSC messages a second, ten seconds' survivors took 5-20 ms to scan:
    a gap every ten seconds in the soak; one second's take about one). Frozen objects are
    still freed when their last reference goes (the timeline's trimmed entries are); a
    reference cycle is collected if it became garbage within about a second of its making,
    and benchmarks/soak.py's memory growth would show any other."""

    def __init__(self) -> None:
        self.next_young = 0.0
        self.next_freeze = 0.0

    def start(self) -> None:
        gc.collect()
        gc.freeze()
        gc.disable()
        self.next_young = time.monotonic() + YOUNG_SECONDS
        self.next_freeze = time.monotonic() + FREEZE_SECONDS

    def tick(self, now: float) -> None:
        """Control thread."""
        if now >= self.next_freeze:
            self.next_freeze = now + FREEZE_SECONDS
            self.next_young = now + YOUNG_SECONDS
            gc.collect(1)
            gc.freeze()
        elif now >= self.next_young:
            self.next_young = now + YOUNG_SECONDS
            gc.collect(0)


class Daemon:
    def __init__(self, config: DaemonConfig, graph: Graph, sink) -> None:
        self.config = config
        self.sink = sink
        self.maker = WorkerMaker(config.soundfont, config.model, config.use_model)
        music = Engine.assemble(
            graph,
            self.maker,
            graph_path=config.graph_path,
            block_frames=config.block_frames,
            max_block_frames=max(8192, config.block_frames),
            pool_depth=config.pool_depth,
            seed=config.seed,
        )
        self.mixer, self.pool, self.conductor = music.mixer, music.pool, music.conductor
        self.inbox: queue.SimpleQueue[cmd.Command] = queue.SimpleQueue()
        # command type -> the method that answers its sender, from the OSC address table
        rows = addresses.ROWS
        self._replies = {row.command: getattr(self, row.reply) for row in rows if row.reply}
        self.osc = OscServer(
            self.inbox.put,
            config.host,
            config.port,
            allow=config.allow,
            max_subscribers=config.max_subscribers,
            subscribe_any_host=config.subscribe_any_host,
        )
        self.stop_event = threading.Event()
        self.generator = "?"
        self._threads: list[threading.Thread] = []
        self._graph_stamp = _stamp(config.graph_path)
        self._settling: tuple[int, int] | None = None
        self._settling_since = 0.0
        self.sink_error: str = ""
        self.stats_path: Path | None = None
        self.ui = None  # the live view (engine/ui): made before the audio starts, then served
        self.thread_priority = "normal priority"
        self.collector = Collector()

    def start(self) -> None:
        """Start the music as soon as the initial state has one loop, then open the ears
        (OSC); the other pools fill behind it in order of need."""
        # The audio callback is Python: let it take the GIL from busy threads sooner.
        sys.setswitchinterval(0.0002)
        self.sink.prepare()  # e.g. the shm ring: hosts see "stopped" while the pools fill
        t0 = time.monotonic()
        generator, problem = self.maker.describe()  # the worker was started first (cli)
        self.generator = generator
        if problem and self.config.use_model:
            log.warning("no model loops: %s; using the rule-based generator", problem)
        # The initial state's first loop is written first, the others in order of need.
        self.pool.set_graph(self.conductor.graph, first=self.conductor.graph.initial)
        self.conductor.start()  # waits for the initial state's first loop
        log.info(
            "first loop ready in %.2f s (generator: %s; %s)",
            time.monotonic() - t0,
            generator,
            self.maker.synth_info.get("synth", "?"),
        )
        if self.config.ui_port is not None:
            # Imported and bound before the audio thread runs: imported after it, the live
            # view's modules held the GIL 2-4 ms at a time against the ring's 10.7 ms (five
            # starts: 13 late wake-ups of the writer inside the import, one underrun).
            self._make_ui()
        self.collector.start()  # before the audio thread needs the GIL
        # From here on, this process's threads run above the machine's ordinary tasks.
        self.thread_priority = priority.lift(self.config.control_priority)
        log.info("control, OSC and live-view threads: %s", self.thread_priority)
        control = threading.Thread(target=self._control, name="segue-control", daemon=True)
        audio = threading.Thread(target=self._sink, name="segue-sink", daemon=True)
        self._threads = [control, audio]
        control.start()
        audio.start()
        priority.sweep(self.config.control_priority)
        # Answer the game only once sound flows (or the sink has failed and said so).
        while not self.sink.started.wait(0.05) and not self.stop_event.is_set():
            pass
        self.osc.start()
        host, port = self.osc.address
        log.info("listening for OSC on %s:%d; output: %s", host, port, self.sink.name)
        if self.ui is not None:
            self.ui.start()
            log.info("live view at %s", self.ui.url)
        priority.sweep(self.config.control_priority)

    def _make_ui(self) -> None:
        from engine.ui import LiveView

        try:
            self.ui = LiveView(self, self.inbox.put, self.config.ui_host, self.config.ui_port)
        except OSError as exc:
            log.warning(
                "no live view: cannot listen on %s:%d: %s",
                self.config.ui_host,
                self.config.ui_port,
                exc.strerror,
            )

    def _sink(self) -> None:
        try:
            self.sink.run(self.mixer.render, self.stop_event)
        except Exception as exc:  # noqa: BLE001 - reported in one line, the daemon stops
            self.sink_error = str(exc)
            log.error("audio output stopped: %s", exc)
            self.stop_event.set()

    def _control(self) -> None:
        """Apply commands as they come; tick the conductor every TICK_SECONDS, not per
        command, so a flood of OSC costs the process (and the audio callback's GIL) little."""
        conductor = self.conductor
        scheduled: list[tuple[int, int, cmd.Command]] = []
        order = 0
        next_tick = time.monotonic()
        next_watch = time.monotonic() + WATCH_SECONDS
        next_sweep, restarts = 0.0, 0
        while not self.stop_event.is_set():
            now = time.monotonic()
            timeout = max(0.0, next_tick - now)
            if scheduled:
                timeout = min(timeout, max(0.0, (scheduled[0][0] - time.monotonic_ns()) / 1e9))
            try:
                command = self.inbox.get(timeout=timeout)
            except queue.Empty:
                command = None
            try:
                if command is not None:
                    if command.due_ns and command.due_ns > time.monotonic_ns():
                        order += 1
                        heapq.heappush(scheduled, (command.due_ns, order, command))
                    else:
                        self._apply(command)
                while scheduled and scheduled[0][0] <= time.monotonic_ns():
                    self._apply(heapq.heappop(scheduled)[2])
                now = time.monotonic()
                if now >= next_tick:
                    next_tick = now + TICK_SECONDS
                    conductor.tick()
                    if self.config.watch and now >= next_watch:
                        next_watch = now + WATCH_SECONDS
                        self._watch()
                    self.collector.tick(now)
                    # Threads started since (a new loop worker's pool and queue threads, the
                    # device's): lifted at once after a worker restart, else within a sweep.
                    if now >= next_sweep or self.maker.counters.restarts != restarts:
                        restarts = self.maker.counters.restarts
                        next_sweep = now + priority.SWEEP_SECONDS
                        priority.sweep(self.config.control_priority)
                self._sink_events()
                self._send_outbox()
                if self.ui is not None:
                    self.ui.tick()
            except Exception:  # noqa: BLE001 - the control thread must survive a bug
                log.exception("control thread error (recovered)")

    def _apply(self, command: cmd.Command) -> None:
        answer = self.conductor.handle(command)
        if not command.reply_to:
            return
        reply = self._replies.get(type(command))
        if reply is not None:
            reply(command)
        elif isinstance(answer, dict) and "error" in answer:
            self.osc.send(command.reply_to, "/segue/error", answer["error"])

    def reply_status(self, command: cmd.Status) -> None:
        status = self.status()
        if command.request_id is not None:
            status["id"] = command.request_id
        self.osc.reply_json(command.reply_to, "/segue/status", status)

    def reply_reload(self, command: cmd.Reload) -> None:
        self._graph_stamp = _stamp(self.config.graph_path)
        error = self.conductor.last_error
        self.osc.send(command.reply_to, "/segue/reload", "error" if error else "ok", error)

    def _watch(self) -> None:
        """Reload once the graph file has changed and then held still for one watch period
        (an editor that writes in place is not read half-way), or `EMPTY_SECONDS` if empty."""
        stamp = _stamp(self.config.graph_path)
        if stamp == self._graph_stamp:
            self._settling = None
            return
        if stamp != self._settling:
            self._settling, self._settling_since = stamp, time.monotonic()
            return
        if stamp is not None and stamp[1] == 0:
            if time.monotonic() - self._settling_since < EMPTY_SECONDS:
                return
        self._graph_stamp, self._settling = stamp, None
        self.conductor.reload()

    def _sink_events(self) -> None:
        """A sink's faults and recoveries reach the game (/segue/error) and the timeline;
        the sink has logged them."""
        events = self.sink.events
        while events:
            kind, message = events.popleft()
            self.conductor.timeline.add(
                "error" if kind == "error" else "device",
                {"error" if kind == "error" else "message": message},
                frame=self.mixer.frames_rendered,
            )
            if kind == "error":
                self.osc.notify("/segue/error", message)

    def _send_outbox(self) -> None:
        """Notifications carry the sample frame they refer to, and an OSC timetag: the wall
        time at which that frame leaves the speakers."""
        outbox = self.conductor.outbox
        if not outbox:
            return
        latency_s = self.sink.output_latency_s
        now_frame = self.mixer.frames_rendered
        now_wall = time.time()
        while outbox:
            address, args, frame = outbox.popleft()
            timetag = now_wall + (frame - now_frame) / SAMPLE_RATE + latency_s
            self.osc.notify(address, *args, frame, timetag=timetag)

    def status(self) -> dict:
        status = self.conductor.status()
        sink = self.sink.stats()
        status["counters"] |= {"osc_" + k: v for k, v in vars(self.osc.counters).items()}
        status["counters"]["osc_kernel_drops"] = self.osc.kernel_drops()
        status["counters"]["osc_subscribers"] = len(self.osc.subscribers)
        status["counters"] |= {"pool_" + k: v for k, v in vars(self.pool.counters).items()}
        status["sink"] = sink
        status["worker"] = self.maker.status()
        status["underruns"] = sink.get("underruns", 0)
        status["generator_default"] = self.generator
        status["synth"] = self.maker.synth_info  # the synthesizer and SoundFont
        latency = [r.as_dict(SAMPLE_RATE) for r in list(self.conductor.responses)[-20:]]
        device_ms = sink.get("output_latency_ms", 0.0)
        for row in latency:
            if "audible_ms" in row:
                row["audible_ms"] += device_ms
        status["latency"] = latency
        status["ui"] = self.ui.url if self.ui is not None else None
        return status

    def wait(self) -> None:
        try:
            while not self.stop_event.wait(0.2):
                pass
        except KeyboardInterrupt:
            log.info("stopping")

    def stop(self) -> None:
        if self.stats_path is not None:
            self.stats_path.write_text(json.dumps(self.status(), indent=1, default=str) + "\n")
        self.stop_event.set()
        for thread in self._threads:
            thread.join(timeout=2)
        self.osc.stop()
        if self.ui is not None:
            self.ui.stop()
        self.maker.close()


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size
