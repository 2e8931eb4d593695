"""The tests mirror the architecture (tests/README.md): a test file lies in unit/<layer>/, unit/stages/,
integration/ or slow/; its folder, not a marker of its own, sets its tier; nothing outside tests/ imports them."""

import re

from tests.helpers import REPO, TESTS

LAYERS = {path.name for path in (REPO / "src" / "msc").iterdir() if (path / "__init__.py").is_file()}
TIER_MARK = re.compile(r"pytest\.mark\.(integration|slow)\b")


def test_every_test_file_lies_in_a_tier_and_a_unit_test_in_a_layer():
    misplaced = []
    for path in TESTS.rglob("test_*.py"):
        parts = path.relative_to(TESTS).parts
        if parts[0] in ("integration", "slow") and len(parts) == 2:
            continue
        if parts[0] == "unit" and (len(parts) == 2 or (len(parts) == 3 and parts[1] in LAYERS | {"stages"})):
            continue
        if parts[0] in ("golden", "fixtures"):
            continue  # data the tests read, not tests
        misplaced.append(str(path.relative_to(REPO)))
    assert not misplaced, f"{misplaced}: move them as tests/README.md says"


def test_the_folder_sets_the_tier_and_no_test_marks_its_own():
    """Outside slow/, where a slow test that also starts processes keeps `integration`."""
    marked = [str(path.relative_to(REPO)) for path in TESTS.rglob("test_*.py")
              if path.relative_to(TESTS).parts[0] != "slow" and TIER_MARK.search(path.read_text())]
    assert not marked, f"{marked} set a tier marker; the folder sets it (tests/conftest.py)"


def test_nothing_outside_tests_imports_the_tests_package():
    importing = [str(path.relative_to(REPO)) for folder in ("src", "benchmarks") for path in (REPO / folder).rglob("*.py")
                 if re.search(r"^\s*(from tests\b|import tests\b)", path.read_text(), re.M)]
    assert not importing, importing


def test_a_tier_folder_is_collected_only_where_the_mark_expression_can_select_it():
    from tests.helpers import tier_may_be_selected

    def collected(markexpr: str) -> set[str]:
        return {tier for tier in ("unit", "integration", "slow") if tier_may_be_selected(tier, markexpr)}

    assert collected("not slow and not integration") == {"unit"}  # the default run
    assert collected("integration") == {"integration", "slow"}  # a slow test that starts processes keeps the mark
    assert collected("slow") == {"slow"}
    assert collected("postgres") == collected("not gpu") == {"unit", "integration", "slow"}
    assert collected("integration and not slow") == {"integration"}
    assert collected("skip or not integration") == {"unit", "integration", "slow"}, "a mark the table does not know"
    assert collected("gpu(x=1)") == {"unit", "integration", "slow"}, "a mark's arguments"
