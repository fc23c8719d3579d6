#!/usr/bin/env bash
# Stop only the servers started by start-audio-server.sh (by the PIDs it saved in RTAUDIO_AUDIO_DIR).
# usage: stop-audio-server.sh [pulse|jack|all]   (default: all)
set -uo pipefail
DIR="${RTAUDIO_AUDIO_DIR:-/tmp/rtaudio-audio}"
KIND="${1:-all}"
stop_pid() {  # $1 pidfile, $2 expected command name
  local f="$1" pid
  [ -f "$f" ] || return 0
  pid="$(cat "$f")"
  if kill -0 "$pid" 2>/dev/null && grep -q "$2" "/proc/$pid/comm" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  fi
  rm -f "$f"
}
case "$KIND" in
pulse|all) stop_pid "$DIR/pulse.pid" pulseaudio; rm -f "$DIR/pulse-env.sh" ;;&
jack|all)  stop_pid "$DIR/jack.pid" jackd; rm -f "$DIR/jack.name" "$DIR/jack-env.sh" ;;
esac
cat "$DIR"/*-env.sh > "$DIR/env.sh" 2>/dev/null || rm -f "$DIR/env.sh"
exit 0
