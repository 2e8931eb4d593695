"""Progress without a terminal (issue 36, item 3): under ``dvc exp run``, CI or nohup, every long step
prints done/total and an estimate at least every MSC_PROGRESS_SECONDS (30 by default)."""

from __future__ import annotations

import re
import time

from msc.core.progress import ProgressLines, duration

LINE = re.compile(r"^(?P<what>.+): (?P<done>\d+)/(?P<total>\d+) \(\d+%\), \d+m\d\ds spent, "
                  r"(?P<estimate>about \d+m\d\ds left|estimate after the first|done)$")


def progress_lines(text: str) -> list[re.Match]:
    return [match for line in text.splitlines() if (match := LINE.match(line))]


def test_lines_say_done_total_and_an_estimate_while_a_unit_runs(capsys):
    with ProgressLines(interval=0.2) as lines:
        task = lines.add_task("trainings", total=4, completed=1)  # one done before: a resumed study
        lines.advance(task)
        time.sleep(0.5)  # a unit longer than the interval: the ticker still prints
        lines.advance(task, 2)
    printed = progress_lines(capsys.readouterr().out)
    assert [(m["done"], m["estimate"]) for m in printed][0] == ("1", "estimate after the first")
    ticks = [m for m in printed if m["done"] == "2"]
    assert ticks and all(m["estimate"].startswith("about ") for m in ticks)  # counted from this run's one unit
    assert (printed[-1]["done"], printed[-1]["total"], printed[-1]["estimate"]) == ("4", "4", "done")


def test_duration_reads_as_minutes_or_hours():
    assert (duration(59.6), duration(61), duration(3 * 3600 + 125)) == ("1m00s", "1m01s", "3h02m")
