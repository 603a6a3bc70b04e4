#!/usr/bin/python
# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: health_check
short_description: Run many health checks on a host in one task, concurrently, with one verdict
version_added: 0.1.0
description:
  - Runs a list of checks (HTTP, TCP, TLS certificate expiry, PostgreSQL, Redis, Elasticsearch,
    disk, memory, load, systemd unit, command, C(nginx -t)) concurrently on the managed host, each within its
    own timeout and all within O(overall_timeout), and returns one structured report.
  - Each check ends V(ok), V(warn), V(unknown) (it could not measure on this host) or V(crit).
    A check that cannot connect is V(crit) and says why (refused, timed out, DNS, TLS,
    authentication failed for user X). No check raises a traceback.
  - Numeric values are classified against warn/crit thresholds. Where higher is worse (usage,
    latency) C(value < warn) is ok, C(warn <= value <= crit) is warn and C(value > crit) is
    crit; where lower is worse (days until expiry, hit rate) C(value >= warn) is ok and
    C(value < crit) is crit.
  - "Default thresholds: http latency 200/500 ms; disk space and inodes, memory 70/85 %;
    load per core 60/80 %; PostgreSQL connections 70/85 % of max_connections, age of the last
    archived WAL 900/3600 s, replica lag 30/300 s, oldest open transaction 600/3600 s, size of
    C(pg_wal) 2048/4096 MB; Redis
    memory 70/85 % of maxmemory (only where Redis cannot evict), evictions 20/100 per 100 key
    lookups (under an eviction policy), hit rate warn below 80 %, rejected connections warn
    from 1; Elasticsearch JVM memory pressure 85/95 %, pending cluster tasks warn from 10; TLS
    certificate warn below 21 days, crit below 7 days."
  - Never changes anything (C(changed=false)) and runs the same in check mode.
  - Passwords (O(login_password), O(checks[].postgres.login_password),
    O(checks[].redis.login_password), O(checks[].elasticsearch.login_password)), API keys
    (O(checks[].elasticsearch.api_key)), credentials in URLs and the values of sensitive HTTP
    headers appear nowhere in results, messages or the invocation record the module writes
    to the managed host's syslog or journal.
  - "Connection defaults: the task's top-level connection options (for instance from
    C(module_defaults) of C(group/bosun.platform.postgres), C(group/bosun.platform.redis) or
    C(group/bosun.platform.elasticsearch)) fill what a postgres, redis or elasticsearch check
    does not set. An option that several of those families have (O(login_host),
    O(login_port), O(login_user), O(login_password), O(login_unix_socket), O(ca_cert),
    O(connect_timeout), O(validate_certs)) is applied only when the task has checks of just
    one of the families that have it, since it cannot say which family it was meant for."
author:
  - bosun.platform maintainers (@bosun-platform)
extends_documentation_fragment:
  - bosun.platform.attributes
  - bosun.platform.attributes.action_group
attributes:
  check_mode:
    support: full
    details:
      - Checks only read; check mode runs them all and reports the same.
      - A V(command) check runs in check mode too, so give it only commands without side effects.
  diff_mode:
    support: none
    details: Nothing is changed, so there is no diff.
  action_group:
    support: full
    membership:
      - bosun.platform.elasticsearch
      - bosun.platform.postgres
      - bosun.platform.redis
  platform:
    support: full
    platforms: posix
requirements:
  - psycopg2 on the managed host for postgres checks
  - redis (redis-py) on the managed host for redis checks
options:
  checks:
    description:
      - "The checks to run. Each has a O(checks[].type) and its options in a dict named after
        the type, for instance C(http: {url: ...})."
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - Unique name of the check in the results and messages.
          - Default is the type and its target, for instance C(disk /) or C(http https://example.org/health).
        type: str
      type:
        description: The kind of check; its options go in the sub-dict of the same name.
        type: str
        required: true
        choices:
          [command, disk, elasticsearch, http, load, memory, nginx_config, postgres, redis, systemd, tcp, tls_cert]
      timeout:
        description:
          - Seconds this check may take. A check still running shortly after is reported
            V(crit) (timed out) and no longer waited for.
        type: float
        default: 5.0
      warn:
        description:
          - Warn threshold of the check's main value (latency ms, used %, days until expiry,
            connections %, memory %, JVM memory pressure %). Replaces the type's default.
        type: float
      crit:
        description: Crit threshold of the check's main value. Replaces the type's default.
        type: float
      thresholds:
        description:
          - "Thresholds of the check's other metrics, as C(metric: {warn: N, crit: N})."
          - "Metrics: http C(latency); tcp C(connect); tls_cert C(days); disk C(used), C(inodes);
            memory C(used); load C(per_core); postgres C(connections), C(archive_age),
            C(replication_lag), C(oldest_transaction), C(wal_size) (MB); redis C(memory), C(hit_rate),
            C(evicted_keys), C(evictions), C(rejected_connections); elasticsearch C(heap),
            C(unassigned_shards), C(initializing_shards), C(relocating_shards), C(pending_tasks)."
        type: dict
      labels:
        description: Free-form labels copied into the check's result (for reports and metrics).
        type: dict
      http:
        description:
          - Options of an V(http) check. One request (more when it is slow, see
            O(checks[].http.slow_retries)); the latency is the value.
        type: dict
        suboptions:
          url:
            description: URL to request (http or https). A password in it is never shown.
            type: str
            required: true
          method:
            description: HTTP method.
            type: str
            default: GET
            choices: [GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS]
          headers:
            description:
              - Request headers. Values of headers whose name contains auth, cookie, token,
                secret, key, session or password are kept out of results, messages and the
                module's invocation record in the managed host's syslog or journal.
              - Put a secret header with another name in O(checks[].http.secret_headers).
            type: dict
          secret_headers:
            description:
              - Request headers whose values are secret, whatever their names (C(no_log)). Sent
                like O(checks[].http.headers), never shown or logged. A name may not be in both.
            type: dict
          body:
            description: Request body.
            type: str
          status_codes:
            description: Status codes that count as healthy.
            type: list
            elements: int
            default: [200]
          body_regex:
            description: Regular expression the response body must match.
            type: str
          json_path:
            description:
              - Dotted path of a field in the JSON response, for instance V(status) or
                V(checks.db.status); list items by index (V(items.0.name)). The field must exist.
            type: str
          json_equals:
            description: The value the O(checks[].http.json_path) field must equal.
            type: raw
          json_in:
            description: Values the O(checks[].http.json_path) field may have.
            type: list
            elements: raw
          validate_certs:
            description: Verify the server's TLS certificate and host name.
            type: bool
            default: true
          ca_cert:
            description:
              - CA certificate file to verify the server's certificate with, instead of the
                system's CAs. Exclusive with O(checks[].http.ca_cert_data).
            type: path
          ca_cert_data:
            description:
              - PEM text of the CA certificate(s) to verify the server's certificate with,
                instead of the system's CAs (for instance the CA that signed the site's
                certificate, from inventory). Empty uses the system's CAs.
              - Kept out of results and logs. Exclusive with O(checks[].http.ca_cert).
            type: str
          connect_address:
            description:
              - Address to connect to for the host name of O(checks[].http.url), on any port,
                as C(curl --resolve) does; also for a redirect to the same host name. The
                C(Host) header, the TLS server name (SNI) and the certificate's name check
                stay the URL's host name, so a site can be checked under its public name on
                V(127.0.0.1) with verification on.
              - Other host names (a redirect elsewhere) are looked up as usual. Exclusive
                with O(checks[].http.use_proxy).
            type: str
          follow_redirects:
            description:
              - Follow redirects (to http and https URLs only); when false a redirect status is
                the response.
              - Credentials (O(checks[].http.secret_headers), the C(Authorization) made from
                C(user:password@) in the URL, C(Authorization), C(Proxy-Authorization), C(Cookie))
                and every other header of O(checks[].http.headers) are sent only within the
                origin (scheme, host and port) of O(checks[].http.url). A redirect to another
                origin carries only C(Accept), C(Accept-Language) and C(User-Agent).
            type: bool
            default: true
          use_proxy:
            description:
              - Use the proxy from the environment (C(http_proxy), C(https_proxy)). Off by
                default, since health checks talk to the platform's own hosts.
            type: bool
            default: false
          slow_retries:
            description:
              - When the response is slower than the latency's warn threshold, up to this many
                more requests are made (within O(checks[].timeout)) and the fastest response is
                judged, so one slow response (a cold cache, a busy moment) is not reported as the
                site's latency. The result says C(fastest of N) when more than one was made.
              - A failed request or an unexpected status is never retried; a later request with
                an unexpected status fails the check. V(0) judges the first response alone.
            type: int
            default: 2
      tcp:
        description: Options of a V(tcp) check. A TCP connect; the connect time (ms) is the value.
        type: dict
        suboptions:
          host:
            description: Host name or address.
            type: str
            default: 127.0.0.1
          port:
            description: TCP port.
            type: int
            required: true
      tls_cert:
        description:
          - Options of a V(tls_cert) check. Days until the certificate expires (the value),
            read from a server or a PEM file. Give exactly one of O(checks[].tls_cert.host)
            and O(checks[].tls_cert.path).
          - An untrusted certificate (self-signed, unknown CA, wrong name) is V(crit) when
            O(checks[].tls_cert.validate_certs=true).
        type: dict
        suboptions:
          host:
            description: Server to connect to.
            type: str
          port:
            description: Port of the server.
            type: int
            default: 443
          server_name:
            description: Name sent as SNI and verified; default O(checks[].tls_cert.host).
            type: str
          path:
            description: PEM file holding the certificate (the first one in the file is read).
            type: path
          validate_certs:
            description: Also verify that the server's certificate is trusted for the name.
            type: bool
            default: true
          ca_cert:
            description:
              - CA certificate file to verify with, instead of the system's CAs. Exclusive
                with O(checks[].tls_cert.ca_cert_data).
            type: path
          ca_cert_data:
            description:
              - PEM text of the CA certificate(s) to verify with, instead of the system's
                CAs. Empty uses the system's CAs. Kept out of results and logs. Exclusive
                with O(checks[].tls_cert.ca_cert).
            type: str
      postgres:
        description:
          - Options of a V(postgres) check. The collection's PostgreSQL connection options plus
            O(checks[].postgres.dbname). Logs in, runs C(SELECT 1), then measures connections
            used of C(max_connections) (the value), recovery (replica) and replay lag, WAL
            archiving (failing, age of the last archived segment) and the oldest open transaction.
          - Use a role with C(pg_monitor) so that other sessions' transactions and the size of
            C(pg_wal) (C(pg_ls_waldir())) are visible; without it C(wal_size) says not readable
            and stays V(ok).
          - "WAL archiving that fails (last failure newer than last success) is V(crit) whatever the
            age of the last archived segment. While it fails, PostgreSQL keeps every segment in
            C(pg_wal), which grows until its disk is full; C(wal_size) warns before that. Set its
            thresholds from the free space of the data volume, for instance
            C(thresholds: {wal_size: {warn: 8192, crit: 16384}}) on a 50 GB volume."
        type: dict
        suboptions:
          dbname:
            description: Database to connect to.
            type: str
            default: postgres
          login_host:
            description:
              - Host name or address of the PostgreSQL server.
              - Empty connects through the local unix socket (see O(login_unix_socket)).
              - 'When not given: the task''s top-level O(login_host), else V('''').'
            type: str
          login_port:
            description:
              - Port of the server (also the suffix of the unix socket name).
              - 'When not given: the task''s top-level O(login_port), else V(5432).'
            type: int
          login_user:
            description:
              - Role to connect as.
              - 'When not given: the task''s top-level O(login_user), else V(postgres).'
            type: str
          login_password:
            description:
              - Password of O(login_user). Passed to client programs in their environment, never on
                a command line, and never shown in results or messages.
              - 'When not given: the task''s top-level O(login_password), else V('''').'
            type: str
          login_unix_socket:
            description:
              - Directory of the server's unix socket; takes precedence over O(login_host).
              - 'When not given: the task''s top-level O(login_unix_socket), else V('''').'
            type: str
          ssl_mode:
            description:
              - libpq C(sslmode). Use V(verify-full) with O(ca_cert) across a network.
              - 'When not given: the task''s top-level O(ssl_mode), else V(prefer).'
            type: str
            choices: [disable, allow, prefer, require, verify-ca, verify-full]
          ca_cert:
            description:
              - CA certificate that signed the server's certificate (libpq C(sslrootcert)).
              - 'When not given: the task''s top-level O(ca_cert).'
            type: path
            aliases: [ssl_rootcert]
          ssl_cert:
            description:
              - Client certificate for certificate authentication.
              - 'When not given: the task''s top-level O(ssl_cert).'
            type: path
          ssl_key:
            description:
              - Key of O(ssl_cert).
              - 'When not given: the task''s top-level O(ssl_key).'
            type: path
          connect_timeout:
            description:
              - Seconds to wait for a connection.
              - 'When not given: the task''s top-level O(connect_timeout), else V(10).'
            type: int
      redis:
        description:
          - Options of a V(redis) check. The collection's Redis connection options. Sends PING
            (with the password or ACL user, over TLS if asked) and reads INFO, measuring memory
            used of C(maxmemory) (the value; of the host's memory when C(maxmemory) is 0), hit
            rate, evicted keys, rejected connections and the role (a replica whose master link
            is down is V(crit)). It tries once, with no retries.
          - Under an eviction policy with keys to evict (C(allkeys-*), or C(volatile-*) while
            some key has a TTL) a full cache is normal; memory is reported as V(ok) and the
            C(evictions) metric (keys evicted per 100 key lookups) is judged instead. Under
            C(noeviction), C(volatile-*) without TTL keys, or without C(maxmemory), memory is
            judged against its thresholds.
        type: dict
        suboptions:
          login_host:
            description:
              - Host name or address of the Redis server.
              - 'When not given: the task''s top-level O(login_host), else V(127.0.0.1).'
            type: str
          login_port:
            description:
              - TCP port of the server.
              - 'When not given: the task''s top-level O(login_port), else V(6379).'
            type: int
          login_unix_socket:
            description:
              - Path of the server's unix socket; takes precedence over O(login_host).
              - 'When not given: the task''s top-level O(login_unix_socket).'
            type: path
          login_user:
            description:
              - ACL user name. Omit to authenticate as the C(default) user.
              - 'When not given: the task''s top-level O(login_user).'
            type: str
          login_password:
            description:
              - Password of the ACL user or of C(requirepass). Never shown in results or messages.
              - 'When not given: the task''s top-level O(login_password).'
            type: str
          login_db:
            description:
              - Database index to select.
              - 'When not given: the task''s top-level O(login_db), else V(0).'
            type: int
          tls:
            description:
              - Connect with TLS.
              - 'When not given: the task''s top-level O(tls), else V(false).'
            type: bool
          validate_certs:
            description:
              - Verify the server's certificate and host name when O(tls=true).
              - 'When not given: the task''s top-level O(validate_certs), else V(true).'
            type: bool
          ca_cert:
            description:
              - CA certificate that signed the server's certificate.
              - 'When not given: the task''s top-level O(ca_cert).'
            type: path
          client_cert:
            description:
              - Client certificate, for servers that require one.
              - 'When not given: the task''s top-level O(client_cert).'
            type: path
          client_key:
            description:
              - Key of O(client_cert).
              - 'When not given: the task''s top-level O(client_key).'
            type: path
          connect_timeout:
            description:
              - Seconds to wait for a connection.
              - 'When not given: the task''s top-level O(connect_timeout), else V(5.0).'
            type: float
          socket_timeout:
            description:
              - Seconds to wait for a reply to one command.
              - 'When not given: the task''s top-level O(socket_timeout), else V(30.0).'
            type: float
      elasticsearch:
        description:
          - Options of an V(elasticsearch) check. Three C(GET) requests with Ansible's own HTTP
            client (the managed host needs no Elasticsearch library) as a user with the cluster
            privilege C(monitor), or with an API key.
          - C(/_cluster/health) - status V(green) is ok, V(yellow) warn (replica shards
            unassigned), V(red) crit (a primary shard unassigned); nodes against
            O(checks[].elasticsearch.expected_nodes); unassigned, initializing and relocating
            shards; pending cluster tasks.
          - C(/_nodes/stats/jvm,fs) - the JVM memory pressure of each node is the check's value
            (metric C(heap)), the old generation used of its maximum as Elastic's monitoring
            counts it, so that one sample of a healthy heap's sawtooth does not warn; the heap used
            is reported beside it and judged instead when a node reports no memory pools. The
            highest of all nodes counts.
          - C(/_cluster/settings) - disk used of each data path (the space not available to
            Elasticsearch, so reserved blocks count as used and the figure is higher than
            C(df)'s) against the cluster's own watermarks - above the high watermark is V(warn)
            (no shards are allocated to the node and its shards move away), above the flood
            stage V(crit) (indices with a shard on the node become read-only). The free space a
            watermark needs is the node's own figure where its statistics report it (8.19 does),
            else it is computed from the setting - a percentage or ratio, capped at its
            C(max_headroom) when that is in force, or an absolute size of free space such as
            V(50gb). With
            C(cluster.routing.allocation.disk.threshold_enabled=false) the disk is only reported.
          - A node that cannot be reached, a TLS error, HTTP 401 or 403, or a cluster without a
            master is V(crit); the message names the URL and the cause, never the password or the
            API key. There are no retries; the check's O(checks[].timeout) covers all three requests.
            The requests of several V(elasticsearch) checks in one task are made one at a time.
        type: dict
        suboptions:
          url:
            description:
              - Base URL of a node's HTTP API (a path prefix is kept, for a node behind a proxy).
                No credentials and no query in it.
              - 'When not given: the task''s top-level O(url), else V(https://127.0.0.1:9200).'
            type: str
          login_user:
            description:
              - User for HTTP basic authentication, with the cluster privilege C(monitor).
              - 'When not given: the task''s top-level O(login_user).'
            type: str
          login_password:
            description:
              - Password of O(checks[].elasticsearch.login_user). Never shown in results or messages.
              - 'When not given: the task''s top-level O(login_password).'
            type: str
          api_key:
            description:
              - API key, instead of O(checks[].elasticsearch.login_user) and
                O(checks[].elasticsearch.login_password) - the C(encoded) value Elasticsearch
                returns when it creates the key, or C(id:api_key). Never shown in results or messages.
              - 'When not given: the task''s top-level O(api_key).'
            type: str
          validate_certs:
            description:
              - Verify the node's TLS certificate and host name.
              - 'When not given: the task''s top-level O(validate_certs), else V(true).'
            type: bool
          ca_cert:
            description:
              - CA certificate file to verify the node's certificate with, instead of the
                system's CAs. Exclusive with O(checks[].elasticsearch.ca_cert_data).
              - 'When not given: the task''s top-level O(ca_cert).'
            type: path
          ca_cert_data:
            description:
              - PEM text of the CA certificate(s) to verify the node's certificate with, instead
                of the system's CAs. Empty uses the system's CAs. Kept out of results and logs.
                Exclusive with O(checks[].elasticsearch.ca_cert).
              - 'When not given: the task''s top-level O(ca_cert_data).'
            type: str
          expected_nodes:
            description:
              - Nodes the cluster should have. Fewer is V(crit), more V(warn). Not given, the
                number of nodes is only reported.
            type: int
      disk:
        description: Options of a V(disk) check. Space used (the value) and inodes used, as C(df) counts them.
        type: dict
        suboptions:
          path:
            description: A path on the filesystem to measure.
            type: path
            default: /
      load:
        description: Options of a V(load) check. Load average per CPU core, as a percentage (the value).
        type: dict
        suboptions:
          period:
            description: Which load average, in minutes.
            type: int
            default: 5
            choices: [1, 5, 15]
      systemd:
        description:
          - Options of a V(systemd) check. The unit is V(active) (ok), activating or reloading
            (warn), or anything else (crit). V(unknown) where systemd is not running.
        type: dict
        suboptions:
          unit:
            description: Unit name, for instance V(nginx.service).
            type: str
            required: true
      command:
        description:
          - Options of a V(command) check. Runs a program (an argv list, no shell) within the
            timeout; its exit code is the value. Runs in check mode too, so give only commands
            without side effects.
        type: dict
        suboptions:
          argv:
            description: Program and arguments.
            type: list
            elements: str
            required: true
          expected_rc:
            description: Exit codes that count as healthy.
            type: list
            elements: int
            default: [0]
          stdout_regex:
            description: Regular expression the standard output must match.
            type: str
      nginx_config:
        description: Options of an V(nginx_config) check. Runs C(nginx -t -q); crit with nginx's error when it fails.
        type: dict
        suboptions:
          binary:
            description: The nginx program.
            type: str
            default: nginx
          config:
            description: Configuration file (C(-c)); default nginx's own.
            type: path
          prefix:
            description: Prefix path (C(-p)).
            type: path
  fail_on:
    description:
      - When the task fails. V(crit) fails when any check is crit; V(warn) also when any is
        warn or unknown; V(never) never fails because of a check. The report is returned either way.
    type: str
    default: crit
    choices: [crit, warn, never]
  concurrency:
    description: How many checks run at the same time.
    type: int
    default: 10
  overall_timeout:
    description:
      - Seconds all checks together may take. Checks not finished (or not started) by then are crit.
    type: float
    default: 60.0
  login_host:
    description: Default host of the postgres and redis checks (see the connection defaults above).
    type: str
  login_port:
    description: Default port of the postgres and redis checks.
    type: int
  login_user:
    description: >-
      Default user (PostgreSQL role, Redis ACL user, Elasticsearch user) of the postgres, redis
      and elasticsearch checks.
    type: str
  login_password:
    description: Default password of the postgres, redis and elasticsearch checks. Never shown in results or messages.
    type: str
  login_unix_socket:
    description: Default unix socket (PostgreSQL directory, Redis path) of the postgres and redis checks.
    type: str
  ssl_mode:
    description: Default libpq C(sslmode) of the postgres checks.
    type: str
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
  ca_cert:
    description: Default CA certificate of the postgres, redis and elasticsearch checks.
    type: path
    aliases: [ssl_rootcert]
  ssl_cert:
    description: Default client certificate of the postgres checks.
    type: path
  ssl_key:
    description: Default key of O(ssl_cert).
    type: path
  connect_timeout:
    description: Default connect timeout (seconds) of the postgres and redis checks.
    type: float
  login_db:
    description: Default database index of the redis checks.
    type: int
  tls:
    description: Default of the redis checks' O(checks[].redis.tls).
    type: bool
  validate_certs:
    description: >-
      Default of the redis and elasticsearch checks' O(checks[].redis.validate_certs) and
      O(checks[].elasticsearch.validate_certs).
    type: bool
  url:
    description: Default O(checks[].elasticsearch.url) of the elasticsearch checks.
    type: str
  api_key:
    description: Default API key of the elasticsearch checks. Never shown in results or messages.
    type: str
  ca_cert_data:
    description: Default O(checks[].elasticsearch.ca_cert_data) of the elasticsearch checks.
    type: str
  client_cert:
    description: Default client certificate of the redis checks.
    type: path
  client_key:
    description: Default key of O(client_cert).
    type: path
  socket_timeout:
    description: Default reply timeout (seconds) of the redis checks.
    type: float
notes:
  - Checks run in threads of one process; a check still running after its timeout is
    abandoned (reported crit) and cannot delay the result by more than a fraction of a second.
  - Commands (V(command), V(systemd), V(nginx_config)) run as argv lists with a hard
    timeout, in their own process group that is killed on timeout.
seealso:
  - module: ansible.builtin.uri
  - module: ansible.builtin.wait_for
"""

EXAMPLES = r"""
- name: Gate a deploy on the app and its dependencies
  bosun.platform.health_check:
    checks:
      - name: app health
        type: http
        http:
          url: http://127.0.0.1:8000/health
          json_path: status
          json_equals: healthy
      - name: database
        type: postgres
        postgres:
          login_host: 10.10.0.5
          login_user: monitor
          login_password: "{{ vault_pg_monitor_password }}"
          ssl_mode: verify-full
          ca_cert: /etc/ssl/bosun/ca.crt
      - name: cache
        type: redis
        redis:
          login_host: 10.10.0.6
          login_user: monitor
          login_password: "{{ vault_redis_monitor_password }}"
      - name: root disk
        type: disk
        disk:
          path: /
        warn: 80
        crit: 90

- name: Load balancer pre-flight, warnings fail too
  bosun.platform.health_check:
    fail_on: warn
    checks:
      - type: nginx_config
      - type: tls_cert
        tls_cert:
          host: 127.0.0.1
          server_name: shop.example.org
      - type: systemd
        systemd:
          unit: nginx.service
      - type: memory
      - type: load

- name: The site under its public name on the load balancer itself, trusting the site's CA
  bosun.platform.health_check:
    checks:
      - name: site
        type: http
        http:
          url: http://shop.example.org/  # redirected to https://shop.example.org/
          connect_address: 127.0.0.1
          ca_cert_data: "{{ bosun_tls_ca_cert }}"
      - type: tls_cert
        tls_cert:
          host: 127.0.0.1
          server_name: shop.example.org
          ca_cert_data: "{{ bosun_tls_ca_cert }}"

- name: Report only, never fail; decide later
  bosun.platform.health_check:
    fail_on: never
    overall_timeout: 20
    checks:
      - type: tcp
        tcp:
          host: 10.10.0.7
          port: 9200
      - type: http
        timeout: 2
        warn: 300
        crit: 1000
        http:
          url: https://shop.example.org/
          status_codes: [200, 301]
          follow_redirects: false
  register: health

- name: The search tier, as a monitoring user over HTTPS with the cluster's CA
  bosun.platform.health_check:
    checks:
      - name: Elasticsearch
        type: elasticsearch
        labels: {tier: search}
        thresholds:
          heap: {warn: 75, crit: 90}
        elasticsearch:
          url: https://10.10.0.8:9200
          login_user: monitor
          login_password: "{{ vault_elasticsearch_monitor_password }}"
          ca_cert: /etc/ssl/bosun/elasticsearch-ca.crt
          expected_nodes: 1

- name: Connection options from module_defaults of the postgres action group
  module_defaults:
    group/bosun.platform.postgres:
      login_host: 10.10.0.5
      login_user: monitor
      login_password: "{{ vault_pg_monitor_password }}"
  bosun.platform.health_check:
    checks:
      - name: primary
        type: postgres
        thresholds:
          archive_age: {warn: 600, crit: 1800}
"""

RETURN = r"""
checks:
  description: One result per check, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Name of the check.
      type: str
      sample: app health
    type:
      description: Type of the check.
      type: str
      sample: http
    status:
      description: V(ok), V(warn), V(unknown) or V(crit).
      type: str
      sample: ok
    value:
      description: The check's main value (latency, used %, days, connections %, exit code ...); null when not measured.
      type: raw
      sample: 42.3
    unit:
      description: Unit of RV(checks[].value).
      type: str
      sample: ms
    latency_ms:
      description: How long the check took.
      type: float
      sample: 43.1
    message:
      description: What was found, or why the check failed (the cause, never a password).
      type: str
      sample: "GET http://127.0.0.1:8000/health: HTTP 200 in 42 ms, status = \"healthy\""
    metrics:
      description: Every measurement of the check, the main one first.
      type: list
      elements: dict
      sample:
        - name: connections
          value: 45.0
          unit: "%"
          status: ok
          text: PostgreSQL 45/100 connections (45 %)
          headline: true
    labels:
      description: The check's O(checks[].labels).
      type: dict
      sample: {tier: app}
status:
  description: The worst status of all checks (ok < warn < unknown < crit).
  returned: always
  type: str
  sample: warn
summary:
  description: Number of checks per status, and in total.
  returned: always
  type: dict
  sample: {ok: 18, warn: 1, unknown: 0, crit: 1, total: 20}
duration_ms:
  description: Wall time of all checks together.
  returned: always
  type: float
  sample: 212.4
msg:
  description: A one-line summary, or on failure the failing checks with their reasons.
  returned: always
  type: str
  sample: "20 checks: 19 ok, 1 warn"
"""

from ansible_collections.bosun.platform.plugins.module_utils._checks import health
from ansible_collections.bosun.platform.plugins.module_utils._checks.module import SecretMaskingModule
from ansible_collections.bosun.platform.plugins.module_utils._checks.spec import argument_spec
from ansible_collections.bosun.platform.plugins.module_utils._module import ModuleFailure, run_module


def work(module):
    try:
        report, warnings, failure = health.execute(module.params)
    except health.PlanError as exc:
        raise ModuleFailure(str(exc), changed=False) from None
    report.update(changed=False, warnings=warnings)
    if failure:
        raise ModuleFailure(failure, **dict((key, value) for key, value in report.items() if key != "msg"))
    return report


def main():
    # URL credentials and sensitive header values are parts of options that are not no_log as
    # a whole: masked from the invocation record in syslog/the journal on, not only in results.
    run_module(
        argument_spec(), work, supports_check_mode=True, module_class=SecretMaskingModule, secrets=health.secrets_in
    )


if __name__ == "__main__":
    main()
