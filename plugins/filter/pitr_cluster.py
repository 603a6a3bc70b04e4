# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for the point-in-time recovery playbooks (restore_pitr.yml, pitr_drill.yml, the
maintenance pitr_drill job).

- ``pitr_cluster``: the live PostgreSQL cluster of a host (major version, data directory,
  configuration file, systemd unit), from ``pg_lsclusters --no-header``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible_collections.bosun.platform.plugins.module_utils._backup.clusters import (
    ClusterError,
    choose_cluster,
    parse_lsclusters,
)


def pitr_cluster(lsclusters, version="", cluster="main", host="the host", required=True):
    """The cluster named ``cluster`` (of major ``version`` when given) that the host lists."""
    if not isinstance(lsclusters, str):
        raise AnsibleFilterError("pitr_cluster expects the text pg_lsclusters printed, got %r" % (lsclusters,))
    try:
        return choose_cluster(
            parse_lsclusters(lsclusters),
            version="" if version is None else str(version),
            cluster=str(cluster or "main"),
            host=str(host),
            required=bool(required),
        )
    except ClusterError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    def filters(self):
        return dict(pitr_cluster=pitr_cluster)
