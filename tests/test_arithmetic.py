from fractions import Fraction

import pytest

from training.data.arithmetic import ExpressionError, agrees, decompose, evaluate, format_number


@pytest.mark.parametrize(
    ("expr", "value"),
    [("48/2", 24), ("600*.2", 120), ("(10+20)/2", 15), ("-3+5", 2), ("05+1", 6), ("1,000*2", 2000), ("10/4", Fraction(5, 2))],
)
def test_evaluate_exact(expr, value):
    assert evaluate(expr) == value


@pytest.mark.parametrize("expr", ["__import__('os')", "a+1", "2**10", "1/0", "[1]", "True+1", "3 if 1 else 2", ""])
def test_evaluate_refuses_anything_but_arithmetic(expr):
    with pytest.raises(ExpressionError):
        evaluate(expr)


@pytest.mark.parametrize(
    ("value", "text"),
    [(Fraction(24), "24"), (Fraction(1, 5), "0.2"), (Fraction(10, 3), "3.3333"), (Fraction(-5, 2), "-2.5"), (Fraction(0), "0")],
)
def test_format_number(value, text):
    assert format_number(value) == text


def test_agrees_allows_the_reference_rounding_only():
    assert agrees(Fraction(10, 3), "3.33")
    assert agrees(Fraction(24), "24.0")
    assert not agrees(Fraction(15), "16")
    assert not agrees(Fraction(10, 3), "3")  # no decimals written: exact
    assert not agrees(Fraction(10, 3), "3.4")


def test_decompose_innermost_first():
    ops = decompose("( 7.0 - ( 3.0 + 2.0 ) )")
    assert [(op.expr, op.value) for op in ops] == [("3+2", 5), ("7-5", 2)]
    assert [op.expr for op in decompose("( ( 19.0 + 4.0 ) * 15.0 )")] == ["19+4", "23*15"]
    assert decompose("( 5.0 )") == []


def test_an_expression_too_deep_for_the_recursion_limit_is_refused_with_one_line():
    from training.data.arithmetic import MAX_OPERATORS
    from training.data.solutions import UnrenderableError, parse_reference

    assert evaluate("+".join(["1"] * (MAX_OPERATORS + 1))) == MAX_OPERATORS + 1  # the longest accepted
    for expr, message in [("+".join(["1"] * 3000), "too long: 2999 operators (at most 200)"),
                          ("-" * 2000 + "1", "too long: 2000 operators"),
                          ("(" * 1000 + "1" + ")" * 1000, "nested too deeply: 1000 parentheses (at most 200)")]:
        with pytest.raises(ExpressionError, match=message.replace("(", r"\(").replace(")", r"\)")):
            evaluate(expr)
    # The reference teacher's reason names the mark, cut to a readable length.
    mark = "+".join(["1"] * 3000)
    with pytest.raises(UnrenderableError) as caught:
        parse_reference(f"He has <<{mark}=3000>>3000 apples.")
    assert str(caught.value) == ("calculator mark '" + "1+" * 30 + "'... (6004 chars): too long: 2999 operators "
                                 "(at most 200)")
