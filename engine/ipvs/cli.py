"""`virtserve ipvs list [--stats | --rate] [--exact] | --timeout | --daemon`: the kernel table as
`ipvsadm -Ln` prints it, read over netlink."""
from __future__ import annotations

import argparse
import sys

from virtserve.engine.ipvs import listing


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ipvs", help="the kernel's IPVS table, as ipvsadm -Ln shows it")
    verbs = p.add_subparsers(dest="verb", required=True)
    q = verbs.add_parser("list", help="list services and destinations (ipvsadm -Ln)")
    what = q.add_mutually_exclusive_group()
    what.add_argument("--stats", action="store_true", help="counters (ipvsadm -Ln --stats)")
    what.add_argument("--rate", action="store_true", help="rates per second (ipvsadm -Ln --rate)")
    what.add_argument("--timeout", action="store_true", help="tcp, tcpfin and udp timeouts")
    what.add_argument("--daemon", action="store_true", help="the connection sync daemons")
    q.add_argument("--exact", action="store_true", help="exact numbers, no K/M/G")
    q.set_defaults(fn=run)


def run(args: argparse.Namespace) -> int:
    from virtserve.engine.ipvs.client import IpvsClient, IpvsUnavailable, NetlinkError

    try:
        with IpvsClient() as client:
            if args.timeout:
                out = listing.render_timeouts(client.timeouts())
            elif args.daemon:
                out = listing.render_daemons(client.daemons())
            else:
                version, size = client.info()
                out = listing.render(client.table(), version, size, stats=args.stats, rate=args.rate,
                                     exact=args.exact)
    except (IpvsUnavailable, NetlinkError) as exc:
        print(f"virtserve ipvs: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(out)
    return 0
