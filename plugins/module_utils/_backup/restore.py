# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""postgresql_restore: checksum first, restore into a staging database, then swap; or drill.

A restore never touches the target database until the backup has been restored in full
into a staging database: a failed restore leaves the target as it was. With
``replace_existing`` an existing target is then renamed away and the staging database
renamed into its place in one transaction (a crash leaves the old or the new database
under the target's name, never neither), and the old one is dropped. A drill restores into
a scratch database, runs sanity checks, drops it and reports how long the restore took
(the recovery time it measured).

What belongs to the database itself rather than to its objects (its ACL, ``ALTER DATABASE
... SET``, ``ALTER ROLE ... IN DATABASE ... SET``, connection limit, comment) is stored by
pg_dump in entries that pg_restore applies only with ``--create``, naming the database the
backup was taken from. Those entries are read from the archive, checked statement by
statement against the few forms pg_dump writes for them, pointed at the staging database
and applied before the swap.

Every database this module creates carries a marker comment, and the run holds an advisory
lock while it works: a later run drops the staging, scratch and replaced databases of a run
that died (kill -9, a lost connection), and only those.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import time
import uuid

from ansible_collections.bosun.platform.plugins.module_utils._backup import metrics as _metrics
from ansible_collections.bosun.platform.plugins.module_utils._backup import tools
from ansible_collections.bosun.platform.plugins.module_utils._backup.dump import USER_TABLES_SQL
from ansible_collections.bosun.platform.plugins.module_utils._backup.job import check_label
from ansible_collections.bosun.platform.plugins.module_utils._backup.layout import (
    GLOBALS_DIR,
    BackupError,
    db_dirname,
    entry_for_path,
    is_restore_temp_name,
    iso,
    list_backups,
    locked_temp_file,
    stale_temp_names,
    temp_in_use,
    utc_now,
)
from ansible_collections.bosun.platform.plugins.module_utils._backup.pipeline import Stage, run_pipeline, tail
from ansible_collections.bosun.platform.plugins.module_utils._io import os_error_message
from ansible_collections.bosun.platform.plugins.module_utils._postgres import (
    PostgresError,
    connect,
    conninfo_dbname,
    describe,
    libpq_env,
    query,
    quote_ident,
    quote_literal,
)

MARKER_PREFIX = "bosun.platform.postgresql_restore "
# Databases this module creates: <prefix><10 hex digits>; which of them are its own is
# decided by the marker comment, never by the name alone.
LEFTOVER_RE = re.compile(r"^bosun_(restore|replaced|drill)_([0-9a-f]{10})\Z")
LEFTOVER_KINDS = dict(restore="staging", replaced="replaced", drill="drill")
NAME_PREFIX = dict((kind, "bosun_%s_" % prefix) for prefix, kind in LEFTOVER_KINDS.items())
# pg_advisory_lock(LOCK_CLASS, <token>) is held by a run for as long as it works.
LOCK_CLASS = 0x626F7375
OBJECT_IN_USE = "55006"


def marker_comment(kind, token, target):
    """The comment that marks a database as made by this module (kind: staging, replaced, drill)."""
    return MARKER_PREFIX + json.dumps(dict(kind=kind, token=token, target=target), sort_keys=True)


def parse_marker(name, comment):
    """dict(kind, token, target) when ``name`` is one of this module's databases, else None.

    Both must agree: the name pattern, and a marker comment naming the same kind and token.
    """
    m = LEFTOVER_RE.match(name or "")
    if not m or not comment or not comment.startswith(MARKER_PREFIX):
        return None
    try:
        data = json.loads(comment[len(MARKER_PREFIX) :])
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("target"), str):
        return None
    if data.get("kind") != LEFTOVER_KINDS[m.group(1)] or data.get("token") != m.group(2):
        return None
    return dict(kind=data["kind"], token=data["token"], target=data["target"])


def lock_key(token):
    """The second half of a run's advisory lock key (non-negative: pg_locks shows it as an oid)."""
    return int(token[:7], 16)


# -- the database-level entries of an archive --------------------------------------------------------
TOC_DATABASE_RE = re.compile(r"^(\d+); \d+ \d+ (?:(?:COMMENT|ACL|SECURITY LABEL) - DATABASE |DATABASE PROPERTIES - )")


def database_toc_ids(listing):
    """Dump ids of the entries ``pg_restore --create --list`` shows for the database itself."""
    ids = []
    for line in listing.splitlines():
        m = TOC_DATABASE_RE.match(line)
        if m:
            ids.append(int(m.group(1)))
    return ids


class Token:
    __slots__ = ("kind", "value", "start", "end")

    def __init__(self, kind, value, start, end):
        self.kind, self.value, self.start, self.end = kind, value, start, end


_WORD_RE = re.compile(r"[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_$\u0080-\U0010ffff]*")
_DOLLAR_RE = re.compile(r"\$(?:[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_\u0080-\U0010ffff]*)?\$")
_OTHER_RE = re.compile(r"[0-9.]+|.", re.S)


def _skip_quoted(text, i, quote, backslash):
    """Index just past the literal or identifier opened at ``i`` (doubled quotes escape)."""
    j, n = i + 1, len(text)
    while j < n:
        ch = text[j]
        if backslash and ch == "\\":
            j += 2
            continue
        if ch == quote:
            if text[j + 1 : j + 2] == quote:
                j += 2
                continue
            return j + 1
        j += 1
    raise ValueError("unterminated %s at offset %d" % ("identifier" if quote == '"' else "string", i))


def sql_tokens(text):
    """Tokens of an SQL script: word, ident (quoted, value unescaped), string, semicolon, meta
    (a psql backslash command, to the end of its line) and other. Comments are skipped."""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif text.startswith("--", i):
            j = text.find("\n", i)
            i = n if j < 0 else j + 1
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while depth and j < n:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            if depth:
                raise ValueError("unterminated comment at offset %d" % i)
            i = j
        elif c == "\\":
            j = text.find("\n", i)
            j = n if j < 0 else j
            yield Token("meta", text[i:j], i, j)
            i = j
        elif c in "eE" and text[i + 1 : i + 2] == "'":
            j = _skip_quoted(text, i + 1, "'", True)
            yield Token("string", None, i, j)
            i = j
        elif c == "'":
            j = _skip_quoted(text, i, "'", False)
            yield Token("string", None, i, j)
            i = j
        elif c == '"':
            j = _skip_quoted(text, i, '"', False)
            yield Token("ident", text[i + 1 : j - 1].replace('""', '"'), i, j)
            i = j
        elif c == ";":
            yield Token("semicolon", ";", i, i + 1)
            i += 1
        else:
            m = _DOLLAR_RE.match(text, i) if c == "$" else None
            if m:
                j = text.find(m.group(0), m.end())
                if j < 0:
                    raise ValueError("unterminated dollar-quoted string at offset %d" % i)
                yield Token("string", None, i, j + len(m.group(0)))
                i = j + len(m.group(0))
                continue
            m = _WORD_RE.match(text, i) or _OTHER_RE.match(text, i)
            yield Token("word" if _WORD_RE.match(m.group(0)) else "other", m.group(0), i, m.end())
            i = m.end()


def sql_statements(text):
    """Token lists of the statements of a script; psql meta-commands separate them and are dropped."""
    statements, current = [], []
    for tok in sql_tokens(text):
        if tok.kind in ("semicolon", "meta"):
            if current:
                statements.append(current)
                current = []
        else:
            current.append(tok)
    if current:
        statements.append(current)
    return statements


class DatabaseStatement:
    """One database-level statement of a backup, to be re-aimed at another database name."""

    def __init__(self, kind, text, name_span):
        self.kind = kind
        self.text = text
        self.name_span = name_span  # (start, end) of the database name in text, or None

    def sql(self, dbname):
        if self.name_span is None:
            return self.text
        start, end = self.name_span
        return self.text[:start] + quote_ident(dbname) + self.text[end:]


def _word(tok):
    return tok.value.upper() if tok.kind == "word" else None


def _name_of(tok):
    if tok.kind == "ident":
        return tok.value
    if tok.kind == "word":
        return tok.value.lower()
    return None


def _classify(toks):
    """(kind, index of the database name token) of a statement; kind None: not applied."""
    w = [_word(t) for t in toks]
    n = len(toks)

    def at(i):
        return w[i] if i < n else None

    if w[:3] == ["COMMENT", "ON", "DATABASE"] and at(4) == "IS":
        return "comment", 3
    if w[:2] == ["SECURITY", "LABEL"]:
        i = 4 if at(2) == "FOR" else 2
        if at(i) == "ON" and at(i + 1) == "DATABASE" and at(i + 3) == "IS":
            return "security_label", i + 2
        return None, None
    if w[0] in ("GRANT", "REVOKE"):
        i = 1
        while i < n and w[i] != "ON" and (toks[i].kind == "word" or toks[i].value == ","):
            i += 1
        if at(i) == "ON" and at(i + 1) == "DATABASE" and at(i + 3) == ("TO" if w[0] == "GRANT" else "FROM"):
            return "privilege", i + 2
        return None, None
    if w[:2] == ["ALTER", "DATABASE"]:
        if at(3) in ("SET", "RESET") or (at(3) == "CONNECTION" and at(4) == "LIMIT"):
            return "setting", 2
        return None, None
    if w[:2] == ["ALTER", "ROLE"] and at(3) == "IN" and at(4) == "DATABASE" and at(6) in ("SET", "RESET"):
        return "role_setting", 5
    if w[1:3] == ["SESSION", "AUTHORIZATION"] and w[0] in ("SET", "RESET"):
        return "session", None
    return None, None


def _ignored(toks):
    """What pg_restore --create prints around those entries and a restore must not run."""
    w = [_word(t) for t in toks]
    if w[:2] == ["CREATE", "DATABASE"] or (w[:2] == ["ALTER", "DATABASE"] and w[3:4] == ["OWNER"]):
        return True
    # the session set-up pg_restore prints before each entry (SET ..., SELECT set_config(...))
    return w[0] == "SET" or (w[0] == "SELECT" and len(w) > 3 and (w[3] or "") == "SET_CONFIG")


def parse_database_properties(sql, dbname):
    """([DatabaseStatement], [skipped statement summaries]) from ``pg_restore --create`` output.

    Only the forms pg_dump writes for a database's own ACL, settings, comment and security
    labels are kept, and each must name ``dbname``; the database's creation and ownership,
    pg_restore's session set-up and psql meta-commands are dropped. Anything else is
    skipped and summarised (leading keywords only: setting values may be secret).
    Raises ValueError for an unreadable script or a statement about another database.
    """
    statements, skipped = [], []
    for toks in sql_statements(sql):
        kind, at = _classify(toks)
        text = sql[toks[0].start : toks[-1].end]
        if kind is None:
            if not _ignored(toks):
                skipped.append(" ".join(t.value.upper() for t in toks[:4] if t.kind == "word") or "?")
            continue
        span = None
        if at is not None:
            tok = toks[at]
            if _name_of(tok) != dbname:
                raise ValueError(
                    "a database-level statement of the backup names the database %r, not %r" % (_name_of(tok), dbname)
                )
            span = (tok.start - toks[0].start, tok.end - toks[0].start)
        statements.append(DatabaseStatement(kind, text, span))
    return statements, skipped


PROPERTY_COUNTS = dict(
    privilege="privileges",
    setting="settings",
    role_setting="role_settings",
    comment="comment",
    security_label="security_labels",
)


def property_counts(statements):
    counts = dict((name, 0) for name in PROPERTY_COUNTS.values())
    for st in statements:
        if st.kind in PROPERTY_COUNTS:
            counts[PROPERTY_COUNTS[st.kind]] += 1
    return counts


def validate(params):
    choice = params.get("backup") or "latest"
    if params.get("label") is not None:
        if choice != "latest":
            raise BackupError(
                "label and backup: %s are mutually exclusive: label picks the newest verified backup of db in "
                "backup_dir that carries it, backup names one by its path" % choice
            )
        check_label(params)
        if not params.get("backup_dir") or not params.get("db"):
            raise BackupError(
                "label needs backup_dir and db (the database whose newest verified backup with that label to restore)"
            )
    if choice == "latest":
        if not params.get("backup_dir") or not params.get("db"):
            raise BackupError("backup: latest needs backup_dir and db (the database whose newest backup to restore)")
    if params.get("drill") and params.get("target_db"):
        raise BackupError("target_db does not apply to a drill: a drill restores into a scratch database it drops")
    if (params.get("jobs") or 1) < 1:
        raise BackupError("jobs must be at least 1")
    for name, minimum in (params.get("drill_min_rows") or {}).items():
        try:
            if int(minimum) < 0:
                raise ValueError()
        except (TypeError, ValueError):
            raise BackupError(
                "drill_min_rows[%s] must be a whole number of rows, 0 or more, not %r" % (name, minimum)
            ) from None


def newest_with_label(entries, label):
    """The newest of ``entries`` (newest first) whose manifest carries ``label`` and says the
    backup was verified when written, or None. Its checksum is checked afterwards, like any
    backup's: a corrupt one is refused, not passed over for an older one."""
    for entry in entries:
        if entry.claimed_verified() and entry.manifest.get("label") == label:
            return entry
    return None


def resolve_backup(params):
    """(the BackupEntry to restore, how it was chosen): by ``label`` or ``latest`` of ``db``
    in ``backup_dir``, or by path."""
    choice = params.get("backup") or "latest"
    label = params.get("label")
    if choice == "latest":
        directory = os.path.join(os.path.abspath(params["backup_dir"]), db_dirname(params["db"]))
        entries = list_backups(directory)
        if label is not None:
            entry = newest_with_label(entries, label)
            if entry is None:
                unverified = [e for e in entries if (e.manifest or {}).get("label") == label]
                raise BackupError(
                    "no verified backup of database %s with label %s in %s%s"
                    % (
                        params["db"],
                        label,
                        directory,
                        " (%d with that label not verified or incomplete)" % len(unverified) if unverified else "",
                    )
                )
            return entry, "label"
        if not entries:
            raise BackupError("no backup of database %s in %s" % (params["db"], directory))
        return entries[0], "latest"
    entry = entry_for_path(choice)
    if entry is None:
        raise BackupError(
            "%s is not a backup written by postgresql_dump "
            "(expected <UTC timestamp>[-<label>].<ext> with its .manifest.json beside it)" % choice
        )
    return entry, "path"


def check_backup(entry):
    """The manifest of a backup whose checksum matches; BackupError naming the file otherwise."""
    ok, reason = entry.check(checksum=True)
    if not ok:
        raise BackupError("refusing to restore %s: %s" % (entry.display_path, reason), backup=entry.summary())
    return entry.manifest


class Restorer:
    def __init__(self, params, runner, check_mode, now=utc_now):
        self.params = params
        self.runner = runner
        self.check_mode = check_mode
        self.now = now
        self.drill = bool(params.get("drill"))
        self.result = dict(changed=False, check_mode=bool(check_mode), drill=self.drill, commands=runner.commands)

    def fail(self, msg):
        return BackupError(msg, **self.result)

    # -- entry point -------------------------------------------------------------------
    def run(self):
        validate(self.params)
        started = time.time()
        entry = None
        try:
            entry, selected_by = resolve_backup(self.params)
            self.result["backup"] = dict(entry.summary(), selected_by=selected_by)
            manifest = check_backup(entry)
            self.result["backup"].update(
                database=manifest.get("database"),
                kind=manifest.get("kind"),
                format=manifest.get("format"),
                compression=manifest.get("compression"),
                sha256=manifest.get("sha256"),
                finished=manifest.get("finished"),
                server_version=manifest.get("server_version"),
            )
            if manifest.get("kind") == "globals":
                self._restore_globals(entry)
            else:
                self._restore_database(entry, manifest)
        except (IOError, OSError) as exc:
            self._drill_metrics(entry, False, started)
            raise BackupError(os_error_message(exc), **self.result) from exc
        except BackupError as exc:
            self._drill_metrics(entry, False, started)
            for key, value in self.result.items():
                exc.result.setdefault(key, value)
            raise
        self._drill_metrics(entry, True, started)
        return self.result

    # -- plumbing ------------------------------------------------------------------------
    def _connect(self, dbname):
        try:
            return connect(self.params, dbname)
        except PostgresError as exc:
            raise self.fail(str(exc)) from exc

    def _sql(self, conn, statement, what, args=None):
        try:
            return query(conn, statement, args)
        except Exception as exc:  # psycopg2.Error: reported without a traceback
            raise self.fail("%s failed: %s" % (what, self.runner.redact(str(exc).strip()))) from exc

    def _exists(self, conn, name):
        rows = self._sql(conn, "SELECT 1 AS one FROM pg_database WHERE datname = %s", "looking up a database", [name])
        return bool(rows)

    def _drop(self, conn, name):
        if self.server_num >= 130000:
            self._sql(conn, "DROP DATABASE IF EXISTS %s WITH (FORCE)" % quote_ident(name), "dropping %s" % name)
        else:
            self._terminate(conn, name)
            self._sql(conn, "DROP DATABASE IF EXISTS %s" % quote_ident(name), "dropping %s" % name)

    def _terminate(self, conn, name):
        self._sql(
            conn,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            "disconnecting the sessions of %s" % name,
            [name],
        )

    def _create(self, conn, name, manifest, owner):
        parts = ["CREATE DATABASE %s TEMPLATE template0" % quote_ident(name)]
        if manifest.get("encoding"):
            parts.append("ENCODING %s" % quote_literal(manifest["encoding"]))
        if manifest.get("locale_provider") == "i" and manifest.get("icu_locale") and self.server_num >= 150000:
            parts.append("LOCALE_PROVIDER icu ICU_LOCALE %s" % quote_literal(manifest["icu_locale"]))
        if manifest.get("collate"):
            parts.append("LC_COLLATE %s" % quote_literal(manifest["collate"]))
        if manifest.get("ctype"):
            parts.append("LC_CTYPE %s" % quote_literal(manifest["ctype"]))
        if owner:
            parts.append("OWNER %s" % quote_ident(owner))
        self._sql(conn, " ".join(parts), "creating the database %s" % name)

    def _owner(self, conn, manifest):
        wanted = self.params.get("owner") or manifest.get("owner")
        if not wanted:
            return None
        rows = self._sql(conn, "SELECT 1 AS one FROM pg_roles WHERE rolname = %s", "looking up a role", [wanted])
        if rows:
            return wanted
        if self.params.get("owner"):
            raise self.fail("the role %s named by owner does not exist on %s" % (wanted, describe(self.params)))
        self.result.setdefault("warnings", []).append(
            "the backup's database owner %s does not exist on %s; the database is owned by %s"
            % (wanted, describe(self.params), self.params.get("login_user"))
        )
        return None

    def _tools(self, manifest):
        p = self.params
        self.pg_restore = tools.require_program("pg_restore", p.get("bin_dir"))
        client = tools.client_major(self.pg_restore, self.runner)
        made_by = manifest.get("client_major") or 0
        if client < made_by:
            raise self.fail(
                "pg_restore %s (%s) cannot read an archive written by pg_dump %s; "
                "install the newer client and set bin_dir"
                % (tools.major_label(client), self.pg_restore, tools.major_label(made_by))
            )

    # -- database backups ------------------------------------------------------------------
    def _restore_database(self, entry, manifest):
        p = self.params
        self._tools(manifest)
        if manifest.get("compression_via") == "stream":
            tools.decompress_argv(manifest["compression"], entry.path)  # fails early when the tool is missing
        properties = self._read_properties(entry, manifest)
        self.result["database_properties"] = property_counts(properties)
        maintenance = p.get("maintenance_db") or "postgres"
        conn = self._connect(maintenance)
        try:
            self.server_num = int(
                self._sql(conn, "SHOW server_version_num", "reading the server version")[0]["server_version_num"]
            )
            token = uuid.uuid4().hex[:10]
            self._sql(
                conn, "SELECT pg_advisory_lock(%s, %s)", "taking the restore's lock", [LOCK_CLASS, lock_key(token)]
            )
            self._leftover_databases(conn)
            self._stale_temp_files(entry)
            if self.drill:
                target = "%s%s" % (NAME_PREFIX["drill"], token)
                exists = False
            else:
                target = p.get("target_db") or manifest.get("database")
                exists = self._exists(conn, target)
                if exists and not p.get("replace_existing"):
                    raise self.fail(
                        "database %s already exists on %s; set replace_existing: true to replace it (a restore into "
                        "a new database is the default), or choose another target_db" % (target, describe(self.params))
                    )
            self.result.update(target_db=target, target_exists=exists, replaced=bool(exists))
            if self.drill:
                self.result["drill_database"] = target
            else:
                self.result["changed"] = True
            owner = None if self.drill else self._owner(conn, manifest)
            if self.check_mode:
                return
            staging = target if self.drill else "%s%s" % (NAME_PREFIX["staging"], token)
            self._create(conn, staging, manifest, owner)
            marker = marker_comment("drill" if self.drill else "staging", token, target)
            t0 = time.monotonic()
            try:
                self._sql(
                    conn,
                    "COMMENT ON DATABASE %s IS %s" % (quote_ident(staging), quote_literal(marker)),
                    "marking %s as the restore's own" % staging,
                )
                self._pg_restore(entry, manifest, staging)
                restore_seconds = round(time.monotonic() - t0, 3)
                self.result["restore_seconds"] = restore_seconds
                self._apply_properties(entry, staging, [st for st in properties if st.kind != "comment"])
                if self.drill:
                    self._drill_checks(manifest, staging)
            except BaseException:
                self._drop(conn, staging)
                raise
            if self.drill:
                self._drop(conn, staging)
                self.result["drill_database_dropped"] = True
                failed = [c for c in self.result["checks"] if not c["ok"]]
                if failed:
                    raise self.fail(
                        "restore drill of %s failed %d of %d checks: %s"
                        % (
                            entry.display_path,
                            len(failed),
                            len(self.result["checks"]),
                            "; ".join("%s (%s)" % (c["check"], c["detail"]) for c in failed),
                        )
                    )
            else:
                comments = [st for st in properties if st.kind == "comment"]
                self._swap(conn, staging, target, exists, token, comments)
        finally:
            conn.close()

    # -- the database's own privileges and settings ------------------------------------------------
    def _archive_text(self, entry, manifest, argv, what, pass_fds=()):
        """stdout of a pg_restore that reads the archive (from the decompressor when streamed)."""
        plain_env = tools.env_without_pg()
        if manifest.get("compression_via") == "stream":
            stages = [
                Stage(tools.decompress_argv(manifest["compression"], entry.path), env=plain_env, cut_short_ok=True),
                Stage(argv, env=plain_env, name="pg_restore", pass_fds=pass_fds),
            ]
        else:
            stages = [Stage(argv + [entry.path], env=plain_env, name="pg_restore", pass_fds=pass_fds)]
        res = run_pipeline(stages, runner=self.runner)
        if not res.ok:
            raise self.fail("%s of %s failed: %s" % (what, entry.display_path, "; ".join(res.failures())))
        return res.stdout.decode("utf-8", "replace")

    def _read_properties(self, entry, manifest):
        """The backup's database-level statements (ACL, settings, comment), ready to re-aim."""
        listing = self._archive_text(
            entry, manifest, [self.pg_restore, "--create", "--list"], "listing the database-level entries"
        )
        ids = database_toc_ids(listing)
        if not ids:
            return []
        # The list goes to pg_restore through a pipe (/dev/fd/N): no file to leave behind.
        rfd, wfd = os.pipe()
        try:
            os.write(wfd, "".join("%d\n" % i for i in ids).encode("ascii"))
            os.close(wfd)
            wfd = None
            sql = self._archive_text(
                entry,
                manifest,
                [self.pg_restore, "--create", "--use-list", "/dev/fd/%d" % rfd, "--file", "-"],
                "reading the database-level privileges and settings",
                pass_fds=(rfd,),
            )
        finally:
            os.close(rfd)
            if wfd is not None:
                os.close(wfd)
        try:
            statements, skipped = parse_database_properties(sql, manifest.get("database"))
        except ValueError as exc:
            raise self.fail(
                "cannot read the database-level privileges and settings of %s: %s" % (entry.display_path, exc)
            ) from exc
        for summary in skipped:
            self.result.setdefault("warnings", []).append(
                "a database-level statement of %s was not applied (%s ...): not one of the forms a restore "
                "re-creates" % (entry.display_path, summary)
            )
        return statements

    def _apply_properties(self, entry, dbname, statements):
        """Run the backup's ACL and settings statements against ``dbname``, in one transaction."""
        if not statements:
            return
        conn = self._connect(self.params.get("maintenance_db") or "postgres")
        try:
            conn.autocommit = False
            for st in statements:
                query(conn, st.sql(dbname))
            conn.commit()
        except Exception as exc:  # psycopg2.Error: reported without a traceback
            raise self.fail(
                "restoring the database-level privileges and settings of %s into %s failed: %s"
                % (entry.display_path, describe(self.params, dbname), self.runner.redact(str(exc).strip()))
            ) from exc
        finally:
            conn.close()

    # -- leftovers of runs that died ---------------------------------------------------------------
    def _leftover_databases(self, conn):
        """Report the databases earlier runs left behind; drop those that are provably ours and idle."""
        rows = self._sql(
            conn,
            "SELECT d.datname, shobj_description(d.oid, 'pg_database') AS comment FROM pg_database d "
            "WHERE d.datname ~ '^bosun_(restore|replaced|drill)_' ORDER BY d.datname",
            "listing leftover databases",
        )
        found = []
        for row in rows:
            name = row["datname"]
            marker = parse_marker(name, row["comment"])
            m = LEFTOVER_RE.match(name)
            item = dict(
                name=name,
                kind=marker["kind"] if marker else (LEFTOVER_KINDS[m.group(1)] if m else None),
                target=marker["target"] if marker else None,
                ours=marker is not None,
                removed=False,
                reason=None,
            )
            found.append(item)
            if marker is None:
                item["reason"] = "no marker of postgresql_restore: not made by it, left alone"
                continue
            live = self._sql(
                conn,
                "SELECT 1 AS one FROM pg_locks WHERE locktype = 'advisory' AND classid = %s::oid "
                "AND objid = %s::oid AND objsubid = 2 AND granted",
                "checking whether the run that made %s still works" % name,
                [LOCK_CLASS, lock_key(marker["token"])],
            )
            if live:
                item["reason"] = "a running restore is using it"
                continue
            if marker["kind"] == "replaced" and not self._exists(conn, marker["target"]):
                item["reason"] = "%s does not exist: this may be its only copy, left alone" % marker["target"]
                self.result.setdefault("warnings", []).append(
                    "%s is the database %s as it was before a restore replaced it, and %s does not exist; "
                    "it was kept (rename it back, or drop it, by hand)" % (name, marker["target"], marker["target"])
                )
                continue
            if not self.check_mode:
                try:
                    self._drop(conn, name)
                except BackupError as exc:  # cleaning up must not stop the restore
                    item["reason"] = exc.msg
                    self.result.setdefault("warnings", []).append("could not remove a leftover database: %s" % exc.msg)
                    continue
            item["removed"] = True
            item["reason"] = "left by a restore that did not finish"
            self.result["changed"] = True
        self.result["leftover_databases"] = found

    def _work_dir(self, entry):
        return self.params.get("work_dir") or os.path.dirname(entry.path)

    def _stale_temp_files(self, entry):
        """Remove the temp files restores left in the work directory (those no run holds)."""
        directory = self._work_dir(entry)
        removed = []
        for name in stale_temp_names(directory):
            path = os.path.join(directory, name)
            if not is_restore_temp_name(name) or temp_in_use(path):
                continue
            if not self.check_mode:
                try:
                    os.unlink(path)
                except OSError as exc:  # cleaning up must not stop the restore
                    self.result.setdefault("warnings", []).append(
                        "cannot remove the stale temp file %s: %s" % (path, exc.strerror)
                    )
                    continue
            removed.append(path)
        self.result["stale_temp_files"] = removed
        if removed:
            self.result["changed"] = True

    # -- pg_restore ----------------------------------------------------------------------------------
    def _pg_restore(self, entry, manifest, dbname):
        p = self.params
        jobs = p.get("jobs") or 1
        env = libpq_env(p, dbname)
        argv = [self.pg_restore, "-w", "--exit-on-error", "-d", conninfo_dbname(dbname)]
        if p.get("no_owner"):
            argv.append("--no-owner")
        what = "restore of %s into %s" % (entry.display_path, describe(p, dbname))
        streamed = manifest.get("compression_via") == "stream"
        temp = lock_fd = None
        try:
            if streamed and jobs > 1:
                temp, lock_fd = self._decompress_for_jobs(entry, manifest)
                if temp is None:
                    jobs = 1
            argv += ["--single-transaction"] if jobs == 1 else ["-j", str(jobs)]
            self.result["jobs"] = jobs
            if streamed and temp is None:
                res = run_pipeline(
                    [
                        Stage(tools.decompress_argv(manifest["compression"], entry.path), env=tools.env_without_pg()),
                        Stage(argv + ["-Fc"], env=env, name="pg_restore"),
                    ],
                    runner=self.runner,
                )
                if not res.ok:
                    raise self.fail("%s failed: %s" % (what, "; ".join(res.failures())))
            else:
                rc, _out, err = self.runner.run(argv + [temp or entry.path], env)
                if rc != 0:
                    raise self.fail("%s failed: pg_restore exited with %d: %s" % (what, rc, tail(err)))
        finally:
            if temp and os.path.exists(temp):
                os.unlink(temp)
            if lock_fd is not None:
                os.close(lock_fd)

    def _decompress_for_jobs(self, entry, manifest):
        """Parallel restore needs a seekable file: decompress a streamed backup into work_dir.

        Returns (temporary path, the fd holding its lock), or (None, None) (restore with one
        job from the stream) when work_dir lacks room for the uncompressed archive. The file
        carries the temp marker and stays locked while this run lives, so that the next run
        (restore or dump) removes it if this one is killed.
        """
        work_dir = self._work_dir(entry)
        need = int(manifest.get("database_size") or 0)
        try:
            st = os.statvfs(work_dir)
            free = st.f_bavail * st.f_frsize
        except OSError as exc:
            raise self.fail("work_dir %s is not usable: %s" % (work_dir, exc.strerror)) from exc
        if free < need:
            self.result.setdefault("warnings", []).append(
                "work_dir %s has %d bytes free, less than the database size %d: restoring with one job from the stream"
                % (work_dir, free, need)
            )
            return None, None
        try:
            lock_fd, temp = locked_temp_file(work_dir, entry.backup_name)
        except OSError as exc:
            raise self.fail("cannot create a temp file in work_dir %s: %s" % (work_dir, exc.strerror or exc)) from exc
        try:
            with os.fdopen(os.dup(lock_fd), "wb") as out:
                res = run_pipeline(
                    [Stage(tools.decompress_argv(manifest["compression"], entry.path), env=tools.env_without_pg())],
                    sink=out.write,
                    runner=self.runner,
                )
            if not res.ok:
                raise self.fail("decompressing %s failed: %s" % (entry.path, "; ".join(res.failures())))
        except BaseException as exc:
            os.unlink(temp)
            os.close(lock_fd)
            if isinstance(exc, (IOError, OSError)):
                raise self.fail("decompressing %s into %s failed: %s" % (entry.path, work_dir, exc)) from exc
            raise
        return temp, lock_fd

    # -- the swap ----------------------------------------------------------------------------------
    def _transaction(self, conn, statements):
        """Run ``statements`` in one transaction on the (autocommit) maintenance connection."""
        conn.autocommit = False
        try:
            for sql in statements:
                query(conn, sql)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.autocommit = True

    def _swap(self, conn, staging, target, exists, token, comments):
        """Put the restored staging database in the target's place, in one transaction.

        The renames and the comments commit together, so a crash leaves either the old or
        the new database under the target's name. The backup's own comment replaces the
        staging marker (or the marker is removed); the old database, renamed
        bosun_replaced_<token> and marked, is dropped after the commit, or by the next run.
        """
        q_target = quote_ident(target)
        final = [st.sql(target) for st in comments] or ["COMMENT ON DATABASE %s IS NULL" % q_target]
        if not exists:
            try:
                self._transaction(conn, ["ALTER DATABASE %s RENAME TO %s" % (quote_ident(staging), q_target)] + final)
            except Exception as exc:  # psycopg2.Error
                self._drop(conn, staging)
                raise self.fail(
                    "cannot rename the restored database into %s: %s" % (target, self.runner.redact(str(exc).strip()))
                ) from exc
            return
        old = "%s%s" % (NAME_PREFIX["replaced"], token)
        swap = [
            "ALTER DATABASE %s RENAME TO %s" % (q_target, quote_ident(old)),
            "ALTER DATABASE %s RENAME TO %s" % (quote_ident(staging), q_target),
            "COMMENT ON DATABASE %s IS %s"
            % (quote_ident(old), quote_literal(marker_comment("replaced", token, target))),
        ] + final
        last = None
        for _attempt in range(10):
            # Sessions of the target are ended; the rename then holds the database's lock, so
            # new sessions wait for the commit (and then find the restored database).
            self._terminate(conn, target)
            try:
                self._transaction(conn, swap)
                last = None
                break
            except Exception as exc:  # psycopg2.Error: sessions reconnected in between
                last = exc
                if getattr(exc, "pgcode", None) != OBJECT_IN_USE:
                    break
                time.sleep(0.5)
        if last is not None:
            self._drop(conn, staging)
            raise self.fail(
                "cannot take %s out of service to replace it: %s; it was left as it was"
                % (target, self.runner.redact(str(last).strip()))
            )
        try:
            self._drop(conn, old)
        except BackupError as exc:
            self.result.setdefault("warnings", []).append(
                "%s was replaced, but its old copy %s could not be dropped (%s); the next restore drops it"
                % (target, old, exc.msg)
            )

    # -- drills ----------------------------------------------------------------------------
    def _drill_checks(self, manifest, dbname):
        p = self.params
        checks = []
        conn = self._connect(dbname)
        try:
            conn.set_session(readonly=True, autocommit=True)
            cur = conn.cursor()

            def run(sql):
                cur.execute(sql)
                return cur.fetchall()

            def record(name, fn):
                try:
                    ok, detail = fn()
                except Exception as exc:  # a failing query is a failed check, not a traceback
                    ok, detail = (
                        False,
                        self.runner.redact(str(exc).strip().splitlines()[0] if str(exc).strip() else exc),
                    )
                checks.append(dict(check=name, ok=bool(ok), detail=detail))

            if manifest.get("tables") is not None:

                def table_count():
                    n = len(run(USER_TABLES_SQL))
                    return n == manifest["tables"], "%d tables restored, %d in the backup" % (n, manifest["tables"])

                record("table count", table_count)
            for table in p.get("drill_tables") or []:

                def exists(table=table):
                    found = run("SELECT to_regclass(%s)::text" % quote_literal(table))[0][0]
                    return found is not None, "found" if found else "missing"

                record("table %s exists" % table, exists)
            for table, minimum in sorted((p.get("drill_min_rows") or {}).items()):

                def rows(table=table, minimum=int(minimum)):
                    rel = run("SELECT to_regclass(%s)::text" % quote_literal(table))[0][0]
                    if rel is None:
                        return False, "table missing"
                    # rel is the server's own quoted rendering of a regclass: safe to splice.
                    n = run("SELECT count(*) FROM %s" % rel)[0][0]  # noqa: S608
                    return n >= minimum, "%d rows, at least %d wanted" % (n, minimum)

                record("rows of %s" % table, rows)
            for i, sql in enumerate(p.get("drill_sql") or []):

                def truth(sql=sql):
                    result = run(sql)
                    ok = len(result) == 1 and len(result[0]) >= 1 and result[0][0] is True
                    return ok, "returned true" if ok else "returned %s, not one row with true" % (result[:3],)

                record("drill_sql[%d]" % i, truth)
        finally:
            conn.close()
        self.result["checks"] = checks

    def _drill_metrics(self, entry, ok, started):
        if not self.drill or self.check_mode or not self.params.get("metrics_dir"):
            return
        m = (entry.manifest if entry is not None else None) or {}
        database = m.get("database") or self.params.get("db") or ""
        age = None
        if m.get("finished_epoch"):
            age = round(time.time() - float(m["finished_epoch"]), 3)
        try:
            path = _metrics.write_drill_metrics(
                self.params["metrics_dir"],
                db_dirname(database) if database else GLOBALS_DIR,
                database=database,
                ok=ok,
                run_at=round(started, 3),
                restore_seconds=self.result.get("restore_seconds"),
                backup_age=age,
            )
            self.result["metrics_file"] = path
        except (IOError, OSError) as exc:
            self.result.setdefault("warnings", []).append("cannot write metrics: %s" % exc)

    # -- globals ---------------------------------------------------------------------------
    def _restore_globals(self, entry):
        raise self.fail(
            "%s is a globals backup (roles and tablespaces of the whole server): postgresql_restore restores "
            "databases; replay it with psql on a new server as docs/backup-restore.md describes" % entry.display_path
        )


def run(params, runner, check_mode=False, now=utc_now):
    """Run postgresql_restore; returns the result dict or raises BackupError (with .result)."""
    result = Restorer(params, runner, check_mode, now=now).run()
    result["finished"] = iso(now())
    return result
