"""Teachers: the OpenAI-compatible client the data stages use, its cache and the prompts.

A client package: it knows requests, replies, budgets and the prompt files, never a stage.
May import ``r1ov.data``, ``r1ov.scoring``, ``r1ov.config``, ``r1ov.errors``. The offline
teacher that answers from ground truth for the demo and tests is
:mod:`r1ov.synthetic.offline_teacher`.
"""

from r1ov.teachers.client import BudgetExceeded, Reply, Request, TeacherClient, describe_error
from r1ov.teachers.protocol import load_prompt

__all__ = ["BudgetExceeded", "Reply", "Request", "TeacherClient", "describe_error", "load_prompt"]
