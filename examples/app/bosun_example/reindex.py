"""Rebuild the search index from PostgreSQL: ``python -m bosun_example.reindex``.

Creates the index (``SEARCH_INDEX``, default ``items``) with an explicit mapping when it is
absent, copies every row of ``items`` into it with bulk requests (document id = row id, so
a second run changes nothing), deletes the documents whose row is gone, refreshes the index
and puts the cached search results out of use. Settings as for the app (``DATABASE_URL``,
``SEARCH_*``, ``REDIS_URL`` optional). The last line printed says what happened:
``reindex: items: created, 3 indexed, 0 removed`` (or ``existed``). Exit code 1 and one
line on stderr on failure; the password is never printed.
"""

import sys

from . import search, store


def main():
    conf = None
    try:
        conf = search.settings()
        client = search.Client(conf, timeout=search.BULK_TIMEOUT)
        conn = store.connect_database()
        try:
            created, indexed, removed = search.reindex(conn, client)
        finally:
            conn.close()
        search.invalidate_cache(conf.index)
    except Exception as exc:  # report the cause in one line, without a traceback
        known = isinstance(exc, (search.SearchError, store.ConfigError))
        text = str(exc) if known else "%s: %s" % (type(exc).__name__, exc)
        print("reindex: failed: %s" % (conf.redact(text) if conf else text), file=sys.stderr)
        return 1
    print(
        "reindex: %s: %s, %d indexed, %d removed" % (conf.index, "created" if created else "existed", indexed, removed)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
