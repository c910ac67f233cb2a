"""``node-comm check-config CONFIG.yaml``: validate a config file, show it resolved (defaults
filled in, ``${ENV}`` replaced, secrets masked) and which plugin provides each named thing."""

from __future__ import annotations

import argparse
import dataclasses
import re
from typing import Any

from ..config import NodeConfig
from ..exceptions import ConfigError
from ..plugins import Registries, discover
from .output import EXIT_OK, EXIT_USAGE, error, print_json, table

#: Keys whose values are never printed (tokens, secrets, passwords, private key files).
SECRET_KEY = re.compile(r"token|secret|passw|key_file|private_key|api_key|credential", re.IGNORECASE)
MASK = "***"


def mask_secrets(value: Any, key: str = "") -> Any:
    """A copy of ``value`` (dicts, lists, scalars) with the value of every secret-looking key masked."""
    if key and SECRET_KEY.search(key) and value not in (None, "", {}, []):
        return MASK
    if isinstance(value, dict):
        return {str(k): mask_secrets(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_secrets(v) for v in value]
    return value


def resolved(config: NodeConfig) -> dict[str, Any]:
    """``config`` as plain data with secrets masked."""
    data = dataclasses.asdict(config)
    transport = data["transport"]
    options = transport.pop("options", {}) or {}
    transport.update(options)
    return mask_secrets(data)  # type: ignore[no-any-return]


def providers(config: NodeConfig, registries: Registries) -> list[dict[str, Any]]:
    """Which plugin (and distribution) provides the transport(s), serializers and interceptors."""
    wanted: list[tuple[str, str, Any]] = []
    transports = [config.transport.mode]
    transports += list(config.transport.options)
    for name in dict.fromkeys(transports):
        wanted.append(("transport", name, registries.transports))
    for name in registries.serializers.names():
        wanted.append(("serializer", name, registries.serializers))
    for name in dict.fromkeys(i.name for i in config.interceptors):
        wanted.append(("interceptor", name, registries.interceptors))
    out: list[dict[str, Any]] = []
    for kind, name, registry in wanted:
        entry: dict[str, Any] = {"kind": kind, "name": name, "plugin": None, "distribution": None, "version": None}
        if name in registry:
            plugin = registry.provider(name)
            info = registries.plugins.get(plugin)
            entry.update(plugin=plugin)
            if info is not None:
                entry.update(distribution=info.distribution, version=info.version)
        out.append(entry)
    return out


def cmd_check_config(args: argparse.Namespace) -> int:
    from ..config_loader import load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        if args.json:
            print_json({"ok": False, "file": args.config, "error": str(exc)})
        error(str(exc))
        return EXIT_USAGE
    registries = discover(config.plugins)
    data, provided = resolved(config), providers(config, registries)
    if args.json:
        print_json({"ok": True, "file": args.config, "config": data, "providers": provided})
        return EXIT_OK
    import yaml

    print(f"{args.config}: OK (node {config.node_id!r}, transport {config.transport.mode!r})")
    print("\nresolved config (secrets masked):")
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
    print("  " + text.rstrip("\n").replace("\n", "\n  "))
    print("\nprovided by:")
    rows = []
    for p in provided:
        dist = f"{p['distribution']} {p['version']}" if p["distribution"] else "-"
        rows.append([p["kind"], p["name"], p["plugin"] or "(not installed here)", dist])
    print(table(["kind", "name", "plugin", "distribution"], rows))
    return EXIT_OK


def add_parser(sub: Any) -> None:
    """``node-comm check-config``."""
    p = sub.add_parser(
        "check-config",
        help="validate a config file and show it resolved, with the plugin behind each name",
        description="Load CONFIG.yaml as `node-comm run` would: exit 2 with the error when it is wrong; "
        "else print the resolved config (defaults filled in, ${ENV} replaced, tokens, secrets, "
        "passwords and key files masked) and which plugin provides the transport, each serializer "
        "and each interceptor.",
        epilog="example:\n"
        "  $ node-comm check-config worker.yaml\n"
        "  worker.yaml: OK (node 'worker', transport 'grpc')\n"
        "  ...\n"
        "  $ node-comm check-config bad.yaml\n"
        "  node-comm: error: bad.yaml: transport.grpc.prot: unknown key; did you mean 'port'?",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", metavar="CONFIG.yaml", help="the config file to check")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=cmd_check_config)
