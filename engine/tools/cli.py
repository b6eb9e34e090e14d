"""`segue`: run the daemon, render offline, check a graph, talk OSC, list devices."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from engine.tools.shipped import DEMO_GAME, shipped

# Engine modules are imported where they are used: `segue run` starts its loop worker before
# this process imports numpy or yaml, and the worker, which re-imports this module as its
# main module, imports nothing here it does not need.

log = logging.getLogger("segue")


def default_path(relative: str) -> Path:
    """A shipped file (graph, session), from the working folder or the installed package."""
    here = Path(relative)
    return here if here.exists() else shipped(relative)


def _soundfont(explicit):
    from engine.making.soundfont import SoundFontNotFound, find_soundfont

    try:
        return find_soundfont(explicit)
    except SoundFontNotFound as exc:
        raise SystemExit(f"segue: {exc}") from None


def _graph(path):
    from engine.score.graph import GraphError
    from engine.score.load import load_graph

    try:
        return load_graph(path)
    except GraphError as exc:
        raise SystemExit(f"segue: {exc}") from None


def open_sink(output: str, device, block_frames: int, buffer_blocks: int = 2):
    """The sink for --output; no device falls back to a WAV file, in one line."""
    from engine.audio.sinks.base import SinkError
    from engine.audio.sinks.paced import NullSink, WavSink

    paced = max(1, buffer_blocks)  # the clock's own buffer, as deep as the device's ring
    if output == "null":
        return NullSink(block_frames, buffer_blocks=paced)
    if output.startswith("wav:"):
        return WavSink(output[4:], block_frames, buffer_blocks=paced)
    if output.startswith("shm:"):
        from urllib.parse import parse_qs

        from engine.audio.sinks.shm import ShmSink

        name, _, query = output[4:].partition("?")
        options = {k: v[-1] for k, v in parse_qs(query).items()}
        try:
            fill = int(options.pop("fill", 2048))
            priority = int(options.pop("rt", 0))
        except ValueError:
            raise SystemExit("segue: shm options are numbers: shm:NAME?fill=2048&rt=10") from None
        if options:
            raise SystemExit(f"segue: unknown shm option(s) {', '.join(options)}; "
                             "expected fill, rt")  # fmt: skip
        return ShmSink(name, target_fill_frames=fill, block_frames=block_frames,
                       realtime_priority=priority)  # fmt: skip
    if output != "device":
        raise SystemExit(f"segue: unknown output {output!r}; expected device, wav:PATH, null "
                         "or shm:NAME")  # fmt: skip
    from engine.audio.sinks.device import DeviceSink
    from engine.audio.sinks.direct import DirectDeviceSink

    try:
        if buffer_blocks <= 0:
            return DirectDeviceSink(device, block_frames)
        return DeviceSink(device, block_frames, buffer_blocks=buffer_blocks)
    except SinkError as exc:
        fallback = "segue-output.wav"
        log.warning("%s; writing to %s instead", exc, fallback)
        return WavSink(fallback, block_frames, buffer_blocks=paced)


def _stop_on_sigterm() -> None:
    """`kill` stops the daemon the way Ctrl-C does: cleanly, worker included."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def cmd_run(args) -> int:
    from engine.making.supervisor import prestart_worker

    soundfont = _soundfont(args.soundfont)
    # The loop worker loads the model, the SoundFont and the initial state's sounds while
    # this process starts the rest.
    prestart_worker(soundfont, args.model, not args.no_model, warm_graph=args.graph)
    from engine.audio.sinks.base import SinkError
    from engine.control.daemon import Daemon, DaemonConfig

    _stop_on_sigterm()
    from engine.control.osc_guard import parse_networks

    graph_path = Path(args.graph)
    graph = _graph(graph_path)
    try:
        allow = parse_networks(args.allow)
    except ValueError as exc:
        raise SystemExit(f"segue: {exc}") from None
    if args.max_subscribers < 1:
        raise SystemExit("segue: --max-subscribers must be at least 1")
    config = DaemonConfig(
        graph_path=graph_path, soundfont=soundfont, model=args.model,
        use_model=not args.no_model, host=args.host, port=args.port,
        block_frames=args.blocksize, seed=args.seed, allow=allow,
        max_subscribers=args.max_subscribers, subscribe_any_host=args.subscribe_any_host,
        ui_host=args.ui_host, ui_port=None if args.no_ui else args.ui_port,
        control_priority=args.control_priority,
    )  # fmt: skip
    sink = open_sink(args.output, args.device, args.blocksize, args.buffer_blocks)
    try:
        daemon = Daemon(config, graph, sink)
    except OSError as exc:
        raise SystemExit(
            f"segue: cannot listen on {args.host}:{args.port}: {exc.strerror}"
        ) from None
    try:
        daemon.start()
    except SinkError as exc:
        daemon.stop()
        raise SystemExit(f"segue: {exc}") from None
    except KeyboardInterrupt:  # SIGINT or SIGTERM while the pools fill
        log.info("stopping")
        daemon.stop()
        return 0
    demo = None
    if args.demo:
        host, port = daemon.osc.address
        session = str(default_path("examples/session.yaml"))
        game = str(shipped(DEMO_GAME))
        demo = subprocess.Popen(
            [sys.executable, game, "--host", host, "--port", str(port), "--session", session]
        )
    if args.stats_out:
        daemon.stats_path = Path(args.stats_out)
    try:
        if demo is not None:
            while demo.poll() is None and not daemon.stop_event.wait(0.2):
                pass
            print(json.dumps(daemon.status(), indent=1, default=str))
        else:
            daemon.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if demo is not None and demo.poll() is None:
            demo.terminate()
        daemon.stop()
    if daemon.sink_error:
        print(f"segue: {daemon.sink_error}", file=sys.stderr)
        return 1
    return 0


def cmd_render(args) -> int:
    from engine.making.workshop import Workshop
    from engine.tools.render import ScriptError, load_script, render

    _graph(args.graph)
    try:
        script = load_script(args.events) if args.events else []
    except ScriptError as exc:
        raise SystemExit(f"segue: {exc}") from None
    workshop = Workshop(_soundfont(args.soundfont), args.model, use_model=not args.no_model)
    if workshop.model_problem and not args.no_model:
        log.warning("no model loops: %s; using the rule-based generator", workshop.model_problem)
    t0 = time.perf_counter()
    result = render(args.graph, script, seconds=args.seconds, seed=args.seed,
                    workshop=workshop, progress=True)  # fmt: skip
    elapsed = time.perf_counter() - t0
    import soundfile

    soundfile.write(args.out, result.audio, 48000, subtype="FLOAT")
    if args.timeline:
        result.timeline.write(args.timeline)
    if args.picture:
        from engine.tools.picture import timeline_png

        timeline_png(result.timeline.to_json(), result.audio, args.picture)
    seconds = len(result.audio) / 48000
    peak = float(abs(result.audio).max()) if len(result.audio) else 0.0
    print(
        f"wrote {args.out}: {seconds:.1f} s in {elapsed:.1f} s ({seconds / elapsed:.0f}x real "
        f"time), peak {peak:.3f}, {result.conductor.counters.transitions} transitions"
    )
    for row in result.timeline.to_json()["transitions"]:
        print(
            f"  {row['seconds']:7.3f} s  {row['from']} -> {row['to']}  ({row['on']}, {row['exit']})"
        )
    return 0


def cmd_check(args) -> int:
    from engine.score.graph import GraphError
    from engine.score.load import load_graph

    try:
        graph = load_graph(args.path)
    except GraphError as exc:
        print(f"{exc}", file=sys.stderr)
        return 1
    print(
        f"{args.path}: ok — {len(graph.states)} states, {len(graph.transitions)} transitions, "
        f"initial {graph.initial}"
    )
    return 0


def _osc_arg(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def cmd_send(args) -> int:
    from pythonosc.osc_packet import OscPacket

    from engine.control import osc

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(args.wait)
    sock.sendto(osc.encode(args.address, *map(_osc_arg, args.args)), (args.host, args.port))
    try:
        while True:
            data, _ = sock.recvfrom(osc.MAX_DATAGRAM)
            for item in OscPacket(data).messages:
                params = item.message.params
                if item.message.address == "/segue/status" and params:
                    print(json.dumps(json.loads(params[0]), indent=1))
                else:
                    print(item.message.address, *params)
            sock.settimeout(0.2)
    except (TimeoutError, OSError):
        pass
    return 0


def cmd_devices(args) -> int:
    from engine.audio.sinks.base import SinkError
    from engine.audio.sinks.device import list_devices

    try:
        devices = list_devices()
    except SinkError as exc:
        print(f"segue: {exc}", file=sys.stderr)
        return 1
    if not devices:
        print("no output devices (see README: Troubleshooting)")
    for d in devices:
        print(f"{d['index']:3d}  {d['name']}  [{d['hostapi']}]  {d['channels']} ch")
    return 0


def build_parser(tools: bool = True) -> argparse.ArgumentParser:
    """The whole command line; without `tools`, no generate/export/bench (their modules
    import numpy, mido and the synth: `segue run` starts its worker before that)."""
    from engine.control import osc

    parser = argparse.ArgumentParser(prog="segue", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs")
    sub = parser.add_subparsers(dest="command", required=True)

    def sound_options(p):
        p.add_argument("--soundfont", help="a .sf2/.sf3 file (default: MuseScore_General, "
                       "else TimGM6mb)")  # fmt: skip
        p.add_argument("--model", help="an ONNX model (default: the one in models/)")
        p.add_argument("--no-model", action="store_true", help="use the rule-based generator")
        p.add_argument("--seed", type=int, default=0)

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--graph", default=str(default_path("statemachines/game.yaml")))
    run.add_argument(
        "--output",
        default="device",
        help="device | wav:PATH | null | shm:NAME[?fill=FRAMES&rt=PRIORITY]",
    )
    run.add_argument("--device", help="output device index or name; 'jack' for JACK")
    run.add_argument("--blocksize", type=int, default=256, help="frames per audio block")
    run.add_argument(
        "--buffer-blocks",
        type=int,
        default=2,
        help="blocks kept ahead for the device (1+: a supervised device process plays "
        "them; 0: PortAudio's callback in the daemon, one block less latency, sensitive "
        "to a busy process and not supervised); null and wav: keep as many (at least 1)",
    )
    run.add_argument(
        "--host",
        default=osc.DEFAULT_HOST,
        help="interface for OSC (default 127.0.0.1: this machine only)",
    )
    run.add_argument("--port", type=int, default=osc.DEFAULT_PORT)
    run.add_argument(
        "--allow",
        nargs="+",
        default=[],
        metavar="CIDR",
        help="also answer senders in these networks (default: loopback only), e.g. "
        "--host 0.0.0.0 --allow 192.168.1.0/24",
    )
    run.add_argument(
        "--max-subscribers",
        type=int,
        default=32,
        help="notification targets kept (the oldest is dropped for a new one)",
    )
    run.add_argument(
        "--subscribe-any-host",
        action="store_true",
        help="let /segue/subscribe name another host than the sender's",
    )
    run.add_argument("--control-priority", type=int, default=1,
                     help="SCHED_FIFO priority of the daemon's threads besides audio, so a busy "
                          "machine can't preempt one holding the GIL the audio needs "
                          "(0: normal priority)")  # fmt: skip
    run.add_argument("--ui-port", type=int, default=8765,
                     help="port of the live view page (0: any free port)")  # fmt: skip
    run.add_argument(
        "--ui-host",
        default="127.0.0.1",
        help="interface for the live view (default 127.0.0.1: this machine only)",
    )
    run.add_argument("--no-ui", action="store_true", help="serve no live view page")
    run.add_argument("--stats-out", help="write the final status (counters, timings) as JSON")
    run.add_argument(
        "--demo",
        action="store_true",
        help="also run the demo game (examples/demo_game.py) and stop after it",
    )
    sound_options(run)
    run.set_defaults(func=cmd_run)

    rend = sub.add_parser("render", help="render a scripted session offline")
    rend.add_argument("--graph", default=str(default_path("statemachines/game.yaml")))
    rend.add_argument("--events", help="session script (YAML list of {at, event|state|param})")
    rend.add_argument("--out", required=True, help="output WAV")
    rend.add_argument("--timeline", help="output timeline JSON")
    rend.add_argument("--picture", help="output timeline PNG (states, transitions, stingers)")
    rend.add_argument("--seconds", type=float, help="length (default: last event + 6 s)")
    sound_options(rend)
    rend.set_defaults(func=cmd_render)

    check = sub.add_parser("check", help="validate a graph file")
    check.add_argument("path")
    check.set_defaults(func=cmd_check)

    send = sub.add_parser("send", help="send one OSC message and print any reply")
    send.add_argument("address")
    send.add_argument("args", nargs="*")
    send.add_argument("--host", default="127.0.0.1")
    send.add_argument("--port", type=int, default=osc.DEFAULT_PORT)
    send.add_argument("--wait", type=float, default=1.0, help="seconds to wait for a reply")
    send.set_defaults(func=cmd_send)

    devices = sub.add_parser("devices", help="list audio output devices")
    devices.set_defaults(func=cmd_devices)

    if tools:
        from engine.tools import bench as bench_cmd
        from engine.tools import export
        from engine.tools import generate as generate_cmd
        from engine.tools import init as init_cmd

        for module in (generate_cmd, export, bench_cmd, init_cmd):
            module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    commands = [a for a in argv if not a.startswith("-")]  # the only global option is a flag
    args = build_parser(tools=commands[:1] != ["run"]).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="segue: %(message)s")  # fmt: skip
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
