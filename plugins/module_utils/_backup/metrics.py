# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prometheus textfile metrics of backups and restore drills (one .prom file per database)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.bosun.platform.plugins.module_utils._io import write_textfile_metrics


def metrics_filename(prefix, dirname):
    return "%s_%s.prom" % (prefix, dirname)


def previous_value(directory, filename, metric):
    """A sample's value from an earlier metrics file (None when there is none)."""
    try:
        with open(os.path.join(directory, filename), "r") as f:
            for line in f:
                m = re.match(r"^%s(\{[^}]*\})?\s+(\S+)\s*$" % re.escape(metric), line)
                if m:
                    return float(m.group(2))
    except (OSError, ValueError):
        return None
    return None


def metric_value(value):
    """A sample value in the text format: NaN for None, 1/0 for booleans, floats to 3 places."""
    if value is None:
        return "NaN"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(round(value, 3))
    return str(value)


def write_backup_metrics(directory, dirname, *, database, kind, ok, run_at, newest):
    """Metrics of one database's backups. ``newest``: manifest of the newest verified backup."""
    labels = dict(database=database, kind=kind)
    newest = newest or {}
    metrics = [
        ("bosun_backup_last_status", "1 if the last backup run succeeded, 0 if it failed.", "gauge", ok),
        ("bosun_backup_last_run_timestamp_seconds", "Unix time of the last backup run.", "gauge", run_at),
        (
            "bosun_backup_last_success_timestamp_seconds",
            "Unix time the newest verified backup finished.",
            "gauge",
            newest.get("finished_epoch"),
        ),
        ("bosun_backup_last_size_bytes", "Size of the newest verified backup.", "gauge", newest.get("size")),
        (
            "bosun_backup_last_duration_seconds",
            "Seconds the newest verified backup took (dump and verify).",
            "gauge",
            newest.get("duration"),
        ),
    ]
    rendered = [(name, help_text, kind_, [(labels, metric_value(value))]) for name, help_text, kind_, value in metrics]
    filename = metrics_filename("bosun_backup", dirname)
    write_textfile_metrics(directory, filename, rendered)
    return os.path.join(directory, filename)


def write_drill_metrics(directory, dirname, *, database, ok, run_at, restore_seconds, backup_age):
    labels = dict(database=database)
    filename = metrics_filename("bosun_restore_drill", dirname)
    last_success = (
        run_at if ok else previous_value(directory, filename, "bosun_restore_drill_last_success_timestamp_seconds")
    )
    metrics = [
        ("bosun_restore_drill_last_status", "1 if the last restore drill passed, 0 if it failed.", "gauge", ok),
        ("bosun_restore_drill_last_run_timestamp_seconds", "Unix time of the last restore drill.", "gauge", run_at),
        (
            "bosun_restore_drill_last_success_timestamp_seconds",
            "Unix time of the last restore drill that passed.",
            "gauge",
            last_success,
        ),
        (
            "bosun_restore_drill_restore_seconds",
            "Seconds the last drill's restore took (the recovery time it measured).",
            "gauge",
            restore_seconds,
        ),
        (
            "bosun_restore_drill_backup_age_seconds",
            "Age of the backup the last drill restored, at the time of the drill.",
            "gauge",
            backup_age,
        ),
    ]
    rendered = [(name, help_text, kind_, [(labels, metric_value(value))]) for name, help_text, kind_, value in metrics]
    write_textfile_metrics(directory, filename, rendered)
    return os.path.join(directory, filename)
