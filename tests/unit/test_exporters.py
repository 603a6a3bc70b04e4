"""Decisions of the exporters role (plugins/module_utils/_exporters.py and its filters)."""

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.bosun.platform.plugins.filter import exporters_filters
from ansible_collections.bosun.platform.plugins.module_utils import _exporters as ex

FILTERS = exporters_filters.FilterModule().filters()

HOSTVARS = {
    "mon1": {"bosun_private_address": "10.110.0.40", "ansible_host": "203.0.113.40"},
    "mon2": {"ansible_host": "10.110.0.41"},
    "mon-by-name": {"ansible_host": "mon.example.com"},
    "mon-none": {},
}


# --- select -----------------------------------------------------------------------------


def test_node_on_every_host_and_the_tiers_by_group():
    assert ex.select([]) == ["node"]
    assert ex.select(["cache"]) == ["node", "redis"]
    assert ex.select(["db", "lb", "search", "app"]) == ["node", "postgres", "nginx", "elasticsearch"]


def test_groups_can_be_renamed_or_switched_off():
    assert ex.select(["redis_hosts"], {"redis": "redis_hosts"}) == ["node", "redis"]
    assert ex.select(["cache"], {"node": "-"}) == ["redis"]
    assert ex.select(["cache"], {"redis": "-"}) == ["node"]


def test_unknown_exporter_in_groups_is_refused():
    with pytest.raises(ex.ExportersError, match="unknown exporter 'mysql'"):
        ex.select(["db"], {"mysql": "db"})
    with pytest.raises(AnsibleFilterError, match="^exporters_select: "):
        FILTERS["exporters_select"](["db"], {"mysql": "db"})


def test_group_names_must_be_a_list():
    with pytest.raises(ex.ExportersError, match="must be a list"):
        ex.select("cache")


# --- firewall rules ---------------------------------------------------------------------


def test_rules_open_each_exporter_port_to_each_monitor_address():
    rules = ex.firewall_rules(["cache"], ["mon1", "mon2"], HOSTVARS)
    assert rules == [
        {"port": 9100, "proto": "tcp", "from": "10.110.0.40", "comment": "node exporter from monitor"},
        {"port": 9100, "proto": "tcp", "from": "10.110.0.41", "comment": "node exporter from monitor"},
        {"port": 9121, "proto": "tcp", "from": "10.110.0.40", "comment": "redis exporter from monitor"},
        {"port": 9121, "proto": "tcp", "from": "10.110.0.41", "comment": "redis exporter from monitor"},
    ]


def test_private_address_is_taken_before_ansible_host():
    rules = ex.firewall_rules([], ["mon1"], HOSTVARS)
    assert [r["from"] for r in rules] == ["10.110.0.40"]


def test_no_monitor_host_no_rule():
    assert ex.firewall_rules(["db"], [], HOSTVARS) == []
    assert ex.firewall_rules(["db"], None, HOSTVARS) == []


def test_duplicate_monitor_addresses_make_one_rule():
    hostvars = dict(HOSTVARS, mon3={"bosun_private_address": "10.110.0.40"})
    assert len(ex.firewall_rules([], ["mon1", "mon3"], hostvars)) == 1


def test_ports_and_groups_can_be_overridden():
    rules = ex.firewall_rules(["db"], ["mon1"], HOSTVARS, exporter_groups={"node": "-"}, ports={"postgres": 9188})
    assert rules == [{"port": 9188, "proto": "tcp", "from": "10.110.0.40", "comment": "postgres exporter from monitor"}]


@pytest.mark.parametrize("port", [0, 70000, "x"])
def test_bad_ports_are_refused(port):
    with pytest.raises(ex.ExportersError, match="port of node"):
        ex.firewall_rules([], ["mon1"], HOSTVARS, ports={"node": port})


def test_monitor_host_without_an_address_is_refused():
    with pytest.raises(ex.ExportersError, match="not an IP address"):
        ex.firewall_rules([], ["mon-by-name"], HOSTVARS)
    with pytest.raises(ex.ExportersError, match="neither bosun_private_address nor ansible_host"):
        ex.firewall_rules([], ["mon-none"], HOSTVARS)
    with pytest.raises(ex.ExportersError, match="not in hostvars"):
        ex.firewall_rules([], ["ghost"], HOSTVARS)


def test_rules_are_accepted_by_the_common_role():
    from ansible_collections.bosun.platform.plugins.module_utils import _firewall

    rules = ex.firewall_rules(["lb"], ["mon1"], HOSTVARS)
    wanted = _firewall.wanted_rules(["198.51.100.0/24"], 22, rules, [])
    mine = [w for w in wanted if str(w["port"]) in ("9100", "9113")]
    assert [(str(w["port"]), w["from"]) for w in mine] == [("9100", "10.110.0.40"), ("9113", "10.110.0.40")]


# --- Redis ACL user ---------------------------------------------------------------------


def test_redis_user_reads_no_key_and_writes_nothing():
    user = ex.redis_acl_user("redis-exporter", "s3cret")
    assert user["name"] == "redis-exporter" and user["password"] == "s3cret"
    rules = user["rules"]
    assert rules[:3] == ["resetkeys", "resetchannels", "-@all"]
    assert not any(r.startswith("~") or r.startswith("%") or r == "allkeys" for r in rules)
    assert "+info" in rules and "+client|setname" in rules and "+slowlog|get" in rules
    assert not any(r.startswith("+@") for r in rules)
    assert "+config|get" not in rules


def test_redis_user_takes_extra_rules():
    rules = ex.redis_acl_user("e", "p", ["+config|get"])["rules"]
    assert rules[-1] == "+config|get"


@pytest.mark.parametrize(
    "name,password,extra,match",
    [
        ("", "p", None, "one word"),
        ("a b", "p", None, "one word"),
        ("e", "", None, "needs a password"),
        ("e", "p", ["+get ~*"], "blanks"),
        ("e", "p", "+get", "must be a list"),
    ],
)
def test_redis_user_refusals(name, password, extra, match):
    with pytest.raises(ex.ExportersError, match=match):
        ex.redis_acl_user(name, password, extra)


# --- environment files ------------------------------------------------------------------


def test_env_file_quotes_values_and_ends_with_args():
    text = ex.env_file({"REDIS_USER": "e", "REDIS_PASSWORD": 'a"b$c`d\\e', "EMPTY": ""}, ["-x=1"])
    lines = text.splitlines()
    assert lines[0].startswith("#")
    assert lines[1:] == ['REDIS_USER="e"', 'REDIS_PASSWORD="a\\"b\\$c\\`d\\\\e"', 'ARGS="-x=1"']


def test_env_file_values_read_back_by_a_shell(tmp_path):
    import subprocess

    secret = "p w\"'$HOME`id`\\n;"
    path = tmp_path / "env"
    path.write_text(ex.env_file({"SECRET": secret}, []))
    out = subprocess.run(
        ["sh", "-c", '. "$1"; printf %s "$SECRET"', "sh", str(path)], capture_output=True, text=True, check=True
    )
    assert out.stdout == secret


def test_env_file_without_args_has_empty_args():
    assert ex.env_file({}, None).splitlines()[-1] == 'ARGS=""'


@pytest.mark.parametrize("arg", ["a b", "'x'", "$X", "a\\b", ""])
def test_env_file_refuses_args_that_are_not_one_word(arg):
    with pytest.raises(ex.ExportersError, match="one word"):
        ex.env_file({}, [arg])


def test_env_file_refuses_bad_names_and_line_breaks():
    with pytest.raises(ex.ExportersError, match="not an environment variable name"):
        ex.env_file({"A-B": "x"})
    with pytest.raises(ex.ExportersError, match="line break"):
        ex.env_file({"A": "x\ny"})


# --- addresses --------------------------------------------------------------------------


def test_listen_brackets_ipv6():
    assert ex.listen("10.0.0.5", 9100) == "10.0.0.5:9100"
    assert ex.listen("fd00::5", "9121") == "[fd00::5]:9121"
    with pytest.raises(ex.ExportersError):
        ex.listen("", 9100)


def test_pick_address_skips_blanks_and_names():
    assert ex.pick_address(["", "10.0.0.5", "10.0.0.6"]) == "10.0.0.5"
    assert ex.pick_address(["", "", "bosun-svc1"]) == ""
    assert ex.pick_address(["", "172.18.0.3"]) == "172.18.0.3"


# --- PostgreSQL -------------------------------------------------------------------------


def test_postgres_dsn_is_a_url_with_the_password_percent_encoded():
    from urllib.parse import parse_qs, unquote, urlsplit

    password = "it's/me@:?#%&$x\\"
    dsn = ex.postgres_dsn("monitor", password)
    assert " " not in dsn
    url = urlsplit(dsn)
    assert url.scheme == "postgresql" and url.hostname is None and url.path == "/postgres"
    assert unquote(url.password) == password and url.username == "monitor"
    assert parse_qs(url.query) == {"host": ["/var/run/postgresql"], "port": ["5432"], "sslmode": ["disable"]}


def test_postgres_dsn_over_tcp_with_tls():
    dsn = ex.postgres_dsn("m", "p", host="127.0.0.1", sslmode="verify-ca", sslrootcert="/etc/ca.crt")
    assert dsn == "postgresql://m:p@127.0.0.1:5432/postgres?sslmode=verify-ca&sslrootcert=%2Fetc%2Fca.crt"
    assert ex.postgres_dsn("m", "p", host="::1", sslmode="require").startswith("postgresql://m:p@[::1]:5432/")


@pytest.mark.parametrize(
    "user,password,sslmode,match",
    [
        ("", "p", "disable", "login user"),
        ("m", "", "disable", "needs a password"),
        ("m", "p", "prefer", "sslmode"),
        ("m", "p w", "disable", "password with blanks"),
        ("m", "p\tw", "disable", "password with blanks"),
    ],
)
def test_postgres_dsn_refusals(user, password, sslmode, match):
    with pytest.raises(ex.ExportersError, match=match):
        ex.postgres_dsn(user, password, sslmode=sslmode)
