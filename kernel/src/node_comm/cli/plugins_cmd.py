"""``node-comm plugins``: what plugin discovery finds: each plugin, its distribution and version,
and the transports, serializers and interceptors it registers."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
from typing import Any

from ..plugins import ENTRY_POINT_GROUP, ENV_BLOCK, ENV_NO_AUTOLOAD, PluginsConfig, Registries, discover


def version() -> str:
    try:
        return importlib.metadata.version("node-comm")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _skipped_dists() -> dict[str, str]:
    """``entry-point name -> "distribution version"`` for every entry point of the group (no import)."""
    out: dict[str, str] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        if dist is not None and ep.name not in out:
            out[ep.name] = f"{dist.name} {dist.version}"
    return out


def plugins_report(registries: Registries) -> dict[str, Any]:
    """What ``node-comm plugins --json`` prints."""
    dists = _skipped_dists()
    return {
        "node_comm_version": version(),
        "entry_point_group": ENTRY_POINT_GROUP,
        "plugins": [
            {
                "name": info.name,
                "distribution": info.distribution,
                "version": info.version,
                "transports": sorted(info.transports),
                "serializers": sorted(info.serializers),
                "interceptors": sorted(info.interceptors),
            }
            for info in registries.plugins.values()
        ],
        "not_loaded": [
            {"name": name, "reason": reason, "distribution": dists.get(name)}
            for name, reason in sorted(registries.skipped.items())
        ],
        "transports": {p.name: p.plugin for p in registries.transports.items()},
        "serializers": {p.name: p.plugin for p in registries.serializers.items()},
        "interceptors": {p.name: p.plugin for p in registries.interceptors.items()},
    }


def _print_text(report: dict[str, Any]) -> None:
    plugins = report["plugins"]
    print(
        f"node-comm {report['node_comm_version']}: {len(plugins)} plugin(s) loaded "
        f"from entry-point group {report['entry_point_group']!r}"
    )
    for p in plugins:
        dist = f"{p['distribution']} {p['version']}" if p["distribution"] else "(not from an entry point)"
        print(f"\n{p['name']}  [{dist}]")
        for kind in ("transports", "serializers", "interceptors"):
            if p[kind]:
                print(f"  {kind + ':':<14}{', '.join(p[kind])}")
        if not any(p[k] for k in ("transports", "serializers", "interceptors")):
            print("  (registers nothing)")
    if report["not_loaded"]:
        print("\nnot loaded:")
        for s in report["not_loaded"]:
            dist = f" [{s['distribution']}]" if s["distribution"] else ""
            print(f"  {s['name']}{dist}: {s['reason']}")
    print()
    for kind in ("transports", "serializers", "interceptors"):
        names = ", ".join(report[kind]) or "none"
        print(f"{kind + ':':<14}{names}")


def _cmd_plugins(args: argparse.Namespace) -> int:
    config = PluginsConfig()
    if args.config:
        from ..config_loader import load_config

        config = load_config(args.config).plugins
    report = plugins_report(discover(config))
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        _print_text(report)
    return 0


def add_parser(sub: Any) -> None:
    """``node-comm plugins``."""
    p = sub.add_parser(
        "plugins",
        help="list discovered plugins and the transports, serializers and interceptors they register",
        description="List each discovered plugin (entry-point group 'node_comm'), its distribution and "
        "version, and what it registers. Honours plugins.block/only/autoload of --config and the "
        f"{ENV_BLOCK} / {ENV_NO_AUTOLOAD} environment variables.",
        epilog="example:\n  node-comm plugins\n  NODE_COMM_BLOCK_PLUGINS=grpc node-comm plugins --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.add_argument("--config", metavar="FILE", help="apply the plugins: section of this YAML config")
    p.set_defaults(func=_cmd_plugins)
