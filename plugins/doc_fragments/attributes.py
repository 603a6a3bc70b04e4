# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment:
    # The attributes every module states. A module extends this fragment and gives each
    # attribute its own `support` (full, partial or none) and, where it helps, `details`.
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
