# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The argument spec of bosun.platform.health_check, built from the check types.

Each type's options live in a sub-dict named after the type (``http: {url: ...}``). The
postgres, redis and elasticsearch sub-dicts are the collection's shared connection options
(POSTGRES_COMMON_ARGS / REDIS_COMMON_ARGS / _elasticsearch.CONNECTION_OPTIONS) plus the
type's own, without their defaults: a value not given in the check may come from the
task's top-level connection options (module_defaults of group/bosun.platform.postgres,
.redis or .elasticsearch), and only then from the family default, applied in plan.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

from ansible_collections.bosun.platform.plugins.module_utils._checks import registry
from ansible_collections.bosun.platform.plugins.module_utils._checks.status import FAIL_ON
from ansible_collections.bosun.platform.plugins.module_utils._elasticsearch import CONNECTION_OPTIONS as ES_ARGS
from ansible_collections.bosun.platform.plugins.module_utils._postgres import POSTGRES_COMMON_ARGS
from ansible_collections.bosun.platform.plugins.module_utils._redis import REDIS_COMMON_ARGS

FAMILIES = dict(postgres=POSTGRES_COMMON_ARGS, redis=REDIS_COMMON_ARGS, elasticsearch=ES_ARGS)


def without_default(option):
    option = copy.deepcopy(option)
    option.pop("default", None)
    return option


def type_options(kind):
    """Argument spec of one type's sub-dict."""
    family = getattr(kind, "FAMILY_ARGS", None)
    spec = {}
    if family:
        spec.update((name, without_default(option)) for name, option in family.items())
    spec.update(copy.deepcopy(kind.OPTIONS))
    return spec


def family_defaults(args):
    return dict((name, option.get("default")) for name, option in args.items())


def toplevel_connection_options():
    """The union of the postgres, redis and elasticsearch connection options, none with a default.

    Types differ in one place (connect_timeout: int for postgres, float for redis): float
    takes both. login_unix_socket is a str (postgres allows '' for none).
    """
    spec = {}
    for args in FAMILIES.values():
        for name, option in args.items():
            if name not in spec:
                spec[name] = without_default(option)
    spec["connect_timeout"]["type"] = "float"
    spec["login_unix_socket"]["type"] = "str"
    return spec


def check_options():
    """Suboptions of one element of ``checks``."""
    spec = dict(
        name=dict(type="str"),
        type=dict(type="str", required=True, choices=sorted(registry.CHECK_TYPES)),
        timeout=dict(type="float", default=5.0),
        warn=dict(type="float"),
        crit=dict(type="float"),
        thresholds=dict(type="dict"),
        labels=dict(type="dict"),
    )
    for type_name, kind in registry.CHECK_TYPES.items():
        options = type_options(kind)
        if options:
            spec[type_name] = dict(type="dict", options=options)
    return spec


def argument_spec():
    spec = dict(
        checks=dict(type="list", elements="dict", required=True, options=check_options()),
        fail_on=dict(type="str", default="crit", choices=list(FAIL_ON)),
        concurrency=dict(type="int", default=10),
        overall_timeout=dict(type="float", default=60.0),
    )
    spec.update(toplevel_connection_options())
    return spec
