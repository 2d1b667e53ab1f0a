"""Render config.gpu.yaml into rayservice.yaml's `serveConfigV2`, so the cluster serves the same config.

    python -m cluster.deploy.render           # rewrite cluster/deploy/rayservice.yaml in place
    python -m cluster.deploy.render --check   # exit 1 (changing nothing) when the manifest is stale

config.gpu.yaml is the one source of the service's config: KubeRay's `serveConfigV2` is that file
verbatim (comments included), indented into the manifest's block scalar after a line saying
where it came from. Everything else in the manifest is left as it is. tests/unit/test_manifests.py
fails when the two drift apart.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "config.gpu.yaml"
MANIFEST = Path(__file__).resolve().with_name("rayservice.yaml")
KEY = "  serveConfigV2: |"  # spec.serveConfigV2 of the RayService, a literal block scalar
INDENT = "    "  # the block's content indentation
MARKER = (
    INDENT + "# Rendered from config.gpu.yaml by `python -m cluster.deploy.render`: edit that file, not this block."
)


def render(manifest: str, config: str) -> str:
    """`manifest` with its serveConfigV2 block replaced by `config`. The block runs from the
    line after KEY to the first non-blank line indented less than INDENT."""
    lines = manifest.splitlines()
    starts = [i for i, line in enumerate(lines) if line.rstrip() == KEY]
    if len(starts) != 1:
        raise ValueError(f"expected exactly one line {KEY!r} in the manifest, found {len(starts)}")
    start = starts[0] + 1
    end = start
    while end < len(lines) and (not lines[end].strip() or lines[end].startswith(INDENT)):
        end += 1
    while end > start and not lines[end - 1].strip():  # blank lines before the next key stay outside
        end -= 1
    if "\t" in config:
        raise ValueError("config.gpu.yaml contains a tab: YAML indentation must be spaces")
    body = [INDENT + line if line.strip() else "" for line in config.rstrip().splitlines()]
    return "\n".join(lines[:start] + [MARKER] + body + lines[end:]) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cluster.deploy.render", description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 if the manifest is not up to date; write nothing")
    ns = p.parse_args(argv)
    current = MANIFEST.read_text(encoding="utf-8")
    rendered = render(current, SOURCE.read_text(encoding="utf-8"))
    if rendered == current:
        print(f"{MANIFEST.relative_to(ROOT)} is up to date with {SOURCE.name}")
        return 0
    if ns.check:
        print(f"{MANIFEST.relative_to(ROOT)} is stale: run python -m cluster.deploy.render", file=sys.stderr)
        return 1
    MANIFEST.write_text(rendered, encoding="utf-8")
    print(f"wrote serveConfigV2 of {MANIFEST.relative_to(ROOT)} from {SOURCE.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
