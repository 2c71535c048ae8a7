from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fi_rig import Rig

from sol.fault_injection.faults import Fault
from sol.safety.journal import UndoJournal


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    journals: list[UndoJournal] = []

    def make(fault: Fault | None, *, safeguards: bool = True) -> Rig:
        journal = None
        if safeguards:
            journal = UndoJournal.open(tmp_path / f"undo-{len(journals)}.journal", fsync=False)
            journals.append(journal)
        return Rig(fault, safeguards=safeguards, journal=journal)

    yield make
    for j in journals:
        j.close()
