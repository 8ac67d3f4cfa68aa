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

pub const OPERATORS: [(&str, Operator); 8] = [
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
        let number = operand.trim().parse::<f64>().ok();
        Condition {
            operator,
            operand,
            number,
        }
    }

    /// Connect compares text exactly (case-sensitive); numeric operators compare as numbers
    /// and are false when either side is not a number.
    pub fn holds(&self, value: &str) -> bool {
        match self.operator {
            Operator::Equals => value == self.operand,
            Operator::TextStartsWith => value.starts_with(&self.operand),
            Operator::TextEndsWith => value.ends_with(&self.operand),
            Operator::TextContains => value.contains(&self.operand),
            op => {
                let (Some(x), Some(y)) = (value.trim().parse::<f64>().ok(), self.number) else {
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
}
