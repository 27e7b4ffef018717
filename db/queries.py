"""Named SQL blocks from sql/queries/<aggregate>.sql, loaded once into a read-only mapping.

A block starts with ``-- name: <query_name>``, then a one-line comment saying what it does, then the
statement. Files used by psycopg (tools) take ``%(name)s`` parameters; files used by asyncpg take ``$n``.
"""

import re
from collections.abc import Mapping
from functools import cache
from importlib.resources import files
from types import MappingProxyType

QUERIES_DIR = files("sql") / "queries"  # package data: found in a source tree and in an installed wheel alike
_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def parse(text: str) -> dict[str, str]:
    parts = _NAME.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = body.strip()
    return queries


@cache
def load(aggregate: str) -> Mapping[str, str]:
    """The queries of ``sql/queries/<aggregate>.sql``."""
    return MappingProxyType(parse((QUERIES_DIR / f"{aggregate}.sql").read_text(encoding="utf-8")))
