# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""run(params, check_mode): the whole of postgresql_maintenance, outside Ansible."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.bosun.platform.plugins.module_utils._io import redact
from ansible_collections.bosun.platform.plugins.module_utils._maintenance import report, vacuum
from ansible_collections.bosun.platform.plugins.module_utils._maintenance.session import Session, StatementError
from ansible_collections.bosun.platform.plugins.module_utils._maintenance.spec import MaintenanceError, validate
from ansible_collections.bosun.platform.plugins.module_utils._postgres import secrets_of


def run(params, check_mode=False, session_factory=Session, clock=time.monotonic):
    """Validate, connect, run the action; MaintenanceError (secret-free) on failure."""
    start = clock()
    secrets = secrets_of(params)
    try:
        validate(params)
        session = session_factory(params)
        try:
            if params["action"] == "vacuum":
                result = vacuum.run(session, params, check_mode=check_mode, clock=clock, start=start)
            else:
                result = report.run(session, params, check_mode=check_mode, clock=clock)
        finally:
            session.reset_timeouts()
            session.close()
    except MaintenanceError as exc:
        raise MaintenanceError(redact(exc.message, secrets), _redact_result(exc.result, secrets)) from None
    except StatementError as exc:
        raise MaintenanceError(redact(exc.message, secrets)) from None
    return _redact_result(result, secrets)


def _redact_result(value, secrets):
    if isinstance(value, dict):
        return dict((k, _redact_result(v, secrets)) for k, v in value.items())
    if isinstance(value, list):
        return [_redact_result(v, secrets) for v in value]
    if isinstance(value, str):
        return redact(value, secrets)
    return value
