# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment:
    # Connection options of every redis-facing module (module_utils/_redis.py).
    DOCUMENTATION = r"""
options:
  login_host:
    description: Host name or address of the Redis server.
    type: str
    default: 127.0.0.1
  login_port:
    description: TCP port of the server.
    type: int
    default: 6379
  login_unix_socket:
    description: Path of the server's unix socket; takes precedence over O(login_host).
    type: path
  login_user:
    description: ACL user name. Omit to authenticate as the C(default) user.
    type: str
  login_password:
    description: Password of the ACL user or of C(requirepass). Never shown in results or messages.
    type: str
  login_db:
    description: Database index to select.
    type: int
    default: 0
  tls:
    description: Connect with TLS.
    type: bool
    default: false
  validate_certs:
    description: Verify the server's certificate and host name when O(tls=true).
    type: bool
    default: true
  ca_cert:
    description: CA certificate that signed the server's certificate.
    type: path
  client_cert:
    description: Client certificate, for servers that require one.
    type: path
  client_key:
    description: Key of O(client_cert).
    type: path
  connect_timeout:
    description: Seconds to wait for a connection.
    type: float
    default: 5.0
  socket_timeout:
    description: Seconds to wait for a reply to one command.
    type: float
    default: 30.0
requirements:
  - redis (python3-redis or the redis package from PyPI) on the managed host
"""
