"""Package list for setuptools: every directory under pooler/, server/ and shared/
that has an __init__.py, installed as pgbundle.pooler.*, pgbundle.server.*,
pgbundle.shared.* (package-dir in pyproject.toml maps them)."""

import os

from setuptools import setup

ROOTS = {"pgbundle.shared": "shared", "pgbundle.pooler": "pooler", "pgbundle.server": "server"}


def packages() -> list[str]:
    here = os.path.dirname(os.path.abspath(__file__))
    out = []
    for pkg, rel in ROOTS.items():
        for dirpath, dirnames, filenames in os.walk(os.path.join(here, rel)):
            dirnames[:] = [d for d in dirnames if not d.startswith((".", "__"))]
            if "__init__.py" in filenames:
                sub = os.path.relpath(dirpath, os.path.join(here, rel))
                out.append(pkg if sub == "." else pkg + "." + sub.replace(os.sep, "."))
    return sorted(out)


setup(packages=packages())
