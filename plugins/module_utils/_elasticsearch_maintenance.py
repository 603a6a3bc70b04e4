# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Index maintenance for Elasticsearch: cleanup of old indices (with a snapshot first),
force-merge of old read-only indices, and a shard allocation report.

The decisions are pure functions of what the cluster answered (``plan_cleanup``,
``plan_forcemerge``, ``shard_report``, ``retention`` ...), unit-tested on their own; ``run``
asks the cluster, decides, and only then acts, so check mode takes the same path and skips
only the requests that change something.

Cleanup rules, in this order for each index a pattern matches:

- a data stream's backing index, a system index and the write index of an alias are kept
  (the write index: ``is_write_index: true``, or the only index of an alias that sets
  ``is_write_index`` on none of its indices);
- the age is counted from ``index.creation_date`` or from a date in the name (see
  ``name_date``), and an index not older than ``older_than_days`` is kept.

Then two guards fail the task before anything is changed: a pattern whose every match would
be deleted (unless ``allow_delete_all``), and more than ``max_delete`` indices to delete.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fnmatch
import re
import time
from datetime import datetime, timedelta, timezone
from urllib import parse as urlparse

from ansible_collections.bosun.platform.plugins.module_utils import _elasticsearch as _es
from ansible_collections.bosun.platform.plugins.module_utils._module import deprecated_alias

ACTIONS = ("cleanup", "forcemerge", "shard_report")
SNAPSHOT_PREFIX = "bosun-cleanup-"
AGENT = "bosun.platform.elasticsearch_maintenance"
MAX_BODY = 64 * 1024 * 1024
URL_BUDGET = 3000  # characters of index names in one request path
UNASSIGNED_LISTED = 100
# the shard copies from the cluster state: the cluster privilege monitor is enough (_cat/shards
# would need the index privilege monitor on every index)
ROUTING = "/_cluster/state/routing_table,nodes?filter_path=" + ",".join(
    ["routing_table.indices.*.shards.*." + f for f in ("state", "primary", "node", "unassigned_info.reason")]
    + ["nodes.*.name"]
)

MAINTENANCE_OPTIONS = dict(
    action=dict(type="str", required=True, choices=list(ACTIONS)),
    patterns=dict(type="list", elements="str"),
    older_than_days=dict(type="int"),
    age_from=dict(type="str", default="creation_date", choices=["creation_date", "name"]),
    name_date_format=dict(type="str", default="%Y.%m.%d"),
    allow_delete_all=dict(type="bool", default=False, **deprecated_alias("force")),
    max_delete=dict(type="int", default=50),
    snapshot_repository=dict(type="str"),
    snapshot_keep_last=dict(type="int"),
    max_num_segments=dict(type="int", default=1),
    balance_threshold=dict(type="int", default=1),
    timeout=dict(type="float", default=30.0),
    wait_timeout=dict(type="float", default=3600.0),
)

REQUIRED_IF = [
    ("action", "cleanup", ("patterns", "older_than_days")),
    ("action", "forcemerge", ("patterns",)),
]

# Why an index is left alone (``kept[].reason`` / ``skipped[].reason``).
REASONS = dict(
    data_stream="backing index of a data stream",
    system="system index",
    write_index="write index of an alias",
    too_young="not older than older_than_days",
    no_date="no date in the name",
    closed="closed",
    writable="not read-only (index.blocks.write is not true)",
    merged="already at max_num_segments",
)

# strftime directives a name date may use, and the digits each stands for.
DIRECTIVES = dict(Y=r"\d{4}", y=r"\d{2}", m=r"\d{2}", d=r"\d{2}", H=r"\d{2}", M=r"\d{2}", S=r"\d{2}", j=r"\d{3}")
DIRECTIVES.update(G=r"\d{4}", V=r"\d{2}")


def argument_spec():
    spec = dict((k, dict(v)) for k, v in _es.CONNECTION_OPTIONS.items())
    spec.update((k, dict(v)) for k, v in MAINTENANCE_OPTIONS.items())
    return spec


def default_params(**over):
    """Every option at its default, updated with ``over`` (for callers outside Ansible)."""
    params = dict((k, v.get("default")) for k, v in argument_spec().items())
    params.update(over)
    return params


class MaintenanceError(Exception):
    """The task failed or was refused; ``result`` holds what was done before that."""

    def __init__(self, message, result=None):
        super(MaintenanceError, self).__init__(message)
        self.message = message
        self.result = result or {}


# --- options ---------------------------------------------------------------------------------
def validate(params):
    """Problems with the options (connection included), before any request."""
    problems = _es.connection_problems(params) + _es.ca_problems(params)
    action = params.get("action")
    patterns = params.get("patterns") or []
    if action in ("cleanup", "forcemerge") and not patterns:
        problems.append("patterns must name at least one index pattern")
    for pattern in patterns:
        problems.extend(pattern_problems(pattern))
    for name in ("older_than_days", "max_delete", "snapshot_keep_last"):
        value = params.get(name)
        if value is not None and value < (1 if name == "snapshot_keep_last" else 0):
            problems.append("%s must be %d or more (got %s)" % (name, 1 if name == "snapshot_keep_last" else 0, value))
    if params.get("max_num_segments") is not None and params["max_num_segments"] < 1:
        problems.append("max_num_segments must be 1 or more (got %s)" % params["max_num_segments"])
    if params.get("balance_threshold") is not None and params["balance_threshold"] < 0:
        problems.append("balance_threshold must be 0 or more (got %s)" % params["balance_threshold"])
    for name in ("timeout", "wait_timeout"):
        if params.get(name) is not None and params[name] <= 0:
            problems.append("%s must be more than 0 seconds (got %s)" % (name, params[name]))
    if params.get("snapshot_keep_last") is not None and not params.get("snapshot_repository"):
        problems.append("snapshot_keep_last needs snapshot_repository")
    repo = params.get("snapshot_repository")
    if repo is not None and (not repo or repo.startswith("_") or re.search(r"[\s,/*?\"<>|#\\]", repo)):
        problems.append("snapshot_repository %r is not a repository name" % repo)
    if params.get("snapshot_repository") and action != "cleanup":
        problems.append("snapshot_repository is an option of action=cleanup")
    if params.get("age_from") == "name" and (action in ("cleanup", "forcemerge")):
        try:
            date_regex(params.get("name_date_format") or "")
        except ValueError as exc:
            problems.append(str(exc))
    return problems


def pattern_problems(pattern):
    if not pattern or not pattern.strip():
        return ["an empty index pattern matches nothing: remove it"]
    bad = sorted(set(c for c in pattern if c in ' ,/\\"<>|#' or c.isspace()))
    if bad:
        return ["index pattern %r holds %s, which no index name can" % (pattern, " ".join(repr(c) for c in bad))]
    if pattern.startswith(("-", "+", "_")):
        return ["index pattern %r starts with %r: give names as they are (no exclusions)" % (pattern, pattern[0])]
    return []


# --- names, patterns and dates -------------------------------------------------------------------
def matches(pattern, name):
    """Shell-style match (``*``, ``?``, ``[...]``), case-sensitive. As a shell does with dot
    files, a name that starts with ``.`` (hidden and system indices) matches only a pattern
    that starts with ``.``."""
    if name.startswith(".") and not pattern.startswith("."):
        return False
    return fnmatch.fnmatchcase(name, pattern)


def literal_prefix(pattern):
    """The fixed text a pattern starts with, before its first ``*``, ``?`` or ``[``."""
    match = re.match(r"[^*?\[]*", pattern)
    return match.group(0)


def date_regex(fmt):
    """The regular expression of the text ``fmt`` (a strftime format) produces.

    Supported: %Y %y %m %d %H %M %S %j, the ISO week pair %G and %V (the week's Monday),
    and %%. A year is required."""
    out, i = [], 0
    while i < len(fmt):
        char = fmt[i]
        if char != "%":
            out.append(re.escape(char))
            i += 1
            continue
        if i + 1 >= len(fmt):
            raise ValueError("name_date_format %r ends with a lone %%" % fmt)
        directive = fmt[i + 1]
        if directive == "%":
            out.append("%")
        elif directive in DIRECTIVES:
            out.append(DIRECTIVES[directive])
        else:
            raise ValueError(
                "name_date_format %r: %%%s is not supported (use %s)"
                % (fmt, directive, " ".join("%" + d for d in "YymdHMSjGV"))
            )
        i += 2
    if not re.search(r"%[YyG]", fmt.replace("%%", "")):
        raise ValueError("name_date_format %r has no year (%%Y, %%y or %%G)" % fmt)
    if ("%V" in fmt) != ("%G" in fmt):
        raise ValueError("name_date_format %r: %%G and %%V go together (ISO year and week)" % fmt)
    return r"(?<!\d)" + "".join(out) + r"(?!\d)"


def parse_name_date(text, fmt):
    """The UTC datetime ``text`` holds in the format ``fmt``, or None."""
    try:
        if "%V" in fmt:
            return datetime.strptime(text + "-1", fmt + "-%u").replace(tzinfo=timezone.utc)
        return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def name_date(name, pattern, fmt):
    """The date in an index name: the first text after the pattern's fixed prefix that has
    the shape of ``fmt`` (digits not cut out of a longer number), read as UTC at the start
    of the period it names (``logs-2024.01.05`` -> 2024-01-05 00:00). None when there is
    none, or it is no date (month 13)."""
    rest = name[len(literal_prefix(pattern)) :] if name.startswith(literal_prefix(pattern)) else name
    found = re.search(date_regex(fmt), rest)
    return parse_name_date(found.group(0), fmt) if found else None


def from_millis(value):
    try:
        return datetime.fromtimestamp(int(value) / 1000.0, tz=timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def iso(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def age_days(moment, now):
    return round((now - moment).total_seconds() / 86400.0, 2)


def snapshot_name(now):
    """``bosun-cleanup-<UTC timestamp>``: lower case as Elasticsearch requires, milliseconds
    so two runs in one second do not collide, sorting as time does."""
    return "%s%s.%03dz" % (SNAPSHOT_PREFIX, now.strftime("%Y%m%dt%H%M%S"), now.microsecond // 1000)


# --- what the cluster answered, as one record per index -------------------------------------------
def index_records(resolved, settings, aliases):
    """{name: dict(name, closed, system, hidden, data_stream, created, write_block,
    write_alias_of)} from ``GET /_resolve/index/*``, ``GET /_settings/...`` (flat) and
    ``GET /_alias``."""
    writes = write_indices(aliases)
    out = {}
    for entry in (resolved or {}).get("indices") or []:
        name = entry.get("name")
        if not name:
            continue
        attributes = set(entry.get("attributes") or [])
        flat = ((settings or {}).get(name) or {}).get("settings") or {}
        out[name] = dict(
            name=name,
            closed="closed" in attributes,
            system="system" in attributes,
            hidden="hidden" in attributes,
            data_stream=entry.get("data_stream") or (name.startswith(".ds-") and "?") or None,
            created=from_millis(flat.get("index.creation_date")),
            write_block=str(flat.get("index.blocks.write", "false")).lower() == "true",
            write_alias_of=writes.get(name, []),
        )
    return out


def write_indices(aliases):
    """{index: [aliases it is the write index of]} from ``GET /_alias``: the index with
    ``is_write_index: true``, or the only index of an alias none of whose indices sets
    ``is_write_index``."""
    members = {}
    for index, entry in (aliases or {}).items():
        for alias, meta in ((entry or {}).get("aliases") or {}).items():
            members.setdefault(alias, []).append((index, (meta or {}).get("is_write_index")))
    out = {}
    for alias, indices in sorted(members.items()):
        flagged = [index for index, flag in indices if flag is True]
        if not flagged and len(indices) == 1 and indices[0][1] is None:
            flagged = [indices[0][0]]
        for index in flagged:
            out.setdefault(index, []).append(alias)
    return out


def matched_indices(records, patterns):
    """({pattern: [names]}, [every matched name]) in name order."""
    by_pattern = dict((p, sorted(n for n in records if matches(p, n))) for p in patterns)
    every = sorted(set(n for names in by_pattern.values() for n in names))
    return by_pattern, every


def _age(record, patterns, params, now):
    """(date, reason or None): the index's date and whether it is too young (or dateless)."""
    if params.get("older_than_days") is None:
        return None, None
    if params.get("age_from") == "name":
        fmt = params.get("name_date_format") or "%Y.%m.%d"
        moment = None
        for pattern in patterns:
            if matches(pattern, record["name"]):
                moment = name_date(record["name"], pattern, fmt)
                if moment:
                    break
        if moment is None:
            return None, "no_date"
    else:
        moment = record.get("created")
        if moment is None:
            return None, "no_date"
    if now - moment <= timedelta(days=params["older_than_days"]):
        return moment, "too_young"
    return moment, None


def _kept(record, reason, moment, now, params, detail=None):
    entry = dict(index=record["name"], reason=reason, detail=detail or REASONS[reason])
    if moment is not None:
        entry["date"] = iso(moment)
        entry["age_days"] = age_days(moment, now)
    if reason == "write_index":
        entry["detail"] = "write index of alias %s" % ", ".join(record["write_alias_of"])
    elif reason == "data_stream" and record.get("data_stream") not in (None, "?"):
        entry["detail"] = "backing index of data stream %s" % record["data_stream"]
    elif reason == "too_young":
        entry["detail"] = "%s days old, not older than %s" % (entry["age_days"], params["older_than_days"])
    elif reason == "no_date" and params.get("age_from") == "name":
        entry["detail"] = "no date of the form %s in the name" % params.get("name_date_format")
    elif reason == "no_date":
        entry["detail"] = "no index.creation_date"
    return entry


def plan_cleanup(records, params, now):
    """dict(delete=[names], details={name: dict(date, age_days)}, kept=[...],
    patterns=[dict(pattern, matched)]) or MaintenanceError for a guard (nothing done)."""
    patterns = params["patterns"]
    by_pattern, every = matched_indices(records, patterns)
    delete, kept, details = [], [], {}
    for name in every:
        record = records[name]
        own = [p for p in patterns if matches(p, name)]
        moment = None
        if record.get("data_stream"):
            reason = "data_stream"
        elif record.get("system"):
            reason = "system"
        elif record.get("write_alias_of"):
            reason = "write_index"
        else:
            moment, reason = _age(record, own, params, now)
        if reason:
            kept.append(_kept(record, reason, moment, now, params))
        else:
            delete.append(name)
            details[name] = dict(date=iso(moment), age_days=age_days(moment, now))
    plan = dict(
        delete=delete,
        details=details,
        kept=kept,
        patterns=[dict(pattern=p, matched=len(by_pattern[p])) for p in patterns],
    )
    doomed = set(delete)
    if not params.get("allow_delete_all"):
        for pattern in patterns:
            names = by_pattern[pattern]
            if names and set(names) <= doomed:
                raise MaintenanceError(
                    "pattern %r matches %d %s and every one would be deleted (%s): nothing deleted; "
                    "give allow_delete_all: true to allow it"
                    % (pattern, len(names), _indices(len(names)), _list(names)),
                    dict(plan=plan),
                )
    if len(delete) > params["max_delete"]:
        raise MaintenanceError(
            "%d indices would be deleted, more than max_delete %d (%s): nothing deleted"
            % (len(delete), params["max_delete"], _list(delete)),
            dict(plan=plan),
        )
    return plan


def _indices(count):
    return "index" if count == 1 else "indices"


def _list(names, limit=10):
    shown = ", ".join(names[:limit])
    return shown + (" and %d more" % (len(names) - limit) if len(names) > limit else "")


# --- snapshots ------------------------------------------------------------------------------------
def snapshot_problems(answer, name, expected):
    """Why a snapshot answer (``PUT _snapshot/repo/name?wait_for_completion=true``) is not a
    complete copy of ``expected`` indices: [] when it is."""
    snap = (answer or {}).get("snapshot") or {}
    problems = []
    state = snap.get("state")
    if state != "SUCCESS":
        problems.append("state %s" % (state or "unknown"))
    missing = sorted(set(expected) - set(snap.get("indices") or []))
    if missing:
        problems.append("without %s" % _list(missing))
    shards = snap.get("shards") or {}
    if shards.get("failed"):
        problems.append("%s of %s shards failed" % (shards["failed"], shards.get("total")))
    for failure in (snap.get("failures") or [])[:3]:
        problems.append("%s[%s]: %s" % (failure.get("index"), failure.get("shard_id"), failure.get("reason")))
    return problems


def retention(snapshots, keep_last, new_name=None):
    """Names of ``bosun-cleanup-*`` snapshots to delete: the successful ones beyond the
    ``keep_last`` newest (by start time, then name). ``new_name`` (the snapshot this run
    made, or would make) counts as the newest and is never deleted. Snapshots that did not
    succeed neither count nor are deleted."""
    done = [
        s
        for s in snapshots or []
        if s.get("state") == "SUCCESS" and str(s.get("snapshot", "")).startswith(SNAPSHOT_PREFIX)
    ]
    done = [s for s in done if s.get("snapshot") != new_name]
    done.sort(key=lambda s: (int(s.get("start_time_in_millis") or 0), s.get("snapshot")), reverse=True)
    keep = keep_last - (1 if new_name else 0)
    return sorted(s["snapshot"] for s in done[max(keep, 0) :])


# --- force-merge ------------------------------------------------------------------------------------
def max_segments(stats):
    """{index: most segments of any of its shard copies} from ``GET /<indices>/_stats/segments?level=shards``."""
    out = {}
    for name, entry in ((stats or {}).get("indices") or {}).items():
        most = 0
        for copies in ((entry or {}).get("shards") or {}).values():
            for copy in copies or []:
                most = max(most, int(((copy or {}).get("segments") or {}).get("count") or 0))
        out[name] = most
    return out


def plan_forcemerge(records, params, now):
    """dict(candidates=[names], skipped=[...], patterns=[...]): the open, read-only indices
    old enough (when older_than_days is given). Segment counts are judged after."""
    patterns = params["patterns"]
    by_pattern, every = matched_indices(records, patterns)
    candidates, skipped = [], []
    for name in every:
        record = records[name]
        own = [p for p in patterns if matches(p, name)]
        moment, reason = _age(record, own, params, now)
        if reason is None and record.get("closed"):
            reason = "closed"
        elif reason is None and not record.get("write_block"):
            reason = "writable"
        if reason:
            skipped.append(_kept(record, reason, moment, now, params))
        else:
            candidates.append(name)
    return dict(
        candidates=candidates,
        skipped=skipped,
        patterns=[dict(pattern=p, matched=len(by_pattern[p])) for p in patterns],
    )


def split_merged(candidates, segments, target):
    """(to merge, already merged): an index whose every shard copy has at most ``target``
    segments needs no merge."""
    todo, done = [], []
    for name in candidates:
        (done if segments.get(name, 0) <= target else todo).append(name)
    return todo, done


# --- shard report ------------------------------------------------------------------------------------
def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def shard_copies(state):
    """[dict(index, shard, primary, state, node, reason)] from ``GET _cluster/state/routing_table,nodes``
    (node names in place of ids; ``reason`` of unassigned copies)."""
    names = dict(
        (node_id, (node or {}).get("name") or node_id) for node_id, node in ((state or {}).get("nodes") or {}).items()
    )
    out = []
    indices = (((state or {}).get("routing_table") or {}).get("indices")) or {}
    for index in sorted(indices):
        for number, copies in sorted(
            ((indices[index] or {}).get("shards") or {}).items(), key=lambda kv: _int(kv[0]) or 0
        ):
            for copy in copies or []:
                node = copy.get("node")
                out.append(
                    dict(
                        index=index,
                        shard=_int(number),
                        primary=bool(copy.get("primary")),
                        state=copy.get("state"),
                        node=names.get(node, node),
                        reason=(copy.get("unassigned_info") or {}).get("reason"),
                    )
                )
    return out


def shard_report(health, allocation, copies, threshold):
    """The report from ``GET _cluster/health``, ``GET _cat/allocation`` (JSON, bytes in b)
    and the shard copies (``shard_copies``): per node shards, primaries and disk; the
    unassigned shards; and whether the spread of shard counts over the data nodes is at
    most ``threshold``."""
    nodes = {}
    for row in allocation or []:
        name = row.get("node")
        if not name or name == "UNASSIGNED":
            continue
        nodes[name] = dict(
            node=name,
            shards=_int(row.get("shards")) or 0,
            primaries=0,
            undesired_shards=_int(row.get("shards.undesired")),
            disk_indices_bytes=_int(row.get("disk.indices")),
            disk_used_bytes=_int(row.get("disk.used")),
            disk_avail_bytes=_int(row.get("disk.avail")),
            disk_total_bytes=_int(row.get("disk.total")),
            disk_percent=_int(row.get("disk.percent")),
            host=row.get("host"),
        )
    unassigned = []
    for copy in copies or []:
        if copy["state"] == "UNASSIGNED":
            unassigned.append(dict((k, copy[k]) for k in ("index", "shard", "primary", "reason")))
        elif copy["primary"] and copy["node"] in nodes:
            nodes[copy["node"]]["primaries"] += 1
    unassigned.sort(key=lambda u: (not u["primary"], u["index"] or "", u["shard"] or 0))
    counts = [n["shards"] for n in nodes.values()]
    spread = (max(counts) - min(counts)) if counts else 0
    return dict(
        status=(health or {}).get("status"),
        number_of_nodes=(health or {}).get("number_of_nodes"),
        number_of_data_nodes=(health or {}).get("number_of_data_nodes"),
        nodes=[nodes[n] for n in sorted(nodes)],
        spread=spread,
        balance_threshold=threshold,
        balanced=spread <= threshold,
        unassigned_count=len(unassigned),
        unassigned=unassigned[:UNASSIGNED_LISTED],
    )


def explanation(answer):
    """The useful part of ``POST _cluster/allocation/explain``: why the shard is unassigned
    and, per node, the deciders that said no."""
    answer = answer or {}
    info = answer.get("unassigned_info") or {}
    deciders = []
    for node in answer.get("node_allocation_decisions") or []:
        for decider in node.get("deciders") or []:
            if decider.get("decision") == "NO":
                deciders.append(
                    dict(
                        node=node.get("node_name"),
                        decider=decider.get("decider"),
                        explanation=decider.get("explanation"),
                    )
                )
    return dict(
        index=answer.get("index"),
        shard=answer.get("shard"),
        primary=answer.get("primary"),
        reason=info.get("reason"),
        details=info.get("details"),
        last_allocation_status=info.get("last_allocation_status"),
        can_allocate=answer.get("can_allocate"),
        explanation=answer.get("allocate_explanation"),
        deciders=deciders,
    )


# --- the run ------------------------------------------------------------------------------------------
def quote(name):
    return urlparse.quote(name, safe="")


def batches(names, budget=URL_BUDGET):
    """Index names in groups whose comma-joined, quoted form fits a request path."""
    group, size = [], 0
    for name in names:
        length = len(quote(name)) + 1
        if group and size + length > budget:
            yield group
            group, size = [], 0
        group.append(name)
        size += length
    if group:
        yield group


class Cluster:
    """The requests of one run, with the connection options and the CA file."""

    def __init__(self, params, ca_path):
        self.params = params
        self.ca_path = ca_path

    def call(self, method, path, body=None, privilege=_es.MONITOR, wait=False):
        timeout = self.params["wait_timeout"] if wait else self.params["timeout"]
        return _es.request(
            self.params,
            method,
            path,
            body=body,
            timeout=timeout,
            ca_path=self.ca_path,
            agent=AGENT,
            privilege=privilege,
            max_body=MAX_BODY,
        )

    def records(self):
        view = "the index privilege view_index_metadata on the indices"
        resolved = self.call("GET", "/_resolve/index/*?expand_wildcards=all", privilege=view)
        settings = self.call(
            "GET",
            "/_settings/index.creation_date,index.blocks.write?expand_wildcards=all&flat_settings=true",
            privilege=view,
        )
        aliases = self.call("GET", "/_alias?expand_wildcards=all", privilege=view)
        return index_records(resolved, settings, aliases)


def run(params, check_mode=False, now=None):
    """Validate, ask the cluster, decide, act (not in check mode). Returns the result or
    raises MaintenanceError with what was done before the failure."""
    problems = validate(params)
    if problems:
        raise MaintenanceError("; ".join(problems))
    started = time.monotonic()
    result = dict(changed=False, action=params["action"], url=_es.describe(params).split(" ", 1)[1])
    try:
        with _es.CaFile(params) as ca_path:
            cluster = Cluster(params, ca_path)
            if params["action"] == "cleanup":
                _cleanup(cluster, params, check_mode, now or datetime.now(timezone.utc), result)
            elif params["action"] == "forcemerge":
                _forcemerge(cluster, params, check_mode, now or datetime.now(timezone.utc), result)
            else:
                _shard_report(cluster, params, result)
    except _es.ElasticsearchError as exc:
        result["elapsed"] = round(time.monotonic() - started, 3)
        raise MaintenanceError(_es.redact(exc.message, params), result) from None
    except MaintenanceError as exc:
        result.update(exc.result)
        result.pop("plan", None)
        result.pop("msg", None)
        result["elapsed"] = round(time.monotonic() - started, 3)
        raise MaintenanceError(_es.redact(exc.message, params), result) from None
    result["elapsed"] = round(time.monotonic() - started, 3)
    return result


def _cleanup(cluster, params, check_mode, now, result):
    result.update(deleted=[], kept=[], snapshot=None, snapshots_deleted=[])
    records = cluster.records()
    try:
        plan = plan_cleanup(records, params, now)
    except MaintenanceError as exc:
        plan = exc.result["plan"]
        result.update(kept=plan["kept"], patterns=plan["patterns"], would_delete=plan["delete"])
        raise
    result.update(kept=plan["kept"], patterns=plan["patterns"])
    doomed = plan["delete"]
    repo = params.get("snapshot_repository")
    name = snapshot_name(now) if repo and doomed else None
    if repo:
        _repository(cluster, repo)
    if repo and doomed:
        result["snapshot"] = dict(name=name, repository=repo, indices=list(doomed), state=None)
        result["changed"] = True
        if not check_mode:
            result["snapshot"] = _snapshot(cluster, repo, name, doomed)
    if doomed:
        for group in batches(doomed):
            result["changed"] = True
            if not check_mode:
                cluster.call(
                    "DELETE",
                    "/%s?expand_wildcards=none" % ",".join(quote(n) for n in group),
                    privilege="the index privilege delete_index on %s" % _list(group, 3),
                )
            result["deleted"].extend(group)
    if repo and params.get("snapshot_keep_last"):
        found = cluster.call(
            "GET",
            "/_snapshot/%s/%s*?ignore_unavailable=true" % (quote(repo), SNAPSHOT_PREFIX),
            privilege="the cluster privilege monitor_snapshot (or create_snapshot)",
        )
        snapshots = (found or {}).get("snapshots") or []
        if check_mode and name:
            snapshots = snapshots + [
                dict(snapshot=name, state="SUCCESS", start_time_in_millis=int(now.timestamp() * 1000))
            ]
        old = retention(snapshots, params["snapshot_keep_last"], new_name=name)
        for group in batches(old):
            result["changed"] = True
            if not check_mode:
                cluster.call(
                    "DELETE",
                    "/_snapshot/%s/%s" % (quote(repo), ",".join(quote(n) for n in group)),
                    privilege="the cluster privilege manage (deleting snapshots)",
                    wait=True,
                )
            result["snapshots_deleted"].extend(group)
    result["msg"] = _cleanup_message(result, check_mode)


def _repository(cluster, repo):
    try:
        cluster.call(
            "GET",
            "/_snapshot/%s" % quote(repo),
            privilege="the cluster privilege monitor_snapshot (or create_snapshot)",
        )
    except _es.ElasticsearchError as exc:
        if exc.error_type == "repository_missing_exception" or exc.status == 404:
            raise MaintenanceError(
                "snapshot repository %r is not registered in the cluster: nothing deleted "
                "(register it with PUT _snapshot/%s, type fs, location under path.repo)" % (repo, repo)
            ) from None
        raise


def _snapshot(cluster, repo, name, indices):
    body = dict(
        indices=",".join(indices),
        include_global_state=False,
        ignore_unavailable=False,
        partial=False,
        metadata=dict(taken_by=AGENT, reason="indices deleted by cleanup"),
    )
    try:
        answer = cluster.call(
            "PUT",
            "/_snapshot/%s/%s?wait_for_completion=true" % (quote(repo), quote(name)),
            body=body,
            privilege="the cluster privilege create_snapshot",
            wait=True,
        )
    except _es.ElasticsearchError as exc:
        raise MaintenanceError(
            "snapshot %s into repository %r failed: %s; nothing deleted" % (name, repo, exc.message)
        ) from None
    problems = snapshot_problems(answer, name, indices)
    snap = (answer or {}).get("snapshot") or {}
    made = dict(
        name=name,
        repository=repo,
        indices=sorted(snap.get("indices") or []),
        state=snap.get("state"),
        shards=snap.get("shards"),
    )
    if problems:
        raise MaintenanceError(
            "snapshot %s in repository %r is not a complete copy (%s): nothing deleted"
            % (name, repo, "; ".join(problems)),
            dict(snapshot=made),
        )
    return made


def _cleanup_message(result, check_mode):
    verb = "would delete" if check_mode else "deleted"
    text = "%s %d %s" % (verb, len(result["deleted"]), _indices(len(result["deleted"])))
    if result["deleted"]:
        text += " (%s)" % _list(result["deleted"], 5)
    if result["snapshot"]:
        text += " after snapshot %s in %s" % (result["snapshot"]["name"], result["snapshot"]["repository"])
    text += ", kept %d" % len(result["kept"])
    if result["snapshots_deleted"]:
        text += ", %s %d old snapshot(s)" % (
            "would delete" if check_mode else "deleted",
            len(result["snapshots_deleted"]),
        )
    return text


def _forcemerge(cluster, params, check_mode, now, result):
    result.update(merged=[], skipped=[])
    plan = plan_forcemerge(cluster.records(), params, now)
    result.update(patterns=plan["patterns"])
    target = params["max_num_segments"]
    segments = {}
    for group in batches(plan["candidates"]):
        stats = cluster.call(
            "GET",
            "/%s/_stats/segments?level=shards&expand_wildcards=none" % ",".join(quote(n) for n in group),
            privilege="the index privilege monitor on %s" % _list(group, 3),
        )
        segments.update(max_segments(stats))
    todo, done = split_merged(plan["candidates"], segments, target)
    skipped = list(plan["skipped"])
    for name in done:
        skipped.append(
            dict(index=name, reason="merged", detail="%d segments per shard at most" % segments.get(name, 0))
        )
    result["skipped"] = sorted(skipped, key=lambda s: s["index"])
    for name in todo:
        entry = dict(index=name, segments_before=segments.get(name), segments_after=None, seconds=None)
        result["changed"] = True
        if not check_mode:
            begin = time.monotonic()
            try:
                cluster.call(
                    "POST",
                    "/%s/_forcemerge?max_num_segments=%d" % (quote(name), target),
                    privilege="the index privilege forcemerge (or maintenance) on %s" % name,
                    wait=True,
                )
            except _es.ElasticsearchError as exc:
                raise MaintenanceError(
                    "force-merge of %s failed: %s%s"
                    % (
                        name,
                        exc.message,
                        "; the merge goes on in Elasticsearch, run again later" if exc.status is None else "",
                    )
                ) from None
            entry["seconds"] = round(time.monotonic() - begin, 3)
            stats = cluster.call("GET", "/%s/_stats/segments?level=shards" % quote(name))
            entry["segments_after"] = max_segments(stats).get(name)
        result["merged"].append(entry)
    verb = "would merge" if check_mode else "merged"
    result["msg"] = "%s %d %s to %d segment(s) per shard%s, skipped %d" % (
        verb,
        len(todo),
        _indices(len(todo)),
        target,
        " (%s)" % _list(todo, 5) if todo else "",
        len(result["skipped"]),
    )


def _shard_report(cluster, params, result):
    health = cluster.call("GET", "/_cluster/health")
    allocation = cluster.call("GET", "/_cat/allocation?format=json&bytes=b")
    state = cluster.call("GET", ROUTING)
    report = shard_report(health, allocation, shard_copies(state), params["balance_threshold"])
    report["explanation"] = None
    if report["unassigned"]:
        first = report["unassigned"][0]
        try:
            answer = cluster.call(
                "POST",
                "/_cluster/allocation/explain",
                body=dict(index=first["index"], shard=first["shard"], primary=first["primary"]),
            )
            report["explanation"] = explanation(answer)
        except _es.ElasticsearchError as exc:
            if exc.status != 400:  # 400: the shard was assigned in the meantime
                raise
    result.update(report)
    text = "cluster %s, %d data node(s), shards per node %s: %s" % (
        report["status"],
        len(report["nodes"]),
        "/".join(str(n["shards"]) for n in report["nodes"]) or "none",
        "balanced"
        if report["balanced"]
        else "unbalanced (spread %d > %d)" % (report["spread"], report["balance_threshold"]),
    )
    if report["unassigned_count"]:
        text += ", %d unassigned shard(s)" % report["unassigned_count"]
        if report["explanation"]:
            text += " (first: %s[%s] %s, %s)" % (
                report["explanation"]["index"],
                report["explanation"]["shard"],
                "primary" if report["explanation"]["primary"] else "replica",
                report["explanation"]["reason"],
            )
    result["msg"] = text
