"""Benchmark: 20 health checks as ONE bosun.platform.health_check task vs 20 builtin tasks.

Run by hand from the collection root (not part of the test suite):

    .venv/bin/python benchmarks/health_check.py [--rounds 3] [--json out.json]

It starts its own loopback services (nginx, PostgreSQL, Redis, a TCP port that never
answers) from tests/support, writes three playbooks and an inventory (localhost, local
connection) into a temporary directory, and runs them side by side, alternating, for a
bounded number of rounds:

  empty    an empty play: ansible-playbook's start-up cost
  module   one health_check task with 20 checks: 12 http (nginx), 3 postgres, 3 redis,
           1 disk, 1 tcp
  builtin  the same 20 checks as 20 tasks: ansible.builtin.uri x12, command psql x3,
           command redis-cli x3, command df x1, wait_for x1

Then once more with a 21st check against an endpoint that hangs (timeout 2 s) to show the
task still ends within that check's timeout + 0.5 s. It reports median wall times and the
ratios the issue sets as targets: the checks' part (playbook minus empty) >= 10x faster,
the whole playbook >= 5x faster. Only loopback is contacted; every loop is bounded and
every ansible-playbook run has a timeout.
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.support.collection import collections_path  # noqa: E402
from tests.support.nginx import NginxServer, SilentServer  # noqa: E402
from tests.support.servers import PostgresServer, RedisServer, TestCA  # noqa: E402

HANG_TIMEOUT = 2.0
RUN_TIMEOUT = 180  # seconds per ansible-playbook run
MAX_ROUNDS = 5
MAX_TOTAL = 900  # seconds for the whole benchmark
CALLBACK = "ansible.posix.json"  # for every run alike: it also gives each task's own wall time


def checks_for(pg, rds, web):
    checks = []
    for i in range(12):
        checks.append({"name": "http %02d" % i, "type": "http", "http": {"url": web.url("/health?n=%d" % i)}})
    for i in range(3):
        checks.append(
            {
                "name": "postgres %d" % i,
                "type": "postgres",
                "postgres": {
                    "login_host": pg.host,
                    "login_port": pg.port,
                    "login_user": "app",
                    "login_password": pg.app_password,
                    "dbname": "app",
                },
            }
        )
    for i in range(3):
        checks.append(
            {"name": "redis %d" % i, "type": "redis", "redis": {"login_port": rds.port, "login_password": rds.password}}
        )
    checks.append({"name": "disk", "type": "disk", "disk": {"path": "/"}, "warn": 99, "crit": 100})
    checks.append({"name": "tcp", "type": "tcp", "tcp": {"port": pg.port}})
    return checks


def builtin_tasks(pg, rds, web):
    tasks = []
    for i in range(12):
        tasks.append(
            {
                "name": "http %02d" % i,
                "ansible.builtin.uri": {"url": web.url("/health?n=%d" % i), "return_content": False},
            }
        )
    for i in range(3):
        tasks.append(
            {
                "name": "postgres %d" % i,
                "ansible.builtin.command": {
                    "argv": [
                        os.path.join(pg.bindir, "psql"),
                        "-X",
                        "-A",
                        "-t",
                        "-h",
                        pg.host,
                        "-p",
                        str(pg.port),
                        "-U",
                        "app",
                        "-d",
                        "app",
                        "-c",
                        "SELECT 1",
                    ]
                },
                "environment": {"PGPASSWORD": pg.app_password},
                "changed_when": False,
                "no_log": True,
            }
        )
    for i in range(3):
        tasks.append(
            {
                "name": "redis %d" % i,
                "ansible.builtin.command": {"argv": ["redis-cli", "-h", rds.host, "-p", str(rds.port), "PING"]},
                "environment": {"REDISCLI_AUTH": rds.password},
                "changed_when": False,
                "no_log": True,
            }
        )
    tasks.append({"name": "disk", "ansible.builtin.command": {"argv": ["df", "-P", "/"]}, "changed_when": False})
    tasks.append({"name": "tcp", "ansible.builtin.wait_for": {"host": pg.host, "port": pg.port, "timeout": 5}})
    return tasks


def play(name, tasks):
    return [{"name": name, "hosts": "localhost", "gather_facts": False, "tasks": tasks}]


def write(path, data):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)  # JSON is YAML
    return path


def run_playbook(workdir, playbook, callback=None):
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=collections_path(),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_RETRY_FILES_ENABLED="False",
        ANSIBLE_LOCAL_TEMP=os.path.join(workdir, "tmp"),
    )
    if callback:
        env["ANSIBLE_STDOUT_CALLBACK"] = callback
    binary = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    start = time.monotonic()
    proc = subprocess.run(
        [binary, "-i", os.path.join(workdir, "inventory.yml"), playbook],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    wall = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(
            "%s failed (rc=%s):\n%s\n%s"
            % (os.path.basename(playbook), proc.returncode, proc.stdout[-3000:], proc.stderr[-2000:])
        )
    return wall, proc.stdout


def _stamp(text):
    return datetime.datetime.strptime(text.rstrip("Z")[:26], "%Y-%m-%dT%H:%M:%S.%f")


def task_seconds(json_output, task_name):
    """(wall time, result) of one task from the ansible.posix.json callback's output."""
    data = json.loads(json_output)
    for play_result in data["plays"]:
        for task in play_result["tasks"]:
            if task["task"]["name"] == task_name:
                duration = task["task"]["duration"]
                seconds = (_stamp(duration["end"]) - _stamp(duration["start"])).total_seconds()
                return seconds, task["hosts"]["localhost"]
    raise SystemExit("task %r not found in the json callback output" % task_name)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three playbooks (max %d)" % MAX_ROUNDS)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    rounds = max(1, min(args.rounds, MAX_ROUNDS))
    began = time.monotonic()

    with (
        TestCA() as ca,
        PostgresServer(ca) as pg,
        RedisServer(ca) as rds,
        SilentServer() as silent,
        NginxServer(ca, silent_port=silent.port) as web,
        tempfile.TemporaryDirectory(prefix="bosun-bench-") as work,
    ):
        os.mkdir(os.path.join(work, "tmp"))
        write(
            os.path.join(work, "inventory.yml"),
            {
                "all": {
                    "hosts": {
                        "localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
                    }
                }
            },
        )
        checks = checks_for(pg, rds, web)
        books = {
            "empty": write(os.path.join(work, "empty.yml"), play("empty", [])),
            "module": write(
                os.path.join(work, "module.yml"),
                play("module", [{"name": "health", "bosun.platform.health_check": {"checks": checks}}]),
            ),
            "builtin": write(os.path.join(work, "builtin.yml"), play("builtin", builtin_tasks(pg, rds, web))),
        }
        hang = checks + [
            {
                "name": "hanging",
                "type": "http",
                "timeout": HANG_TIMEOUT,
                "http": {"url": "http://127.0.0.1:%d/" % silent.port},
            }
        ]
        hang_book = write(
            os.path.join(work, "hang.yml"),
            play("hang", [{"name": "health", "bosun.platform.health_check": {"checks": hang, "fail_on": "never"}}]),
        )

        run_playbook(work, books["empty"], callback=CALLBACK)  # warm the caches once, not measured
        times = dict((name, []) for name in books)
        task_times = []
        for n in range(rounds):
            order = list(books) if n % 2 == 0 else list(reversed(list(books)))
            for name in order:
                if time.monotonic() - began > MAX_TOTAL:
                    raise SystemExit("benchmark exceeded %d s; stopping" % MAX_TOTAL)
                wall, out = run_playbook(work, books[name], callback=CALLBACK)
                times[name].append(wall)
                if name == "module":
                    task_times.append(task_seconds(out, "health")[0])
                print("round %d  %-8s %6.2f s" % (n + 1, name, wall), flush=True)
        hang_wall, hang_out = run_playbook(work, hang_book, callback=CALLBACK)
        hang_task, hang_result = task_seconds(hang_out, "health")

    def ratios(n):
        empty, module, builtin = times["empty"][n], times["module"][n], times["builtin"][n]
        part = (builtin - empty) / (module - empty) if module > empty else None
        return part, builtin / module

    # A round runs the three playbooks back to back, so its ratios compare runs made under
    # the same load; on a shared machine the median of the rounds' ratios is the figure.
    med = dict((name, statistics.median(values)) for name, values in times.items())
    per_round = [ratios(n) for n in range(rounds)]
    part_ratios = [r[0] for r in per_round if r[0] is not None]
    whole_ratios = [r[1] for r in per_round]
    module_task = statistics.median(task_times)
    hanging = [c for c in hang_result["checks"] if c["name"] == "hanging"][0]
    figures = {
        "rounds": rounds,
        "wall_s": dict((k, [round(x, 2) for x in v]) for k, v in times.items()),
        "median_wall_s": dict((k, round(v, 2)) for k, v in med.items()),
        "median_checks_part_s": {
            "module": round(med["module"] - med["empty"], 2),
            "builtin": round(med["builtin"] - med["empty"], 2),
        },
        "ratio_checks_part": {
            "median": round(statistics.median(part_ratios), 1) if part_ratios else None,
            "per_round": [round(r, 1) for r in part_ratios],
        },
        "ratio_whole_playbook": {
            "median": round(statistics.median(whole_ratios), 1),
            "per_round": [round(r, 1) for r in whole_ratios],
        },
        "module_task_wall_s": {"median": round(module_task, 2), "all": [round(x, 2) for x in task_times]},
        "hang": {
            "check_timeout_s": HANG_TIMEOUT,
            "module_duration_s": round(hang_result["duration_ms"] / 1000.0, 2),
            "task_wall_s": round(hang_task, 2),
            "extra_over_module_task_s": round(hang_task - module_task, 2),
            "hanging_check": "%s: %s" % (hanging["status"], hanging["message"]),
            "playbook_wall_s": round(hang_wall, 2),
        },
    }
    hang = figures["hang"]
    print()
    print("20 checks on localhost, %d rounds (median wall times)" % rounds)
    print("  empty playbook (start-up)   %5.2f s" % med["empty"])
    print("  1 health_check task         %5.2f s   checks part %5.2f s" % (med["module"], med["module"] - med["empty"]))
    print(
        "  20 builtin tasks            %5.2f s   checks part %5.2f s" % (med["builtin"], med["builtin"] - med["empty"])
    )
    print(
        "  ratio, checks part          %5s x   per round %s   target >= 10 x"
        % (figures["ratio_checks_part"]["median"], figures["ratio_checks_part"]["per_round"])
    )
    print(
        "  ratio, whole playbook       %5s x   per round %s   target >= 5 x"
        % (figures["ratio_whole_playbook"]["median"], figures["ratio_whole_playbook"]["per_round"])
    )
    print("  the health_check task alone %5.2f s (Ansible's per-task overhead included)" % module_task)
    print(
        "with one endpoint hanging (check timeout %.1f s; target: done within %.1f s):"
        % (HANG_TIMEOUT, HANG_TIMEOUT + 0.5)
    )
    print(
        "  all 21 checks done in %.2f s (duration_ms); the task took %.2f s, %.2f s more than without the hang"
        % (hang["module_duration_s"], hang["task_wall_s"], hang["extra_over_module_task_s"])
    )
    print("  the hanging check: %s" % hang["hanging_check"])
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(figures, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
