"""The LLM call cache, stored in the archive so it follows the campaign to any machine."""

from sqlalchemy import select

from agentopt.agents.models.llm import Completion, Payer
from agentopt.archive.models import LLMCall
from agentopt.archive.store import Archive


class SqlCallCache:
    """Implements :class:`agentopt.agents.models.llm.CallCache` on the ``llm_calls`` table."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive

    def get(self, key: str) -> Completion | None:
        with self.archive.session() as s:
            row = s.scalar(select(LLMCall).where(LLMCall.key == key))
            if row is None:
                return None
            return Completion(row.text, row.prompt_tokens, row.completion_tokens, row.latency_s, row.finish_reason,
                              cached_tokens=row.cached_tokens, prompt_saved_s=row.prompt_saved_s)

    def put(self, key: str, request: dict[str, object], completion: Completion, payer: Payer) -> None:
        values = {"campaign_id": payer.campaign_id, "role": payer.role,
            "key": key, "model": str(request["model"]), "request": request, "text": completion.text,
            "finish_reason": completion.finish_reason, "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens, "latency_s": completion.latency_s,
            "cached_tokens": completion.cached_tokens, "prompt_saved_s": completion.prompt_saved_s,
        }
        with self.archive.session() as s:
            s.execute(self.archive.insert(LLMCall).values(**values).on_conflict_do_nothing(index_elements=["key"]))
