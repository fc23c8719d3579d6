#!/usr/bin/env bash
# Start a headless virtual audio server for rtaudio's live-audio tests and benchmarks
# (no sound card, no display, may run as root). Idempotent: a server started by a previous
# call with the same RTAUDIO_AUDIO_DIR is reused. Exits 0 only once PortAudio lists the devices.
#
# usage: start-audio-server.sh [pulse|jack]       (default: pulse)
# env:   RTAUDIO_AUDIO_DIR    state dir (default /tmp/rtaudio-audio); use a private one per run
#        RTAUDIO_RATE         server rate (default 48000)
#        RTAUDIO_JACK_PERIOD  jack dummy period in frames (default 256)
#        RTAUDIO_JACK_RT      1 = jackd -R (realtime scheduling; needs rtprio, works as root)
#        RTAUDIO_PULSE_FORMAT null-sink sample format (default float32le: bit-exact loopback)
#        RTAUDIO_PULSE_RT     1 = PulseAudio with realtime scheduling (--realtime --high-priority)
#        PYTHON               python with sounddevice (default python3)
# After it returns:  source "$RTAUDIO_AUDIO_DIR/env.sh"  (then re-initialise PortAudio).
#
# pulse: PulseAudio daemon with a null sink "rtsink" whose monitor "rtsink.monitor" is the
#        default source: what is played on the ALSA "pulse"/"default" device comes back on its
#        input (loopback). PortAudio reaches it through libasound2-plugins.
# jack:  jackd2 with the dummy driver, reached through PortAudio's JACK host API (device
#        "system"). Loopback = connect the client's output ports to its own input ports.
set -euo pipefail
KIND="${1:-pulse}"
DIR="${RTAUDIO_AUDIO_DIR:-/tmp/rtaudio-audio}"
RATE="${RTAUDIO_RATE:-48000}"
FMT="${RTAUDIO_PULSE_FORMAT:-float32le}"
PERIOD="${RTAUDIO_JACK_PERIOD:-256}"
JACK_RT="${RTAUDIO_JACK_RT:-0}"
PULSE_RT="${RTAUDIO_PULSE_RT:-0}"
PY="${PYTHON:-python3}"
mkdir -p "$DIR"; chmod 700 "$DIR"

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_visible() {  # $1 = env file, $2 = substring that must appear in the PortAudio device list
  # shellcheck disable=SC1090
  . "$1"
  for _ in $(seq 1 50); do
    if "$PY" - "$2" <<'PYEOF' 2>/dev/null; then return 0; fi
import sys, sounddevice as sd
sys.exit(0 if any(sys.argv[1] in (d['name'] + sd.query_hostapis(d['hostapi'])['name'])
                  for d in sd.query_devices()) else 1)
PYEOF
    sleep 0.2
  done
  echo "start-audio-server: $KIND devices did not appear in PortAudio's list" >&2; return 1
}

case "$KIND" in
pulse)
  command -v pulseaudio >/dev/null || {
    echo "start-audio-server: pulseaudio missing: apt-get install pulseaudio pulseaudio-utils libasound2-plugins libportaudio2" >&2; exit 2; }
  export PULSE_RUNTIME_PATH="$DIR/pulse" PULSE_STATE_PATH="$DIR/pulse-state"
  mkdir -p "$PULSE_RUNTIME_PATH" "$PULSE_STATE_PATH"; chmod 700 "$PULSE_RUNTIME_PATH"
  cat > "$DIR/pulse-env.sh" <<ENVEOF
export PULSE_RUNTIME_PATH="$PULSE_RUNTIME_PATH" PULSE_STATE_PATH="$PULSE_STATE_PATH"
export PULSE_SERVER="unix:$PULSE_RUNTIME_PATH/native"
ENVEOF
  if ! alive "$DIR/pulse.pid"; then
    # -n: no default.pa (no card probing); --system=false as root prints a warning but works;
    # exit-idle-time=-1 keeps it up between tests.
    RTOPTS=(--realtime=no --high-priority=no)
    [ "$PULSE_RT" = 1 ] && RTOPTS=(--realtime=yes --high-priority=yes)
    pulseaudio --daemonize=yes --system=false -n --exit-idle-time=-1 "${RTOPTS[@]}" \
      --use-pid-file=yes --disallow-exit=no --log-target=file:"$DIR/pulse.log" \
      --load="module-native-protocol-unix auth-anonymous=1" \
      --load="module-null-sink sink_name=rtsink format=$FMT rate=$RATE channels=2 sink_properties=device.description=rtsink" \
      --load="module-always-sink"
    for _ in $(seq 1 50); do [ -f "$PULSE_RUNTIME_PATH/pid" ] && break; sleep 0.1; done
    cp "$PULSE_RUNTIME_PATH/pid" "$DIR/pulse.pid"
  fi
  # shellcheck disable=SC1091
  . "$DIR/pulse-env.sh"
  pactl set-default-sink rtsink
  pactl set-default-source rtsink.monitor
  wait_visible "$DIR/pulse-env.sh" pulse
  ENVFILE="$DIR/pulse-env.sh"
  ;;
jack)
  command -v jackd >/dev/null || { echo "start-audio-server: jackd missing: apt-get install jackd2 libportaudio2" >&2; exit 2; }
  NAME="rtaudio$$"; [ -f "$DIR/jack.name" ] && NAME="$(cat "$DIR/jack.name")"
  cat > "$DIR/jack-env.sh" <<ENVEOF
export JACK_DEFAULT_SERVER="$NAME" JACK_NO_AUDIO_RESERVATION=1 JACK_NO_START_SERVER=1
ENVEOF
  # shellcheck disable=SC1091
  . "$DIR/jack-env.sh"
  if ! alive "$DIR/jack.pid"; then
    echo "$NAME" > "$DIR/jack.name"
    # -r = no realtime scheduling (containers often lack rtprio); -R = realtime (SCHED_FIFO)
    RTFLAG="-r"; [ "$JACK_RT" = 1 ] && RTFLAG="-R"
    setsid jackd -n "$NAME" "$RTFLAG" -d dummy -r "$RATE" -p "$PERIOD" -C 2 -P 2 \
      > "$DIR/jack.log" 2>&1 < /dev/null &
    echo $! > "$DIR/jack.pid"
    for _ in $(seq 1 50); do jack_lsp >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  wait_visible "$DIR/jack-env.sh" JACK
  ENVFILE="$DIR/jack-env.sh"
  ;;
*) echo "start-audio-server: unknown kind $KIND (pulse or jack)" >&2; exit 2 ;;
esac
cat "$DIR"/*-env.sh > "$DIR/env.sh"
echo "audio server '$KIND' up; source $ENVFILE (or $DIR/env.sh for every server started here)"
