# Quick start:  make demo   (install everything, run the main job)
#               make test   (install everything, run the tests)
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_RUN := libportaudio2 libsndfile1 espeak-ng \
           libegl1 libgl1 libglib2.0-0 libfontconfig1 libfreetype6 libdbus-1-3 \
           libxkbcommon0 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 \
           libxcb-shape0 libxcb-render-util0 libxcb-image0 libxcb-xkb1 libx11-xcb1 libxcb-randr0 \
           libxcb-sync1 libxcb-xfixes0 libxcb-shm0 libxcb-render0 libxcb-util1 fonts-dejavu-core
APT_TEST := pulseaudio pulseaudio-utils libasound2-plugins jackd2 \
            flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts

.PHONY: demo test test-goals install install-test system system-test lint bench

demo: install
	$(VENV)/bin/rtaudio demo

test: install-test
	QT_QPA_PLATFORM=offscreen $(VENV)/bin/pytest -q -ra -m "not goal"

test-goals: install-test
	QT_QPA_PLATFORM=offscreen $(VENV)/bin/pytest -q -ra -s -m goal

lint: install-test
	$(VENV)/bin/ruff check .

bench: install-test
	$(PY) benchmarks/engine.py

system:
	@if [ -x /usr/bin/apt-get ]; then \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_RUN) >/dev/null; \
	else echo "not Debian/Ubuntu: install PortAudio, libsndfile and espeak-ng yourself"; fi

system-test: system
	@if [ -x /usr/bin/apt-get ]; then \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_TEST) >/dev/null; fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first: the CPU build (a bare 'torch' requirement would pull a multi-GB CUDA build)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: system $(VENV)/.installed

install-test: system-test $(VENV)/.installed
