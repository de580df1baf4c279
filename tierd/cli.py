"""`tierd serve | check-config | version`."""
from __future__ import annotations

import argparse
import sys

from tierd.version import version


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tierd", description="Postgres-wire database with hot and cold tiers")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the daemon")
    serve.add_argument("--config", help="TOML config file")
    serve.add_argument("--data-dir", help="data directory (default ./data)")
    serve.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default 5433)")
    check = sub.add_parser("check-config", help="validate a config file and print the effective settings")
    check.add_argument("file")
    sub.add_parser("version", help="print the version")
    args = parser.parse_args(argv)

    from tierd import config as config_mod
    from tierd.daemon import serve as run_daemon, setup_logging

    if args.command == "version":
        print(f"tierd {version()}")
        return 0
    if args.command == "check-config":
        try:
            cfg = config_mod.load(args.file)
            cfg.check()
        except config_mod.ConfigError as exc:
            print(f"tierd: invalid config: {exc}", file=sys.stderr)
            return 2
        if cfg.method == "scram" and not cfg.password:
            print(f"tierd: warning: auth.method is scram and auth.password is empty: superuser {cfg.superuser!r} "
                  "has no password unless one was set with ALTER USER, and on a new data dir `tierd serve` refuses "
                  "to start (nobody could log in)", file=sys.stderr)
        for attr, value in cfg.redacted().items():
            if attr == "auth_method":
                value = cfg.method  # the method in effect, also when the file leaves it to the default
            if attr == "storages":
                for sid, opts in value.items():
                    print(f"storage.{sid} = {opts!r}")
            else:
                print(f"{config_mod.KEY_NAMES.get(attr, attr)} = {value!r}")
        return 0
    if args.command != "serve":
        parser.print_help()
        return 2

    def load_config() -> config_mod.Config:
        """The config file with the command line on top; run again by SIGHUP."""
        cfg = config_mod.load(args.config)
        if args.data_dir:
            cfg.data_dir = args.data_dir
        if args.host:
            cfg.host = args.host
        if args.port is not None:
            cfg.port = args.port
        cfg.check()
        return cfg

    try:
        cfg = load_config()
    except config_mod.ConfigError as exc:
        print(f"tierd: invalid config: {exc}", file=sys.stderr)
        return 2
    setup_logging(cfg.log_level)
    return run_daemon(cfg, reload_config=load_config)


if __name__ == "__main__":
    sys.exit(main())
