"""Segment counting: GSM-7 160/153 with extension characters as two septets, else UCS-2 70/67 in UTF-16
code units. segments_v1 counts units; segments_v2 (what submissions are charged) counts the parts a splitter
makes that never cuts an extension character or a surrogate pair in two (issue 14), one more where v1's cut
would."""

import pytest

from tests.integration.fixtures import apply_basic, submit

CASES = [
    ("a", "GSM-7", 1),
    ("a" * 160, "GSM-7", 1),
    ("a" * 161, "GSM-7", 2),
    ("a" * 306, "GSM-7", 2),
    ("a" * 307, "GSM-7", 3),
    ("a" * 1600, "GSM-7", 11),
    ("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./09:;<=>?¡AZÄÖÑÜ§¿azäöñüà", "GSM-7", 1),
    ("€" * 80, "GSM-7", 1),  # 160 septets
    ("€" * 80 + "a", "GSM-7", 2),  # 161 septets
    ("^{}\\[~]|" * 10, "GSM-7", 1),  # 80 extension characters = 160 septets
    ("^{}\\[~]|" * 10 + "\f", "GSM-7", 2),  # form feed is an extension character too
    ("a" * 152 + "{", "GSM-7", 1),  # 154 septets
    ("a" * 159 + "[", "GSM-7", 2),  # 161 septets
    ("ç", "UCS-2", 1),  # only the capital Ç is in the GSM-7 basic set
    ("ł" * 70, "UCS-2", 1),
    ("ł" * 71, "UCS-2", 2),
    ("ł" * 134, "UCS-2", 2),
    ("ł" * 135, "UCS-2", 3),
    ("a" * 69 + "ł", "UCS-2", 1),
    ("😀" * 35, "UCS-2", 1),  # 70 UTF-16 code units
    ("😀" * 35 + "a", "UCS-2", 2),  # 71 code units
    ("😀" * 33 + "a", "UCS-2", 1),  # 67 code units
    ("😀" * 34, "UCS-2", 1),  # 68 code units, still one segment
    ("😀" * 67, "UCS-2", 2),  # 134 code units
    ("😀" * 68, "UCS-2", 3),  # 136 code units
    ("Привет", "UCS-2", 1),
    ("a" * 1600 + "", "GSM-7", 11),
    ("ł" * 1600, "UCS-2", 24),
]


# where a part may not end inside a character: (body, segments_v2)
WHOLE_CHARACTERS = {
    "😀" * 67: 3,  # 134 code units, but a part of 67 holds 33 emoji
    "a" * 152 + "€" + "a" * 152: 3,  # 306 septets, but the escape pair may not straddle parts 1 and 2
}


def segments_v2(body: str, segments: int) -> int:
    return WHOLE_CHARACTERS.get(body, segments)


@pytest.mark.parametrize(
    ("body", "encoding", "segments"), CASES, ids=[f"{c[1]}-{len(c[0])}-{i}" for i, c in enumerate(CASES)]
)
def test_segments(conn, body, encoding, segments):
    assert conn.execute("SELECT fairlane.segments_v1(%s)", (body,)).fetchone()[0] == segments
    assert conn.execute("SELECT fairlane.segments_v2(%s)", (body,)).fetchone()[0] == segments_v2(body, segments)


def test_whole_characters_cost_a_part_more_where_v1_would_cut_them(conn):
    for body, segments in WHOLE_CHARACTERS.items():
        assert conn.execute("SELECT fairlane.segments_v2(%s)", (body,)).fetchone()[0] == segments
        assert conn.execute("SELECT fairlane.segments_v1(%s)", (body,)).fetchone()[0] == segments - 1


def test_submitted_messages_carry_segments_and_encoding(conn):
    apply_basic(conn)
    cases = [*CASES, *((body, "UCS-2" if "😀" in body else "GSM-7", n - 1) for body, n in WHOLE_CHARACTERS.items())]
    for body, encoding, segments in cases:
        message_id = submit(conn, tenant="acme", recipient="+15551234567", body=body)
        row = conn.execute("SELECT encoding, segments FROM fairlane.messages WHERE id = %s", (message_id,)).fetchone()
        assert row == (encoding, segments_v2(body, segments)), body
    total = sum(segments_v2(body, segments) for body, _, segments in cases)
    assert conn.execute("SELECT queued_segments FROM fairlane.queues").fetchone()[0] == total
