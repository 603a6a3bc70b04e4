# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment:
    # Connection options of every Elasticsearch-facing module (module_utils/_elasticsearch.py).
    DOCUMENTATION = r"""
options:
  url:
    description:
      - Base URL of a node's HTTP API (a path prefix is kept, for a node behind a proxy).
        No credentials and no query in it.
    type: str
    default: https://127.0.0.1:9200
  login_user:
    description: User for HTTP basic authentication.
    type: str
  login_password:
    description: Password of O(login_user). Never shown in results or messages.
    type: str
  api_key:
    description:
      - API key, instead of O(login_user) and O(login_password) - the C(encoded) value
        Elasticsearch returns when it creates the key, or C(id:api_key). Never shown in results
        or messages.
    type: str
  validate_certs:
    description: Verify the node's TLS certificate and host name.
    type: bool
    default: true
  ca_cert:
    description:
      - CA certificate file to verify the node's certificate with, instead of the system's
        CAs. Exclusive with O(ca_cert_data).
    type: path
  ca_cert_data:
    description:
      - PEM text of the CA certificate(s) to verify the node's certificate with, instead of
        the system's CAs (written to a private temporary file for the run). Kept out of
        results and logs. Exclusive with O(ca_cert).
    type: str
notes:
  - Requests go through Ansible's own HTTP client (C(open_url)), without proxies; the managed
    host needs no Elasticsearch client library.
"""
