"""The maintenance_schedule role's wrapper script (files/bosun_maintenance.py).

ansible-playbook is replaced by a stub that records its argv and environment; the webhook
by a receiver on loopback.
"""

import importlib.machinery
import importlib.util
import json
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "roles", "maintenance_schedule", "files", "bosun_maintenance.py")
TOKEN = "T0KEN-in-the-url"


def load_wrapper():
    loader = importlib.machinery.SourceFileLoader("bosun_maintenance_wrapper", SCRIPT)
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@pytest.fixture(name="wrapper")
def _wrapper():
    return load_wrapper()


def stub(tmp_path, body):
    path = tmp_path / "ansible-playbook"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def config_for(tmp_path, playbook_bin, **overrides):
    (tmp_path / "results").mkdir(exist_ok=True)
    (tmp_path / "metrics").mkdir(exist_ok=True)
    config = dict(
        scheduler="systemd",
        ansible_playbook=playbook_bin,
        playbook="bosun.platform.maintenance",
        inventory="/etc/bosun/inventory",
        collections_path="/opt/collections",
        working_dir=str(tmp_path),
        result_dir=str(tmp_path / "results"),
        metrics_dir=str(tmp_path / "metrics"),
        webhook_file=str(tmp_path / "webhook"),
        webhook_timeout=5,
        extra_vars={"site": "ams3"},
        jobs={
            "nightly": dict(
                tags=["backup", "vacuum"], limit="db1", timeout=60, window="01:00-05:00", extra_vars={"x": 1}
            )
        },
    )
    config.update(overrides)
    return config


def test_runs_the_playbook_with_the_jobs_tags_limit_and_variables(wrapper, tmp_path):
    record = tmp_path / "argv"
    playbook = stub(
        tmp_path,
        'for a in "$@"; do printf "%%s\\n" "$a"; done > %s\necho "$ANSIBLE_COLLECTIONS_PATH" > %s.env\nexit 3\n'
        % (record, record),
    )
    rc = wrapper.run(config_for(tmp_path, playbook), "nightly")
    assert rc == 3
    argv = record.read_text().splitlines()
    assert argv[:6] == [
        "--inventory",
        "/etc/bosun/inventory",
        "bosun.platform.maintenance",
        "--tags",
        "backup,vacuum",
        "--limit",
    ]
    assert argv[6] == "db1"
    extra = json.loads(argv[argv.index("--extra-vars") + 1])
    assert extra["bosun_maintenance_job_name"] == "nightly"
    assert extra["bosun_maintenance_window"] == "01:00-05:00"
    assert extra["bosun_maintenance_run_by"] == "systemd"
    assert extra["bosun_maintenance_result_dir"] == str(tmp_path / "results")
    assert extra["bosun_lock_owner"] == "systemd@%s" % socket.gethostname()
    assert extra["bosun_lock_timeout"] == 60 + 30  # the job's timeout and the kill grace
    assert extra["site"] == "ams3"
    assert extra["x"] == 1
    assert (tmp_path / "argv.env").read_text().strip() == "/opt/collections"


def test_a_job_past_its_timeout_is_stopped_and_recorded(wrapper, tmp_path):
    playbook = stub(tmp_path, "exec sleep 60\n")
    config = config_for(tmp_path, playbook)
    config["jobs"]["nightly"]["timeout"] = 1
    (tmp_path / "results" / "nightly.json").write_text(json.dumps({"last_success": "2026-11-01T02:00:00.000000Z"}))
    assert wrapper.run(config, "nightly") == 124
    result = json.loads((tmp_path / "results" / "nightly.json").read_text())
    assert result["status"] == "failed: timed out"
    assert result["last_success"] == "2026-11-01T02:00:00.000000Z"
    metrics = (tmp_path / "metrics" / "bosun_maintenance_nightly.prom").read_text()
    assert 'bosun_maintenance_last_status{job="nightly"} 0\n' in metrics


class Receiver:
    def __init__(self):
        self.posts = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.posts.append((self.path, self.headers["Content-Type"], json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = "http://127.0.0.1:%d/services/%s" % (self.server.server_port, TOKEN)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(name="receiver")
def _receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


def test_notify_posts_slack_json_with_the_jobs_result(wrapper, tmp_path, receiver, capsys, monkeypatch):
    config = config_for(tmp_path, "/bin/false")
    (tmp_path / "webhook").write_text(receiver.url + "\n")
    (tmp_path / "results" / "nightly.json").write_text(
        json.dumps(
            {
                "status": "refused: platform lock held",
                "message": "the platform lock is held by alice running deploy 7",
                "finished": "2026-11-26T02:15:01.000000Z",
            }
        )
    )
    monkeypatch.setenv("MONITOR_SERVICE_RESULT", "exit-code")
    assert wrapper.notify(config, "nightly") == 0
    [(path, content_type, body)] = receiver.posts
    assert path.endswith(TOKEN)
    assert content_type == "application/json"
    assert body["job"] == "nightly"
    assert "nightly" in body["text"]
    assert "refused: platform lock held" in body["text"]
    assert "alice" in body["text"]
    assert "exit-code" in body["text"]
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err


def test_a_failing_webhook_is_reported_without_its_url(wrapper, tmp_path, capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "webhook").write_text("http://127.0.0.1:%d/hooks/%s" % (port, TOKEN))
    assert wrapper.notify(config_for(tmp_path, "/bin/false"), "nightly") == 1
    out = capsys.readouterr()
    assert "posting the failure to the webhook failed" in out.out
    assert TOKEN not in out.out + out.err


def test_under_cron_the_wrapper_notifies_itself(wrapper, tmp_path, receiver):
    config = config_for(tmp_path, stub(tmp_path, "exit 2\n"), scheduler="cron")
    (tmp_path / "webhook").write_text(receiver.url)
    assert wrapper.run(config, "nightly") == 2
    assert len(receiver.posts) == 1
    assert "exit 2" in receiver.posts[0][2]["text"]


def test_under_systemd_the_wrapper_leaves_notifying_to_on_failure(wrapper, tmp_path, receiver):
    config = config_for(tmp_path, stub(tmp_path, "exit 2\n"))
    (tmp_path / "webhook").write_text(receiver.url)
    assert wrapper.run(config, "nightly") == 2
    assert receiver.posts == []


def test_an_unknown_job_is_refused_naming_the_known_ones(wrapper, tmp_path, capsys, monkeypatch):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config_for(tmp_path, "/bin/true")))
    monkeypatch.setattr(wrapper, "CONFIG", str(path))
    assert wrapper.main(["bosun-maintenance", "nightlly"]) == 2
    assert "unknown job 'nightlly' (known: nightly)" in capsys.readouterr().out
