#!/usr/bin/env python3
"""Throwaway Slurm / HTCondor / Grid Engine clusters in containers, for trying and testing kong.

    python deploy/testcluster.py build slurm|htcondor|sge|sshd|all [--dockerfile]
    python deploy/testcluster.py up slurm|htcondor|sge|sshd --name NAME [--state-dir DIR]
    python deploy/testcluster.py down NAME
    python deploy/testcluster.py status
    python deploy/testcluster.py tag slurm|htcondor|sge|sshd
    python deploy/testcluster.py prune

``up`` prints a kong profile block to paste under ``profiles:``; the key pair,
known_hosts and the profile are kept in the state directory
(``$KONG_TESTCLUSTER_STATE`` or ``~/.local/state/kong-testcluster/NAME``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `deploy` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deploy.cluster import (
    KINDS,
    ClusterError,
    list_containers,
    start_cluster,
    stop_container,
)
from deploy.engine import EngineError, ensure_engine
from deploy.images import SPECS, build_image, build_with_dockerfile, image_ref, prune_images


def default_state_dir() -> Path:
    env = os.environ.get("KONG_TESTCLUSTER_STATE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "kong-testcluster"


def log(message: str) -> None:
    print(f"testcluster: {message}", file=sys.stderr, flush=True)


def cmd_build(args: argparse.Namespace) -> int:
    names = list(SPECS) if args.image == "all" else [args.image]
    for name in names:
        result = build_with_dockerfile(name, log) if args.dockerfile else build_image(name, log)
        how = (
            "already present"
            if result.cached
            else ("cached root filesystem" if result.rootfs_cached else "cold")
        )
        print(f"{result.ref}: {how}, {result.seconds:.1f}s")
    return 0


def cmd_tag(args: argparse.Namespace) -> int:
    print(image_ref(args.image))
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    removed = prune_images(log)
    print(f"removed {len(removed)} old image(s)")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir) if args.state_dir else default_state_dir()
    name = args.name or f"{args.kind}-1"
    if any(row["name"] == name for row in list_containers()):
        log(f"a cluster named {name} exists already; `down {name}` first")
        return 1
    started = time.monotonic()
    running = start_cluster(
        args.kind,
        name,
        state_dir,
        max_sessions=args.max_sessions,
        cpus=args.cpus,
        log=log,
    )
    cluster = running.cluster
    log(
        f"timings: image {running.image_seconds:.1f}s, cluster start {running.start_seconds:.1f}s, "
        f"total {time.monotonic() - started:.1f}s"
    )
    log(
        f"state in {state_dir / name}; ssh: ssh {' '.join(cluster.ssh_options())} "
        f"{cluster.user}@{cluster.host}"
    )
    log("kong profile (paste under `profiles:`):")
    print(cluster.profile_yaml(), end="")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    rows = [row for row in list_containers() if row["name"] == args.name]
    if not rows:
        log(f"no test cluster named {args.name}")
        return 1
    for row in rows:
        stop_container(row["container"])
        log(f"removed container {row['container']}")
        state = Path(row["state_dir"]) if row["state_dir"] else None
        if args.purge and state is not None and state.is_dir():
            shutil.rmtree(state)
            log(f"removed {state}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    rows = list_containers()
    if not rows:
        print("no test clusters")
        return 0
    print(f"{'NAME':<20} {'KIND':<9} {'STATUS':<9} {'CONTAINER':<28} STATE DIR")
    for row in rows:
        print(
            f"{row['name']:<20} {row['kind']:<9} {row['status']:<9} "
            f"{row['container']:<28} {row['state_dir']}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="testcluster", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("build", help="build an image unless it is present")
    p.add_argument("image", choices=[*SPECS, "all"])
    p.add_argument(
        "--dockerfile",
        action="store_true",
        help="use deploy/IMAGE/Dockerfile (needs a registry to pull debian:*)",
    )
    p.set_defaults(func=cmd_build)
    p = sub.add_parser("tag", help="print the image reference of the current inputs")
    p.add_argument("image", choices=list(SPECS))
    p.set_defaults(func=cmd_tag)
    p = sub.add_parser("prune", help="remove images of older inputs that no container uses")
    p.set_defaults(func=cmd_prune)
    p = sub.add_parser("up", help="start a cluster and print its kong profile")
    p.add_argument("kind", choices=KINDS)
    p.add_argument("--name", help="profile and cluster name (default KIND-1)")
    p.add_argument("--state-dir", help=f"default {default_state_dir()}")
    p.add_argument("--max-sessions", type=int, default=10, help="sshd MaxSessions")
    p.add_argument("--cpus", type=int, default=8, help="CPUs / slots of the node")
    p.set_defaults(func=cmd_up)
    p = sub.add_parser("down", help="stop and remove a cluster")
    p.add_argument("name")
    p.add_argument("--purge", action="store_true", help="also delete its state directory")
    p.set_defaults(func=cmd_down)
    p = sub.add_parser("status", help="list the test clusters")
    p.set_defaults(func=cmd_status)
    args = parser.parse_args(argv)
    try:
        ensure_engine(log)
        return int(args.func(args))
    except (ClusterError, EngineError) as exc:
        log(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
