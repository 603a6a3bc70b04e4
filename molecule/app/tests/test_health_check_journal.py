"""bosun.platform.health_check on a real systemd host keeps header secrets out of its journal.

AnsibleModule writes every invocation to the managed host's journal ("Invoked with ...", and
through the journal API one field per option). The module must have masked the values of
sensitive headers and of `secret_headers` before that record is written.
"""

import json
import secrets
import uuid


def _journal_export(host, *args):
    """`journalctl -o export` (every field, binary ones raw) after flushing what journald holds."""
    host.check_output("journalctl --sync")
    cmd = host.run("journalctl -q -o export" + " %s" * len(args), *args)  # quoted: a cursor has ';'
    assert cmd.rc == 0, cmd.stderr
    return cmd.stdout_bytes


def _entries(raw):
    """Parse journal export format: NAME=value lines, or NAME, 64-bit LE size, raw data."""
    entries, entry, i = [], {}, 0
    while i < len(raw):
        end = raw.find(b"\n", i)
        end = len(raw) if end == -1 else end
        line = raw[i:end]
        if not line:
            if entry:
                entries.append(entry)
            entry, i = {}, end + 1
        elif b"=" in line:
            name, value = line.split(b"=", 1)
            entry[name.decode()] = value
            i = end + 1
        else:
            size = int.from_bytes(raw[end + 1 : end + 9], "little")
            entry[line.decode()] = raw[end + 9 : end + 9 + size]
            i = end + 9 + size + 1
    if entry:
        entries.append(entry)
    return entries


def test_health_check_keeps_header_secrets_out_of_the_journal(host):
    token = "Bearer " + secrets.token_urlsafe(24)  # made up for this run only
    signature = secrets.token_hex(16)  # a secret header whose name says nothing
    marker = "trace-" + uuid.uuid4().hex  # not secret: must be logged
    # Where the journal stands before the run (the token is never part of a command on the host).
    last = _entries(_journal_export(host, "-n", "1"))
    cursor = last[-1]["__CURSOR"].decode()

    result = host.ansible(
        "bosun.platform.health_check",
        json.dumps(
            {
                "fail_on": "never",
                "checks": [
                    {
                        "name": "app health with headers",
                        "type": "http",
                        "http": {
                            "url": "http://127.0.0.1:8000/health",
                            "status_codes": [200, 503],
                            "headers": {"Authorization": token, "X-Trace": marker},
                            "secret_headers": {"X-Signature": signature},
                        },
                    }
                ],
            }
        ),
        check=False,
    )
    assert not result.get("failed"), result
    assert [c["type"] for c in result["checks"]] == ["http"]
    assert token not in json.dumps(result) and signature not in json.dumps(result)

    raw = _journal_export(host, "--after-cursor=" + cursor)
    # "ansible-bosun.platform.health_check Invoked with ..." (journal API: in MESSAGE; syslog:
    # SYSLOG_IDENTIFIER, then MESSAGE).
    invoked = [
        e
        for e in _entries(raw)
        if b"health_check Invoked with" in e.get("SYSLOG_IDENTIFIER", b"") + b" " + e.get("MESSAGE", b"")
    ]
    # The record of this run was read (so the assertions below can fail): the marker is in its
    # message and, written through the journal API (python3-systemd, see prepare.yml), in the
    # field of the `checks` option.
    assert any(marker.encode() in e["MESSAGE"] for e in invoked), "no 'Invoked with' record of health_check"
    assert any(marker.encode() in e.get("CHECKS", b"") for e in invoked), "no CHECKS field in the record"
    # Nowhere in the journal since the run began, in any field.
    assert token.split()[1].encode() not in raw
    assert signature.encode() not in raw
