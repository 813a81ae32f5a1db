"""Teachers: the OpenAI-compatible client the data stages use, its cache, the prompts, and an
offline teacher (``r1ov.teachers.offline``) that answers from ground truth for the demo and tests."""

from r1ov.teachers.client import BudgetExceeded, Reply, Request, TeacherClient, describe_error
from r1ov.teachers.protocol import load_prompt

__all__ = ["BudgetExceeded", "Reply", "Request", "TeacherClient", "describe_error", "load_prompt"]
