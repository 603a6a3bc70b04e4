"""Converge speed in the lab: site.yml with the collection's tuned settings against Ansible's defaults.

Needs the lab up and converged (`make lab`). Each round runs, once per setting and alternating
which goes first:

  no change   site.yml on the converged lab: every task finds its work done (changed=0)
  --check     site.yml --check on the converged lab (changed=0)
  first run   with --first-run only, before the two above: the lab's hosts are removed and
              created afresh (scripts/lab.sh down, up; not timed), then site.yml provisions
              them from nothing, about five minutes per setting; then deploy.yml (not timed)
              installs the lab's release again, as `make lab` leaves the lab.

Reports wall time per setting, the ratio defaults / tuned, the changed count from the recap
(summed over the hosts; a no-change or check run that changes anything is a regression, and
the script exits 1 after printing the table) and the mean tasks per host (ok + changed).

  tuned:    ansible.cfg as shipped: pipelining, ControlPersist 300 s, facts gathered once
            (site.yml's first play, minimal subsets) and cached for an hour, forks 20
            (the cache in a directory of this script's own, filled before the timed runs
            as a first run fills it, so that other runs on the machine cannot touch it)
  defaults: pipelining off, Ansible's own ssh_args (ControlPersist 60 s), no fact cache (the
            first play gathers on every run), forks 5

The settings and the --rtt-ms option are deploy_speed.py's: with --rtt-ms N every SSH
connection goes through benchmarks/delay_proxy.py, which adds N/2 ms each way.

  .venv/bin/python benchmarks/converge_speed.py                       # about 10 minutes, quiet machine
  .venv/bin/python benchmarks/converge_speed.py --first-run           # about 25 minutes, quiet machine
  .venv/bin/python benchmarks/converge_speed.py --rounds 2 --rtt-ms 40
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from deploy_speed import ROOT, SETTINGS, build, run_playbook

KINDS = ("first run", "no change", "--check")
OPTIONS = {"first run": (), "no change": (), "--check": ("--check",)}
# The release `make lab` deploys (scripts/lab.sh), deployed again after a first run.
LAB_RELEASE = "1.0.0"
# What site.yml's first play gathers, and so what the tuned setting's fact cache holds.
GATHER_SUBSET = "min,hardware,network,virtual"


def lab(action):
    """scripts/lab.sh ACTION, not timed."""
    proc = subprocess.run(
        ["bash", os.path.join(ROOT, "scripts", "lab.sh"), action], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        sys.exit("scripts/lab.sh %s failed:\n%s%s" % (action, proc.stdout[-3000:], proc.stderr[-2000:]))


def fill_fact_cache(facts):
    """Fill the tuned setting's fact cache as a run of site.yml does (not timed).

    gather_facts, not setup: only it marks the facts as gathered, which `gathering = smart` asks.
    """
    local = os.path.join(os.path.dirname(sys.executable), "ansible")
    argv = [local if os.path.exists(local) else "ansible", "all", "-m", "ansible.builtin.gather_facts"]
    argv += ["-a", "gather_subset=%s" % GATHER_SUBSET]
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), **SETTINGS["tuned"], **facts)
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=600)
    if proc.returncode != 0:
        sys.exit("gathering the facts failed:\n%s%s" % (proc.stdout[-3000:], proc.stderr[-2000:]))


def row(results, kind):
    """Means over the rounds of one kind and setting: wall, changed (the most of any run), tasks per host."""
    out = {}
    for setting in SETTINGS:
        runs = [r for r in results if r["kind"] == kind and r["setting"] == setting]
        if not runs:
            continue
        out[setting] = dict(
            wall=sum(r["wall"] for r in runs) / len(runs),
            changed=max(r["changed"] for r in runs),
            tasks=sum(r["tasks_per_host"] for r in runs) / len(runs),
        )
    return out


def table(results, rounds, rtt_ms):
    hosts = max(len(r["recap"]) for r in results)
    link = "%g ms RTT added" % rtt_ms if rtt_ms else "lab link as is"
    lines = [
        "| site.yml on the %d-host lab (%s, %d %s) | tuned | defaults | defaults / tuned "
        "| changed: tuned / defaults | tasks per host: tuned / defaults |"
        % (hosts, link, rounds, "round" if rounds == 1 else "rounds"),
        "|---|---|---|---|---|---|",
    ]
    for kind in KINDS:
        means = row(results, kind)
        if not means:
            continue
        # A run that failed leaves its setting out: "-".
        cell = {s: means.get(s, dict(wall=None, changed=None, tasks=None)) for s in SETTINGS}
        tuned, defaults = cell["tuned"], cell["defaults"]
        ratio = "%.2fx" % (defaults["wall"] / tuned["wall"]) if len(means) == len(SETTINGS) else "-"

        def fmt(value, spec):
            return "-" if value is None else spec % value

        lines.append(
            "| %s | %s | %s | %s | %s / %s | %s / %s |"
            % (
                "`--check`" if kind == "--check" else kind,
                fmt(tuned["wall"], "%.1f s"),
                fmt(defaults["wall"], "%.1f s"),
                ratio,
                fmt(tuned["changed"], "%d"),
                fmt(defaults["changed"], "%d"),
                fmt(tuned["tasks"], "%.1f"),
                fmt(defaults["tasks"], "%.1f"),
            )
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--first-run", action="store_true", help="also time site.yml on freshly created hosts")
    parser.add_argument("--rtt-ms", type=float, default=0, help="round-trip time to add to every SSH connection")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    results = []
    load = [os.getloadavg()[0]]
    cache = tempfile.mkdtemp(prefix="bosun-facts-")
    facts = {"ANSIBLE_CACHE_PLUGIN_CONNECTION": cache}

    def measure(kind, setting):
        wall, recap = run_playbook(
            "site.yml", setting, rtt_ms=args.rtt_ms, options=OPTIONS[kind], env=facts if setting == "tuned" else None
        )
        tasks = {host: r["ok"] + r["changed"] for host, r in recap.items()}
        changed = sum(r["changed"] for r in recap.values())
        results.append(
            dict(
                kind=kind,
                setting=setting,
                wall=wall,
                changed=changed,
                tasks=tasks,
                tasks_per_host=sum(tasks.values()) / max(len(tasks), 1),
                recap=recap,
            )
        )
        print("%-9s %-8s %6.1f s  changed %-3d tasks %s" % (kind, setting, wall, changed, tasks), flush=True)

    def rounds():
        if not args.first_run:
            fill_fact_cache(facts)
        for n in range(args.rounds):
            order = ["tuned", "defaults"] if n % 2 == 0 else ["defaults", "tuned"]
            if args.first_run:
                for setting in order:
                    start = time.monotonic()
                    lab("down")
                    lab("up")
                    shutil.rmtree(cache)
                    os.mkdir(cache)
                    print("(lab hosts created afresh in %.0f s)" % (time.monotonic() - start), flush=True)
                    measure("first run", setting)
                # Back to the lab `make lab` leaves (its release deployed), the tuned fact cache filled.
                start = time.monotonic()
                build(LAB_RELEASE)
                run_playbook("deploy.yml", "tuned", {"release": LAB_RELEASE}, args.rtt_ms)
                fill_fact_cache(facts)
                print("(release %s deployed again in %.0f s)" % (LAB_RELEASE, time.monotonic() - start), flush=True)
            for kind in ("no change", "--check"):
                for setting in order:
                    measure(kind, setting)

    try:
        rounds()
    except SystemExit:
        if results:
            print("\nmeasured before the failure:\n%s" % table(results, args.rounds, args.rtt_ms), file=sys.stderr)
        raise
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    load.append(os.getloadavg()[0])
    print()
    print(table(results, args.rounds, args.rtt_ms))
    print("\n%d cores, load average %.1f at the start, %.1f at the end" % (os.cpu_count(), load[0], load[-1]))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
    regressions = [r for r in results if r["kind"] != "first run" and r["changed"]]
    for r in regressions:
        changed = {host: c["changed"] for host, c in r["recap"].items() if c["changed"]}
        print("REGRESSION: %s (%s) changed %s" % (r["kind"], r["setting"], changed), file=sys.stderr)
    sys.exit(1 if regressions else 0)


if __name__ == "__main__":
    main()
