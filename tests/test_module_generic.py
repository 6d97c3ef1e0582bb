"""The generic module contract: ``Module[In, Out, Params]`` fills the ``Input``, ``Output``
and ``Params`` class attributes the validator, compiler, cache and tuning read, so a module
writes its types once; an explicit attribute must agree with its type argument. (What the
type arguments mean to mypy is mypy's to check, not this test's.)"""

from __future__ import annotations

import pytest
from pydantic import BaseModel
from typing_extensions import TypeVar

from compose.corpus import Passage
from compose.module import LLMModule, Module, NoParams, PromptTemplate
from compose.modules.answer import Answer, AnswerInput, AnswerOutput, AnswerParams
from compose.runtime import ModuleContext, Runtime
from compose.testing import ScriptedGenerator

OutT = TypeVar("OutT", bound=BaseModel)


class Text(BaseModel):
    text: str


class Count(BaseModel):
    chars: int


class Scale(BaseModel):
    factor: int = 1


class Length(Module[Text, Count, Scale]):
    name = "test_length"
    purpose = "Count a text's characters."

    def run(self, inp: Text, ctx: ModuleContext) -> Count:
        return Count(chars=len(inp.text) * self.params.factor)


def test_a_generic_module_gets_its_models_from_its_type_arguments():
    assert (Length.Input, Length.Output, Length.Params) == (Text, Count, Scale)
    assert Length(factor=2)({"text": "abc"}, ModuleContext(Runtime())) == Count(chars=6)


def test_a_shipped_module_names_its_types_once():
    assert (Answer.Input, Answer.Output, Answer.Params) == (AnswerInput, AnswerOutput,
                                                            AnswerParams)
    assert {"Input", "Output", "Params"} <= set(vars(Answer))


def test_a_module_without_params_gets_no_params():
    class Echo(Module[Text, Text, NoParams]):
        name = "test_echo"
        purpose = "Echo a text."

        def run(self, inp: Text, ctx: ModuleContext) -> Text:
            return inp

    assert Echo.Params is NoParams
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        Echo(surprise=1)


def test_an_explicit_model_that_agrees_is_kept_and_one_that_disagrees_is_refused():
    class Agreeing(Module[Text, Count, Scale]):
        Input = Text

    assert Agreeing.Input is Text
    with pytest.raises(TypeError, match=r"Disagreeing.Output is Text but its type argument "
                                        r"is Count"):
        class Disagreeing(Module[Text, Count, Scale]):
            Output = Text


def test_a_type_argument_must_be_a_model_class():
    with pytest.raises(TypeError, match="the Params type argument must be a pydantic model"):
        class Untyped(Module[Text, Count]):  # Params left to its default, Any
            pass


def test_a_generic_intermediate_base_leaves_the_open_arguments_to_its_subclasses():
    class TextModule(LLMModule[Text, OutT, NoParams]):
        prompt = PromptTemplate(version="v", system="s", user="{text}")

    class TextLength(TextModule[Count]):
        pass

    assert (TextModule.Input, TextModule.Params) == (Text, NoParams)
    assert "Output" not in vars(TextModule)
    assert (TextLength.Input, TextLength.Output, TextLength.Params) == (Text, Count, NoParams)


def test_a_subclass_of_a_module_inherits_its_models():
    class Louder(Length):
        name = "test_louder"

    assert (Louder.Input, Louder.Output, Louder.Params) == (Text, Count, Scale)


def test_the_usage_example_of_the_module_contract_runs():
    passages = [Passage(id="p1", title="Kelp-oil lamp",
                        text="Mira Okafor invented the kelp-oil lamp in 1841.")]
    ctx = Runtime(generator=ScriptedGenerator([{"answer": "Mira Okafor",
                                                "citations": [1]}])).context()
    out = Answer(max_passages=3)({"question": "Who invented the kelp-oil lamp?",
                                  "passages": passages}, ctx)
    assert (out.answer, out.citations) == ("Mira Okafor", ["p1"])
