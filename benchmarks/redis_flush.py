"""Benchmark: bosun.platform.redis_flush (as an Ansible task) against the usual shell pipeline.

    .venv/bin/python benchmarks/redis_flush.py [--keys 2000000] [--matching 1000000] [--json out.json]

A throwaway Redis on a free loopback port (tests/support/servers.py, DEBUG enabled) gets
``--keys`` string keys, ``--matching`` of them named ``menu:N`` and the rest ``menux:N``
(a neighbour that must survive). Before every run the data is rebuilt the same way, the
server's statistics and SLOWLOG (threshold 10 ms) are reset, and after it every ``menux:``
key must still be there and no ``menu:`` key left. The runs:

- ``ansible``: ansible-playbook running one bosun.platform.redis_flush task (patterns
  ``menu:*``, defaults), wall time end to end; the module's own ``duration_ms`` is read
  from its result;
- ``redis-py``: a plain redis-py loop (SCAN COUNT 1000, UNLINK of each reply through a
  non-transactional pipeline), the calibration baseline of the issue;
- ``redis-cli``: ``redis-cli --scan --pattern 'menu:*' | xargs -L 100 redis-cli unlink``, the
  two processes connected by a pipe (no shell), the password in REDISCLI_AUTH.

For each: wall time, keys/s, SLOWLOG entries, the server's busy time for the flush (the
``usec`` of SCAN and UNLINK in INFO commandstats), which no client can beat, and the CPU
time redis-server used during the run (which, unlike the other two, does not grow when the
machine is shared and Redis waits for a core). Every run has a
timeout (``--timeout``) and the script stops by itself; it talks only to 127.0.0.1.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.support.collection import collections_path  # noqa: E402
from tests.support.servers import RedisServer, TestCA  # noqa: E402

SLOWLOG_USEC = 10000
PLAYBOOK = """\
- name: redis_flush benchmark
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Flush menu:*
      bosun.platform.redis_flush:
        patterns: ["menu:*"]
        login_host: 127.0.0.1
        login_port: "{{ bench_port }}"
        login_password: "{{ bench_password }}"
"""


def rebuild(client, matching, others):
    client.flushall(asynchronous=False)
    client.execute_command("DEBUG", "POPULATE", matching, "menu")
    client.execute_command("DEBUG", "POPULATE", others, "menux")
    size = client.dbsize()
    if size != matching + others:
        raise SystemExit("populate made %d keys, not %d" % (size, matching + others))
    client.config_resetstat()
    client.slowlog_reset()


def server_cpu_s(server):
    """CPU seconds the redis-server process has used (user + system), from /proc.

    Unlike wall time and the commands' ``usec`` it does not grow when other work on the
    machine takes the CPU away from Redis, so it tells load from work on a shared machine.
    """
    with open("/proc/%d/stat" % server.proc.pid, encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_side(client):
    stats = client.info("commandstats")
    usec = {name: stats.get("cmdstat_" + name, {}).get("usec", 0) for name in ("scan", "unlink", "del")}
    calls = {name: stats.get("cmdstat_" + name, {}).get("calls", 0) for name in ("scan", "unlink", "del")}
    slow = client.slowlog_get(1024)
    return dict(
        busy_s=(usec["scan"] + usec["unlink"] + usec["del"]) / 1e6,
        scan_calls=calls["scan"],
        unlink_calls=calls["unlink"],
        slowlog=len(slow),
        slowlog_commands=sorted({_command_name(entry) for entry in slow}),
        slowlog_max_ms=max([entry["duration"] / 1000.0 for entry in slow] or [0]),
    )


def _command_name(entry):
    command = entry["command"]
    if isinstance(command, bytes):
        command = command.decode("utf-8", "replace")
    return command.split(" ", 1)[0].upper()


def verify(client, matching, others):
    left = client.dbsize()
    ok = left == others and client.exists("menux:0", "menux:%d" % (others - 1)) == 2
    ok = ok and client.exists("menu:0", "menu:%d" % (matching - 1)) == 0
    if not ok:
        raise SystemExit("wrong keys deleted: %d keys left, expected %d menux:* keys" % (left, others))


def run_ansible(server, workdir, timeout):
    playbook = os.path.join(workdir, "bench.yml")
    variables = os.path.join(workdir, "vars.json")
    with open(playbook, "w", encoding="utf-8") as f:
        f.write(PLAYBOOK)
    fd = os.open(variables, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(
            {
                "bench_port": server.port,
                "bench_password": server.password,
                "ansible_python_interpreter": sys.executable,
            },
            f,
        )
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=collections_path(),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_CALLBACK_RESULT_FORMAT="json",
    )
    argv = [
        os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
        "-v",
        "-i",
        "localhost,",
        "-c",
        "local",
        "-e",
        "@" + variables,
        playbook,
    ]
    started = time.monotonic()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    wall = time.monotonic() - started
    if proc.returncode != 0 or server.password in proc.stdout + proc.stderr:
        raise SystemExit("ansible-playbook failed (rc=%s):\n%s" % (proc.returncode, proc.stdout[-3000:]))
    start = proc.stdout.index("=> {", proc.stdout.index("changed: [localhost]")) + 3
    result, _end = json.JSONDecoder().raw_decode(proc.stdout, start)
    return dict(wall_s=wall, deleted=result["deleted"], module_s=result["duration_ms"] / 1000.0)


def run_redis_py(server, timeout):
    client = server.client(socket_timeout=timeout)
    deleted = 0
    started = time.monotonic()
    cursor = 0
    while True:
        cursor, keys = client.scan(cursor=cursor, match="menu:*", count=1000)
        if keys:
            pipe = client.pipeline(transaction=False)
            pipe.unlink(*keys)
            deleted += pipe.execute()[0]
        if cursor == 0:
            break
        if time.monotonic() - started > timeout:
            raise SystemExit("redis-py loop timed out after %s s" % timeout)
    return dict(wall_s=time.monotonic() - started, deleted=deleted)


def run_redis_cli(server, timeout):
    env = dict(os.environ, REDISCLI_AUTH=server.password)
    base = ["redis-cli", "-h", "127.0.0.1", "-p", str(server.port)]
    started = time.monotonic()
    scan = subprocess.Popen([*base, "--scan", "--pattern", "menu:*"], env=env, stdout=subprocess.PIPE)
    unlink = subprocess.Popen(
        ["xargs", "-L", "100", *base, "unlink"], env=env, stdin=scan.stdout, stdout=subprocess.PIPE, text=True
    )
    scan.stdout.close()
    try:
        out, _err = unlink.communicate(timeout=timeout)
        scan.wait(timeout=10)
    except subprocess.TimeoutExpired:
        for proc in (scan, unlink):
            proc.kill()
            proc.wait()
        raise SystemExit("redis-cli pipeline timed out after %s s" % timeout) from None
    wall = time.monotonic() - started
    deleted = sum(int(line.split()[-1]) for line in out.splitlines() if line.strip())
    return dict(wall_s=wall, deleted=deleted)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--keys", type=int, default=2000000, help="keys in the database (default 2000000)")
    parser.add_argument("--matching", type=int, default=1000000, help="of them named menu:N (default 1000000)")
    parser.add_argument("--timeout", type=int, default=240, help="seconds each run may take (default 240)")
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=["ansible", "redis-py", "redis-cli"],
        help="leave a run out (repeatable)",
    )
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    others = args.keys - args.matching
    runs = [name for name in ("ansible", "redis-py", "redis-cli") if name not in args.skip]
    figures = dict(keys=args.keys, matching=args.matching, load_before=os.getloadavg(), runs={})

    config = ["enable-debug-command local", "slowlog-log-slower-than %d" % SLOWLOG_USEC, "slowlog-max-len 1024"]
    with (
        TestCA() as ca,
        RedisServer(ca, extra_config=config) as server,
        tempfile.TemporaryDirectory(prefix="bosun-bench-") as workdir,
    ):
        client = server.client(socket_timeout=120)
        figures["redis_version"] = client.info("server")["redis_version"]
        for name in runs:
            rebuild(client, args.matching, others)
            cpu_before = server_cpu_s(server)
            if name == "ansible":
                figure = run_ansible(server, workdir, args.timeout)
            elif name == "redis-py":
                figure = run_redis_py(server, args.timeout)
            else:
                figure = run_redis_cli(server, args.timeout)
            figure["server_cpu_s"] = server_cpu_s(server) - cpu_before
            figure.update(server_side(client))
            verify(client, args.matching, others)
            if figure["deleted"] != args.matching:
                raise SystemExit("%s reported %d keys deleted, not %d" % (name, figure["deleted"], args.matching))
            figure["keys_per_s"] = args.matching / figure["wall_s"]
            figures["runs"][name] = figure
            print("%-9s done in %.2f s" % (name, figure["wall_s"]), file=sys.stderr)
    figures["load_after"] = os.getloadavg()
    report(figures)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(figures, f, indent=2)


def report(figures):
    runs = figures["runs"]
    print(
        "redis_flush benchmark: %d keys, %d matching menu:*, Redis %s, load %.2f -> %.2f"
        % (
            figures["keys"],
            figures["matching"],
            figures["redis_version"],
            figures["load_before"][0],
            figures["load_after"][0],
        )
    )
    print(
        "%-10s %9s %12s %10s %10s %10s %8s %12s"
        % ("run", "wall s", "keys/s", "busy s", "cpu s", "SCAN calls", "SLOWLOG", "max slow ms")
    )
    for name, fig in runs.items():
        print(
            "%-10s %9.2f %12.0f %10.2f %10.2f %10d %8d %12.1f"
            % (
                name,
                fig["wall_s"],
                fig["keys_per_s"],
                fig["busy_s"],
                fig["server_cpu_s"],
                fig["scan_calls"],
                fig["slowlog"],
                fig["slowlog_max_ms"],
            )
        )
    if "ansible" in runs:
        ans = runs["ansible"]
        print(
            "module's own flush time (its duration_ms): %.2f s = %.2fx the server's busy time"
            % (ans["module_s"], ans["module_s"] / ans["busy_s"])
        )
        for other in ("redis-cli", "redis-py"):
            if other in runs:
                print(
                    "%s wall / ansible task wall = %.1f (module's own flush time: %.1f)"
                    % (other, runs[other]["wall_s"] / ans["wall_s"], runs[other]["wall_s"] / ans["module_s"])
                )


if __name__ == "__main__":
    main()
