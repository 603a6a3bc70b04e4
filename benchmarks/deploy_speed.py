"""Deploy speed in the lab: the collection's tuned settings against Ansible's defaults.

Needs the lab up and converged (`make lab`). Each round deploys a new release of the example
app twice, once per setting, alternating which goes first, then a no-change deploy per
setting. Reports wall time and the tasks each app host ran (ok + changed from the recap),
and the ratio defaults / tuned.

  tuned:    ansible.cfg as shipped: pipelining, ControlPersist 300 s, facts gathered only
            where a play needs them (deploy gathers none), fact cache, forks 20
  defaults: pipelining off, Ansible's own ssh_args (ControlPersist 60 s), every play
            gathers all facts, no fact cache, forks 5

With --rtt-ms N every SSH connection goes through benchmarks/delay_proxy.py, which adds
N/2 ms each way: the lab's containers then answer like Droplets N ms away (an operator's
laptop or a CI runner in another region), which is where pipelining pays.

  .venv/bin/python benchmarks/deploy_speed.py --rounds 2
  .venv/bin/python benchmarks/deploy_speed.py --rounds 2 --rtt-ms 40
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
DIST = os.path.join(ROOT, ".cache", "lab", "dist")
RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)", re.M)

SETTINGS = {
    "tuned": {},
    "defaults": {
        "ANSIBLE_PIPELINING": "False",
        "ANSIBLE_SSH_ARGS": "-C -o ControlMaster=auto -o ControlPersist=60s",
        "ANSIBLE_GATHERING": "implicit",
        "ANSIBLE_CACHE_PLUGIN": "memory",
        "ANSIBLE_FORKS": "5",
    },
}
DEFAULTS_EXTRA = {"bosun_deploy_gather_facts": True}


def build(version):
    target = os.path.join(DIST, "bosun-example-app-%s.tar.gz" % version)
    if not os.path.exists(target):
        subprocess.run(
            [sys.executable, os.path.join(ROOT, "examples/app/build.py"), "--version", version, "--out", DIST],
            check=True,
            capture_output=True,
        )


def ansible_playbook():
    """ansible-playbook beside this interpreter (.venv/bin/python) when there is one, else from PATH."""
    local = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    return local if os.path.exists(local) else "ansible-playbook"


def run_playbook(playbook, setting, extra=None, rtt_ms=0, options=(), env=None):
    """Run playbooks/<playbook> in the lab with one of SETTINGS (and env on top); exit on failure.

    Returns the wall time and the recap by host: {host: {ok, changed, unreachable, failed, skipped}}.
    """
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), **SETTINGS[setting], **(env or {}))
    # New SSH masters for every run (through the delaying proxy when asked).
    env["ANSIBLE_SSH_CONTROL_PATH_DIR"] = tempfile.mkdtemp(prefix="bosun-cp-")
    extra = dict(extra or {})
    if rtt_ms:
        proxy = "python3 %s %%h %%p %s" % (os.path.join(ROOT, "benchmarks", "delay_proxy.py"), rtt_ms / 2.0)
        extra["ansible_ssh_common_args"] = (
            "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ProxyCommand='%s'" % proxy
        )
    argv = [ansible_playbook(), os.path.join(ROOT, "playbooks", playbook), *options]
    if extra:
        argv += ["-e", json.dumps(extra)]
    start = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=1800)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit("%s (%s) failed:\n%s%s" % (" ".join(argv[1:]), setting, proc.stdout[-3000:], proc.stderr[-2000:]))
    fields = ("ok", "changed", "unreachable", "failed", "skipped")
    return wall, {m[0]: dict(zip(fields, map(int, m[1:]))) for m in RECAP.findall(proc.stdout)}


def deploy(setting, release, rtt_ms=0):
    extra = {"release": release, **(DEFAULTS_EXTRA if setting == "defaults" else {})}
    wall, recap = run_playbook("deploy.yml", setting, extra, rtt_ms)
    return wall, {host: r["ok"] + r["changed"] for host, r in recap.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rtt-ms", type=float, default=0, help="round-trip time to add to every SSH connection")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    results = []
    version = int(time.time()) % 100000
    for n in range(args.rounds):
        order = ["tuned", "defaults"] if n % 2 == 0 else ["defaults", "tuned"]
        for setting in order:
            release = "5.%d.%d" % (version, len(results))
            build(release)
            for kind in ("one release", "no change"):
                wall, tasks = deploy(setting, release, args.rtt_ms)
                results.append(dict(kind=kind, setting=setting, release=release, wall=wall, tasks=tasks))
                print("%-11s %-8s %-14s %6.1f s  tasks %s" % (kind, setting, release, wall, tasks), flush=True)
    print()
    for kind in ("one release", "no change"):
        walls = {s: [r["wall"] for r in results if r["kind"] == kind and r["setting"] == s] for s in SETTINGS}
        mean = {s: sum(v) / len(v) for s, v in walls.items()}
        print(
            "%-11s tuned %.1f s, defaults %.1f s: defaults / tuned = %.2fx"
            % (kind, mean["tuned"], mean["defaults"], mean["defaults"] / mean["tuned"])
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
