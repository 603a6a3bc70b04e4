# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The main() every module of this collection shares.

A module is its documentation, an ``argument_spec()`` and a work function:

    def main():
        run_module(argument_spec(), work, errors=(FlushError,))

``work(module)`` does the job and returns the result. ``run_module`` builds the
AnsibleModule (check mode always supported), calls ``work``, fails the task with the
message of one of the collection's own exceptions, emits the warnings the result collected,
and exits with the result.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.module_utils.basic import AnsibleModule

# A renamed option keeps its former name as a deprecated alias until this release of the
# collection; each name means one thing across the collection (tests/unit/test_option_names.py).
REMOVED_IN = "2.0.0"
COLLECTION_NAME = "bosun.platform"


def deprecated_alias(former):
    """The ``aliases`` and ``deprecated_aliases`` of an option renamed from ``former``.

    ``dir_lock_timeout=dict(type="int", **deprecated_alias("lock_timeout"))``: the former name
    still works, and Ansible warns that it is deprecated and goes in REMOVED_IN.
    """
    return dict(
        aliases=[former],
        deprecated_aliases=[dict(name=former, version=REMOVED_IN, collection_name=COLLECTION_NAME)],
    )


def replace_deprecated_values(module, deprecated_values):
    """Replace a former spelling of an option's value by its current one, with a deprecation.

    ``deprecated_values`` maps an option to ``{former value: value}`` (for an option whose type
    changed: ``{"verify": {"true": "full", "false": "none"}}``). The module's params are
    updated in place, so the work sees only current values.
    """
    for option, mapping in deprecated_values.items():
        value = module.params.get(option)
        if value in mapping:
            module.params[option] = mapping[value]
            module.deprecate(
                "%s=%s is deprecated: write %s=%s (the same behaviour)" % (option, value, option, mapping[value]),
                version="2.0.0",  # REMOVED_IN, literal for the sanity test of deprecate() calls
                collection_name="bosun.platform",
            )


class ModuleFailure(Exception):
    """Fail the task with ``msg``; ``result`` holds the other fields of the failed result."""

    def __init__(self, msg, **result):
        super(ModuleFailure, self).__init__(msg)
        self.msg = msg
        self.result = result


def failure_of(exc):
    """(message, result fields) of an exception raised by the work of a module.

    The collection's exceptions carry their message in ``message`` or ``msg`` (else it is
    ``str(exc)``) and, some of them, what was done before the failure in ``result``.
    """
    for name in ("message", "msg"):
        message = getattr(exc, name, None)
        if isinstance(message, str):
            break
    else:
        message = str(exc)
    return message, dict(getattr(exc, "result", None) or {})


def emit_warnings(module, result):
    """Pass the ``warnings`` list a result collected to ``module.warn``, removing it from the result."""
    for warning in result.pop("warnings", None) or []:
        module.warn(warning)


def run_module(argument_spec, work, supports_check_mode, errors=(), module_class=AnsibleModule, **module_kwargs):
    """Run a module: the whole of its main().

    ``argument_spec`` is the module's options; ``supports_check_mode`` is said by each module
    in its own file (every module of the collection predicts in check mode what a real run
    would change); ``module_kwargs`` go to ``module_class``
    (``required_if``, ``add_file_common_args``, ...). ``work(module)`` returns the result
    (``changed`` and the module's fields; an optional ``warnings`` list is emitted as
    warnings). A ModuleFailure, or an exception of a class in ``errors``, fails the task with
    its message and its result fields (their ``warnings`` emitted too); any other exception
    is a bug and ends in a traceback.
    """
    module = module_class(argument_spec=argument_spec, supports_check_mode=supports_check_mode, **module_kwargs)
    try:
        result = work(module)
    except ModuleFailure as exc:
        _fail(module, exc.msg, dict(exc.result))
    except errors as exc:
        _fail(module, *failure_of(exc))
    emit_warnings(module, result)
    module.exit_json(**result)


def _fail(module, msg, result):
    emit_warnings(module, result)
    module.fail_json(msg=msg, **result)
