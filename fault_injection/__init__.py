"""Fault injection: named faults, failpoints, the harness and its report (DESIGN §2, §4).

Faults enter at the sensor, predictor and actuator boundaries (and the simulated node), never
by editing agent code; the harness runs each agent under each fault in virtual time with
SOL's safeguards on and off, measures time to the safe state, harm and benefit kept, and
checks DESIGN §4's guarantees on every safeguarded run. docs/fault-injection.md tells the
whole story.

>>> from sol.fault_injection import get_fault, run_cell
>>> from sol.agents.example_ewma import ExampleEwmaAgent
>>> cell = run_cell(ExampleEwmaAgent, get_fault("data.nan"))
>>> cell.passed, cell.verdict()
(True, 'prevented')
"""

from sol.fault_injection.faults import FAULTS, REDUCED_FAULTS, Fault, Timeline, get_fault, list_faults
from sol.fault_injection.harness import Cell, RunRecord, run_cell, run_one
from sol.fault_injection.invariants import Violation, check_invariants
from sol.fault_injection.matrix import Matrix, Row, load_agents, run_matrix
from sol.fault_injection.profiles import AgentProfile, profile_for

__all__ = [
    "FAULTS",
    "REDUCED_FAULTS",
    "AgentProfile",
    "Cell",
    "Fault",
    "Matrix",
    "Row",
    "RunRecord",
    "Timeline",
    "Violation",
    "check_invariants",
    "get_fault",
    "list_faults",
    "load_agents",
    "profile_for",
    "run_cell",
    "run_matrix",
    "run_one",
]
