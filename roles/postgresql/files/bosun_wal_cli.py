# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""bosun-wal: push and fetch WAL (archive_command, restore_command), recover, stop.

Installed by bosun.platform.postgresql (changes are overwritten) as bosun-wal, run by the
system's Python 3, in the directory that holds the WAL library it imports (bosun_wal.py,
the collection's module_utils/_backup/wal.py). This file is the command line only: it
parses the arguments and hands each command to the library, which decides what it does,
what it prints and its exit code.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import bosun_wal as wal  # noqa: E402


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        raise _UsageError(message)


def parser():
    """The command line; each subcommand's ``function`` is the library function it calls, with
    the parsed options (the same names) as its keyword arguments."""
    p = _Parser(prog=wal.PROG, description="WAL archive and point-in-time recovery for PostgreSQL (bosun.platform)")
    p.add_argument("--run-as", help="when started as root, drop to this user first (postgres)")
    sub = p.add_subparsers(dest="command")
    sub.required = True
    ps = sub.add_parser("push", help="archive a WAL file (archive_command: push --archive DIR %%p %%f)")
    ps.set_defaults(function=wal.archive_push)
    ps.add_argument("--archive", required=True)
    ps.add_argument("--compress", dest="method", choices=wal.COMPRESSIONS, default="none")
    ps.add_argument("--level", type=int)
    ps.add_argument("path")
    ps.add_argument("name", nargs="?")
    pf = sub.add_parser("fetch", help="restore a WAL file (restore_command: fetch --archive DIR %%f %%p)")
    pf.set_defaults(function=wal.archive_fetch)
    pf.add_argument("--archive", required=True)
    pf.add_argument("name")
    pf.add_argument("dest")
    pl = sub.add_parser("list", help="archived WAL files as JSON")
    pl.set_defaults(function=wal.archive_list)
    pl.add_argument("--archive", required=True)
    pr = sub.add_parser("recover", help="restore a base backup and replay the archive to a target (JSON result)")
    pr.set_defaults(function=wal.recover)
    pr.add_argument("--archive", required=True)
    pr.add_argument("--base-dir", help="directory of the base backups (the newest fitting one is used)")
    pr.add_argument("--backup", help="one base backup directory instead")
    pr.add_argument("--data-dir", required=True)
    pr.add_argument("--port", type=int, required=True)
    pr.add_argument("--socket-dir")
    pr.add_argument(
        "--config-file", help="the production configuration (replacing a cluster); without it a scratch cluster"
    )
    pr.add_argument("--target-time")
    pr.add_argument("--target-lsn")
    pr.add_argument("--target-name")
    pr.add_argument("--target-exclusive", action="store_true")
    pr.add_argument("--bin-dir")
    pr.add_argument("--log-file")
    pr.add_argument("--timeout", type=int, default=wal.DEFAULT_RECOVERY_TIMEOUT)
    pr.add_argument("--stop-after", action="store_true", help="stop the server once promoted")
    pr.add_argument("--result-file")
    pr.add_argument(
        "--protect",
        action="append",
        default=[],
        metavar="DIR",
        help="a live data directory a scratch --data-dir may not be, be inside or contain (repeatable)",
    )
    pt = sub.add_parser("stop", help="stop a scratch cluster recover created (and --remove its files)")
    pt.set_defaults(function=wal.stop)
    pt.add_argument("--data-dir", required=True)
    pt.add_argument("--bin-dir")
    pt.add_argument("--remove", action="store_true")
    pt.add_argument("--expect-id", help="refuse unless the cluster is the one recover reported with this scratch_id")
    pt.add_argument(
        "--protect",
        action="append",
        default=[],
        metavar="DIR",
        help="a live data directory that --data-dir may not be, be inside or contain (repeatable)",
    )
    return p


def _subcommand(argv):
    for token in argv:
        if token in wal.COMMANDS:
            return token
    return None


def main(argv=None):
    """Run one command; returns the exit code (wal.run)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        options = vars(parser().parse_args(argv))
    except _UsageError as exc:
        return wal.usage_failed(_subcommand(argv), str(exc))
    command, function = options.pop("command"), options.pop("function")
    run_as, result_file = options.pop("run_as"), options.pop("result_file", None)
    if command == "recover":
        # The recovering server fetches from the archive with this very command.
        options["tool"] = [sys.executable, os.path.abspath(__file__)]
    return wal.run(
        command, lambda: function(**options), run_as=run_as, result_file=result_file, name=options.get("name")
    )


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
