"""`fairlane demo` as a user runs it: a real process that starts its own fairlane (`fairlane run`, embedded
PostgreSQL, dispatchers, carrier simulator) in a temporary directory, floods one destination with fairness
and one without, and writes the report and the chart."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PASSCODE_TENANTS = ("otp-1", "otp-2", "otp-3")


def test_demo_holds_the_flood_to_its_share_while_passcodes_flow(tmp_path):
    # the demo's own temporary directory goes under a short private one (the server's Unix socket lives in it),
    # so this test can check that the demo removed it and leaves nothing running
    scratch = Path(tempfile.mkdtemp(prefix="fl-demo-test-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "FAIRLANE_DATA_DIR")}
    env.update(PYTHONPATH=str(ROOT), TMPDIR=str(scratch))
    out = tmp_path / "out"
    command = ["demo", "--seconds", "8", "--flood", "3000", "--rate", "100", "--otp-rate", "5", "--out", str(out)]
    try:
        result = subprocess.run(
            [sys.executable, "-m", "service.cli", *command],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=110,
        )
        leftovers = list(scratch.glob("fairlane-demo-*"))  # (pgserver keeps a runtime-N lock folder there)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert leftovers == []  # the demo's fairlane and its embedded server were stopped and removed
    assert f"report: {out / 'report.md'}" in result.stdout
    assert "| fair | otp-1 |" in result.stdout  # the main table, printed at the end

    report = (out / "report.md").read_text()
    assert "## Per tenant" in report and "## Pacing" in report and "chart.png" in report
    chart = (out / "chart.png").read_bytes()
    assert chart.startswith(b"\x89PNG\r\n\x1a\n") and len(chart) > 20_000

    figures = json.loads((out / "report.json").read_text())
    fair, fifo = figures["tenants"]["fair"], figures["tenants"]["fifo"]
    for tenant in PASSCODE_TENANTS:
        # with fairness every passcode went through, quickly
        assert fair[tenant]["sent"] >= 35, fair[tenant]
        assert fair[tenant]["delivered"] == fair[tenant]["sent"], fair[tenant]
        assert fair[tenant]["p99_wait_ms"] < 1000 and not fair[tenant]["p99_lower_bound"], fair[tenant]
        # the same traffic behind the flood in one FIFO queue waits far longer (or is not delivered at all)
        assert fifo[tenant]["sent"] == fair[tenant]["sent"]
        assert fifo[tenant]["p99_wait_ms"] > 5 * fair[tenant]["p99_wait_ms"], (fifo[tenant], fair[tenant])
    # the flood was accepted whole on both sides and got the capacity the passcodes left
    assert figures["flood_accepted"] == {"fair": 3000, "fifo": 3000}
    assert fair["bulk"]["rate"] > fair["otp-1"]["rate"]
    for side in ("fair", "fifo"):
        pacing = figures["pacing"][side]
        assert pacing["seconds_above_limit"] == 0, pacing  # never above rate + burst at the carrier
        assert pacing["max_second"] <= 100 + 20, pacing
    # the third destination: passcodes first inside their tenant's share, and a daily cap that ran out midway
    levels = figures["levels"]
    assert "## Levels of service and a daily cap" in report
    assert levels["daily_cap"] == 400 and 0 < levels["at_carrier"] <= 400
    assert levels["cap_spent_seconds"] is not None and levels["cap_spent_seconds"] < 8, levels
    assert levels["streams"]["mixed-high"]["p99_wait_ms"] < 1000, levels
    assert abs(levels["mixed_share"] - 0.5) <= 0.1, levels
    assert levels["streams"]["mixed-bulk"]["refused"] > 0  # what the cap could not take before its reset
