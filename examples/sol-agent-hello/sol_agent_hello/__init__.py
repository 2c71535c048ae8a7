"""The hello agent for SOL node agents."""

from sol_agent_hello.agent import HelloAgent, Params

__all__ = ["HelloAgent", "Params"]
