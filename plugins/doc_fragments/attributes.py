# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment:
    # The attributes every module states. A module extends this fragment and gives each
    # attribute its own `support` (full, partial or none); `details` says what `partial`
    # leaves out, and what a check or diff run shows where that is not obvious.
    DOCUMENTATION = r"""
attributes:
  check_mode:
    description: Can run in check mode and return a changed status prediction without changing the target.
  diff_mode:
    description: Returns details on what has changed (or would change in check mode) when run with C(--diff).
  platform:
    description: Target systems the module runs on.
    platforms: posix
"""

    # For a module in an action group of meta/runtime.yml (bosun.platform.attributes.action_group):
    # the module gives `support: full` and the groups it is a member of in `membership`.
    ACTION_GROUP = r"""
attributes:
  action_group:
    description: >-
      Takes the options it shares with the other members of its action groups from C(module_defaults)
      for C(group/<group>), set once for a play, block or role.
"""
