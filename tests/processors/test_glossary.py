from processors import glossary
from processors.numbers import NUMBERS


def test_glossary_is_generated_from_the_catalogue():
    assert glossary.PATH.read_text() == glossary.render(), "run `python -m processors.glossary`"


def test_every_number_has_a_definition_and_an_example():
    text = glossary.render()
    for n in NUMBERS:
        assert f"`{n.name}`" in text and n.definition in text and glossary.EXAMPLES[n.name]


def test_status_help_points_to_the_glossary_command_which_carries_every_definition(capsys):
    """`status --help` is options first (issue 10) and points to `stagewatch glossary`, which prints them all."""
    from stagewatch.cli import STATUS_EPILOG, STATUS_HELP, glossary as glossary_command

    assert "stagewatch glossary" in STATUS_HELP + STATUS_EPILOG
    glossary_command()
    out = " ".join(capsys.readouterr().out.split())
    for n in NUMBERS:
        assert n.name in out and " ".join(n.definition.split()) in out
