# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run one maintenance job of the catalogue (installed by bosun.platform.maintenance_schedule).

    bosun-maintenance JOB             run ansible-playbook <playbook> --tags <job's tags>
    bosun-maintenance --notify JOB    post the job's failure to the webhook (OnFailure=)
    bosun-maintenance --list          the jobs it knows

The playbook takes the platform lock, checks the window and writes the JSON result and
the textfile metrics; this script only starts it with the configured inventory, stops it
at the job's timeout (and records that), and, under cron, posts failures to the webhook
itself (under systemd the timer's service does that through OnFailure=). The webhook URL
is read from a root-only file and never printed.
"""

import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request

CONFIG = os.environ.get("BOSUN_MAINTENANCE_CONFIG", "/etc/bosun/maintenance/config.json")
KILL_GRACE = 30


def log(msg):
    print("bosun-maintenance: %s" % msg, flush=True)


def load_config():
    try:
        with open(CONFIG, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        log("cannot read the configuration %s: %s" % (CONFIG, exc))
        sys.exit(2)


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def result_path(config, job):
    return os.path.join(config.get("result_dir") or "", "%s.json" % job)


def read_result(config, job):
    try:
        with open(result_path(config, job), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def atomic_write(path, text, mode=0o644):
    tmp = "%s.tmp-%d" % (path, os.getpid())
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.rename(tmp, path)


def record_timeout(config, job, started, timeout):
    """The playbook was killed and wrote nothing: record the failure the same way."""
    finished = utcnow()
    previous = read_result(config, job)
    result = dict(
        job=job,
        status="failed: timed out",
        message="stopped after the job's timeout of %d s" % timeout,
        run_by=config.get("scheduler", "?"),
        controller=socket.gethostname(),
        started=started.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        finished=finished.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        duration_seconds=round((finished - started).total_seconds(), 3),
        errors=[dict(host="", task="", msg="timed out after %d s" % timeout)],
        last_success=previous.get("last_success"),
    )
    if config.get("result_dir"):
        atomic_write(result_path(config, job), json.dumps(result, indent=4, sort_keys=True) + "\n")
    if config.get("metrics_dir"):
        lines = []
        for name, value in (
            ("bosun_maintenance_last_status", 0),
            ("bosun_maintenance_last_run_timestamp_seconds", int(finished.timestamp())),
            ("bosun_maintenance_last_duration_seconds", result["duration_seconds"]),
            ("bosun_maintenance_lock_refused", 0),
            ("bosun_maintenance_skipped_outside_window", 0),
        ):
            lines += ["# TYPE %s gauge" % name, '%s{job="%s"} %s' % (name, job, value)]
        path = os.path.join(config["metrics_dir"], "bosun_maintenance_%s.prom" % job.replace("-", "_"))
        atomic_write(path, "\n".join(lines) + "\n")


def run(config, job):
    spec = config["jobs"][job]
    timeout = int(spec.get("timeout") or 3600)
    extra = dict(config.get("extra_vars") or {})
    extra.update(spec.get("extra_vars") or {})
    extra.update(
        bosun_maintenance_job_name=job,
        bosun_maintenance_run_by=config.get("scheduler", "timer"),
        bosun_maintenance_window=spec.get("window") or "",
        bosun_maintenance_result_dir=config.get("result_dir") or "",
        bosun_maintenance_metrics_dir=config.get("metrics_dir") or "",
        bosun_lock_owner="%s@%s" % (config.get("scheduler", "timer"), socket.gethostname()),
        # The job is stopped by then (SIGKILL at the end of the grace): its platform lock may be
        # broken after that (plus a margin), never while it runs.
        bosun_lock_timeout=timeout + KILL_GRACE,
    )
    argv = [config["ansible_playbook"], "--inventory", config["inventory"], config["playbook"]]
    argv += ["--tags", ",".join(spec["tags"])]
    if spec.get("limit"):
        argv += ["--limit", spec["limit"]]
    if config.get("vault_password_file"):
        argv += ["--vault-password-file", config["vault_password_file"]]
    argv += ["--extra-vars", json.dumps(extra, sort_keys=True)]
    env = dict(os.environ)
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_RETRY_FILES_ENABLED="0", PYTHONUNBUFFERED="1")
    env.setdefault("HOME", os.path.expanduser("~") or "/root")
    if config.get("collections_path"):
        env["ANSIBLE_COLLECTIONS_PATH"] = config["collections_path"]
    if config.get("ansible_config"):
        env["ANSIBLE_CONFIG"] = config["ansible_config"]
    env.update({str(k): str(v) for k, v in (config.get("environment") or {}).items()})
    started = utcnow()
    log("job %s: %s --tags %s (timeout %d s)" % (job, config["playbook"], ",".join(spec["tags"]), timeout))
    proc = subprocess.Popen(argv, env=env, cwd=config.get("working_dir") or "/", start_new_session=True)
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        log("job %s: timed out after %d s, stopping the playbook" % (job, timeout))
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=KILL_GRACE)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        record_timeout(config, job, started, timeout)
        rc = 124
    result = read_result(config, job)
    log(
        "job %s: exit %d, %s (%s)"
        % (job, rc, result.get("status", "no result written"), result.get("message", "see the playbook output above"))
    )
    if rc != 0 and config.get("scheduler") == "cron":
        notify(config, job, "exit %d" % rc)
    return rc


def notify(config, job, cause=""):
    path = config.get("webhook_file") or ""
    try:
        with open(path, encoding="utf-8") as f:
            url = f.read().strip()
    except OSError:
        url = ""
    if not url:
        log("job %s failed; no webhook configured" % job)
        return 0
    if not url.startswith(("https://", "http://")):
        log("job %s: the webhook URL in %s is not an http(s) URL; nothing posted" % (job, path))
        return 1
    result = read_result(config, job)
    systemd_result = os.environ.get("MONITOR_SERVICE_RESULT")
    if systemd_result:
        cause = "systemd: %s, %s %s" % (
            systemd_result,
            os.environ.get("MONITOR_EXIT_CODE", "?"),
            os.environ.get("MONITOR_EXIT_STATUS", "?"),
        )
    text = "bosun maintenance job *%s* failed on %s: %s: %s" % (
        job,
        socket.gethostname(),
        result.get("status", "no result"),
        result.get("message", "see journalctl -u %s-%s" % (config.get("unit_prefix", "bosun-maintenance"), job)),
    )
    if result.get("finished"):
        text += " (finished %s)" % result["finished"]
    if cause:
        text += " [%s]" % cause
    body = json.dumps(
        dict(text=text, job=job, host=socket.gethostname(), status=result.get("status", ""), result=result)
    ).encode("utf-8")
    headers = {"Content-Type": "application/json"}
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - http(s) checked
    try:
        timeout = float(config.get("webhook_timeout") or 10)
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) checked above
            log("job %s: failure posted to the webhook (HTTP %d)" % (job, response.status))
        return 0
    except (urllib.error.URLError, OSError, ValueError) as exc:
        log("job %s: posting the failure to the webhook failed: %s" % (job, str(exc).replace(url, "<webhook>")))
        return 1


def main(argv):
    if len(argv) == 2 and argv[1] == "--list":
        config = load_config()
        for name, spec in sorted(config["jobs"].items()):
            window = spec.get("window") or "-"
            print("%s\ttags=%s\twindow=%s\ttimeout=%s" % (name, ",".join(spec["tags"]), window, spec["timeout"]))
        return 0
    notify_mode = len(argv) == 3 and argv[1] == "--notify"
    if len(argv) != 2 and not notify_mode:
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    config = load_config()
    job = argv[-1]
    if job not in config.get("jobs", {}):
        log("unknown job %r (known: %s)" % (job, ", ".join(sorted(config.get("jobs", {}))) or "none"))
        return 2
    if notify_mode:
        return notify(config, job)
    return run(config, job)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
