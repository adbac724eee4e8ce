"""``evidence``: a violation's evidence bundle from the shell — show it, seal it, verify it
against its seal, or verify every seal and bundle (docs/evidence.md). The work is in
``store.evidence``; exit 1 when verification finds a change, saying what differs."""

from __future__ import annotations

import argparse
import getpass
import json

from muckwatch.cli.common import CommandTable, UserError, connect


def register(table: CommandTable) -> None:
    table.add("evidence", "evidence bundles of violations (track, sensors, photos) and their "
              "hash-chained seals: show, seal, verify",
              "muckwatch evidence verify --all", _arguments, evidence)


def _arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = sub.add_parser("show", help="a violation's bundle: items, head, seal")
    show.add_argument("violation")
    show.add_argument("--json", action="store_true",
                      help="the whole bundle as the API gives it (every hashed object)")
    seal = sub.add_parser("seal", help="seal an ended violation's bundle (again: its seal), "
                                       "or with --due every ended one not sealed yet")
    what = seal.add_mutually_exclusive_group(required=True)
    what.add_argument("violation", nargs="?")
    what.add_argument("--due", action="store_true",
                      help="seal what the dispatcher would: ended 3 × [rules] evidence_s ago")
    seal.add_argument("--limit", type=int, default=1000, help="at most this many (--due)")
    seal.add_argument("--by", help="who seals, for the seal and the audit log "
                                   "(default cli:<user>)")
    verify = sub.add_parser("verify", help="recompute and compare with the seal; exit 1 on a "
                                           "difference")
    what = verify.add_mutually_exclusive_group(required=True)
    what.add_argument("violation", nargs="?")
    what.add_argument("--all", action="store_true",
                      help="the whole chain of seals and every sealed bundle")


def evidence(args, settings) -> int:
    from store import audit, media
    from store import evidence as store
    from store.review import Conflict, NotFound

    blobs = media.blob_store(settings.media)
    evidence_s = settings.rules.evidence_s
    if args.action == "seal" and args.due:
        return _seal_due(settings, blobs, args.limit)
    with connect(settings) as conn:
        try:
            if args.action == "show":
                b, seal = store.bundle(conn, blobs, args.violation, evidence_s=evidence_s)
                body = store.bundle_json(b, seal)
                if args.json:
                    print(json.dumps(body, ensure_ascii=False))
                else:
                    _print_bundle(body)
                return 0
            if args.action == "seal":
                actor = args.by or f"cli:{getpass.getuser()}"
                row, made = store.seal(conn, blobs, args.violation, evidence_s=evidence_s,
                                       sealed_by=actor)
                if made:
                    audit.record(conn, actor=actor, role="operator", action="evidence.seal",
                                 resource="evidence", resource_id=args.violation,
                                 after={k: row[k] for k in ("seq", "head", "prev_seal", "seal",
                                                            "sealed_at")})
                conn.commit()
                print(json.dumps({**store.seal_json(row), "created": made}))
                return 0
            if args.all:
                return _print_all(store.verify_all(conn, blobs))
            result = store.verify(conn, blobs, args.violation)
        except (NotFound, Conflict) as e:
            raise UserError(str(e)) from None
    return _print_verification(result)


def _seal_due(settings, blobs, limit: int) -> int:
    import asyncio

    import psycopg

    from store import evidence as store

    async def run() -> int:
        async with await psycopg.AsyncConnection.connect(settings.database.dsn) as conn:
            made = await store.seal_due(conn, store.due_age_s(settings.rules.evidence_s),
                                        limit, evidence_s=settings.rules.evidence_s,
                                        blobs=blobs)
            await conn.commit()
            return made

    print(f"sealed {asyncio.run(run())}")
    return 0


def _print_bundle(body: dict) -> None:
    v = body["violation"]
    print(f"violation {v['id']} {v['rule']} device {v['device']} plate {v['plate']} "
          f"({body['state']}), window {v['window'][0]}..{v['window'][1]} ms")
    print(f"{len(body['track'])} fixes, {len(body['photos'])} photos, "
          f"{len(body['items'])} items, head {body['head']}")
    for item in body["items"]:
        extra = f" bytes {item['content'] or 'MISSING'}" if item["kind"] == "photo" else ""
        print(f"  {item['kind']:9} {item['key']:26} {item['sha256']}{extra}")
    seal = body["seal"]
    print("not sealed" if seal is None else
          f"sealed #{seal['seq']} by {seal['sealed_by']} at {seal['sealed_at']}: {seal['seal']}")


def _differences(result: dict) -> list[str]:
    out = [f"  {d['kind']} {d['key']} {d['change']}: {d['detail']}"
           for d in result["differences"]]
    if result["difference_count"] > len(result["differences"]):
        out.append(f"  … {result['difference_count'] - len(result['differences'])} more")
    out += [f"  seal #{result['seal']['seq']}: {p}" for p in result["seal"]["problems"]]
    return out


def _print_verification(result: dict) -> int:
    vid = result["violation_id"]
    if result["ok"]:
        print(f"ok: violation {vid} matches seal #{result['seal']['seq']} "
              f"(head {result['head']})")
        return 0
    print(f"CHANGED: violation {vid} differs from seal #{result['seal']['seq']}")
    print("\n".join(_differences(result)))
    return 1


def _print_all(report: dict) -> int:
    for b in report["broken"]:
        for p in b["problems"]:
            print(f"CHANGED: seal #{b['seq']} (violation {b['violation_id']}): {p}")
    for result in report["bundles"]:
        print(f"CHANGED: violation {result['violation_id']} differs from seal "
              f"#{result['seal']['seq']}")
        print("\n".join(d for d in _differences(result) if "seal #" not in d))
    print(f"{report['seals']} seals, {len(report['broken'])} broken, "
          f"{len(report['bundles'])} bundle(s) changed; chain head {report['head'] or '-'}")
    if report["ok"]:
        print("ok")
    return 0 if report["ok"] else 1
