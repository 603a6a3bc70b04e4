# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment:
    # Connection options of every postgres-facing module (module_utils/_postgres.py).
    DOCUMENTATION = r"""
options:
  login_host:
    description:
      - Host name or address of the PostgreSQL server.
      - Empty connects through the local unix socket (see O(login_unix_socket)).
    type: str
    default: ''
  login_port:
    description: Port of the server (also the suffix of the unix socket name).
    type: int
    default: 5432
  login_user:
    description: Role to connect as.
    type: str
    default: postgres
  login_password:
    description:
      - Password of O(login_user). Passed to client programs in their environment, never on
        a command line, and never shown in results or messages.
    type: str
    default: ''
  login_unix_socket:
    description: Directory of the server's unix socket; takes precedence over O(login_host).
    type: str
    default: ''
  ssl_mode:
    description: libpq C(sslmode). Use V(verify-full) with O(ca_cert) across a network.
    type: str
    default: prefer
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
  ca_cert:
    description: CA certificate that signed the server's certificate (libpq C(sslrootcert)).
    type: path
    aliases: [ssl_rootcert]
  ssl_cert:
    description: Client certificate for certificate authentication.
    type: path
  ssl_key:
    description: Key of O(ssl_cert).
    type: path
  connect_timeout:
    description: Seconds to wait for a connection.
    type: int
    default: 10
requirements:
  - psycopg2 (python3-psycopg2 or psycopg2-binary) on the managed host
"""
