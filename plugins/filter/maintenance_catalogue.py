# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The maintenance job catalogue and everything rendered from it.

One list of jobs (``bosun_maintenance_jobs``) is the single source of the schedule. These
filters validate it and turn it into systemd timer and service units or a cron file (role
``bosun.platform.maintenance_schedule``), the wrapper's configuration, and the arguments
of ``awx.awx.job_template`` and ``awx.awx.schedule`` (``maintenance_awx_plan``: the entry point
``awx`` of the role ``maintenance_schedule``, run by ``playbooks/awx_setup.yml``). The
playbook ``maintenance.yml`` uses the window check and the metrics filter.

A job::

    name: nightly-backup        # required, unique: letters, digits, '-' and '_'
    tags: [backup]              # the maintenance.yml jobs to run; default [name]
    schedule: {daily: "02:15"}  # see SCHEDULE FORMS below
    window: "01:00-05:00"       # UTC; a run starting outside it is skipped (optional)
    timeout: 3600               # seconds (default 3600)
    hosts: db1                  # --limit (optional)
    extra_vars: {}              # passed to the playbook (optional, never secrets)
    description: ...            # optional
    enabled: true               # false: rendered but not scheduled

Schedule forms: ``{hourly: ":05"}``, ``{daily: "03:15"}``, ``{weekly: "Sun 04:00"}`` (or
``"Mon,Thu 04:00"``), ``{monthly: "1 05:00"}`` (day 1-28) convert to systemd OnCalendar,
cron and an iCalendar RRULE. A plain string is a systemd OnCalendar expression (timers
only); ``{on_calendar: ..., rrule: ..., cron: ...}`` gives each form explicitly.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import re

from ansible.errors import AnsibleFilterError
from ansible_collections.bosun.platform.plugins.module_utils._io import render_metrics

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
TIME_RE = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])$")
WINDOW_RE = re.compile(r"^\s*(\d{1,2}:\d{2})\s*-\s*(\d{1,2}:\d{2})\s*$")
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
CRON_DAYS = dict(Mon=1, Tue=2, Wed=3, Thu=4, Fri=5, Sat=6, Sun=0)
JOB_KEYS = ("name", "tags", "schedule", "window", "timeout", "hosts", "extra_vars", "description", "enabled")
PORTABLE = ("hourly", "daily", "weekly", "monthly")
EXPLICIT = ("on_calendar", "rrule", "cron")
DEFAULT_TIMEOUT = 3600
DEFAULT_PREFIX = "bosun-maintenance"
DEFAULT_WRAPPER = "/usr/local/bin/bosun-maintenance"


def _err(job, msg):
    return AnsibleFilterError("maintenance catalogue: job %r: %s" % (job, msg))


def _time(job, value, what):
    m = TIME_RE.match(str(value).strip())
    if not m:
        raise _err(job, "%s needs a time HH:MM (24 h), got %r" % (what, value))
    return int(m.group(1)), int(m.group(2))


def _days(job, text):
    days = []
    for part in text.split(","):
        word = part.strip().lower()
        day = word[:3].capitalize()
        if day not in DAYS or word not in (day.lower(), FULL_DAYS[DAYS.index(day)]):
            raise _err(job, "weekly: unknown day %r (use Mon, Tue, Wed, Thu, Fri, Sat, Sun)" % part.strip())
        if day not in days:
            days.append(day)
    return sorted(days, key=DAYS.index)


def _schedule(job, schedule):
    """The schedule as {kind, on_calendar, cron, rrule (FREQ...; no DTSTART), hour, minute}."""
    if isinstance(schedule, str):
        if not schedule.strip():
            raise _err(job, "schedule is empty")
        return dict(kind="on_calendar", on_calendar=schedule.strip(), cron=None, rrule=None, hour=0, minute=0)
    if not isinstance(schedule, dict) or not schedule:
        raise _err(
            job,
            "schedule must be an OnCalendar string or one of {hourly: ':MM'}, {daily: 'HH:MM'}, "
            "{weekly: 'Sun HH:MM'}, {monthly: 'D HH:MM'}, {on_calendar/rrule/cron: ...}; got %r" % (schedule,),
        )
    keys = set(schedule)
    portable = keys & set(PORTABLE)
    unknown = keys - set(PORTABLE) - set(EXPLICIT)
    if unknown:
        raise _err(job, "schedule has unknown keys %s" % ", ".join(sorted(unknown)))
    if portable and (len(portable) > 1 or keys - portable):
        raise _err(
            job, "schedule: give one of hourly, daily, weekly, monthly alone, or explicit on_calendar/rrule/cron"
        )
    if not portable:
        out = dict(kind="explicit", on_calendar=None, cron=None, rrule=None, hour=0, minute=0)
        for key in EXPLICIT:
            value = schedule.get(key)
            if value is not None:
                if not isinstance(value, str) or not value.strip():
                    raise _err(job, "schedule.%s must be a non-empty string" % key)
                out[key] = value.strip()
        if out["rrule"]:
            rule = out["rrule"]
            if rule.upper().startswith("RRULE:"):
                rule = rule[6:]
            if "FREQ=" not in rule.upper() or "DTSTART" in rule.upper():
                raise _err(job, "schedule.rrule must be the RRULE part only (FREQ=...;...), without DTSTART")
            if "INTERVAL=" not in rule.upper():
                rule += ";INTERVAL=1"
            out["rrule"] = rule
        # DTSTART's time for AWX: the time the OnCalendar expression names, if it names one.
        when = re.search(r"(?:^|\s)(\d{1,2}):(\d{2})(?::\d{2})?(?:\s|$)", out["on_calendar"] or "")
        if when and int(when.group(1)) < 24:
            out["hour"], out["minute"] = int(when.group(1)), int(when.group(2))
        if out["cron"] and len(out["cron"].split()) != 5:
            raise _err(job, "schedule.cron must have five fields (minute hour day month weekday)")
        return out
    kind = portable.pop()
    value = str(schedule[kind]).strip()
    if kind == "hourly":
        m = re.match(r"^:?([0-5]?[0-9])$", value)
        if not m:
            raise _err(job, "hourly needs the minute as ':MM', got %r" % value)
        minute = int(m.group(1))
        return dict(
            kind=kind,
            hour=0,
            minute=minute,
            on_calendar="*-*-* *:%02d:00" % minute,
            cron="%d * * * *" % minute,
            rrule="FREQ=HOURLY;INTERVAL=1",
        )
    if kind == "daily":
        hour, minute = _time(job, value, "daily")
        return dict(
            kind=kind,
            hour=hour,
            minute=minute,
            on_calendar="*-*-* %02d:%02d:00" % (hour, minute),
            cron="%d %d * * *" % (minute, hour),
            rrule="FREQ=DAILY;INTERVAL=1",
        )
    if kind == "weekly":
        parts = value.split()
        if len(parts) != 2:
            raise _err(job, "weekly needs 'Day[,Day...] HH:MM', got %r" % value)
        days = _days(job, parts[0])
        hour, minute = _time(job, parts[1], "weekly")
        return dict(
            kind=kind,
            hour=hour,
            minute=minute,
            on_calendar="%s *-*-* %02d:%02d:00" % (",".join(days), hour, minute),
            cron="%d %d * * %s" % (minute, hour, ",".join(str(CRON_DAYS[d]) for d in days)),
            rrule="FREQ=WEEKLY;INTERVAL=1;BYDAY=%s" % ",".join(d[:2].upper() for d in days),
        )
    parts = value.split()
    if len(parts) != 2 or not parts[0].isdigit() or not 1 <= int(parts[0]) <= 28:
        raise _err(job, "monthly needs 'D HH:MM' with a day 1-28 (every month has it), got %r" % value)
    day = int(parts[0])
    hour, minute = _time(job, parts[1], "monthly")
    return dict(
        kind=kind,
        hour=hour,
        minute=minute,
        on_calendar="*-*-%02d %02d:%02d:00" % (day, hour, minute),
        cron="%d %d %d * *" % (minute, hour, day),
        rrule="FREQ=MONTHLY;INTERVAL=1;BYMONTHDAY=%d" % day,
    )


def parse_window(window, job="?"):
    """'HH:MM-HH:MM' -> (start minute of day, end minute of day); None/'' -> None."""
    if window is None or (isinstance(window, str) and not window.strip()):
        return None
    m = WINDOW_RE.match(str(window))
    if not m:
        raise _err(job, "window must be 'HH:MM-HH:MM' (UTC), got %r" % (window,))
    start = _time(job, m.group(1), "window")
    end = _time(job, m.group(2), "window")
    start_min, end_min = start[0] * 60 + start[1], end[0] * 60 + end[1]
    if start_min == end_min:
        raise _err(job, "window %r is empty (start equals end); leave it out to allow any time" % (window,))
    return start_min, end_min


def maintenance_catalogue(jobs, known_tags=None):
    """Validate the catalogue and return it normalised (defaults filled, schedule parsed)."""
    if jobs is None:
        return []
    if not isinstance(jobs, list):
        raise AnsibleFilterError("maintenance catalogue: must be a list of jobs, got %s" % type(jobs).__name__)
    out = []
    seen = set()
    for index, job in enumerate(jobs):
        if not isinstance(job, dict):
            raise AnsibleFilterError("maintenance catalogue: entry %d must be a mapping, got %r" % (index + 1, job))
        name = job.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise AnsibleFilterError(
                "maintenance catalogue: entry %d: name must be letters, digits, '-' or '_' (at most 63), got %r"
                % (index + 1, name)
            )
        if name in seen:
            raise _err(name, "the name is used twice")
        seen.add(name)
        unknown = sorted(set(job) - set(JOB_KEYS))
        if unknown:
            raise _err(name, "unknown keys %s (known: %s)" % (", ".join(unknown), ", ".join(JOB_KEYS)))
        tags = job.get("tags", [name])
        if isinstance(tags, str):
            tags = [t.strip() for t in tags.split(",") if t.strip()]
        if not isinstance(tags, list) or not tags or not all(isinstance(t, str) and t for t in tags):
            raise _err(name, "tags must be a non-empty list of maintenance.yml job tags")
        if known_tags:
            bad = [t for t in tags if t not in known_tags]
            if bad:
                raise _err(name, "unknown tags %s (maintenance.yml has: %s)" % (", ".join(bad), ", ".join(known_tags)))
        if "schedule" not in job:
            raise _err(name, "schedule is missing")
        schedule = _schedule(name, job["schedule"])
        window = job.get("window")
        parse_window(window, name)
        timeout = job.get("timeout", DEFAULT_TIMEOUT)
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0:
            raise _err(name, "timeout must be a positive number of seconds, got %r" % (timeout,))
        hosts = job.get("hosts") or ""
        if isinstance(hosts, list):
            hosts = ",".join(str(h) for h in hosts)
        if not isinstance(hosts, str):
            raise _err(name, "hosts must be a host pattern (string or list), got %r" % (hosts,))
        extra_vars = job.get("extra_vars") or {}
        if not isinstance(extra_vars, dict):
            raise _err(name, "extra_vars must be a mapping")
        enabled = job.get("enabled", True)
        if not isinstance(enabled, bool):
            raise _err(name, "enabled must be true or false")
        out.append(
            dict(
                name=name,
                tags=list(tags),
                schedule=schedule,
                window=(str(window).replace(" ", "") if window else ""),
                timeout=timeout,
                hosts=hosts,
                extra_vars=dict(extra_vars),
                description=str(job.get("description") or "maintenance.yml --tags %s" % ",".join(tags)),
                enabled=enabled,
            )
        )
    return out


def _normalised(jobs):
    if isinstance(jobs, list) and all(isinstance(j, dict) and isinstance(j.get("schedule"), dict) for j in jobs):
        if all("kind" in j["schedule"] for j in jobs):
            return jobs
    return maintenance_catalogue(jobs)


def _with_timezone(calendar, timezone):
    """Append the time zone unless the expression ends with one or is a shorthand (daily...)."""
    last = calendar.split()[-1]
    if not timezone or (re.match(r"^[A-Za-z_]+(/[A-Za-z0-9_+-]+)*$", last) and last[:3].capitalize() not in DAYS):
        return calendar
    return "%s %s" % (calendar, timezone)


def _unit_base(prefix, job):
    return "%s-%s" % (prefix, job["name"])


def maintenance_timer_units(
    jobs,
    prefix=DEFAULT_PREFIX,
    wrapper=DEFAULT_WRAPPER,
    timezone="UTC",
    accuracy="1min",
    randomized_delay="0",
    notify=False,
    user="root",
    timeout_grace=120,
):
    """Each enabled job -> {job, service_name, timer_name, service, timer} (unit file contents)."""
    units = []
    for job in _normalised(jobs):
        if not job["enabled"]:
            continue
        calendar = job["schedule"]["on_calendar"]
        if not calendar:
            raise _err(job["name"], "schedule has no systemd form: give on_calendar or a portable form")
        calendar = _with_timezone(calendar, timezone)
        base = _unit_base(prefix, job)
        service = [
            "# Managed by Ansible (bosun.platform.maintenance_schedule). Job %s." % job["name"],
            "[Unit]",
            "Description=bosun maintenance job %s (%s)" % (job["name"], job["description"]),
            "Wants=network-online.target",
            "After=network-online.target",
        ]
        if notify:
            service.append("OnFailure=%s-notify@%s.service" % (prefix, job["name"]))
        service += [
            "",
            "[Service]",
            "Type=oneshot",
            "User=%s" % user,
            "ExecStart=%s %s" % (wrapper, job["name"]),
            # The wrapper stops the playbook at the job's timeout and reports it; systemd's
            # own limit is the backstop.
            "TimeoutStartSec=%d" % (job["timeout"] + timeout_grace),
            "KillMode=mixed",
            "SyslogIdentifier=%s" % base,
            "",
        ]
        timer = [
            "# Managed by Ansible (bosun.platform.maintenance_schedule). Job %s." % job["name"],
            "[Unit]",
            "Description=Schedule of bosun maintenance job %s" % job["name"],
            "",
            "[Timer]",
            "OnCalendar=%s" % calendar,
            # A run missed while the host was down is not caught up later (missed-window policy).
            "Persistent=false",
            "AccuracySec=%s" % accuracy,
            "RandomizedDelaySec=%s" % randomized_delay,
            "Unit=%s.service" % base,
            "",
            "[Install]",
            "WantedBy=timers.target",
            "",
        ]
        units.append(
            dict(
                job=job["name"],
                service_name="%s.service" % base,
                timer_name="%s.timer" % base,
                on_calendar=calendar,
                service="\n".join(service),
                timer="\n".join(timer),
            )
        )
    return units


def maintenance_cron_file(jobs, wrapper=DEFAULT_WRAPPER, user="root"):
    """The /etc/cron.d file running every enabled job (cron uses the host's time zone)."""
    lines = [
        "# Managed by Ansible (bosun.platform.maintenance_schedule).",
        "# Times are in the host's time zone (UTC on a DigitalOcean Droplet).",
        "SHELL=/bin/sh",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ]
    for job in _normalised(jobs):
        if not job["enabled"]:
            continue
        cron = job["schedule"]["cron"]
        if not cron:
            raise _err(job["name"], "schedule has no cron form: give cron: or a portable form (hourly, daily, ...)")
        # The wrapper logs to syslog/journal itself; cron mails nothing.
        lines.append("%s %s %s %s >/dev/null 2>&1" % (cron, user, wrapper, job["name"]))
    return "\n".join(lines) + "\n"


def maintenance_wrapper_config(jobs, **settings):
    """The JSON configuration the wrapper script reads: settings plus the jobs by name."""
    config = dict(settings)
    config["jobs"] = {
        job["name"]: dict(
            tags=job["tags"],
            limit=job["hosts"],
            timeout=job["timeout"],
            window=job["window"],
            extra_vars=job["extra_vars"],
        )
        for job in _normalised(jobs)
    }
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


def _dtstart(job, start_date, timezone):
    try:
        day = datetime.datetime.strptime(str(start_date), "%Y-%m-%d")
    except ValueError:
        raise AnsibleFilterError(
            "maintenance catalogue: start_date must be YYYY-MM-DD, got %r" % (start_date,)
        ) from None
    stamp = "%s%02d%02d00" % (day.strftime("%Y%m%dT"), job["schedule"]["hour"], job["schedule"]["minute"])
    if not timezone or timezone.upper() == "UTC":
        return "DTSTART:%sZ" % stamp
    return "DTSTART;TZID=%s:%s" % (timezone, stamp)


def _template_name(job, name_prefix):
    return "%s%s" % (name_prefix, job["name"])


def maintenance_awx_job_templates(
    jobs,
    project,
    inventory,
    organization="Default",
    playbook="maintenance.yml",
    credentials=None,
    execution_environment=None,
    notification_templates_error=None,
    name_prefix="bosun maintenance: ",
    extra_vars=None,
):
    """Each job -> the arguments of one awx.awx.job_template task."""
    out = []
    for job in _normalised(jobs):
        variables = dict(extra_vars or {})
        variables.update(job["extra_vars"])
        variables["bosun_maintenance_run_by"] = "awx"
        variables["bosun_maintenance_job_name"] = job["name"]
        # AWX stops the job at its timeout: its platform lock may be broken after that (plus a
        # margin), never while it runs.
        variables["bosun_lock_timeout"] = job["timeout"]
        if job["window"]:
            variables["bosun_maintenance_window"] = job["window"]
        args = dict(
            name=_template_name(job, name_prefix),
            description=job["description"],
            organization=organization,
            project=project,
            inventory=inventory,
            playbook=playbook,
            job_type="run",
            job_tags=",".join(job["tags"]),
            limit=job["hosts"],
            timeout=job["timeout"],
            credentials=list(credentials or []),
            extra_vars=variables,
            allow_simultaneous=False,
            ask_variables_on_launch=True,
            state="present",
        )
        if execution_environment:
            args["execution_environment"] = execution_environment
        if notification_templates_error:
            args["notification_templates_error"] = list(notification_templates_error)
        out.append(args)
    return out


def maintenance_awx_schedules(
    jobs, organization="Default", start_date="2026-01-01", timezone="UTC", name_prefix="bosun maintenance: "
):
    """Each job -> the arguments of one awx.awx.schedule task (rrule with DTSTART)."""
    out = []
    for job in _normalised(jobs):
        rule = job["schedule"]["rrule"]
        if not rule:
            raise _err(
                job["name"],
                "schedule %r has no AWX form: use a portable form (hourly, daily, weekly, monthly) "
                "or add rrule: 'FREQ=...'" % (job["schedule"]["on_calendar"],),
            )
        out.append(
            dict(
                name=_template_name(job, name_prefix),
                description="%s (%s)" % (job["description"], job["schedule"]["on_calendar"] or rule),
                organization=organization,
                unified_job_template=_template_name(job, name_prefix),
                rrule="%s RRULE:%s" % (_dtstart(job, start_date, timezone), rule),
                enabled=job["enabled"],
                state="present",
            )
        )
    return out


AWX_INPUTS_MSG = (
    "set bosun_awx_project ({name, scm_url}), bosun_awx_inventory ({name}) and the job catalogue "
    "bosun_maintenance_jobs (see docs/maintenance.md)"
)


def _text(mapping, key):
    value = (mapping or {}).get(key)
    return value if isinstance(value, str) and value else ""


def maintenance_awx_plan(
    jobs,
    project=None,
    inventory=None,
    organization="Default",
    playbook="maintenance.yml",
    credentials=None,
    execution_environment=None,
    notify=False,
    notification_name="bosun maintenance failures",
    start_date="2026-01-01",
    timezone="UTC",
):
    """Everything the AWX entry point creates, as the arguments of its awx.awx tasks.

    ``execution_environment``, ``inventory_source`` and ``notification`` are None when there is
    nothing to create (no execution environment: AWX's default; no source_path; no webhook).
    The notification's URL is not here: it holds a token and stays in the task's no_log input.
    """
    project = dict(project or {})
    inventory = dict(inventory or {})
    ee = dict(execution_environment or {})
    if not (_text(project, "name") and _text(project, "scm_url") and _text(inventory, "name") and jobs):
        raise AnsibleFilterError(AWX_INPUTS_MSG)
    ee_name = _text(ee, "name")
    if ee_name and not _text(ee, "image"):
        raise AnsibleFilterError(
            "the execution environment %r needs an image (bosun_awx_execution_environment.image)" % (ee_name,)
        )
    plan = dict(organization=organization, execution_environment=None, inventory_source=None, notification=None)
    if ee_name:
        plan["execution_environment"] = dict(
            name=ee_name,
            image=ee["image"],
            organization=organization,
            pull=ee.get("pull") or "missing",
            state="present",
        )
        if ee.get("credential"):
            plan["execution_environment"]["credential"] = ee["credential"]
    plan["project"] = dict(
        name=project["name"],
        organization=organization,
        scm_type="git",
        scm_url=project["scm_url"],
        scm_branch=project.get("scm_branch") or "main",
        scm_update_on_launch=True,
        wait=True,
        state="present",
    )
    if project.get("scm_credential"):
        plan["project"]["credential"] = project["scm_credential"]
    if ee_name:
        plan["project"]["default_environment"] = ee_name
    plan["inventory"] = dict(name=inventory["name"], organization=organization, state="present")
    if inventory.get("source_path"):
        plan["inventory_source"] = dict(
            name="%s from %s" % (inventory["name"], project["name"]),
            inventory=inventory["name"],
            organization=organization,
            source="scm",
            source_project=project["name"],
            source_path=inventory["source_path"],
            overwrite=True,
            update_on_launch=True,
            state="present",
        )
    if notify:
        plan["notification"] = dict(name=notification_name, organization=organization)
    plan["job_templates"] = maintenance_awx_job_templates(
        jobs,
        project=project["name"],
        inventory=inventory["name"],
        organization=organization,
        playbook=playbook,
        credentials=credentials,
        execution_environment=ee_name or None,
        notification_templates_error=[notification_name] if notify else None,
    )
    plan["schedules"] = maintenance_awx_schedules(
        jobs, organization=organization, start_date=start_date, timezone=timezone
    )
    return plan


def maintenance_window(window, now=None, force=False):
    """Is ``now`` (a datetime, 'HH:MM' or ISO time, UTC) inside ``window``?

    Returns {window, now, inside, run, reason}; ``run`` is inside or forced.
    """
    bounds = parse_window(window, "window")
    if now is None:
        now = datetime.datetime.now(datetime.timezone.utc)
    if isinstance(now, str):
        text = now.strip()
        m = re.search(r"(\d{1,2}):(\d{2})", text[10:] if len(text) > 10 else text)
        if not m:
            raise AnsibleFilterError("maintenance_window: cannot read a time from %r" % (now,))
        hour, minute = int(m.group(1)), int(m.group(2))
    else:
        hour, minute = now.hour, now.minute
    current = hour * 60 + minute
    stamp = "%02d:%02d" % (hour, minute)
    if bounds is None:
        return dict(window="", now=stamp, inside=True, run=True, reason="no window")
    start, end = bounds
    inside = start <= current < end if start < end else (current >= start or current < end)
    text = "%02d:%02d-%02d:%02d" % (start // 60, start % 60, end // 60, end % 60)
    if inside:
        reason = "inside window %s UTC" % text
    elif force:
        reason = "outside window %s UTC (%s), forced" % (text, stamp)
    else:
        reason = "outside window %s UTC (%s)" % (text, stamp)
    return dict(window=text, now=stamp, inside=inside, run=inside or bool(force), reason=reason)


STATUS_VALUE = dict(ok=1, failed=0, refused=0, skipped=2)


def maintenance_result_metrics(result):
    """A job's JSON result -> Prometheus textfile metrics (bosun_maintenance_*)."""
    if not isinstance(result, dict) or "job" not in result:
        raise AnsibleFilterError("maintenance_result_metrics: expects a maintenance job result with a job name")
    job = str(result["job"])
    status = str(result.get("status", "failed"))
    kind = status.split(":", 1)[0].strip()
    labels = dict(job=job)

    def ts(key):
        value = result.get(key)
        if not value:
            return None
        try:
            parsed = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=datetime.timezone.utc)
        return int(parsed.timestamp())

    metrics = [
        (
            "bosun_maintenance_last_status",
            "Outcome of the job's last run: 1 ok, 0 failed or refused, 2 skipped (outside its window).",
            "gauge",
            [(labels, STATUS_VALUE.get(kind, 0))],
        ),
        (
            "bosun_maintenance_last_run_timestamp_seconds",
            "When the job's last run finished.",
            "gauge",
            [(labels, ts("finished") or 0)],
        ),
        (
            "bosun_maintenance_last_duration_seconds",
            "How long the job's last run took.",
            "gauge",
            [(labels, round(float(result.get("duration_seconds") or 0), 3))],
        ),
        (
            "bosun_maintenance_lock_refused",
            "1 when the job's last run found the platform lock held by another job.",
            "gauge",
            [(labels, 1 if kind == "refused" else 0)],
        ),
        (
            "bosun_maintenance_skipped_outside_window",
            "1 when the job's last run started outside its window and was skipped.",
            "gauge",
            [(labels, 1 if kind == "skipped" else 0)],
        ),
    ]
    success = ts("last_success")
    if success:
        metrics.append(
            (
                "bosun_maintenance_last_success_timestamp_seconds",
                "When the job last finished successfully.",
                "gauge",
                [(labels, success)],
            )
        )
    return render_metrics(metrics)


class FilterModule:
    def filters(self):
        return dict(
            maintenance_catalogue=maintenance_catalogue,
            maintenance_timer_units=maintenance_timer_units,
            maintenance_cron_file=maintenance_cron_file,
            maintenance_wrapper_config=maintenance_wrapper_config,
            maintenance_awx_job_templates=maintenance_awx_job_templates,
            maintenance_awx_schedules=maintenance_awx_schedules,
            maintenance_awx_plan=maintenance_awx_plan,
            maintenance_window=maintenance_window,
            maintenance_result_metrics=maintenance_result_metrics,
        )
