//! Conditions on transitions: Connect's operators, evaluated against one value. The first
//! condition that holds wins; none holding takes the `NoMatchingCondition` error branch.

/// Every operator of the flow language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Equals,
    NumberGreaterThan,
    NumberGreaterOrEqualTo,
    NumberLessThan,
    NumberLessOrEqualTo,
    TextStartsWith,
    TextEndsWith,
    TextContains,
}

pub(crate) const OPERATORS: [(&str, Operator); 8] = [
    ("Equals", Operator::Equals),
    ("NumberGreaterThan", Operator::NumberGreaterThan),
    ("NumberGreaterOrEqualTo", Operator::NumberGreaterOrEqualTo),
    ("NumberLessThan", Operator::NumberLessThan),
    ("NumberLessOrEqualTo", Operator::NumberLessOrEqualTo),
    ("TextStartsWith", Operator::TextStartsWith),
    ("TextEndsWith", Operator::TextEndsWith),
    ("TextContains", Operator::TextContains),
];

impl Operator {
    pub fn parse(s: &str) -> Option<Operator> {
        OPERATORS.iter().find(|(n, _)| *n == s).map(|(_, o)| *o)
    }

    pub fn name(self) -> &'static str {
        OPERATORS
            .iter()
            .find(|(_, o)| *o == self)
            .map(|(n, _)| *n)
            .unwrap_or("Equals")
    }

    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            Operator::NumberGreaterThan
                | Operator::NumberGreaterOrEqualTo
                | Operator::NumberLessThan
                | Operator::NumberLessOrEqualTo
        )
    }

    /// The comma-separated list for error messages.
    pub fn all_names() -> String {
        OPERATORS
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub operator: Operator,
    pub operand: String,
    /// The operand as a number, for numeric operators (parsed once at load).
    pub number: Option<f64>,
}

impl Condition {
    pub fn new(operator: Operator, operand: String) -> Condition {
        let number = number(&operand);
        Condition {
            operator,
            operand,
            number,
        }
    }

    /// Connect compares text exactly (case-sensitive); numeric operators compare as numbers
    /// and are false when either side is not a number ([`number`]).
    pub fn holds(&self, value: &str) -> bool {
        match self.operator {
            Operator::Equals => value == self.operand,
            Operator::TextStartsWith => value.starts_with(&self.operand),
            Operator::TextEndsWith => value.ends_with(&self.operand),
            Operator::TextContains => value.contains(&self.operand),
            op => {
                let (Some(x), Some(y)) = (number(value), self.number) else {
                    return false;
                };
                match op {
                    Operator::NumberGreaterThan => x > y,
                    Operator::NumberGreaterOrEqualTo => x >= y,
                    Operator::NumberLessThan => x < y,
                    _ => x <= y,
                }
            }
        }
    }
}

/// A value read as a number: decimal text with optional sign, fraction and exponent, spaces
/// around it ignored. `NaN` and the infinities parse in Rust but are no number a flow means
/// (a Lambda answering "Infinity" should not pass "greater than 5"), so they are not numbers.
pub(crate) fn number(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|x| x.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(op: &str, operand: &str) -> Condition {
        Condition::new(Operator::parse(op).unwrap(), operand.into())
    }

    #[test]
    fn every_operator() {
        assert!(c("Equals", "1").holds("1"));
        assert!(
            !c("Equals", "Yes").holds("yes"),
            "case-sensitive like Connect"
        );
        assert!(c("NumberGreaterThan", "5").holds("6"));
        assert!(!c("NumberGreaterThan", "5").holds("5"));
        assert!(c("NumberGreaterOrEqualTo", "5").holds("5"));
        assert!(c("NumberLessThan", "5").holds("4.5"));
        assert!(
            !c("NumberLessThan", "5").holds("five"),
            "not a number: false"
        );
        assert!(c("NumberLessOrEqualTo", "5").holds(" 5 "));
        assert!(c("TextStartsWith", "+81").holds("+81312345678"));
        assert!(c("TextEndsWith", "00").holds("1200"));
        assert!(c("TextContains", "urgent").holds("very urgent case"));
        assert!(Operator::parse("Resembles").is_none());
        assert_eq!(Operator::all_names().split(", ").count(), 8);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn numeric(name: &str, operand: f64) -> Condition {
            c(name, &operand.to_string())
        }

        proptest! {
            /// For any two numbers, written as a Lambda or a caller would write them: exactly
            /// one of "greater than" and "less or equal" holds, exactly one of "greater or
            /// equal" and "less than", and they agree with the numbers' order.
            #[test]
            fn numeric_operators_follow_the_numbers_order(
                x in -1e12f64..1e12,
                y in -1e12f64..1e12,
                same in any::<bool>(),
                pad in "[ ]{0,2}",
            ) {
                let x = if same { y } else { x };
                let value = format!("{pad}{x}{pad}");
                let gt = numeric("NumberGreaterThan", y).holds(&value);
                let ge = numeric("NumberGreaterOrEqualTo", y).holds(&value);
                let lt = numeric("NumberLessThan", y).holds(&value);
                let le = numeric("NumberLessOrEqualTo", y).holds(&value);
                prop_assert_eq!(gt, x > y);
                prop_assert_eq!(lt, x < y);
                prop_assert!(gt != le && ge != lt, "{} vs {}", x, y);
                prop_assert_eq!(ge && le, x == y);
            }

            /// Text that is not a number never satisfies a numeric operator, whatever the
            /// operand; and the text operators never treat text as a number.
            #[test]
            fn text_is_never_a_number(
                text in "[a-zA-Z*#]{1,8}|NaN|inf|-Infinity",
                y in -1e6f64..1e6,
            ) {
                for (name, op) in OPERATORS {
                    if op.is_numeric() {
                        prop_assert!(!numeric(name, y).holds(&text), "{} {}", name, text);
                        prop_assert!(!c(name, &text).holds(&y.to_string()), "{} {}", name, text);
                    }
                }
            }

            /// The text operators on any text (keys, names, Japanese): a value built from the
            /// operand passes, and Equals is exact (no trimming, no case folding).
            #[test]
            fn text_operators_hold_on_what_they_name(
                a in "\\PC{0,6}",
                b in "\\PC{0,6}",
                x in "\\PC{0,6}",
            ) {
                let whole = format!("{a}{x}{b}");
                prop_assert!(c("TextStartsWith", &a).holds(&whole));
                prop_assert!(c("TextEndsWith", &b).holds(&whole));
                prop_assert!(c("TextContains", &x).holds(&whole));
                prop_assert!(c("Equals", &whole).holds(&whole));
                prop_assert_eq!(c("Equals", &a).holds(&whole), a == whole);
                let padded = format!("{whole} ");
                prop_assert!(!c("Equals", &whole).holds(&padded));
            }

            /// Every operator's name reads back as that operator.
            #[test]
            fn operator_names_round_trip(i in 0usize..8) {
                let (name, op) = OPERATORS[i];
                prop_assert_eq!(Operator::parse(name), Some(op));
                prop_assert_eq!(op.name(), name);
            }
        }
    }
}
