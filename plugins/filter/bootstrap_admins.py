# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for the bootstrap of new hosts (the entry point ``bootstrap`` of the common role).

- ``bootstrap_admins``: the names of the admins of ``common_admin_users`` that are present
  (no ``state``, then ``state: present``, each in the list's order).
- ``bootstrap_login_users``: the admins whose SSH login and sudo the bootstrap proves: the
  ones asked for, else the configured ``remote_user`` when it is an admin, else every admin.

Neither fails: the role's assert refuses an empty or wrong result with its own message.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError


def _users(admin_users):
    if admin_users is None:
        return []
    if not isinstance(admin_users, (list, tuple)):
        raise AnsibleFilterError(
            "bootstrap_admins: common_admin_users must be a list, got %s" % type(admin_users).__name__
        )
    return [u for u in admin_users if isinstance(u, dict)]


def bootstrap_admins(admin_users):
    users = _users(admin_users)
    stateless = [u["name"] for u in users if "state" not in u]
    present = [u["name"] for u in users if "state" in u and u["state"] == "present"]
    return stateless + present


def bootstrap_login_users(admins, login_users=None, remote_user=""):
    if login_users is not None:
        return list(login_users)
    if remote_user and remote_user in admins:
        return [remote_user]
    return list(admins)


class FilterModule:
    def filters(self):
        return dict(bootstrap_admins=bootstrap_admins, bootstrap_login_users=bootstrap_login_users)
