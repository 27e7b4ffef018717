"""One table of error codes (service/model/errors.py): every code the database raises is in it, and
fairlane.raise_v1 gives it the SQLSTATE FL<HTTP status> of the table, which db/errors.py translates back."""

import re
from pathlib import Path

import psycopg
import pytest

from db.errors import FairlaneError, translate
from service.model.errors import ERRORS

SQL = Path(__file__).resolve().parents[2] / "sql"
RAISED = sorted({code for path in SQL.rglob("*.sql") for code in re.findall(r"raise_v1\(\s*'(\w+)'", path.read_text())})


def test_the_database_raises_only_codes_of_the_table():
    assert RAISED, "no raise_v1 call found under sql/"
    assert set(RAISED) <= set(ERRORS), set(RAISED) - set(ERRORS)


@pytest.mark.parametrize("code", RAISED)
def test_raise_gives_the_status_of_the_table_and_translates_back(conn, code):
    with pytest.raises(psycopg.Error) as raised:
        conn.execute("SELECT fairlane.raise_v1(%s, 'field', 'value', 'message')", (code,))
    assert raised.value.sqlstate == f"FL{ERRORS[code].status}"
    with pytest.raises(FairlaneError) as translated, translate():
        raise raised.value
    assert (translated.value.code, translated.value.field, translated.value.value) == (code, "field", "value")
