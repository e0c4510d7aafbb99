import pytest

from routing.profiling.graders import (
    GRADERS,
    ExactMatchGrader,
    Grader,
    MultipleChoiceGrader,
    get_grader,
    grader_for,
)


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("Let me think. 2+2=4, so the answer is (C).", "C"),
        ("The answer is C", "C"),
        ("Answer: C", "C"),
        ("answer: **C**", "C"),
        ("(C)", "C"),
        ("C.", "C"),
        ("First I thought the answer is (A), but no: the answer is (C).", "C"),
    ],
)
def test_multiple_choice_reads_the_forms_llms_answer_in(answer, expected):
    assert MultipleChoiceGrader().extract(answer) == expected
    assert MultipleChoiceGrader().grade(answer, expected) == 1.0


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "I like turtles.",
        "I think so.",
        "<html>not json</html>",
        "the answer is a mystery",
        "A lot depends on it",
        None,
    ],
)
def test_multiple_choice_scores_garbage_as_incorrect_without_guessing_a_letter(garbage):
    assert MultipleChoiceGrader().grade(garbage, "A") == 0.0
    assert MultipleChoiceGrader().grade(garbage, "I") == 0.0


def test_multiple_choice_wrong_letter_is_incorrect():
    assert MultipleChoiceGrader().grade("The answer is (B).", "C") == 0.0


def test_exact_match_ignores_case_spacing_and_surrounding_punctuation():
    grader = ExactMatchGrader()
    assert grader.grade("  Paris. ", "paris") == 1.0
    assert grader.grade("New   York", "new york") == 1.0
    assert grader.grade("Paris, France", "Paris") == 0.0
    assert grader.grade("", "") == 0.0


def test_grader_for_picks_multiple_choice_for_letter_references_and_honours_configuration():
    assert isinstance(grader_for(configured=None, references=["A", "J", "c"]), MultipleChoiceGrader)
    assert isinstance(grader_for(configured=None, references=["A", "Paris"]), ExactMatchGrader)
    assert isinstance(grader_for(configured="exact_match", references=["A"]), ExactMatchGrader)
    with pytest.raises(ValueError, match="unknown grader"):
        get_grader("nope")


def test_a_grader_added_to_the_table_can_be_chosen_by_name(monkeypatch):
    class ContainsGrader(Grader):
        name = "contains-test"

        def grade(self, response_text, reference, *, prompt_text=""):
            return float(reference in response_text)

    monkeypatch.setitem(GRADERS, ContainsGrader.name, ContainsGrader)
    assert grader_for(configured="contains-test", references=["x"]).grade("a x b", "x") == 1.0
