"""The maintenance job catalogue: one source rendered into timers, cron, AWX and metrics.

The rendered units and AWX arguments are compared with the expected files under
tests/unit/fixtures/maintenance/. AWX itself cannot run here; the AWX arguments are checked
against the options the installed awx.awx modules document.
"""

import json
import os
import re

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible.parsing.utils.yaml import from_yaml
from ansible_collections.bosun.platform.plugins.filter import maintenance_catalogue as mc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "maintenance")
KNOWN_TAGS = ["backup", "restore_drill", "vacuum", "db_report", "cache", "host", "certs"]


def fixture(*parts):
    with open(os.path.join(FIXTURES, *parts), encoding="utf-8") as f:
        return f.read()


@pytest.fixture(name="catalogue")
def _catalogue():
    return yaml.safe_load(fixture("catalogue.yml"))


# --- rendering against the expected files ----------------------------------------------


def test_timer_units_match_the_expected_files(catalogue):
    units = mc.maintenance_timer_units(catalogue, notify=True)
    assert [u["job"] for u in units] == ["backup", "restore-drill", "vacuum", "db_report", "cache-menu", "host"]
    expected_names = sorted(n for n in os.listdir(os.path.join(FIXTURES, "units")))
    assert sorted([u["service_name"] for u in units] + [u["timer_name"] for u in units]) == expected_names
    for unit in units:
        assert unit["service"] == fixture("units", unit["service_name"]), unit["service_name"]
        assert unit["timer"] == fixture("units", unit["timer_name"]), unit["timer_name"]


def test_cron_file_matches_the_expected_file(catalogue):
    assert mc.maintenance_cron_file(catalogue) == fixture("cron")


def test_awx_job_templates_match_the_expected_file(catalogue):
    rendered = mc.maintenance_awx_job_templates(
        catalogue,
        project="platform-ops",
        inventory="platform",
        organization="Ops",
        credentials=["platform ssh", "platform vault"],
        execution_environment="bosun-platform",
        notification_templates_error=["ops slack"],
    )
    assert rendered == json.loads(fixture("awx_job_templates.json"))


def test_awx_schedules_match_the_expected_file(catalogue):
    rendered = mc.maintenance_awx_schedules(catalogue, organization="Ops", start_date="2026-01-01")
    assert rendered == json.loads(fixture("awx_schedules.json"))


def _awx_options(module):
    pytest.importorskip("ansible_collections.awx.awx")
    import ansible_collections.awx.awx.plugins.modules as awx_modules

    path = os.path.join(os.path.dirname(awx_modules.__file__), "%s.py" % module)
    with open(path, encoding="utf-8") as f:
        src = f.read()
    doc = re.search(r"DOCUMENTATION = r?'''(.*?)'''|DOCUMENTATION = r?\"\"\"(.*?)\"\"\"", src, re.S)
    return set(yaml.safe_load(doc.group(1) or doc.group(2))["options"])


def test_awx_arguments_are_options_of_the_awx_modules(catalogue):
    templates = mc.maintenance_awx_job_templates(
        catalogue, project="p", inventory="i", execution_environment="ee", notification_templates_error=["n"]
    )
    schedules = mc.maintenance_awx_schedules(catalogue)
    template_options = _awx_options("job_template")
    schedule_options = _awx_options("schedule")
    for args in templates:
        assert set(args) <= template_options, set(args) - template_options
    for args in schedules:
        assert set(args) <= schedule_options, set(args) - schedule_options


def _awx_setup_task(module):
    with open(os.path.join(ROOT, "roles", "maintenance_schedule", "tasks", "awx.yml"), encoding="utf-8") as f:
        [block] = from_yaml(f.read())
    [task] = [t for t in block["block"] if module in t]
    return task[module]


def test_awx_setup_passes_every_rendered_argument(catalogue):
    templates = mc.maintenance_awx_job_templates(
        catalogue, project="p", inventory="i", execution_environment="ee", notification_templates_error=["n"]
    )
    template_task = _awx_setup_task("awx.awx.job_template")
    schedule_task = _awx_setup_task("awx.awx.schedule")
    for args in templates:
        assert set(args) == set(template_task)
    for args in mc.maintenance_awx_schedules(catalogue):
        assert set(args) == set(schedule_task)
    for key, value in template_task.items():
        assert "item.%s" % key in value


PROJECT = {"name": "platform-ops", "scm_url": "https://git.example.org/ops/platform.git"}
FULL_PROJECT = dict(PROJECT, scm_branch="stable", scm_credential="git")
INVENTORY = {"name": "platform"}
FULL_INVENTORY = dict(INVENTORY, source_path="inventories/production/hosts.yml")
EE = {"name": "bosun-platform", "image": "registry.example.org/bosun-platform-ee:0.1.0"}
FULL_EE = dict(EE, pull="always", credential="registry")


def _full_plan(catalogue):
    return mc.maintenance_awx_plan(
        catalogue,
        project=FULL_PROJECT,
        inventory=FULL_INVENTORY,
        organization="Ops",
        credentials=["platform ssh", "platform vault"],
        execution_environment=FULL_EE,
        notify=True,
        notification_name="ops slack",
    )


def test_awx_plan_with_everything(catalogue):
    plan = _full_plan(catalogue)
    assert plan["execution_environment"] == dict(
        name="bosun-platform",
        image=EE["image"],
        organization="Ops",
        pull="always",
        credential="registry",
        state="present",
    )
    assert plan["project"] == dict(
        name="platform-ops",
        organization="Ops",
        scm_type="git",
        scm_url=PROJECT["scm_url"],
        scm_branch="stable",
        credential="git",
        scm_update_on_launch=True,
        default_environment="bosun-platform",
        wait=True,
        state="present",
    )
    assert plan["inventory"] == dict(name="platform", organization="Ops", state="present")
    assert plan["inventory_source"] == dict(
        name="platform from platform-ops",
        inventory="platform",
        organization="Ops",
        source="scm",
        source_project="platform-ops",
        source_path="inventories/production/hosts.yml",
        overwrite=True,
        update_on_launch=True,
        state="present",
    )
    assert plan["notification"] == dict(name="ops slack", organization="Ops")
    assert plan["job_templates"] == json.loads(fixture("awx_job_templates.json"))
    assert plan["schedules"] == json.loads(fixture("awx_schedules.json"))


def test_awx_plan_minimal_leaves_awx_defaults(catalogue):
    plan = mc.maintenance_awx_plan(catalogue, project=PROJECT, inventory=INVENTORY)
    assert plan["organization"] == "Default"
    assert plan["execution_environment"] is None
    assert plan["inventory_source"] is None
    assert plan["notification"] is None
    assert plan["project"]["scm_branch"] == "main"
    assert "credential" not in plan["project"]
    assert "default_environment" not in plan["project"]
    for template in plan["job_templates"]:
        assert "execution_environment" not in template
        assert "notification_templates_error" not in template
        assert template["playbook"] == "maintenance.yml"
        assert template["credentials"] == []
    assert plan["schedules"] == mc.maintenance_awx_schedules(catalogue)


def test_awx_plan_ee_defaults_to_pull_missing(catalogue):
    plan = mc.maintenance_awx_plan(catalogue, project=PROJECT, inventory=INVENTORY, execution_environment=EE)
    assert plan["execution_environment"]["pull"] == "missing"
    assert "credential" not in plan["execution_environment"]
    assert {t["execution_environment"] for t in plan["job_templates"]} == {"bosun-platform"}


@pytest.mark.parametrize(
    "project, inventory, jobs",
    [
        ({}, INVENTORY, True),
        ({"name": "p"}, INVENTORY, True),
        ({"scm_url": "u"}, INVENTORY, True),
        (PROJECT, {}, True),
        (PROJECT, {"name": ""}, True),
        (PROJECT, INVENTORY, False),
        (None, None, True),
    ],
)
def test_awx_plan_refuses_missing_inputs(catalogue, project, inventory, jobs):
    with pytest.raises(AnsibleFilterError, match=r"set bosun_awx_project \(\{name, scm_url\}\)"):
        mc.maintenance_awx_plan(catalogue if jobs else [], project=project, inventory=inventory)


def test_awx_plan_refuses_an_ee_without_image(catalogue):
    with pytest.raises(AnsibleFilterError, match="'bosun-platform' needs an image"):
        mc.maintenance_awx_plan(
            catalogue, project=PROJECT, inventory=INVENTORY, execution_environment={"name": "bosun-platform"}
        )


def test_awx_plan_names_the_wrong_job():
    with pytest.raises(AnsibleFilterError, match="bad"):
        mc.maintenance_awx_plan([{"name": "bad"}], project=PROJECT, inventory=INVENTORY)


def test_awx_plan_never_holds_the_webhook(catalogue):
    assert "hooks" not in json.dumps(_full_plan(catalogue))


@pytest.mark.parametrize(
    "section, module",
    [
        ("execution_environment", "awx.awx.execution_environment"),
        ("project", "awx.awx.project"),
        ("inventory", "awx.awx.inventory"),
        ("inventory_source", "awx.awx.inventory_source"),
        ("notification", "awx.awx.notification_template"),
    ],
)
def test_awx_tasks_pass_every_planned_argument(catalogue, section, module):
    args = _full_plan(catalogue)[section]
    task = _awx_setup_task(module)
    assert set(args) <= set(task)
    for key in args:
        assert "__maintenance_schedule_awx.%s.%s" % (section, key) in task[key]


def test_awx_plan_arguments_are_options_of_the_awx_modules(catalogue):
    plan = _full_plan(catalogue)
    for section, module in [
        ("execution_environment", "execution_environment"),
        ("project", "project"),
        ("inventory", "inventory"),
        ("inventory_source", "inventory_source"),
        ("notification", "notification_template"),
    ]:
        options = _awx_options(module)
        assert set(plan[section]) <= options, (section, set(plan[section]) - options)


def test_rrules_have_what_awx_requires(catalogue):
    for schedule in mc.maintenance_awx_schedules(catalogue):
        dtstart, rule = schedule["rrule"].split(" ")
        assert re.match(r"^DTSTART:\d{8}T\d{6}Z$", dtstart)
        assert rule.startswith("RRULE:FREQ=")
        assert "INTERVAL=" in rule


def test_rrule_in_another_time_zone_names_it():
    [schedule] = mc.maintenance_awx_schedules(
        [{"name": "b", "schedule": {"daily": "2:15"}}], timezone="Europe/Berlin", start_date="2026-03-01"
    )
    assert schedule["rrule"] == "DTSTART;TZID=Europe/Berlin:20260301T021500 RRULE:FREQ=DAILY;INTERVAL=1"


def test_disabled_jobs_are_not_scheduled_but_kept_in_awx_disabled(catalogue):
    assert "certs" not in [u["job"] for u in mc.maintenance_timer_units(catalogue)]
    assert " certs" not in mc.maintenance_cron_file(catalogue)
    certs = [s for s in mc.maintenance_awx_schedules(catalogue) if s["name"].endswith("certs")]
    assert certs[0]["enabled"] is False


def test_wrapper_config_holds_each_job(catalogue):
    config = json.loads(mc.maintenance_wrapper_config(catalogue, inventory="/etc/bosun/inventory", scheduler="systemd"))
    assert config["inventory"] == "/etc/bosun/inventory"
    assert config["jobs"]["restore-drill"] == dict(
        tags=["restore_drill"], limit="db1", timeout=10800, window="04:00-07:00", extra_vars={}
    )
    assert config["jobs"]["cache-menu"]["extra_vars"] == {"bosun_maintenance_cache_group": "menu"}


# --- schedule forms ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "on_calendar", "cron", "rrule"),
    [
        ({"hourly": ":05"}, "*-*-* *:05:00", "5 * * * *", "FREQ=HOURLY;INTERVAL=1"),
        ({"hourly": "45"}, "*-*-* *:45:00", "45 * * * *", "FREQ=HOURLY;INTERVAL=1"),
        ({"daily": "3:07"}, "*-*-* 03:07:00", "7 3 * * *", "FREQ=DAILY;INTERVAL=1"),
        ({"weekly": "sunday 04:00"}, "Sun *-*-* 04:00:00", "0 4 * * 0", "FREQ=WEEKLY;INTERVAL=1;BYDAY=SU"),
        ({"weekly": "Thu,Mon 23:59"}, "Mon,Thu *-*-* 23:59:00", "59 23 * * 1,4", "FREQ=WEEKLY;INTERVAL=1;BYDAY=MO,TH"),
        ({"monthly": "28 00:00"}, "*-*-28 00:00:00", "0 0 28 * *", "FREQ=MONTHLY;INTERVAL=1;BYMONTHDAY=28"),
        ("*:0/15", "*:0/15", None, None),
        ({"on_calendar": "daily", "rrule": "FREQ=DAILY"}, "daily", None, "FREQ=DAILY;INTERVAL=1"),
    ],
)
def test_schedule_forms(schedule, on_calendar, cron, rrule):
    [job] = mc.maintenance_catalogue([{"name": "j", "schedule": schedule}])
    assert (job["schedule"]["on_calendar"], job["schedule"]["cron"], job["schedule"]["rrule"]) == (
        on_calendar,
        cron,
        rrule,
    )


@pytest.mark.parametrize(
    ("calendar", "expected"),
    [
        ("*-*-* 03:00:00", "*-*-* 03:00:00 UTC"),
        ("*:*:0/20", "*:*:0/20 UTC"),
        ("Mon *-*-* 03:00:00", "Mon *-*-* 03:00:00 UTC"),
        ("*-*-* 03:00:00 Europe/Berlin", "*-*-* 03:00:00 Europe/Berlin"),
        ("daily", "daily"),
    ],
)
def test_timers_get_the_time_zone_unless_the_expression_has_one(calendar, expected):
    [unit] = mc.maintenance_timer_units([{"name": "j", "schedule": calendar}])
    assert unit["on_calendar"] == expected
    assert "OnCalendar=%s\n" % expected in unit["timer"]
    assert "Persistent=false\n" in unit["timer"]


# --- errors name the job and the cause ----------------------------------------------------


@pytest.mark.parametrize(
    ("job", "message"),
    [
        ({"name": "nightly", "schedule": {"daily": "25:00"}}, "job 'nightly': daily needs a time HH:MM"),
        ({"name": "nightly", "schedule": {"weekly": "Sun"}}, "job 'nightly': weekly needs 'Day[,Day...] HH:MM'"),
        ({"name": "nightly", "schedule": {"weekly": "Sunnday 04:00"}}, "weekly: unknown day 'Sunnday'"),
        (
            {"name": "nightly", "schedule": {"monthly": "31 04:00"}},
            "job 'nightly': monthly needs 'D HH:MM' with a day 1-28",
        ),
        ({"name": "nightly", "schedule": {"daily": "03:00", "hourly": ":05"}}, "job 'nightly': schedule: give one of"),
        ({"name": "nightly", "schedule": {"every": "day"}}, "job 'nightly': schedule has unknown keys every"),
        ({"name": "nightly"}, "job 'nightly': schedule is missing"),
        ({"name": "nightly", "schedule": "daily", "window": "1-5"}, "job 'nightly': window must be 'HH:MM-HH:MM'"),
        (
            {"name": "nightly", "schedule": "daily", "window": "03:00-03:00"},
            "job 'nightly': window '03:00-03:00' is empty",
        ),
        ({"name": "nightly", "schedule": "daily", "timeout": 0}, "job 'nightly': timeout must be a positive number"),
        ({"name": "nightly", "schedule": "daily", "tags": []}, "job 'nightly': tags must be a non-empty list"),
        ({"name": "nightly", "schedule": "daily", "tags": ["backups"]}, "job 'nightly': unknown tags backups"),
        ({"name": "nightly", "schedule": "daily", "hostz": "db"}, "job 'nightly': unknown keys hostz"),
        ({"name": "bad name", "schedule": "daily"}, "entry 1: name must be letters"),
        (
            {"name": "nightly", "schedule": {"rrule": "DTSTART:20260101T000000Z RRULE:FREQ=DAILY"}},
            "job 'nightly': schedule.rrule must be the RRULE part only",
        ),
    ],
)
def test_invalid_jobs_are_refused_naming_the_job(job, message):
    job = dict(job)
    job.setdefault("tags", ["backup"])
    with pytest.raises(AnsibleFilterError, match=re.escape(message)):
        mc.maintenance_catalogue([job], known_tags=KNOWN_TAGS)


def test_duplicate_names_are_refused():
    jobs = [{"name": "a", "schedule": "daily"}, {"name": "a", "schedule": "weekly"}]
    with pytest.raises(AnsibleFilterError, match="job 'a': the name is used twice"):
        mc.maintenance_catalogue(jobs)


def test_a_plain_on_calendar_has_no_awx_or_cron_form():
    jobs = [{"name": "often", "schedule": "*:0/15"}]
    with pytest.raises(AnsibleFilterError, match="job 'often': schedule '\\*:0/15' has no AWX form"):
        mc.maintenance_awx_schedules(jobs)
    with pytest.raises(AnsibleFilterError, match="job 'often': schedule has no cron form"):
        mc.maintenance_cron_file(jobs)


# --- the window --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "now", "inside"),
    [
        ("01:00-05:00", "01:00", True),
        ("01:00-05:00", "04:59", True),
        ("01:00-05:00", "05:00", False),
        ("01:00-05:00", "00:59", False),
        ("22:00-04:00", "23:30", True),
        ("22:00-04:00", "00:10", True),
        ("22:00-04:00", "04:00", False),
        ("22:00-04:00", "12:00", False),
        ("22:00-04:00", "2026-11-26T23:05:00.123456Z", True),
        ("", "12:00", True),
    ],
)
def test_window(window, now, inside):
    decision = mc.maintenance_window(window, now)
    assert decision["inside"] is inside
    assert decision["run"] is inside


def test_outside_the_window_runs_only_when_forced():
    decision = mc.maintenance_window("01:00-05:00", "12:00", True)
    assert decision["inside"] is False
    assert decision["run"] is True
    assert decision["reason"] == "outside window 01:00-05:00 UTC (12:00), forced"
    assert mc.maintenance_window("01:00-05:00", "12:00")["reason"] == "outside window 01:00-05:00 UTC (12:00)"


# --- metrics -----------------------------------------------------------------------------


def _samples(text):
    return dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))


@pytest.mark.parametrize(
    ("status", "last_status", "refused", "skipped"),
    [
        ("ok", "1", "0", "0"),
        ("failed", "0", "0", "0"),
        ("refused: platform lock held", "0", "1", "0"),
        ("skipped: outside window", "2", "0", "1"),
    ],
)
def test_result_metrics(status, last_status, refused, skipped):
    result = dict(
        job="nightly-backup",
        status=status,
        finished="2026-11-26T02:16:40.500000Z",
        duration_seconds=100.25,
        last_success="2026-11-25T02:16:00.000000Z",
    )
    samples = _samples(mc.maintenance_result_metrics(result))
    label = '{job="nightly-backup"}'
    assert samples["bosun_maintenance_last_status" + label] == last_status
    assert samples["bosun_maintenance_lock_refused" + label] == refused
    assert samples["bosun_maintenance_skipped_outside_window" + label] == skipped
    assert samples["bosun_maintenance_last_run_timestamp_seconds" + label] == "1795659400"
    assert samples["bosun_maintenance_last_duration_seconds" + label] == "100.25"
    assert samples["bosun_maintenance_last_success_timestamp_seconds" + label] == "1795572960"
