"""SOL node agents: safe on-node learning (SOL, ASPLOS'22) as a framework and a daemon."""

from sol.sdk import Agent, Clock, Context, NoParams, Prediction, Schedule, Verdict

__all__ = ["Agent", "Clock", "Context", "NoParams", "Prediction", "Schedule", "Verdict"]
__version__ = "0.1.0"
