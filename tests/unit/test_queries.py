import pytest

from db import queries


def test_parse_named_blocks():
    text = "-- name: first\n-- what it does\nSELECT 1\n\n-- name: second\n-- more\nSELECT 2\n"
    assert queries.parse(text) == {"first": "-- what it does\nSELECT 1", "second": "-- more\nSELECT 2"}


def test_duplicate_names_are_refused():
    with pytest.raises(ValueError, match="'x' is defined twice"):
        queries.parse("-- name: x\nSELECT 1\n-- name: x\nSELECT 2\n")


AGGREGATES = sorted(
    path.name.removesuffix(".sql") for path in queries.QUERIES_DIR.iterdir() if path.name.endswith(".sql")
)


@pytest.mark.parametrize("aggregate", AGGREGATES)
def test_every_query_file_loads_and_is_read_only(aggregate):
    loaded = queries.load(aggregate)
    assert loaded and all(sql.startswith("--") for sql in loaded.values())
    with pytest.raises(TypeError):
        loaded["new"] = "SELECT 1"  # type: ignore[index]
