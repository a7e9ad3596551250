from processors import glossary
from processors.numbers import NUMBERS


def test_glossary_is_generated_from_the_catalogue():
    assert glossary.PATH.read_text() == glossary.render(), "run `python -m processors.glossary`"


def test_every_number_has_a_definition_and_an_example():
    text = glossary.render()
    for n in NUMBERS:
        assert f"`{n.name}`" in text and n.definition in text and glossary.EXAMPLES[n.name]


def test_status_help_carries_every_definition():
    from stagewatch.cli import STATUS_HELP

    for n in NUMBERS:
        assert n.name in STATUS_HELP and n.definition in STATUS_HELP
