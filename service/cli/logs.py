"""Log lines: `time level logger: message key=value ...`, the structured `extra={...}` fields appended, so
constant messages stay greppable and their details stay visible.

Values may come from outside (a tenant's URL, an error from a remote peer), so a value that is not plain is
written as a JSON string (quoted, with newlines, control and non-ASCII characters escaped), and the lines of a
record after its first (a traceback) are indented: nothing a remote party sends can forge a log line."""

import json
import logging
import re
import sys

# attributes every LogRecord has; anything else on a record came from `extra`
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_PLAIN = re.compile(r"[A-Za-z0-9_.,:;/@+\-\[\]()<>*#%~!?^|{}']+")


def escaped(value: object) -> str:
    """A value as a log line shows it: as it is when plain, else as a JSON string."""
    text = value if isinstance(value, str) else str(value)
    if _PLAIN.fullmatch(text):
        return text
    return json.dumps(text)


class ExtraFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = " ".join(f"{key}={escaped(value)}" for key, value in vars(record).items() if key not in _STANDARD)
        first, _, rest = line.partition("\n")
        if extras:
            first = f"{first} {extras}"
        if rest:  # a traceback: every further line indented, so none reads as a record of its own
            first += "\n" + "\n".join("    " + part for part in rest.split("\n"))
        return first


def configure(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ExtraFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
