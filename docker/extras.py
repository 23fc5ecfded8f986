"""Print the requirements of setup.cfg's extras, one per line, for a dependency-only image layer.

Images install their dependencies before copying the source, so that a code change does not
reinstall torch or Airflow. The extras in setup.cfg stay the single list of what each image
needs: ``python extras.py setup.cfg spark train`` prints install_requires plus those extras.
"""
from __future__ import annotations

import configparser
import sys


def requirements(setup_cfg: str, extras: list[str]) -> list[str]:
    cfg = configparser.ConfigParser()
    if not cfg.read(setup_cfg):
        raise SystemExit(f"extras.py: cannot read {setup_cfg}")
    known = cfg["options.extras_require"]
    missing = [e for e in extras if e not in known]
    if missing:
        raise SystemExit(f"extras.py: no extra {missing} in {setup_cfg}; known: {sorted(known)}")
    lines = cfg["options"].get("install_requires", "").splitlines()
    for extra in extras:
        lines += known[extra].splitlines()
    seen: list[str] = []
    for line in (raw.strip() for raw in lines):
        if line and not line.startswith("#") and line not in seen:
            seen.append(line)
    return seen


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit("usage: python extras.py SETUP_CFG EXTRA [EXTRA ...]")
    print("\n".join(requirements(sys.argv[1], sys.argv[2:])))
