# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""elasticsearch: cluster health, JVM heap of each node, disk used against the watermarks.

Three GET requests through Ansible's own ``open_url`` (the managed host needs no client
library), with HTTP basic authentication (a user with the cluster privilege ``monitor``)
or an API key, over TLS verified against ``ca_cert``, ``ca_cert_data`` or the system's CAs:

- ``/_cluster/health``: status green is ok, yellow warn (replica shards unassigned), red
  crit (a primary shard unassigned: some data cannot be searched or written); nodes in the
  cluster against ``expected_nodes`` (fewer is crit, more warn); unassigned, initializing
  and relocating shards; pending cluster tasks.
- ``/_nodes/stats/jvm,fs``: JVM memory pressure of each node, the check's value: the old
  generation used of its maximum, as Elastic's monitoring counts it. Unlike the whole heap
  it leaves out the young garbage the next collection frees, so one sample of a healthy
  node's sawtooth does not warn. The heap used is reported beside it (and judged when the
  node reports no memory pools). Disk used of each data path as Elasticsearch counts it:
  the space not available to it, so blocks reserved for root count as used and the figure
  is higher than df's Use%.
- ``/_cluster/settings?include_defaults``: the disk watermarks. Disk above the high
  watermark is warn (Elasticsearch allocates no shard to the node and moves shards away),
  above the flood stage crit (it makes every index with a shard on the node read-only).
  The free space a watermark requires is the node's own figure where its statistics give
  it (``*_watermark_free_space_in_bytes``, as 8.19 does), else computed
  here as Elasticsearch does: a percentage or ratio of the disk, capped at its
  ``max_headroom`` when that is in force, or an absolute size of free space (``50gb``).

Failures (refused, timed out, TLS, HTTP 401/403, no master) are crit, naming the URL and
the cause; the password and the API key never appear (the runner also redacts them). The
connection options and the request are module_utils/_elasticsearch.py, shared with the
elasticsearch_maintenance module.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.bosun.platform.plugins.module_utils import _elasticsearch as _es
from ansible_collections.bosun.platform.plugins.module_utils._checks.base import ca_problems, fmt_num
from ansible_collections.bosun.platform.plugins.module_utils._checks.http_check import safe_url
from ansible_collections.bosun.platform.plugins.module_utils._checks.status import (
    CRIT,
    OK,
    UNKNOWN,
    WARN,
    Threshold,
)

TYPE = "elasticsearch"
# The connection options (module_utils/_elasticsearch.py) are the family's, so a task's
# top-level ones (module_defaults of group/bosun.platform.elasticsearch) fill what a check
# does not give.
FAMILY_ARGS = _es.CONNECTION_OPTIONS
OPTIONS = dict(expected_nodes=dict(type="int"))
# Not tunable (None): the cluster status, the number of nodes (expected_nodes) and the disk
# (the cluster's own watermarks).
METRICS = dict(
    heap=Threshold(85, 95, unit="%"),
    status=None,
    disk=None,
    nodes=None,
    unassigned_shards=Threshold(None, None, unit="shards"),
    initializing_shards=Threshold(None, None, unit="shards"),
    relocating_shards=Threshold(None, None, unit="shards"),
    pending_tasks=Threshold(10, None, unit="tasks"),
)

HEALTH = "/_cluster/health"
NODES = "/_nodes/stats/jvm,fs?filter_path=nodes.*.name,nodes.*.jvm.mem,nodes.*.fs.total,nodes.*.fs.data,_nodes"
SETTINGS = (
    "/_cluster/settings?include_defaults=true"
    "&filter_path=**.disk.watermark*,**.disk.threshold_enabled,**.disk.watermark.*"
)
DISK_PREFIX = "cluster.routing.allocation.disk."
LEVELS = ("low", "high", "flood_stage")
LEVEL_NAMES = dict(low="low watermark", high="high watermark", flood_stage="flood stage watermark")
STATUS_OF = dict(green=OK, yellow=WARN, red=CRIT)
BYTE_UNITS = dict(b=1, k=1024, kb=1024, m=1024**2, mb=1024**2, g=1024**3, gb=1024**3, t=1024**4, tb=1024**4)
BYTE_UNITS.update(p=1024**5, pb=1024**5)

# The connection (module_utils/_elasticsearch.py, shared with elasticsearch_maintenance)
api_key_header = _es.api_key_header
secrets = _es.secrets
_http_failure = _es.http_failure


# --- options ------------------------------------------------------------------------------
def target(options):
    return safe_url(options.get("url") or "")


def validate(options):
    problems = _es.connection_problems(options, "elasticsearch.")
    if options.get("expected_nodes") is not None and options["expected_nodes"] < 1:
        problems.append("elasticsearch.expected_nodes must be 1 or more (got %s)" % options["expected_nodes"])
    problems.extend(ca_problems("elasticsearch", options))
    return problems


describe = _es.describe


# --- requests ------------------------------------------------------------------------------
def _get(probe, options, path, ca_path):
    """GET ``path`` and return the parsed JSON; any failure ends the check."""
    answer = None
    try:
        answer = _es.request(
            options,
            "GET",
            path,
            timeout=probe.remaining(),
            ca_path=ca_path,
            agent="bosun.platform.health_check",
            timeout_label=probe.timeout,
        )
    except _es.ElasticsearchError as exc:
        probe.fail(exc.message)
    if not isinstance(answer, dict):
        shown = "GET %s%s" % (safe_url(options["url"].rstrip("/")), path.split("?", 1)[0])
        probe.fail("%s: HTTP 200 but the body is not JSON" % shown)
    return answer


def run(probe, options):
    with _es.CaFile(options) as ca_path:
        health = _get(probe, options, HEALTH, ca_path)
        nodes = _get(probe, options, NODES, ca_path)
        settings = _get(probe, options, SETTINGS, ca_path)
    measure(probe, health, nodes, settings, expected_nodes=options.get("expected_nodes"))


# --- judgement (pure) ----------------------------------------------------------------------
def flatten(tree, prefix=""):
    """Nested settings as dotted names: {"a": {"b": 1}, "a.c": 2} -> {"a.b": 1, "a.c": 2}."""
    out = {}
    for key, value in (tree or {}).items():
        name = "%s.%s" % (prefix, key) if prefix else str(key)
        if isinstance(value, dict):
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


def disk_settings(settings):
    """(effective, explicit): the ``cluster.routing.allocation.disk.*`` settings without
    that prefix, transient over persistent over defaults; ``explicit`` holds the names set
    in transient or persistent."""
    effective, explicit = {}, set()
    for section in ("defaults", "persistent", "transient"):
        for name, value in flatten((settings or {}).get(section)).items():
            if name.startswith(DISK_PREFIX):
                key = name[len(DISK_PREFIX) :]
                effective[key] = value
                if section != "defaults":
                    explicit.add(key)
    return effective, explicit


def parse_bytes(text):
    """Bytes of an Elasticsearch size (``150gb``, ``500mb``, ``1b``); None for -1 or nonsense."""
    match = re.match(r"^\s*(-?\d+(?:\.\d+)?)\s*([a-z]*)\s*$", str(text).lower())
    if not match or match.group(2) not in BYTE_UNITS:
        return None
    value = float(match.group(1))
    return None if value < 0 else value * BYTE_UNITS[match.group(2)]


def parse_watermark(text):
    """("percent", used %) or ("bytes", free bytes required), or None when unreadable.

    As Elasticsearch reads it: ``90%`` or a ratio ``0.9`` is the share of the disk that may
    be used; a size (``50gb``) is the free space that must remain.
    """
    text = str(text).strip()
    try:
        if text.endswith("%"):
            value = float(text[:-1])
            return ("percent", value) if 0 <= value <= 100 else None
        value = float(text)
        return ("percent", value * 100.0) if 0 <= value <= 1 else None
    except ValueError:
        size = parse_bytes(text)
        return ("bytes", size) if size is not None else None


def required_free(total, level, effective, explicit):
    """Free bytes the ``level`` watermark requires on a disk of ``total`` bytes, or None.

    A percentage is capped at the level's max_headroom, which is in force unless the
    watermark was set without it (Elasticsearch's own rule).
    """
    parsed = parse_watermark(effective.get("watermark." + level, ""))
    if parsed is None:
        return None
    kind, value = parsed
    if kind == "bytes":
        return value
    need = total * (100.0 - value) / 100.0
    headroom_name = "watermark.%s.max_headroom" % level
    if ("watermark." + level) in explicit and headroom_name not in explicit:
        return need
    headroom = parse_bytes(effective.get(headroom_name, "-1"))
    return min(need, headroom) if headroom is not None else need


def data_paths(node):
    """[(path, total, available, {level: required free bytes or None from the node})]."""
    fs = node.get("fs") or {}
    paths = fs.get("data") or ([dict(fs["total"], path="(all data paths)")] if fs.get("total") else [])
    out = []
    for entry in paths:
        total = entry.get("total_in_bytes")
        available = entry.get("available_in_bytes")
        if not total or available is None:
            continue
        reported = dict((level, entry.get("%s_watermark_free_space_in_bytes" % level)) for level in ("low", "high"))
        reported["flood_stage"] = entry.get("flood_stage_free_space_in_bytes")
        out.append((entry.get("path") or "?", int(total), int(available), reported))
    return out


def judge_disk(nodes, settings):
    """The worst data path of all nodes: dict(node, path, used, status, level, watermarks)
    or None when no node reports its disk. ``watermarks`` maps level -> used % at which it
    applies on that disk; ``level`` is the highest watermark exceeded (or None)."""
    effective, explicit = disk_settings(settings)
    enabled = str(effective.get("threshold_enabled", "true")).lower() != "false"
    candidates = []
    for node_id, node in (nodes or {}).items():
        name = node.get("name") or node_id
        for path, total, available, reported in data_paths(node):
            used = round(100.0 * (total - available) / total, 1)
            watermarks, level = {}, None
            for each in LEVELS:
                need = reported.get(each)
                if need is None:
                    need = required_free(total, each, effective, explicit)
                if need is None:
                    continue
                watermarks[each] = round(100.0 * (total - need) / total, 1)
                if enabled and available < need:
                    level = each
            status = OK
            if level == "flood_stage":
                status = CRIT
            elif level == "high":
                status = WARN
            candidates.append(
                dict(
                    node=name, path=path, used=used, status=status, level=level, watermarks=watermarks, enabled=enabled
                )
            )
    if not candidates:
        return None
    rank = dict(ok=0, warn=1, crit=2)
    return max(candidates, key=lambda c: (rank[c["status"]], c["used"]))


def judge_heap(nodes):
    """The node with the highest memory pressure: dict(node, pressure, heap) or None.

    ``pressure``: old generation used of its maximum (None when the node reports no
    pools); ``heap``: heap used %.
    """
    best = None
    for node_id, node in (nodes or {}).items():
        mem = (node.get("jvm") or {}).get("mem") or {}
        heap = mem.get("heap_used_percent")
        old = (mem.get("pools") or {}).get("old") or {}
        pressure = None
        if old.get("max_in_bytes"):
            pressure = round(100.0 * old.get("used_in_bytes", 0) / old["max_in_bytes"], 1)
        if heap is None and pressure is None:
            continue
        judged = pressure if pressure is not None else float(heap)
        entry = dict(node=node.get("name") or node_id, pressure=pressure, heap=heap, judged=judged)
        if best is None or judged > best["judged"]:
            best = entry
    return best


def _on(node, several):
    return " on %s" % node if several else ""


def _plural(count, word):
    return "%d %s%s" % (count, word, "" if count == 1 else "s")


def measure(probe, health, nodes_stats, settings, expected_nodes=None):
    """Judge the three responses (separate for unit tests). Metrics are recorded heap
    first (the check's value), then the cluster, then the disk."""
    nodes = (nodes_stats or {}).get("nodes") or {}
    several = len(nodes) > 1

    # JVM heap -----------------------------------------------------------------------------
    heap = judge_heap(nodes)
    if heap is None:
        probe.metric("heap", None, "Elasticsearch heap n/a (no JVM statistics)")
        heap_note = "heap n/a"
    else:
        heap_note = "heap %s %%" % ("n/a" if heap["heap"] is None else heap["heap"])
        if heap["pressure"] is not None:
            heap_note += " (memory pressure %s %%)" % fmt_num(heap["pressure"], 0)
        heap_note += _on(heap["node"], several)
        probe.metric("heap", heap["judged"], "Elasticsearch " + heap_note)

    # cluster health -----------------------------------------------------------------------
    color = str(health.get("status") or "unknown")
    count = int(health.get("number_of_nodes") or 0)
    unassigned = int(health.get("unassigned_shards") or 0)
    primaries = health.get("unassigned_primary_shards")
    delayed = int(health.get("delayed_unassigned_shards") or 0)
    initializing = int(health.get("initializing_shards") or 0)
    relocating = int(health.get("relocating_shards") or 0)
    pending = int(health.get("number_of_pending_tasks") or 0)
    waiting_ms = int(health.get("task_max_waiting_in_queue_millis") or 0)

    nodes_note = "%d/%d nodes" % (count, expected_nodes) if expected_nodes else _plural(count, "node")
    shards_note = _plural(unassigned, "unassigned shard")
    details = []
    if primaries:
        details.append("%d primary" % int(primaries))
    if delayed:
        details.append("%d delayed" % delayed)
    if details:
        shards_note += " (%s)" % ", ".join(details)
    cluster_note = "%s, %s, %s" % (color, nodes_note, shards_note)
    probe.metric("status", color, "cluster " + cluster_note, status=STATUS_OF.get(color, UNKNOWN), unit="")

    if expected_nodes:
        if count < expected_nodes:
            status, text = CRIT, "%d of %d expected nodes in the cluster" % (count, expected_nodes)
        elif count > expected_nodes:
            status, text = WARN, "%s in the cluster, %d expected" % (_plural(count, "node"), expected_nodes)
        else:
            status, text = OK, "%s, as expected" % _plural(count, "node")
        probe.metric("nodes", count, text, status=status, headline=False, unit="nodes")
    else:
        probe.metric("nodes", count, _plural(count, "node"), status=OK, headline=False, unit="nodes")
    missing = int((nodes_stats or {}).get("_nodes", {}).get("failed") or 0)
    probe.metric("unassigned_shards", unassigned, shards_note, headline=False)
    probe.metric("initializing_shards", initializing, _plural(initializing, "initializing shard"), headline=False)
    probe.metric("relocating_shards", relocating, _plural(relocating, "relocating shard"), headline=False)
    tasks_note = _plural(pending, "pending task")
    if waiting_ms:
        tasks_note += " (oldest %s s)" % fmt_num(waiting_ms / 1000.0)
    probe.metric("pending_tasks", pending, tasks_note, headline=False)

    # disk ----------------------------------------------------------------------------------
    disk = judge_disk(nodes, settings)
    if disk is None:
        probe.metric("disk", None, "disk n/a (no filesystem statistics)", status=OK)
        disk_note = "disk n/a"
    else:
        where = _on(disk["node"], several)
        marks = disk["watermarks"]
        if not disk["enabled"]:
            disk_note = "disk %s %%%s (disk watermarks disabled)" % (fmt_num(disk["used"], 0), where)
        elif disk["level"] in ("high", "flood_stage"):
            effect = (
                "indices with a shard there are read-only"
                if disk["level"] == "flood_stage"
                else "no new shards there, shards move away"
            )
            disk_note = "disk %s %%%s above the %s %s %% (%s)" % (
                fmt_num(disk["used"], 0),
                where,
                LEVEL_NAMES[disk["level"]],
                fmt_num(marks[disk["level"]]),
                effect,
            )
        elif disk["level"] == "low":
            disk_note = "disk %s %%%s (above the low watermark %s %%: no shards allocated there; high %s %%)" % (
                fmt_num(disk["used"], 0),
                where,
                fmt_num(marks["low"]),
                fmt_num(marks.get("high")),
            )
        elif "high" in marks:
            disk_note = "disk %s %%%s (high watermark %s %%)" % (
                fmt_num(disk["used"], 0),
                where,
                fmt_num(marks["high"]),
            )
        else:
            disk_note = "disk %s %%%s (watermarks unknown)" % (fmt_num(disk["used"], 0), where)
        probe.metric("disk", disk["used"], disk_note, status=disk["status"], unit="%")

    notes = [cluster_note, heap_note, disk_note]
    if initializing or relocating:
        notes.append("%d initializing, %d relocating shards" % (initializing, relocating))
    if pending:
        notes.append(tasks_note)
    if missing:
        notes.append("%s did not answer for statistics" % _plural(missing, "node"))
        probe.metric("node_stats", missing, "%s without statistics" % _plural(missing, "node"), status=WARN, unit="")
    probe.message = ", ".join(notes)
