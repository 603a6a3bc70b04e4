"""Run the stages of the test suite a few at a time and report each one whole.

    pool.py [-j N] TARGET ...   (targets of the Makefile, e.g. lint molecule-topology)

Most of the suite waits on containers (apt, systemd, SSH), not on the two cores, so
running independent stages side by side shortens `make test` without dropping a check.
Every stage writes to its own log under .cache/test-logs/; when a stage ends, its log is
printed in one piece (never interleaved with another's), with the time it took.

Stages start in the order given (put the longest first). A failed stage does not stop
the others: the run reports every failure, and exits non-zero if there was one. Each
target records its time in .cache/stage-times (scripts/stage.sh), which .ci/run prints.
"""

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOGS = ROOT / ".cache" / "test-logs"
HEARTBEAT = 300  # seconds between "still running" lines, so a CI log never looks stuck


def stamp():
    return time.strftime("%H:%M:%S", time.gmtime())


class Stage:
    def __init__(self, name):
        self.name = name
        self.log = LOGS / (name + ".log")
        self.proc = None
        self.start = None
        self.seconds = None
        self.rc = None

    def launch(self):
        self.log.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.log, "wb")
        self.start = time.monotonic()
        # A process group of its own, so an interrupted run can stop the whole stage.
        self.proc = subprocess.Popen(
            ["make", "--no-print-directory", self.name],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        handle.close()
        print("===== %s start %s =====" % (self.name, stamp()), flush=True)

    def poll(self):
        if self.proc is None or self.rc is not None:
            return False
        rc = self.proc.poll()
        if rc is None:
            return False
        self.rc = rc
        self.seconds = int(time.monotonic() - self.start)
        return True

    @property
    def status(self):
        return "ok" if self.rc == 0 else "FAILED rc=%s" % self.rc

    def report(self):
        sys.stdout.flush()
        print("\n===== %s: log =====" % self.name, flush=True)
        with open(self.log, "rb") as log:
            while True:
                chunk = log.read(1 << 16)
                if not chunk:
                    break
                sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        print("===== %s: %s in %ss (%s) =====\n" % (self.name, self.status, self.seconds, stamp()), flush=True)

    def stop(self):
        if self.proc is not None and self.rc is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("-j", "--jobs", type=int, default=int(os.environ.get("BOSUN_TEST_JOBS", "3")))
    parser.add_argument("stages", nargs="+", metavar="TARGET")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if len(set(args.stages)) != len(args.stages):
        parser.error("each target once: %s" % " ".join(args.stages))

    waiting = [Stage(name) for name in args.stages]
    running, done = [], []

    def interrupted(signum, frame):
        for stage in running:
            stage.stop()
        # Give each stage the time to clean up (a Molecule scenario destroys its containers).
        for stage in running:
            try:
                stage.proc.wait(timeout=180)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(stage.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)

    begin = time.monotonic()
    last_beat = begin
    print("pool: %d stages, %d at a time; logs in %s" % (len(waiting), args.jobs, LOGS.relative_to(ROOT)), flush=True)
    while waiting or running:
        while waiting and len(running) < args.jobs:
            stage = waiting.pop(0)
            stage.launch()
            running.append(stage)
        for stage in list(running):
            if stage.poll():
                running.remove(stage)
                done.append(stage)
                stage.report()
        now = time.monotonic()
        if running and now - last_beat >= HEARTBEAT:
            last_beat = now
            busy = ", ".join("%s (%ds)" % (s.name, now - s.start) for s in running)
            print("pool %s: running %s; %d waiting" % (stamp(), busy, len(waiting)), flush=True)
        time.sleep(1)

    failed = [s for s in done if s.rc != 0]
    print("pool: %d stages in %ds, %d failed" % (len(done), time.monotonic() - begin, len(failed)), flush=True)
    for stage in done:
        print("  %-22s %6ss  %s" % (stage.name, stage.seconds, stage.status))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
