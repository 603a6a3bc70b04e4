# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which PostgreSQL cluster of a Debian/Ubuntu host a recovery is about.

The point-in-time recovery playbooks need the major version of the live cluster for its
paths (data directory, configuration file, systemd unit). They read it from the host:
``pg_lsclusters --no-header`` (postgresql-common) lists every cluster the host has::

    15  main    5432 online postgres /var/lib/postgresql/15/main /var/log/postgresql/postgresql-15-main.log

``choose_cluster`` picks the one named by the inventory and fails with a message that
says what was found and which variable decides, instead of guessing a version.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

VERSION_RE = re.compile(r"^\d+(?:\.\d+)?$")


class ClusterError(Exception):
    """No single cluster fits the request; the message says why and what to set."""


def parse_lsclusters(text):
    """The clusters of ``pg_lsclusters --no-header`` output, as dicts (header lines skipped)."""
    clusters = []
    for line in (text or "").splitlines():
        fields = line.split()
        if len(fields) < 6 or not VERSION_RE.match(fields[0]) or not fields[2].isdigit():
            continue
        rest = line.split(None, 5)[5].strip()
        # Data directory, then the log file (a path or "syslog"); a data directory may hold spaces.
        data_dir, _sep, log_file = rest.rpartition(" ")
        if not data_dir:
            data_dir, log_file = rest, ""
        clusters.append(
            dict(
                version=fields[0],
                cluster=fields[1],
                port=int(fields[2]),
                status=fields[3],
                owner=fields[4],
                data_dir=data_dir.strip(),
                log_file=log_file.strip(),
            )
        )
    return clusters


def debian_paths(version, cluster):
    """Paths and unit of a postgresql-common cluster."""
    return dict(
        data_dir="/var/lib/postgresql/%s/%s" % (version, cluster),
        config_file="/etc/postgresql/%s/%s/postgresql.conf" % (version, cluster),
        service="postgresql@%s-%s" % (version, cluster),
    )


def choose_cluster(clusters, version="", cluster="main", host="the host", required=True):
    """The cluster to recover: dict(version, cluster, port, status, data_dir, config_file, service, source).

    ``version`` (the inventory's explicit choice, may be empty) narrows the clusters named
    ``cluster``. When it is given and the host lists no such cluster (a host whose cluster
    is not managed by postgresql-common), the Debian paths of that version are returned.
    Without it, exactly one cluster of that name must exist. ``required=False`` (every
    path was given explicitly) returns version None instead of failing.
    """
    version = str(version or "").strip()
    if version and not VERSION_RE.match(version):
        raise ClusterError("bosun_pitr_pg_version must be a PostgreSQL major version such as 15, got %r" % version)
    named = [c for c in clusters if c["cluster"] == cluster]
    fitting = [c for c in named if not version or c["version"] == version]
    listed = ", ".join("%s/%s (%s)" % (c["version"], c["cluster"], c["status"]) for c in clusters) or "none"
    if len(fitting) == 1:
        chosen = dict(fitting[0])
        chosen.update(
            config_file=debian_paths(chosen["version"], cluster)["config_file"],
            service=debian_paths(chosen["version"], cluster)["service"],
            source="pg_lsclusters",
        )
        return chosen
    if version and not fitting:
        chosen = dict(version=version, cluster=cluster, port=None, status=None, source="bosun_pitr_pg_version")
        chosen.update(debian_paths(version, cluster))
        return chosen
    if not required:
        return dict(
            version=None,
            cluster=cluster,
            port=None,
            status=None,
            data_dir=None,
            config_file=None,
            service=None,
            source="none",
        )
    if not fitting:
        raise ClusterError(
            "cannot tell which PostgreSQL version %s runs: pg_lsclusters lists no cluster named %r (clusters: %s); "
            "install the server with the bosun.platform.postgresql role, or set bosun_pitr_pg_version (and "
            "bosun_pitr_cluster) to the live cluster's major version and name" % (host, cluster, listed)
        )
    raise ClusterError(
        "%s has several clusters named %r (%s): set bosun_pitr_pg_version to the major version of the live one"
        % (host, cluster, ", ".join(c["version"] for c in fitting))
    )
