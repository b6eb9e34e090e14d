"""A tiny "game" that drives Segue over OSC, as a gameplay programmer would.

It subscribes to Segue's notifications, then plays a session script
(examples/session.yaml): each item is sent at its time as /segue/event, /segue/state
or /segue/param. Needs only python-osc and PyYAML.

    python examples/demo_game.py --port 9000 --session examples/session.yaml
"""

import argparse
import json
import socket
import threading
import time

import yaml
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket


def message(address, *args):
    builder = OscMessageBuilder(address)
    for arg in args:
        builder.add_arg(arg)
    return builder.build().dgram


def listen(sock, start, stop):
    """Print what Segue tells the game: state changes, transitions, errors."""
    sock.settimeout(0.2)
    while not stop.is_set():
        try:
            data, _ = sock.recvfrom(65536)
        except OSError:
            continue
        for item in OscPacket(data).messages:
            msg = item.message
            if msg.address == "/segue/status":
                status = json.loads(msg.params[0])
                print(
                    f"[{time.monotonic() - start:6.2f}] status: state={status['state']} "
                    f"bar={status['bar']} beat={status['beat']} loop={status['loop']} "
                    f"generator={status['generator']} underruns={status['underruns']}"
                )
            elif msg.address not in ("/segue/beat", "/segue/bar"):
                args = " ".join(map(str, msg.params))
                print(f"[{time.monotonic() - start:6.2f}] {msg.address} {args}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--session", default="examples/session.yaml")
    parser.add_argument(
        "--tail", type=float, default=6.0, help="seconds to listen after the last item"
    )
    args = parser.parse_args()
    with open(args.session, encoding="utf-8") as f:
        script = sorted(yaml.safe_load(f), key=lambda item: item["at"])

    segue = (args.host, args.port)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.sendto(message("/segue/subscribe", sock.getsockname()[1]), segue)
    start = time.monotonic()
    stop = threading.Event()
    threading.Thread(target=listen, args=(sock, start, stop), daemon=True).start()

    for item in script:
        time.sleep(max(0.0, start + item["at"] - time.monotonic()))
        if "event" in item:
            packet = message("/segue/event", item["event"])
        elif "state" in item:
            packet = message("/segue/state", item["state"])
        else:
            packet = message("/segue/param", item["param"], float(item["value"]))
        what = item.get("event") or item.get("state") or f"{item.get('param')}={item.get('value')}"
        print(f"[{time.monotonic() - start:6.2f}] game -> {what}")
        sock.sendto(packet, segue)
        sock.sendto(message("/segue/status"), segue)
    time.sleep(args.tail)
    stop.set()


if __name__ == "__main__":
    main()
