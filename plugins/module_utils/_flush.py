# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cache invalidation on Redis: delete keys by pattern without blocking the server.

Redis has no delete-by-pattern command. This walks the keyspace with SCAN (a bounded
amount of work per call) and deletes what each call returns with UNLINK, pipelined on one
connection: the next SCAN goes out as soon as the previous reply's cursor is read, and
the keys of a reply go back as an UNLINK without being decoded (see _resp.py). No command
does more than ``scan_count`` keys' worth of work, so none blocks the server.

Check mode runs the same SCAN and counts distinct keys instead of deleting them; the
numbers are what a real run reports on the same data.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import re
import time

from ansible_collections.bosun.platform.plugins.module_utils._io import redact
from ansible_collections.bosun.platform.plugins.module_utils._module import deprecated_alias
from ansible_collections.bosun.platform.plugins.module_utils._redis import (
    REDIS_COMMON_ARGS,
    RedisError,
    describe,
    redis_argument_spec,
    secrets_of,
)
from ansible_collections.bosun.platform.plugins.module_utils._resp import (
    ConnectionLost,
    ReplyError,
    RespConnection,
)

CLIENT_NAME = "bosun_redis_flush"
GLOB_SPECIAL = "*?[]\\"
KEY_TYPES = ["string", "list", "set", "zset", "hash", "stream"]
SINGULAR = {"patterns": "pattern", "prefixes": "prefix"}

FLUSH_ARGS = dict(
    patterns=dict(type="list", elements="str"),
    prefixes=dict(type="list", elements="str"),
    whole_db=dict(type="bool", **deprecated_alias("db")),
    all=dict(type="bool"),
    allow_delete_all=dict(type="bool", default=False, **deprecated_alias("force")),
    max_keys=dict(type="int", no_log=False),
    scan_count=dict(type="int", default=1000),
    key_type=dict(type="str", choices=KEY_TYPES),
    delete_command=dict(type="str", default="unlink", choices=["unlink", "del"]),
    flush_mode=dict(type="str", default="async", choices=["async", "sync"]),
    pause_ms=dict(type="int", default=0),
    pattern_params=dict(type="dict"),
)


def argument_spec():
    """The module's options: the shared connection options plus the flush's own."""
    return redis_argument_spec(**dict((k, dict(v)) for k, v in FLUSH_ARGS.items()))


def default_params(**over):
    """Every option at its default, updated with ``over`` (for callers outside Ansible)."""
    params = dict((k, v.get("default")) for k, v in REDIS_COMMON_ARGS.items())
    params.update((k, v.get("default")) for k, v in FLUSH_ARGS.items())
    params.update(over)
    return params


class FlushError(Exception):
    """The flush failed or was refused; ``result`` holds what was done before that."""

    def __init__(self, message, result=None):
        super(FlushError, self).__init__(message)
        self.message = message
        self.result = result or {}


# --- patterns --------------------------------------------------------------------------
def escape_glob(text):
    """Escape Redis glob characters so that ``text`` matches only itself."""
    return "".join("\\" + c if c in GLOB_SPECIAL else c for c in text)


def prefix_pattern(prefix):
    """The SCAN MATCH pattern for keys that start with the literal ``prefix``."""
    return escape_glob(prefix) + "*"


def matches_everything(pattern):
    """True for a pattern that selects every key: empty, or only ``*`` and ``?`` with a ``*``."""
    return pattern == "" or ("*" in pattern and set(pattern) <= set("*?"))


def literal_prefix(pattern):
    """The literal text every key that ``pattern`` matches starts with (Redis glob rules).

    It ends at the first unescaped ``*``, ``?`` or ``[``; ``\\x`` is a literal ``x`` and a
    lone trailing backslash a literal backslash, as in Redis' own matcher. A pattern whose
    literal prefix is empty (``*``, ``?*``, ``[^x]*``, ``*:session``) can match any key.
    """
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c in "*?[":
            break
        if c == "\\" and i + 1 < len(pattern):
            i += 1
            c = pattern[i]
        out.append(c)
        i += 1
    return "".join(out)


# ${name} is a placeholder, $$ a literal $; any other $ is literal.
PLACEHOLDER = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|\$)")


def template_names(template):
    """The names of the ``${name}`` placeholders of a pattern template, in order, once each."""
    names = []
    for match in PLACEHOLDER.finditer(template):
        if match.group(1) and match.group(1) not in names:
            names.append(match.group(1))
    return names


def fill_pattern(template, params):
    """The pattern ``template`` with each ``${name}`` replaced by ``params[name]`` as a literal.

    Values are escaped (``escape_glob``), so a value can only ever stand for itself: ``*`` in
    a value matches a ``*`` in a key, never every key. ``$$`` is a literal ``$``.
    """

    def value(match):
        name = match.group(1)
        if name is None:
            return "$"
        given = params.get(name)
        if given is None or isinstance(given, (bool, dict, list, tuple, set)):
            raise FlushError(
                "pattern %s needs a value for ${%s} (a string or a number in pattern_params)%s"
                % (_quote(template), name, "" if name not in params else ", not %r" % (given,))
            )
        return escape_glob(str(given))

    return PLACEHOLDER.sub(value, template)


def _quote(pattern):
    return "'%s'" % pattern


# --- which patterns a user's ACL key patterns cover -------------------------------------
# A glob is a list of tokens: ("lit", c), ("any",) for ?, ("star",) for *, and
# ("class", negated, chars) for [...]. Containment is decided conservatively: True only when
# every key the inner pattern matches is shown to match the outer one.
_CLASS_LIMIT = 1024  # a class wider than this many characters is not compared


def _class_chars(body):
    """The characters of a [...] body (ranges expanded, \\x literal), or None when too wide."""
    chars = set()
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            i += 1
            c = body[i]
            chars.add(c)
        elif i + 2 < len(body) and body[i + 1] == "-":
            low, high = sorted((ord(c), ord(body[i + 2])))
            if high - low > _CLASS_LIMIT:
                return None
            chars.update(chr(o) for o in range(low, high + 1))
            i += 2
        else:
            chars.add(c)
        i += 1
        if len(chars) > _CLASS_LIMIT:
            return None
    return frozenset(chars)


def glob_tokens(pattern, *, outer):
    """Tokens of a Redis glob. ``outer`` says on which side of a containment the pattern is:
    what cannot be read exactly (an unterminated or too wide class) becomes what keeps the
    answer safe: a class matching nothing on the outer side, ``?`` on the inner side.

    ``${name}`` placeholders (flush pattern templates) stand for any text: their value is
    escaped into a literal, which can be anything. ``$$`` is a literal ``$``.
    """
    tokens = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        placeholder = PLACEHOLDER.match(pattern, i) if c == "$" else None
        if placeholder:
            tokens.append(("star",) if placeholder.group(1) else ("lit", "$"))
            i = placeholder.end()
            continue
        if c == "*":
            if not tokens or tokens[-1] != ("star",):
                tokens.append(("star",))
        elif c == "?":
            tokens.append(("any",))
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            tokens.append(("lit", pattern[i]))
        elif c == "[":
            end = i + 1
            if end < len(pattern) and pattern[end] == "^":
                end += 1
            while end < len(pattern) and pattern[end] != "]":
                end += 2 if pattern[end] == "\\" else 1
            negated = pattern[i + 1 : i + 2] == "^"
            body = pattern[i + (2 if negated else 1) : end]
            chars = _class_chars(body) if end < len(pattern) else None
            if chars is None:
                tokens.append(("class", False, frozenset()) if outer else ("any",))
            else:
                tokens.append(("class", negated, chars))
            i = end
        else:
            tokens.append(("lit", c))
        i += 1
    return tokens


def _one_char_covers(outer, inner):
    """Whether the one-character token ``outer`` matches every character ``inner`` can."""
    if outer[0] == "any":
        return True
    if outer[0] == "lit":
        return inner == outer
    negated, chars = outer[1], outer[2]
    if inner[0] == "lit":
        return (inner[1] in chars) != negated
    if inner[0] == "any":
        return False
    inner_negated, inner_chars = inner[1], inner[2]
    if not inner_negated:
        return inner_chars.isdisjoint(chars) if negated else inner_chars <= chars
    return negated and chars <= inner_chars


def pattern_covers(outer, inner):
    """True when the Redis glob ``outer`` matches every key the glob ``inner`` can match.

    Conservative: a False may be a containment this test cannot show (then the caller
    refuses, which is safe); a True is always right. ``*`` of ``outer`` may absorb any run of
    ``inner``'s tokens (its ``*`` too); every other token of ``outer`` covers exactly one
    single-character token of ``inner``.
    """
    a, b = glob_tokens(str(inner), outer=False), glob_tokens(str(outer), outer=True)
    memo = {}

    def covers(i, j):
        key = (i, j)
        if key not in memo:
            if j == len(b):
                memo[key] = i == len(a)
            elif b[j] == ("star",):
                memo[key] = covers(i, j + 1) or (i < len(a) and covers(i + 1, j))
            elif i == len(a) or a[i] == ("star",):
                memo[key] = False
            else:
                memo[key] = _one_char_covers(b[j], a[i]) and covers(i + 1, j + 1)
        return memo[key]

    return covers(0, 0)


def uncovered_patterns(patterns, allowed):
    """The patterns (templates) of ``patterns`` that no pattern of ``allowed`` covers."""
    return [p for p in patterns if not any(pattern_covers(outer, p) for outer in allowed)]


# --- the plan: what to do, validated before anything is sent --------------------------
def plan(params):
    """Validate the options and return the plan: ``{"scope": ..., "targets": [...]}``.

    Raises FlushError for a missing or ambiguous scope, bad numbers and, without
    ``allow_delete_all``, match-everything patterns; nothing has been sent to a server yet.
    """
    where = describe(params)
    given = [name for name in ("patterns", "prefixes") if params.get(name) is not None]
    given += [name for name in ("whole_db", "all") if params.get(name)]
    if len(given) != 1:
        raise FlushError(
            "give exactly one of patterns, prefixes, whole_db: true or all: true (got %s)"
            % (", ".join(given) if given else "none")
        )
    # the option whole_db is the scope "db" (FLUSHDB) in the plan and the result
    scope = {"whole_db": "db"}.get(given[0], given[0])
    if params.get("scan_count") is None or params["scan_count"] < 1:
        raise FlushError("scan_count must be 1 or more, not %s" % params.get("scan_count"))
    if params.get("max_keys") is not None and params["max_keys"] < 0:
        raise FlushError("max_keys must be 0 or more, not %s" % params["max_keys"])
    if (params.get("pause_ms") or 0) < 0:
        raise FlushError("pause_ms must be 0 or more, not %s" % params["pause_ms"])
    if scope in ("db", "all"):
        if params.get("key_type"):
            raise FlushError(
                "key_type filters patterns and prefixes only; %s: true deletes keys of every type" % given[0]
            )
        return dict(scope=scope, targets=[])
    values = params[scope]
    if not values:
        raise FlushError("%s is empty: give at least one %s" % (scope, SINGULAR[scope]))
    fills = params.get("pattern_params") or {}
    if fills and scope != "patterns":
        raise FlushError("pattern_params fills the ${name} placeholders of patterns; %s take none" % scope)
    targets = []
    seen = set()
    for raw in values:
        if raw is None:
            raise FlushError("%s holds an empty (null) entry" % scope)
        value = str(raw)
        pattern = prefix_pattern(value) if scope == "prefixes" else fill_pattern(value, fills)
        if literal_prefix(pattern) == "":
            if not params.get("allow_delete_all"):
                shown = _quote(value) if pattern == value else "%s (%s)" % (_quote(value), _quote(pattern))
                if matches_everything(pattern):
                    why = "matches every key of Redis at %s" % where
                else:
                    why = (
                        "has no literal prefix, so it can match any key of Redis at %s "
                        "(and SCAN reads them all)" % where
                    )
                raise FlushError(
                    "%s %s %s; set allow_delete_all: true to delete them all" % (SINGULAR[scope], shown, why)
                )
            if matches_everything(pattern):
                pattern = "*"
        if pattern in seen:
            continue
        seen.add(pattern)
        target = dict(pattern=pattern)
        if scope == "prefixes":
            target["prefix"] = value
        elif pattern != value and template_names(value):
            target["template"] = value
        targets.append(target)
    return dict(scope=scope, targets=targets)


# --- talking to the server ------------------------------------------------------------
def parse_info(text):
    """INFO output as a flat dict; ``dbN`` lines become dicts (``{"keys": 3, ...}``)."""
    info = {}
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    for line in text.splitlines():
        if not line or line.startswith("#") or ":" not in line:
            continue
        name, value = line.split(":", 1)
        if name.startswith("db") and name[2:].isdigit():
            fields = {}
            for part in value.split(","):
                if "=" in part:
                    k, v = part.split("=", 1)
                    try:
                        fields[k] = int(v)
                    except ValueError:
                        fields[k] = v
            info[name] = fields
        else:
            info[name] = value
    return info


class _Context:
    """Where we are, for messages: server, user, and how much has been deleted so far."""

    def __init__(self, params):
        self.where = describe(params)
        self.user = params.get("login_user")
        self.secrets = secrets_of(params)
        self.db = params.get("login_db") or 0

    def server(self):
        return "Redis at %s%s" % (self.where, " as %s" % self.user if self.user else "")

    def explain(self, exc, doing):
        """A message for a server error reply or a lost connection while ``doing``."""
        if isinstance(exc, ConnectionLost):
            text = "connection to %s lost while %s: %s" % (self.server(), doing, exc)
        elif isinstance(exc, ReplyError):
            code = exc.code
            if code in ("MOVED", "ASK", "CROSSSLOT", "CLUSTERDOWN"):
                text = (
                    "%s runs in cluster mode, which redis_flush does not support yet "
                    "(the server answered %s while %s)" % (self.server(), code, doing)
                )
            elif code == "READONLY":
                text = "%s is a read-only replica; run the flush against the primary (while %s: %s)" % (
                    self.server(),
                    doing,
                    exc.message,
                )
            elif code == "NOPERM":
                text = "%s refused a command while %s (the ACL user lacks a permission): %s" % (
                    self.server(),
                    doing,
                    exc.message,
                )
            elif code == "NOAUTH":
                text = "%s requires authentication: give login_password (and login_user for an ACL user)" % (
                    self.server()
                )
            elif code == "LOADING":
                text = "%s is still loading its data set; try again when it has finished" % self.server()
            elif code == "BUSY":
                text = "%s is busy running a script (BUSY) while %s; try again later" % (self.server(), doing)
            else:
                text = "%s answered an error while %s: %s" % (self.server(), doing, exc.message)
        else:
            text = "%s: %s while %s" % (self.server(), exc, doing)
        return redact(text, self.secrets)


def inspect_server(conn, ctx):
    """INFO of the server, or {} when the user may not run INFO. Refuses clusters and replicas."""
    try:
        info = parse_info(conn.command("INFO"))
    except ReplyError as exc:
        if exc.code == "NOPERM":
            return {}
        raise FlushError(ctx.explain(exc, "reading INFO")) from None
    except ConnectionLost as exc:
        raise FlushError(ctx.explain(exc, "reading INFO")) from None
    if info.get("cluster_enabled") == "1":
        raise FlushError(
            "%s runs in cluster mode, which redis_flush does not support yet: "
            "SCAN sees one node's keys and UNLINK cannot take keys of other slots" % ctx.server()
        )
    if info.get("role") == "slave":
        primary = "%s:%s" % (info.get("master_host", "?"), info.get("master_port", "?"))
        raise FlushError(
            "%s is a replica of %s and refuses writes; run the flush against the primary" % (ctx.server(), primary)
        )
    return info


def _keys_in(conn, ctx, info_allowed, db):
    """Number of keys in database ``db`` (INFO keyspace, else DBSIZE), or None if neither is allowed."""
    if info_allowed:
        try:
            info = parse_info(conn.command("INFO", "keyspace"))
            return info.get("db%d" % db, {}).get("keys", 0)
        except ReplyError:
            pass
        except ConnectionLost as exc:
            raise FlushError(ctx.explain(exc, "reading INFO keyspace")) from None
    try:
        return conn.command("DBSIZE")
    except ReplyError:
        return None
    except ConnectionLost as exc:
        raise FlushError(ctx.explain(exc, "running DBSIZE")) from None


def _scan_tail(pattern, count, key_type):
    """The arguments after the cursor, encoded once per pass."""
    args = [b"MATCH", pattern.encode("utf-8"), b"COUNT", str(count).encode("ascii")]
    if key_type:
        args += [b"TYPE", key_type.encode("ascii")]
    return len(args) + 2, b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


SCAN, DELETE = 0, 1


def scan_pass(conn, entry, params, *, delete, seen=None, sleep=time.sleep):
    """One SCAN pass over the keyspace for ``entry["pattern"]``, deleting or counting.

    Deleting: each SCAN reply's keys go back as one UNLINK (or DEL), and ``entry``'s
    ``matched`` counts the keys SCAN returned and ``deleted`` what the server reported
    deleted. Counting (``delete=False``): keys are collected into ``seen`` (shared by the
    passes of one run, so that a key that two patterns match is counted once, as a real
    run deletes it once) and ``matched``/``deleted`` count the keys new to ``seen``.

    Replies are read in the order the commands went out; ``entry`` is updated as they
    arrive, so after an exception it holds what was confirmed up to then.
    """
    nargs, tail = _scan_tail(entry["pattern"], params["scan_count"], params.get("key_type"))
    verb = b"$6\r\nUNLINK\r\n" if params.get("delete_command", "unlink") == "unlink" else b"$3\r\nDEL\r\n"
    pause = (params.get("pause_ms") or 0) / 1000.0

    def scan_command(cursor):
        return b"*%d\r\n$4\r\nSCAN\r\n$%d\r\n%s\r\n%s" % (nargs, len(cursor), cursor, tail)

    pending = collections.deque()
    conn.send(scan_command(b"0"))
    pending.append(SCAN)
    while pending:
        if pending.popleft() == DELETE:
            entry["deleted"] += conn.read_reply()
            continue
        cursor, count = conn.read_scan_head()
        entry["scan_calls"] += 1
        if cursor != b"0":
            # the server scans the next slice while we handle this one
            conn.send(scan_command(cursor))
            pending.append(SCAN)
        if delete:
            body = conn.read_scan_keys(count)
            if count:
                conn.send(b"*%d\r\n%s%s" % (count + 1, verb, body))
                pending.append(DELETE)
                entry["matched"] += count
        else:
            keys = []
            conn.read_scan_keys(count, keys)
            fresh = set(keys)
            fresh.difference_update(seen)
            seen.update(fresh)
            entry["matched"] += len(fresh)
            entry["deleted"] += len(fresh)
        if pause:
            sleep(pause)
    return entry


def _new_entry(target, db):
    entry = dict(pattern=target["pattern"], db=db, matched=0, deleted=0, scan_calls=0, duration_ms=0)
    for key in ("prefix", "template"):
        if key in target:
            entry[key] = target[key]
    return entry


def _ms(seconds):
    return int(round(seconds * 1000))


def _result(scope, db, entries, scanned, info):
    deleted = sum(e["deleted"] for e in entries)
    return dict(
        changed=deleted > 0,
        scope=scope,
        db=db,
        results=entries,
        matched=sum(e["matched"] for e in entries),
        deleted=deleted,
        scanned=scanned,
        redis_version=info.get("redis_version"),
    )


def diff(result):
    """Ansible's diff of a flush: per pattern (prefix, or database for db and all), the keys
    that match before (those deleted, or that would be in check mode) and after (none).

    Counts only: the names of the keys are not listed.
    """
    before, after = [], []
    for entry in result["results"]:
        if entry["pattern"] is None:
            what = "db %d" % entry["db"]
        elif "prefix" in entry:
            what = "db %d prefix %s" % (entry["db"], _quote(entry["prefix"]))
        else:
            what = "db %d pattern %s" % (entry["db"], _quote(entry["pattern"]))
        before.append("%s: %s\n" % (what, _keys(entry["deleted"])))
        after.append("%s: %s\n" % (what, _keys(0)))
    header = "keys per %s" % SINGULAR.get(result.get("scope"), "database")
    return dict(before="".join(before), after="".join(after), before_header=header, after_header=header)


def _keys(count):
    return "1 key" if count == 1 else "%d keys" % count


def _nothing_deleted(the_plan, ctx, entries, info):
    """The result of a run that stopped before deleting: counts kept, ``deleted`` 0."""
    for entry in entries:
        entry["deleted"] = 0
    return _result(the_plan["scope"], ctx.db, entries, None, info)


def _passes(conn, ctx, the_plan, params, *, info, delete, clock, sleep):
    """One scan_pass per target; returns ``(entries, scanned)``, raises FlushError."""
    entries = []
    scanned = 0
    seen = None if delete else set()
    for target in the_plan["targets"]:
        entry = _new_entry(target, ctx.db)
        entries.append(entry)
        keys_now = _keys_in(conn, ctx, bool(info), ctx.db)
        scanned = None if scanned is None or keys_now is None else scanned + keys_now
        started = clock()
        try:
            scan_pass(conn, entry, params, delete=delete, seen=seen, sleep=sleep)
        except (ReplyError, ConnectionLost) as exc:
            entry["duration_ms"] = _ms(clock() - started)
            doing = "%s keys matching %s" % ("deleting" if delete else "counting", _quote(entry["pattern"]))
            if not delete:
                raise FlushError(ctx.explain(exc, doing), _nothing_deleted(the_plan, ctx, entries, info)) from None
            result = _result(the_plan["scope"], ctx.db, entries, scanned, info)
            raise FlushError(
                "%s. %d keys were deleted before that (at least: a command in flight may have deleted "
                "more); a rerun deletes the rest" % (ctx.explain(exc, doing), result["deleted"]),
                result,
            ) from None
        entry["duration_ms"] = _ms(clock() - started)
    return entries, scanned


def flush_patterns(conn, ctx, the_plan, params, *, check_mode, info, clock=time.monotonic, sleep=time.sleep):
    """Patterns and prefixes: count first when checking or guarded by max_keys, then delete."""
    max_keys = params.get("max_keys")
    scanned = 0
    if check_mode or max_keys is not None:
        entries, scanned = _passes(conn, ctx, the_plan, params, info=info, delete=False, clock=clock, sleep=sleep)
        result = _result(the_plan["scope"], ctx.db, entries, scanned, info)
        if max_keys is not None and result["matched"] > max_keys:
            raise FlushError(
                "%d keys of %s match %s, more than max_keys %d; nothing was deleted"
                % (
                    result["matched"],
                    ctx.server(),
                    ", ".join(_quote(t["pattern"]) for t in the_plan["targets"]),
                    max_keys,
                ),
                _nothing_deleted(the_plan, ctx, entries, info),
            )
        if check_mode:
            return result
    entries, scanned_now = _passes(conn, ctx, the_plan, params, info=info, delete=True, clock=clock, sleep=sleep)
    total = None if scanned is None or scanned_now is None else scanned + scanned_now
    return _result(the_plan["scope"], ctx.db, entries, total, info)


def flush_databases(conn, ctx, the_plan, params, *, check_mode, info, clock=time.monotonic):
    """db: FLUSHDB of the selected database; all: FLUSHALL. ASYNC unless flush_mode is sync."""
    scope = the_plan["scope"]
    if scope == "db":
        keys = _keys_in(conn, ctx, bool(info), ctx.db)
        if keys is None:
            raise FlushError("%s allows neither INFO nor DBSIZE, so the keys cannot be counted" % ctx.server())
        counts = {ctx.db: keys}
    else:
        if not info:
            raise FlushError("%s does not allow INFO, which all: true needs to count the keys" % ctx.server())
        try:
            keyspace = parse_info(conn.command("INFO", "keyspace"))
        except (ReplyError, ConnectionLost) as exc:
            raise FlushError(ctx.explain(exc, "reading INFO keyspace")) from None
        counts = dict(
            (int(name[2:]), fields.get("keys", 0))
            for name, fields in keyspace.items()
            if name.startswith("db") and isinstance(fields, dict)
        )
    total = sum(counts.values())
    entries = [
        dict(pattern=None, db=db, matched=keys, deleted=0, scan_calls=0, duration_ms=0)
        for db, keys in sorted(counts.items())
        if keys
    ]
    db = ctx.db if scope == "db" else None
    what = "database %d" % ctx.db if scope == "db" else "every database"
    if total and not params.get("allow_delete_all"):
        raise FlushError(
            "%s holds %d keys in %s; set allow_delete_all: true to flush %s" % (ctx.server(), total, what, what),
            _result(scope, db, entries, 0, info),
        )
    max_keys = params.get("max_keys")
    if max_keys is not None and total > max_keys:
        raise FlushError(
            "%s holds %d keys in %s, more than max_keys %d; nothing was deleted"
            % (ctx.server(), total, what, max_keys),
            _result(scope, db, entries, 0, info),
        )
    if total and not check_mode:
        command = ["FLUSHDB" if scope == "db" else "FLUSHALL"]
        if params.get("flush_mode", "async") == "async":
            command.append("ASYNC")
        elif _version(info) >= (6, 2):
            command.append("SYNC")  # before 6.2 there is no SYNC flag: a plain flush is synchronous
        started = clock()
        try:
            conn.command(*command)
        except (ReplyError, ConnectionLost) as exc:
            raise FlushError(
                ctx.explain(exc, "running %s" % " ".join(command)), _result(scope, db, entries, 0, info)
            ) from None
        for entry in entries:
            entry["duration_ms"] = _ms(clock() - started)
    for entry in entries:
        entry["deleted"] = entry["matched"]
    return _result(scope, db, entries, 0, info)


def _version(info):
    parts = []
    for part in (info.get("redis_version") or "0").split(".")[:2]:
        try:
            parts.append(int(part))
        except ValueError:
            parts.append(0)
    return tuple(parts)


def run(params, check_mode=False, clock=time.monotonic, sleep=time.sleep):
    """Plan, connect, flush; return the module result. Raises FlushError (message secret-free).

    The result of a FlushError always holds ``changed``, ``deleted``, ``results`` and
    ``duration_ms``: what was done before the failure.
    """
    started = clock()
    try:
        result = _run(params, check_mode, clock, sleep)
    except FlushError as exc:
        exc.result.setdefault("results", [])
        exc.result.setdefault("deleted", sum(e["deleted"] for e in exc.result["results"]))
        exc.result.setdefault("changed", exc.result["deleted"] > 0)
        exc.result["duration_ms"] = _ms(clock() - started)
        raise
    result["duration_ms"] = _ms(clock() - started)
    return result


def _run(params, check_mode, clock, sleep):
    the_plan = plan(params)
    ctx = _Context(params)
    try:
        conn = RespConnection.open(params, client_name=CLIENT_NAME)
    except RedisError as exc:
        raise FlushError(redact(str(exc), ctx.secrets)) from None
    try:
        info = inspect_server(conn, ctx)
        if the_plan["scope"] in ("db", "all"):
            return flush_databases(conn, ctx, the_plan, params, check_mode=check_mode, info=info, clock=clock)
        return flush_patterns(conn, ctx, the_plan, params, check_mode=check_mode, info=info, clock=clock, sleep=sleep)
    finally:
        conn.close()
