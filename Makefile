# Segue: the two commands.
#   make run    the daemon on the shipped graph, model and SoundFont, playing a demo game session
#   make test   the test suite
# Both set everything up first: Debian packages when run as root, a venv, the Python packages.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# libportaudio2: audio out; libfluidsynth3: the SoundFont synthesizer (pyfluidsynth drives it);
# jackd2: a JACK dummy server gives tests a real, paced audio stream with no sound card;
# musescore-general-soundfont-small: the default SoundFont; freedoom: game MIDI for training;
# chromium: the browser the live view's tests drive (Playwright never downloads one).
DEBS   := libportaudio2 libfluidsynth3 jackd2 musescore-general-soundfont-small freedoom chromium

.PHONY: run test bench bench-quick system-packages setup clean

run: setup
	$(BIN)/segue run --demo

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/segue bench

bench-quick: setup
	$(BIN)/segue bench --quick

setup: system-packages $(VENV)/.installed

system-packages:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "missing Debian packages:$$missing (run as root, or: sudo apt-get install$$missing)"; \
	  fi; \
	fi

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev,train]"
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
