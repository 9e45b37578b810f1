"""``kernel new``: write a new package from a template, as Backstage's ``backstage-cli new``.

``kernel new`` asks what to create and the options it needs; ``kernel new --select backend-plugin
--option pluginId=todo --option owner=team-a`` asks nothing. The templates (``kernel/cli/templates``)
are folders of files ending in ``.tmpl`` whose ``{{name}}`` placeholders (in names and text) are
filled in; a folder named ``__package__`` becomes the Python package.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kernel.plugin import PLUGIN_ID_PATTERN

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True)
class Option:
    name: str
    prompt: str
    required: bool = True


@dataclass(frozen=True)
class Template:
    name: str
    description: str
    options: tuple[Option, ...]
    folder: Callable[[dict[str, str]], str]


_ID = Option("pluginId", "ID of the plugin (lowercase, dashes: todo, tech-radar)")
_OWNER = Option("owner", "Owner of the package (a team; Enter for none)", required=False)
TEMPLATES = {
    t.name: t
    for t in (
        Template("backend-plugin", "a backend plugin: routes, a test, a package", (_ID, _OWNER),
                 lambda o: f"{o['pluginId']}-backend"),
        Template(
            "backend-plugin-module", "a module extending an existing backend plugin",
            (Option("pluginId", "ID of the plugin the module extends"),
             Option("moduleId", "ID of the module (lowercase, dashes: github, scoring)"), _OWNER),
            lambda o: f"{o['pluginId']}-backend-module-{o['moduleId']}",
        ),
    )
}  # fmt: skip


class NewError(Exception):
    """What ``kernel new`` cannot do, said to the user."""


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--select", metavar="TEMPLATE", help=f"the template: {', '.join(TEMPLATES)}")
    parser.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE", help="a template option (pluginId=todo)"
    )
    parser.add_argument("--target-dir", default=".", help="where the package's folder is created (default: here)")


def run(args: argparse.Namespace) -> int:
    interactive = sys.stdin.isatty()
    try:
        template = _choose(args.select, interactive)
        options = _options(template, args.option, interactive)
        target = Path(args.target_dir) / template.folder(options)
        written = render(template, options, target)
    except NewError as exc:
        print(f"kernel new: {exc}", file=sys.stderr)
        return 2
    except (EOFError, KeyboardInterrupt):
        print("\nkernel new: cancelled", file=sys.stderr)
        return 130
    print(f"Created {template.name} in {target} ({len(written)} files). Next:")
    print(f"  pip install -e {target}")
    print(f"  pytest {target}")
    if template.name == "backend-plugin":
        print(f"  kernel serve --dev      # then: curl localhost:7007/api/{options['pluginId']}/health")
    return 0


def _choose(selected: str | None, interactive: bool) -> Template:
    if selected is not None:
        if selected not in TEMPLATES:
            raise NewError(f"no template {selected!r}; choose one of: {', '.join(TEMPLATES)}")
        return TEMPLATES[selected]
    if not interactive:
        raise NewError(f"not a terminal: choose a template with --select ({', '.join(TEMPLATES)})")
    names = list(TEMPLATES)
    print("What do you want to create?")
    for i, name in enumerate(names, 1):
        print(f"  {i}. {name} - {TEMPLATES[name].description}")
    while True:
        answer = input(f"Choose 1-{len(names)} or a name: ").strip()
        if answer in TEMPLATES:
            return TEMPLATES[answer]
        if answer.isdigit() and 1 <= int(answer) <= len(names):
            return TEMPLATES[names[int(answer) - 1]]
        print(f"  not one of the choices: {answer!r}")


def _options(template: Template, given: list[str], interactive: bool) -> dict[str, str]:
    options: dict[str, str] = {}
    known = {o.name for o in template.options}
    for item in given:
        key, sep, value = item.partition("=")
        if not sep:
            raise NewError(f"--option {item!r} must be KEY=VALUE")
        if key not in known:
            raise NewError(f"template {template.name} has no option {key!r} (it has: {', '.join(sorted(known))})")
        options[key] = value.strip()
    for option in template.options:
        while option.name not in options:
            if not interactive:
                if option.required:
                    raise NewError(f"option {option.name} is missing: add --option {option.name}=...")
                options[option.name] = ""
                break
            answer = input(f"{option.prompt}: ").strip()
            problem = _problem(option, answer)
            if problem:
                print(f"  {problem}")
            else:
                options[option.name] = answer
        problem = _problem(option, options[option.name])
        if problem:
            raise NewError(problem)
    return options


def _problem(option: Option, value: str) -> str:
    if not value:
        return f"{option.name} is required" if option.required else ""
    if option.name in ("pluginId", "moduleId") and not PLUGIN_ID_PATTERN.match(value):
        return f"{option.name} {value!r} must be lowercase letters and digits, words joined by dashes (e.g. tech-radar)"
    return ""


def render(template: Template, options: dict[str, str], target: Path) -> list[Path]:
    """Write ``template`` filled with ``options`` into the new folder ``target``; the files written."""
    if target.exists():
        raise NewError(f"{target} already exists: choose another id or --target-dir")
    values = _values(template, options)
    source = TEMPLATES_DIR / template.name
    written = []
    for path in sorted(source.rglob("*.tmpl")):
        relative = str(path.relative_to(source))[: -len(".tmpl")].replace("__package__", values["package"])
        out = target / _fill(relative, values)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(_fill(path.read_text(), values))
        written.append(out)
    return written


def _values(template: Template, options: dict[str, str]) -> dict[str, str]:
    owner = options.get("owner", "")
    distribution = "kernel-plugin-" + template.folder(options)
    return {
        **options,
        "distribution": distribution,
        "package": distribution.replace("-", "_"),
        "ownerSuffix": f" (owner: {owner})" if owner else "",
        "ownerLine": f"\n\nOwner: {owner}." if owner else "",
    }


def _fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text
