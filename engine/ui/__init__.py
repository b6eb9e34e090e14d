"""The live view: a web page served by the daemon, for the sound designer.

- `snapshot` turns what the control thread already knows (conductor status, timeline,
  responses, the graph) into JSON-ready dicts; it runs on the control thread.
- `server` serves the page and pushes those snapshots to it (server-sent events); its
  threads never touch the mixer: commands from the page go through the OSC table's
  validation into the daemon's inbox.
- `static/` is the page: plain HTML, CSS and JavaScript, no build step, no CDN.
"""

from engine.ui.server import DEFAULT_UI_HOST, DEFAULT_UI_PORT, LiveView

__all__ = ["DEFAULT_UI_HOST", "DEFAULT_UI_PORT", "LiveView"]
