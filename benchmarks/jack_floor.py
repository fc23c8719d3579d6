"""The machine's own xrun floor on JACK: two C clients that do almost nothing, no Python at all.

A private `jackd -R -d dummy` runs at each period with `jack_metro` and `jack_simple_client`
(jackd2's example clients) for SECONDS; the xruns jackd logs are counted by kind:

* `late`     a client overran its cycle (`JackEngine::XRun: client = X ... state = Running`)
* `waiting`  a client was signalled but its thread never ran in time (`state = Triggered`):
             the kernel (here, a virtual machine's vCPU) woke it too late
* `driver`   the dummy driver's own timer woke late (`JackTimedDriver::Process XRun`)

Whatever a Python client (rtaudio, benchmarks/roundtrip.py) shows at a period where this floor is
not zero cannot be pinned on Python. Run on an idle machine:

    python benchmarks/jack_floor.py --periods 64,128,256,512 --seconds 600
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.servers import jack_xruns, read_from  # noqa: E402


def count(log: str) -> dict[str, int]:
    """jackd's log text -> xruns by kind (late / waiting / driver)."""
    out = {"late": 0, "waiting": 0, "driver": 0}
    for key, n in jack_xruns(log).items():
        out["driver" if key == "(driver late)" else "waiting" if key.startswith("(") else "late"] += n
    return out


def floor(period: int, seconds: float, rate: int = 48000) -> dict[str, int]:
    name = f"floor{os.getpid()}"
    env = {**os.environ, "JACK_DEFAULT_SERVER": name, "JACK_NO_AUDIO_RESERVATION": "1",
           "JACK_NO_START_SERVER": "1"}
    log = Path(tempfile.mkdtemp(prefix="jack-floor-")) / "jack.log"
    with open(log, "w") as f:
        jackd = subprocess.Popen(["jackd", "-n", name, "-R", "-d", "dummy", "-r", str(rate),
                                  "-p", str(period), "-C", "2", "-P", "2"],
                                 stdout=f, stderr=subprocess.STDOUT, env=env)
    clients = []
    try:
        for _ in range(50):
            if subprocess.run(["jack_lsp"], env=env, capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        for cmd in (["jack_metro", "-b", "120"], ["jack_simple_client"]):
            clients.append(subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL))
        time.sleep(3.0)  # clients joining the graph may cost an xrun: not counted
        subprocess.run(["jack_connect", "metro:120_bpm", "system:playback_1"], env=env,
                       capture_output=True)
        start = log.stat().st_size
        time.sleep(seconds)
        return count(read_from(log, start))
    finally:
        for p in clients:
            p.terminate()
        time.sleep(0.3)
        jackd.terminate()
        jackd.wait(10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--periods", default="64,128,256,512,1024")
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args()
    from rich.console import Console
    from rich.table import Table

    t = Table("period", "ms", "seconds", "late", "waiting", "driver", "xruns/min", "load1",
              box=None)
    for period in map(int, args.periods.split(",")):
        c = floor(period, args.seconds)
        n = c["late"] + c["waiting"]
        t.add_row(str(period), f"{period / 48:.2f}", f"{args.seconds:g}", str(c["late"]),
                  str(c["waiting"]), str(c["driver"]), f"{n * 60 / args.seconds:.1f}",
                  f"{os.getloadavg()[0]:.2f}")
        print(period, c, flush=True)
    Console(width=120).print(t)
    print("jackd -R, dummy driver, 48 kHz; clients: jack_metro + jack_simple_client (C)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
