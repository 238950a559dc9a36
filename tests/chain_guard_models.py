"""Models a user's program reaches where agentopt cannot replace them, importable by ``module:attribute``
so Ray workers and exported packages run them (``tests/test_chain_guard.py``)."""

from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnablePassthrough


class Foreign(FakeListChatModel):
    """A model agentopt was not given: every call that reaches it is counted."""

    calls: int = 0

    def _call(self, *args: Any, **kwargs: Any) -> str:
        self.calls += 1
        return super()._call(*args, **kwargs)


FOREIGN = Foreign(responses=["leaked"])


class Finish:
    """A callable object (invisible to from_langchain's closure walk) that asks its own model about 'boom'."""

    def __init__(self, model: Foreign) -> None:
        self.model = model

    def __call__(self, fields: Mapping[str, str]) -> str:
        return str(self.model.invoke(fields["word"]).content) if fields["word"] == "boom" else fields["answer"]


CHAIN = (RunnablePassthrough.assign(answer=ChatPromptTemplate.from_messages([("system", "Say the word."),
                                                                              ("human", "{word}")])
                                    | FakeListChatModel(responses=["stand-in"]) | StrOutputParser())
         | RunnableLambda(Finish(FOREIGN), name="finish"))


def own_model(params: Mapping[str, str], inputs: Any, chat: Callable[..., str]) -> str:
    """A function program that calls a LangChain model itself instead of ``chat``."""
    return str(FOREIGN.invoke(params["ask"].format(**inputs)).content)
