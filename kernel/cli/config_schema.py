"""``kernel config schema``: the JSON Schema of everything installed, as the reference's ``config:schema``.

The kernel's settings, the keys installed packages declare (``kernel_config_schemas``) and every
installed plugin's ``config_schema`` (from the discovery report: their code never runs in this
process), merged into one document by ``kernel.config.json_schema``. JSON by default, ``--format yaml``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any

import yaml

from kernel.config.json_schema import kernel_parts, merge, part
from kernel.plugin_scan.parent import Installed


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("json", "yaml"), default="json", help="the output's format")


def installed_schema(reg: Installed) -> dict[str, Any]:
    """The merged schema of the kernel, the declared keys and the installed plugins."""
    results: list[Mapping[str, Any]] = reg.manager.hook.kernel_config_schemas()
    declared = {key: schema for found in reversed(results) for key, schema in found.items()}
    parts = kernel_parts()
    parts += [(key, part(key, schema)) for key, schema in sorted(declared.items())]
    parts += sorted(reg.json_schemas.items())
    return merge(parts)


def cmd_schema(args: argparse.Namespace, reg: Installed) -> int:
    doc = installed_schema(reg)
    if args.format == "yaml":
        sys.stdout.write(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    else:
        print(json.dumps(doc, indent=2))
    return 0
