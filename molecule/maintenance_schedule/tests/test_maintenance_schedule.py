"""bosun.platform.maintenance_schedule: a timer really runs a job; window and lock refusals.

Tests run in order: the timer test first (the selftest timer fires every 30 s), then the
job started outside its window, then the lock test, which stops the selftest timer so
that only the job under test competes for the lock.
"""

import json
import time

RESULTS = "/var/lib/bosun/maintenance/results"
METRICS = "/var/lib/prometheus/node-exporter"
POSTS = "/var/tmp/webhook-posts.jsonl"
TOKEN = "secret-hook-token"
JOBS = ("selftest", "windowtest", "locktest")
ANSIBLE = "ANSIBLE_COLLECTIONS_PATH=/opt/bosun-collections /opt/bosun-ansible/bin/ansible"


def wait_for(probe, seconds, step=2):
    """Call probe until it returns something truthy or `seconds` pass; return its last value."""
    deadline = time.monotonic() + seconds
    value = probe()
    while not value and time.monotonic() < deadline:
        time.sleep(step)
        value = probe()
    return value


def read_json(host, path):
    f = host.file(path)
    if not f.exists:
        return None
    try:
        return json.loads(f.content_string)
    except ValueError:  # being replaced at this moment
        return None


def metric(host, job, name):
    f = host.file("%s/bosun_maintenance_%s.prom" % (METRICS, job))
    assert f.exists, "no textfile metrics for %s" % job
    for line in f.content_string.splitlines():
        if line.startswith('%s{job="%s"} ' % (name, job)):
            return float(line.split()[-1])
    raise AssertionError("%s not in the metrics of %s:\n%s" % (name, job, f.content_string))


def test_timers_are_enabled_in_utc_without_catch_up(host):
    for job in JOBS:
        timer = "bosun-maintenance-%s.timer" % job
        assert host.run("systemctl is-enabled %s" % timer).stdout.strip() == "enabled", timer
        assert host.run("systemctl is-active %s" % timer).stdout.strip() == "active", timer
        assert host.run("systemctl show -p Persistent --value %s" % timer).stdout.strip() == "no", timer
    unit = host.run("systemctl cat bosun-maintenance-selftest.timer").stdout
    assert "OnCalendar=*:*:0/30 UTC" in unit
    service = host.run("systemctl cat bosun-maintenance-locktest.service").stdout
    assert "OnFailure=bosun-maintenance-notify@locktest.service" in service
    assert "ExecStart=/usr/local/bin/bosun-maintenance locktest" in service


def test_webhook_url_is_kept_secret(host):
    hook = host.file("/etc/bosun/maintenance/webhook")
    assert hook.mode == 0o600
    assert hook.user == "root"
    assert TOKEN not in host.file("/etc/bosun/maintenance/config.json").content_string
    assert TOKEN not in host.run("systemctl cat 'bosun-maintenance-*'").stdout


def test_the_timer_fires_the_job_and_it_writes_its_result(host):
    def ok_result():
        result = read_json(host, "%s/selftest.json" % RESULTS)
        return result if result and result.get("status") == "ok" else None

    result = wait_for(ok_result, seconds=180)
    last = read_json(host, "%s/selftest.json" % RESULTS)
    journal = host.run("journalctl --no-pager -n 60 -u bosun-maintenance-selftest.service").stdout
    assert result, "the timer did not produce an ok result of selftest; last %r; journal:\n%s" % (last, journal)
    assert result["job"] == "selftest"
    assert result["run_by"] == "systemd"
    assert result["tags"] == ["host"]
    assert "apt_cache_files" in result["work"]["localhost"]
    assert result["flight"]["localhost"]["pre"]["status"] == "ok"
    assert result["last_success"] == result["finished"]
    # The timer (not a person) started it, and the run logged to the journal.
    triggered = host.run("systemctl show -p LastTriggerUSec --value bosun-maintenance-selftest.timer").stdout.strip()
    assert triggered not in ("", "n/a", "0")
    assert "PLAY RECAP" in host.run("journalctl --no-pager -u bosun-maintenance-selftest.service").stdout
    assert metric(host, "selftest", "bosun_maintenance_last_status") == 1
    assert metric(host, "selftest", "bosun_maintenance_last_success_timestamp_seconds") > 0


def test_a_job_started_outside_its_window_is_skipped_and_reported(host):
    run = host.run("systemctl start bosun-maintenance-windowtest.service")
    assert run.rc == 0, run.stderr
    result = read_json(host, "%s/windowtest.json" % RESULTS)
    assert result["status"] == "skipped: outside window"
    assert "outside window" in result["message"]
    assert result["window"]["run"] is False
    assert metric(host, "windowtest", "bosun_maintenance_last_status") == 2
    assert metric(host, "windowtest", "bosun_maintenance_skipped_outside_window") == 1


def test_a_job_is_refused_while_the_lock_is_held_and_the_failure_is_posted(host):
    host.run("systemctl stop bosun-maintenance-selftest.timer")
    idle = wait_for(
        lambda: (
            host.run("systemctl is-active bosun-maintenance-selftest.service").stdout.strip()
            not in ("active", "activating")
        ),
        seconds=120,
    )
    assert idle, "selftest still running"
    take = host.run(
        "%s localhost -i /etc/bosun/inventory.ini -o -m bosun.platform.platform_lock "
        "-a 'taken_by=alice job=\"deploy 2026.11.3\"'" % ANSIBLE
    )
    assert take.rc == 0, take.stdout + take.stderr

    run = host.run("systemctl start bosun-maintenance-locktest.service")
    assert run.rc != 0, "the job ran although the platform lock was held"
    assert host.run("systemctl is-failed bosun-maintenance-locktest.service").stdout.strip() == "failed"

    result = read_json(host, "%s/locktest.json" % RESULTS)
    assert result["status"] == "refused: platform lock held"
    assert "alice" in result["message"]
    assert "deploy 2026.11.3" in result["message"]
    assert result["lock_holder"]["owner"] == "alice"
    assert metric(host, "locktest", "bosun_maintenance_lock_refused") == 1
    assert metric(host, "locktest", "bosun_maintenance_last_status") == 0
    # The lock still belongs to alice: the refused job neither took nor broke it.
    lock = json.loads(host.file("/var/lib/bosun/platform.lock").content_string)
    assert lock["owner"] == "alice"

    def posted():
        f = host.file(POSTS)
        if not f.exists:
            return None
        posts = [json.loads(line) for line in f.content_string.splitlines() if line.strip()]
        return [p for p in posts if json.loads(p["body"]).get("job") == "locktest"]

    posts = wait_for(posted, seconds=30)
    assert posts, "no webhook post for locktest; notify unit:\n%s" % (
        host.run("journalctl --no-pager -u 'bosun-maintenance-notify@*'").stdout
    )
    body = json.loads(posts[-1]["body"])
    assert posts[-1]["content_type"] == "application/json"
    assert posts[-1]["path"].endswith(TOKEN)  # the real receiver got the URL with its token
    assert "locktest" in body["text"]
    assert "refused" in body["text"]
    assert "alice" in body["text"]
    journal = host.run("journalctl --no-pager -u 'bosun-maintenance*'").stdout
    assert "posted to the webhook" in journal
    assert TOKEN not in journal
