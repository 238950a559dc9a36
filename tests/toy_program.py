"""Programs of a user's own, importable by ``module:attribute``: a function with two prompts and a
langchain-core chain of two prompt templates (``tests/test_program.py`` optimises both)."""

from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnablePassthrough

PARAMS = {"style": "Say the word.", "ask": "The word is {word}."}


def two_prompts(params: Mapping[str, str], inputs: Any, chat: Callable[..., str]) -> str:
    """A program that makes two calls: a draft, then the answer; raises on the word 'boom'."""
    word = inputs if isinstance(inputs, str) else inputs["word"]
    if word == "boom":
        raise RuntimeError("the program cannot take this input")
    draft = chat([{"role": "system", "content": params["style"]},
                  {"role": "user", "content": params["ask"].format(word=word)}])
    return chat([{"role": "system", "content": params["style"]}, {"role": "user", "content": draft}]).strip()


CHAIN = (
    {"hint": ChatPromptTemplate.from_messages([("human", "A hint for {word}:")])
     | FakeListChatModel(responses=["unused"]) | StrOutputParser(),
     "word": RunnablePassthrough()}
    | ChatPromptTemplate.from_messages([("system", "Say the word."), ("human", "Hint: {hint}\nWord: {word}")])
    | FakeListChatModel(responses=["unused"])
    | StrOutputParser()
)
