# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The AnsibleModule of bosun.platform.health_check: secrets that no_log cannot mark are
masked before anything is logged or returned.

``no_log`` in an argument spec marks whole option values. Some secrets are parts of options
that are not secret as a whole: the password in an http check's URL, the value of an
``Authorization`` entry in its ``headers``. AnsibleModule writes its invocation to syslog or
the journal inside its constructor, so adding such values to ``no_log_values`` after the
constructor returns is too late. This class adds them whenever the module logs (its own
invocation record included) and whenever it exits, using only AnsibleModule's public
``log``, ``exit_json``, ``fail_json`` and ``no_log_values``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.parameters import remove_values


class SecretMaskingModule(AnsibleModule):
    """AnsibleModule that also masks ``secrets(params)`` (an iterable of strings) everywhere."""

    def __init__(self, *args, secrets, **kwargs):
        self._secrets_of = secrets
        super(SecretMaskingModule, self).__init__(*args, **kwargs)
        self.mask_found_secrets()

    def mask_found_secrets(self):
        params = getattr(self, "params", None)
        if isinstance(params, dict):
            self.no_log_values.update(s for s in self._secrets_of(params) if s)

    def log(self, msg, log_args=None):
        self.mask_found_secrets()
        if log_args:  # sent as separate journal fields, not masked by AnsibleModule.log itself
            log_args = remove_values(log_args, self.no_log_values)
        super(SecretMaskingModule, self).log(msg, log_args=log_args)

    def exit_json(self, **kwargs):
        self.mask_found_secrets()
        super(SecretMaskingModule, self).exit_json(**kwargs)

    def fail_json(self, msg, **kwargs):
        self.mask_found_secrets()
        super(SecretMaskingModule, self).fail_json(msg, **kwargs)
